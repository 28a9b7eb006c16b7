//! A throwaway PostgreSQL cluster per test: its own data directory, socket
//! directory and port, with mtask preloaded. The server is the one whose
//! `pg_config` `$PG_CONFIG` names (make sets it for `PG=N`), by default
//! Debian's 15. Postgres refuses to run as root, so when the tests run as
//! root the server runs as the `postgres` OS user.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// The bin directory of the server the tests run against.
pub fn pg_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| bindir(&std::env::var("PG_CONFIG").unwrap_or("/usr/lib/postgresql/15/bin/pg_config".into())))
}

/// The bin directory of PostgreSQL `major`, for the tests across versions:
/// `make test-versions` names each version's pg_config in `PG<major>_CONFIG`.
pub fn pg_bin_of(major: u32) -> PathBuf {
    let var = format!("PG{major}_CONFIG");
    let pg_config =
        std::env::var(&var).unwrap_or_else(|_| panic!("{var} is not set: run this test with make test-versions"));
    bindir(&pg_config)
}

fn bindir(pg_config: &str) -> PathBuf {
    let out = check(pg_config, Command::new(pg_config).arg("--bindir").output().unwrap());
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs a Postgres server program of `bin` as a user it will run as.
fn pg_command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn hand_to_postgres(path: &Path) {
    if running_as_root() {
        check("chown", Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).output().unwrap());
    }
}

