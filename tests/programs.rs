//! Program tasks (command_type 'program'): an executable run without a
//! shell, its exit code and output kept, its timeout enforced on it and its
//! children, and only for roles that may run server programs.

mod common;

use common::{Cluster, assert_error};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Schedules `command` as a program task to run now (with `options`, e.g.
/// `timeout => '1 second'`) and returns its id.
fn schedule_program(c: &Cluster, name: &str, command: &str, options: &str) -> String {
    c.sql(&format!("SELECT mtask.schedule_at('{name}', now(), $p${command}$p$, command_type => 'program'{options})"))
}

/// The finished run of task `id`: status, sqlstate, exit code, stdout, stderr.
fn finished_run(c: &Cluster, id: &str) -> String {
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id} AND status <> 'running'"), "1");
    c.sql(&format!(
        "SELECT concat_ws('|', status, coalesce(sqlstate, ''), coalesce(exit_code::text, ''), coalesce(stdout, ''),
                          coalesce(stderr, ''))
         FROM mtask.runs WHERE task_id = {id}"
    ))
}

/// A file the server's OS user can write and the test can read.
fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("mtask-programs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits until `pid` is gone (killed and reaped), failing after 30 s.
fn wait_until_gone(pid: &str) {
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie has been killed; only its reaping is left.
        if state.split_whitespace().nth(2) == Some("Z") {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "process {pid} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(path: &PathBuf) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{} was never written", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_program_runs_without_a_shell_and_its_output_is_kept() {
    let c = Cluster::with_mtask("");
    // Words are split as a shell splits them, but nothing is expanded.
    let id = schedule_program(&c, "words", r#"printf '%s;' "two words" '$HOME' *"#, "");
    assert_eq!(finished_run(&c, &id), "succeeded||0|two words;$HOME;*;|");
    assert_eq!(c.sql(&format!("SELECT transactional FROM mtask.tasks WHERE id = {id}")), "f");
    // A shell, when asked for.
    let id = schedule_program(&c, "shell", "sh -c 'echo $((40 + 2)); echo warned >&2'", "");
    assert_eq!(finished_run(&c, &id), "succeeded||0|42\n|warned");
}

#[test]
fn a_program_that_exits_non_zero_or_cannot_start_fails() {
    let c = Cluster::with_mtask("");
    let id = schedule_program(&c, "exit3", "sh -c 'echo partial; echo broken >&2; exit 3'", "");
    assert_eq!(finished_run(&c, &id), "failed|38000|3|partial\n|broken");
    assert_eq!(
        c.sql(&format!(
            "SELECT r.message, t.status FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.id = {id}"
        )),
        "the program exited with code 3|failed"
    );
    let id = schedule_program(&c, "missing", "/no/such/program", "");
    let run = finished_run(&c, &id);
    assert!(run.starts_with("failed|58000|"), "{run}");
    assert!(
        c.sql(&format!("SELECT message FROM mtask.runs WHERE task_id = {id}"))
            .contains("could not run program \"/no/such/program\"")
    );
    // Retries apply as to any task.
    let id = schedule_program(&c, "retried", "false", ", max_attempts => 2, retry_delay => '10 ms'");
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id} AND status = 'failed'"), "2");
}

#[test]
fn a_program_past_its_timeout_is_killed_with_its_children() {
    let c = Cluster::with_mtask("");
    let pids = scratch("pids");
    // The program starts a child in the background, then waits; both must die.
    let command = format!("sh -c 'sleep 300 & echo $! > {}; echo $$ >> {0}; wait'", pids.display());
    let id = schedule_program(&c, "hang", &command, ", timeout => '1 second'");
    let run = finished_run(&c, &id);
    assert_eq!(run, "timeout|57014|||", "{run}");
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.split_whitespace() {
        wait_until_gone(pid);
    }
    assert_eq!(text.split_whitespace().count(), 2);

    // A cancel of the worker kills the program too; the worker goes on.
    let pid_file = scratch("cancelled");
    let id =
        schedule_program(&c, "cancelled", &format!("sh -c 'echo $$ > {}; exec sleep 300'", pid_file.display()), "");
    let pid = read_pid(&pid_file);
    c.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE 'sh -c%'");
    assert_eq!(finished_run(&c, &id), "failed|57014|||");
    wait_until_gone(&pid);
    let id = schedule_program(&c, "after", "true", "");
    assert_eq!(finished_run(&c, &id), "succeeded||0||");

    // So does a fast shutdown, which ends the worker itself.
    let _ = std::fs::remove_file(&pid_file);
    let id = schedule_program(&c, "shutdown", &format!("sh -c 'echo $$ > {}; exec sleep 300'", pid_file.display()), "");
    let pid = read_pid(&pid_file);
    c.stop("fast");
    wait_until_gone(&pid);
    // The run it cut short is closed as crashed after the restart (and,
    // under the default missed policy, runs again).
    let _ = std::fs::remove_file(&pid_file);
    c.start_again();
    c.wait_for(&format!("SELECT status FROM mtask.runs WHERE task_id = {id} ORDER BY id LIMIT 1"), "crashed");
    // A worker that dies at once, without unwinding, takes its program along.
    let pid = read_pid(&pid_file);
    c.stop("immediate");
    wait_until_gone(&pid);
    let _ = std::fs::remove_file(&pids);
    let _ = std::fs::remove_file(&pid_file);
}

#[test]
fn ten_megabytes_of_output_are_read_and_cut_to_the_limit() {
    let c = Cluster::start("mtask.program_output_limit = '64kB'");
    c.sql("CREATE EXTENSION mtask");
    let id = schedule_program(&c, "loud", "sh -c 'head -c 10485760 /dev/zero | tr \"\\000\" x; echo done >&2'", "");
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id} AND status <> 'running'"), "1");
    assert_eq!(
        c.sql(&format!(
            "SELECT status, exit_code, length(stdout), stdout LIKE repeat('x', 65536) || E'\\n[10420224 more bytes not kept]', stderr
             FROM mtask.runs WHERE task_id = {id}"
        )),
        "succeeded|0|65567|t|done"
    );
}

#[test]
fn only_roles_that_may_run_server_programs_may_schedule_them() {
    let c = Cluster::with_mtask("");
    c.sql(
        "CREATE ROLE app LOGIN; CREATE ROLE ops LOGIN; GRANT pg_execute_server_program TO ops;
         GRANT USAGE ON SCHEMA mtask TO app, ops",
    );
    let refused = ["permission denied to run programs as app", "pg_execute_server_program"];
    // Scheduling one, by the API or by INSERT.
    assert_error(
        c.try_sql("SET ROLE app; SELECT mtask.schedule_at('p', now(), 'id', command_type => 'program')"),
        "42501",
        &refused,
    );
    assert_error(
        c.try_sql("SET ROLE app; INSERT INTO mtask.tasks (name, command, command_type) VALUES ('p', 'id', 'program')"),
        "42501",
        &refused,
    );
    // Turning an SQL task into one.
    c.sql("SET ROLE app; SELECT mtask.schedule('sql', '1 hour', 'SELECT 1')");
    assert_error(c.try_sql("SET ROLE app; SELECT mtask.alter('sql', command_type => 'program')"), "42501", &refused);
    assert_error(
        c.try_sql("SET ROLE app; UPDATE mtask.tasks SET command_type = 'program', command = 'id' WHERE name = 'sql'"),
        "42501",
        &refused,
    );
    // Bad input is an error with a hint.
    assert_error(
        c.try_sql("SELECT mtask.schedule_at('q', now(), $$echo 'unclosed$$, command_type => 'program')"),
        "22023",
        &["unclosed quote", "HINT:"],
    );
    assert_error(
        c.try_sql("SELECT mtask.schedule_at('q', now(), 'x', command_type => 'shell')"),
        "22023",
        &["invalid command type \"shell\"", "HINT:"],
    );

    // A member of pg_execute_server_program may, and runs it as the server's OS user.
    let id = c.sql("SET ROLE ops; SELECT mtask.schedule('whoami', '1 hour', 'id -un', command_type => 'program')");
    c.wait_for(&format!("SELECT stdout FROM mtask.runs WHERE task_id = {id} AND status = 'succeeded'"), "postgres");
    // Nor can it be made transactional.
    c.sql(&format!("SET ROLE ops; UPDATE mtask.tasks SET transactional = true WHERE id = {id}"));
    assert_eq!(c.sql(&format!("SELECT transactional FROM mtask.tasks WHERE id = {id}")), "f");
    // A right taken away is checked again at run time: the task is paused.
    c.sql("REVOKE pg_execute_server_program FROM ops");
    c.sql(&format!("UPDATE mtask.tasks SET next_run_at = now() WHERE id = {id}"));
    c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE id = {id}"), "paused");
    assert_eq!(
        c.sql(&format!("SELECT sqlstate, pause_reason FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.id = {id} ORDER BY r.id DESC LIMIT 1")),
        "42501|the task's owner may no longer run programs; grant it pg_execute_server_program, then resume it"
    );
}