/// One initdb per server and test binary; every cluster starts as a copy
/// of its server's.
fn template(bin: &Path) -> PathBuf {
    static TEMPLATES: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
    let mut templates = TEMPLATES.lock().unwrap();
    if let Some((_, data)) = templates.iter().find(|(b, _)| b == bin) {
        return data.clone();
    }
    let run = std::env::temp_dir().join(format!("mtask-template-{}", std::process::id()));
    if templates.is_empty() {
        remove_stale_templates();
        let _ = std::fs::remove_dir_all(&run);
    }
    let dir = run.join(templates.len().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    hand_to_postgres(&dir);
    initdb(bin, &dir.join("data"));
    templates.push((bin.to_path_buf(), dir.join("data")));
    dir.join("data")
}

fn initdb(bin: &Path, data: &Path) {
    check(
        "initdb",
        pg_command(bin, "initdb")
            .args(["-A", "trust", "-N", "--no-instructions", "-U", "postgres", "-D"])
            .arg(data)
            .output()
            .unwrap(),
    );
}

/// Templates of test runs that have ended; a run's own is left for its life.
fn remove_stale_templates() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("mtask-template-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    /// The bin directory of its server.
    pub bin: PathBuf,
}

/// A psql error: its SQLSTATE, and the whole text psql printed.
#[derive(Debug)]
pub struct SqlError {
    pub sqlstate: String,
    pub text: String,
}

impl Cluster {
    /// A running cluster with mtask preloaded and `extra` appended to its
    /// postgresql.conf.
    pub fn start(extra: &str) -> Cluster {
        Self::start_with(&format!("shared_preload_libraries = 'mtask'\n{extra}"))
    }

    /// A running cluster with mtask preloaded (and `extra` in its
    /// postgresql.conf) and the extension created in `postgres`.
    pub fn with_mtask(extra: &str) -> Cluster {
        let c = Self::start(extra);
        c.sql("CREATE EXTENSION mtask");
        c
    }

    /// As `with_mtask`, with a table for tasks to leave their mark in:
    /// `hits (task text, at timestamptz DEFAULT clock_timestamp())`.
    pub fn with_hits(extra: &str) -> Cluster {
        let c = Self::with_mtask(extra);
        c.sql("CREATE TABLE hits (task text, at timestamptz DEFAULT clock_timestamp())");
        c
    }

    /// A running cluster with exactly `conf` added to its postgresql.conf.
    pub fn start_with(conf: &str) -> Cluster {
        Self::start_with_env(conf, &[])
    }

    /// As `start_with`, with `env` in the server's environment.
    pub fn start_with_env(conf: &str, env: &[(&str, &str)]) -> Cluster {
        Self::start_on(pg_bin(), conf, env)
    }

    /// A running cluster of the server in `bin`, with exactly `conf` added
    /// to its postgresql.conf and `env` in the server's environment.
    pub fn start_on(bin: &Path, conf: &str, env: &[(&str, &str)]) -> Cluster {
        let dir = Self::new_dir();
        check("copy template", Command::new("cp").arg("-a").arg(template(bin)).arg(dir.join("data")).output().unwrap());
        Self::configure_and_start(dir, bin, conf, env)
    }

    /// Upgrades this cluster, which must be stopped, with pg_upgrade into a
    /// new cluster of the server in `bin`, and starts that with `conf` added.
    pub fn upgrade_to(&self, bin: &Path, conf: &str) -> Cluster {
        let dir = Self::new_dir();
        hand_to_postgres(&dir);
        initdb(bin, &dir.join("data"));
        let out = pg_command(bin, "pg_upgrade")
            .current_dir(&dir)
            .arg("-b")
            .arg(&self.bin)
            .arg("-B")
            .arg(bin)
            .arg("-d")
            .arg(self.dir.join("data"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &free_port().to_string(), "-P", &free_port().to_string(), "-s"])
            .arg(&dir)
            .output()
            .unwrap();
        check("pg_upgrade", out);
        Self::configure_and_start(dir, bin, conf, &[])
    }

    /// A hot standby of `primary`, made with `pg_basebackup -R` and
    /// streaming from it, with `conf` added.
    pub fn standby_of(primary: &Cluster, conf: &str) -> Cluster {
        let dir = Self::new_dir();
        hand_to_postgres(&dir);
        check(
            "pg_basebackup",
            pg_command(&primary.bin, "pg_basebackup")
                .args(["-h", &primary.dir.display().to_string(), "-p", &primary.port.to_string()])
                .args(["-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D"])
                .arg(dir.join("data"))
                .output()
                .unwrap(),
        );
        Self::configure_and_start(dir, &primary.bin, conf, &[])
    }

    fn new_dir() -> PathBuf {
        let n = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("mtask-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Gives the cluster in `dir` its own port and socket directory (later
    /// lines of postgresql.conf win over a copied primary's) and starts it.
    fn configure_and_start(dir: PathBuf, bin: &Path, conf: &str, env: &[(&str, &str)]) -> Cluster {
        let port = free_port();
        let settings = format!(
            "\nport = {port}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             fsync = off\nmtask.naptime = 100\n{conf}\n",
            dir.display()
        );
        let conf_path = dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&settings);
        std::fs::write(&conf_path, text).unwrap();
        hand_to_postgres(&dir);
        let cluster = Cluster { dir, port, bin: bin.to_path_buf() };
        cluster.pg_ctl_with(&["start", "-w", "-t", "60"], env);
        cluster
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.pg_ctl_with(args, &[])
    }

    fn pg_ctl_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        check(
            &format!("pg_ctl {args:?}"),
            pg_command(&self.bin, "pg_ctl")
                .envs(env.iter().copied())
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(args)
                .output()
                .unwrap(),
        )
    }

    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&["stop", "-w", "-t", "60", "-m", mode]);
    }

    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "60"]);
    }

    pub fn restart(&self) {
        self.stop("fast");
        self.start_again();
    }

    /// Runs a client program of the server's (pg_dump, pg_restore, psql) on
    /// database `db` as `postgres`, with `args` after the connection
    /// options; panics if it fails.
    pub fn client(&self, program: &str, db: &str, args: &[&str]) -> Output {
        self.client_of(self, program, db, args)
    }

    /// As `client`, whether it fails or not.
    pub fn try_client(&self, program: &str, db: &str, args: &[&str]) -> Output {
        self.try_client_of(self, program, db, args)
    }

    /// As `client`, with this cluster's program on database `db` of
    /// `server`, which may be of another version: a newer pg_dump dumps an
    /// older server.
    pub fn client_of(&self, server: &Cluster, program: &str, db: &str, args: &[&str]) -> Output {
        check(&format!("{program} {args:?}"), self.try_client_of(server, program, db, args))
    }

    fn try_client_of(&self, server: &Cluster, program: &str, db: &str, args: &[&str]) -> Output {
        Command::new(self.bin.join(program))
            .args(["-h", &server.dir.display().to_string(), "-p", &server.port.to_string(), "-U", "postgres"])
            .args(["-d", db])
            .args(args)
            .output()
            .unwrap()
    }

    /// Turns the workers on (mtask.enabled) in a cluster started with them off,
    /// once the test has set up what they are to find.
    pub fn enable_mtask(&self) {
        self.sql("ALTER SYSTEM SET mtask.enabled = on");
        self.sql("SELECT pg_reload_conf()");
    }

    /// Opens a transaction in `postgres` that runs `statement` and then
    /// sleeps, keeping what it took (locks, rows) until `release`.
    pub fn hold(&self, statement: &str) -> Held<'_> {
        let psql = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", &self.conninfo(), "-c", "BEGIN", "-c", statement, "-c", HOLDER])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql starts");
        self.wait_for(&format!("SELECT count(*) FROM pg_stat_activity WHERE query = '{HOLDER}'"), "1");
        Held { cluster: self, psql }
    }

    /// A libpq connection string for the `postgres` database as `postgres`.
    pub fn conninfo(&self) -> String {
        format!("host={} port={} user=postgres dbname=postgres", self.dir.display(), self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn psql_in(&self, db: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
            .args(["-h", &self.dir.display().to_string(), "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .unwrap()
    }

    /// Runs SQL; Ok(stdout) or Err with the SQLSTATE of the first error.
    pub fn try_sql_in(&self, db: &str, sql: &str) -> Result<String, SqlError> {
        let out = self.psql_in(db, sql);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let sqlstate = stderr
            .lines()
            .find_map(|l| l.strip_prefix("ERROR:  "))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or("")
            .to_string();
        Err(SqlError { sqlstate, text: stderr })
    }

    pub fn try_sql(&self, sql: &str) -> Result<String, SqlError> {
        self.try_sql_in("postgres", sql)
    }

    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        self.try_sql_in(db, sql).unwrap_or_else(|e| panic!("SQL failed: {sql}\n{}", e.text))
    }

    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    /// What psql printed on stderr (notices and warnings) for a successful statement.
    pub fn sql_stderr(&self, sql: &str) -> String {
        self.sql_stderr_in("postgres", sql)
    }

    pub fn sql_stderr_in(&self, db: &str, sql: &str) -> String {
        let out = self.psql_in(db, sql);
        assert!(out.status.success(), "SQL failed: {sql}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Polls `sql` until it returns `expected`, failing after DEADLINE.
    pub fn wait_for(&self, sql: &str, expected: &str) {
        self.wait_for_in("postgres", sql, expected)
    }

    pub fn wait_for_in(&self, db: &str, sql: &str, expected: &str) {
        self.wait_for_within(db, DEADLINE, sql, expected)
    }

    /// Polls `sql` in `db` until it returns `expected`, failing after `deadline`.
    pub fn wait_for_within(&self, db: &str, deadline: Duration, sql: &str, expected: &str) {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < deadline {
            match self.try_sql_in(db, sql) {
                Ok(v) if v == expected => return,
                Ok(v) => last = v,
                Err(e) => last = e.text,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for `{sql}` to return {expected:?}; last: {last:?}\nlog:\n{}", self.log());
    }

    /// Waits until the server log contains `needle`, failing after DEADLINE.
    pub fn wait_for_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {needle:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pool workers' pids, comma-separated in order, once one runs.
    pub fn worker_pids(&self) -> String {
        let q = "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'mtask worker'";
        self.wait_for(q, "t");
        self.sql(
            "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'mtask worker'",
        )
    }

    /// The launcher's pid, once it is running.
    pub fn scheduler_pid(&self) -> String {
        let q = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask scheduler'";
        self.wait_for(q, "1");
        self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'mtask scheduler'")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["stop", "-m", "immediate", "-w"])
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Asserts that `result` failed with `sqlstate` and that psql printed each of
/// `needles` (message or hint fragments).
pub fn assert_error(result: Result<String, SqlError>, sqlstate: &str, needles: &[&str]) {
    match result {
        Ok(out) => panic!("expected SQLSTATE {sqlstate}, but it succeeded: {out}"),
        Err(e) => {
            assert_eq!(e.sqlstate, sqlstate, "wrong SQLSTATE in:\n{}", e.text);
            for n in needles {
                assert!(e.text.contains(n), "{n:?} not in:\n{}", e.text);
            }
        }
    }
}

const HOLDER: &str = "SELECT pg_sleep(3600)";

/// A transaction `Cluster::hold` keeps open.
pub struct Held<'a> {
    cluster: &'a Cluster,
    psql: std::process::Child,
}

impl Held<'_> {
    /// Ends the transaction, and with it what it held.
    pub fn release(mut self) {
        self.cluster.sql(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = '{HOLDER}'"));
        let _ = self.psql.wait();
    }
}
