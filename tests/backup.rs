//! Backup and restore: pg_dump of a database with mtask (plain, custom and
//! directory format) restores with psql or pg_restore, into a new database
//! of the same cluster and into a new cluster, with every task, run, event,
//! listener and delivery as it was dumped, ids that go on from the dumped
//! ones, and tasks that run. Across major versions too: a dump of 15
//! restores into 18, and pg_upgrade from 15 to 17 keeps all the same and
//! runs each one-shot task once (these two need both servers with mtask;
//! `make test-versions` runs them).

mod common;

use common::{Cluster, assert_error, pg_bin, pg_bin_of};
use std::path::Path;

/// What a restore must bring back as it was: the tasks that do not run
/// meanwhile, with every column, their runs, events and listeners, and
/// where the ids have got to.
const STATE: &str = "
SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
    SELECT format('task %s', t) FROM (
        SELECT id, name, owner, kind, schedule, timezone, command, command_type, status, remark, created_at,
               start_at, next_run_at, last_run_at, last_status, last_error, run_count, failure_count, end_at,
               max_runs, missed, timeout, max_attempts, retry_delay, retry_max_delay, max_consecutive_failures,
               attempt, retry_slot, consecutive_failures, pause_reason, transactional, overlap, priority, payload,
               event_id, listener_id, log_runs, history_max_age, history_max_per_task
        FROM mtask.tasks WHERE name NOT IN ('tick', 'long')) t
    UNION ALL
    SELECT format('run %s', r) FROM (
        SELECT r.id, r.task_id, r.started_at, r.finished_at, r.status, r.sqlstate, r.message, r.rows,
               r.scheduled_for, r.attempt, r.exit_code, r.stdout, r.stderr
        FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name NOT IN ('tick', 'long')) r
    UNION ALL
    SELECT format('event %s', e) FROM mtask.events e
    UNION ALL
    SELECT format('listener %s', l) FROM mtask.listeners l
    UNION ALL
    SELECT format('delivery %s', d) FROM mtask.deliveries d
) s(x)";

const PRELOAD: &str = "shared_preload_libraries = 'mtask'";

/// A cluster of the server in `bin`, with `conf`, whose database `src`
/// holds tasks in every state, runs, events with a delivery made and one
/// pending, a listener, a recurring task that ticks, and a
/// non-transactional task that is running (there only: a copy of it, in
/// another database or on another version, ends at once).
fn source(bin: &Path, conf: &str) -> Cluster {
    let c = Cluster::start_on(bin, conf, &[]);
    let version = c.sql("SHOW server_version_num");
    c.sql("CREATE DATABASE src");
    c.sql("CREATE ROLE app LOGIN");
    c.sql_in(
        "src",
        "CREATE EXTENSION mtask;
         GRANT USAGE ON SCHEMA mtask TO app;
         CREATE TABLE hits (who text DEFAULT current_user, what text);
         GRANT INSERT, SELECT ON hits TO app;
         CREATE FUNCTION public.note(payload jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO hits (what) VALUES (payload->>'what') $$",
    );
    c.sql_in(
        "src",
        "SET ROLE app;
         SELECT mtask.listen('order', 'public.note(jsonb)', max_attempts => 5);
         SELECT mtask.emit('order', '{\"what\": \"now\"}');
         SELECT mtask.emit('order', '{\"what\": \"tomorrow\"}', now() + interval '1 day');
         SELECT mtask.schedule('nightly', '0 3 * * *', 'SELECT 1', timezone => 'Europe/Paris', max_runs => 100,
                               max_attempts => 3, retry_delay => '1 minute', remark => 'options kept');
         SELECT mtask.schedule('hourly', '1 hour', $$INSERT INTO hits (what) VALUES ('hourly')$$);
         SELECT mtask.schedule_at('done', now(), $$INSERT INTO hits (what) VALUES ('done')$$);
         SELECT mtask.schedule_at('failed', now(), 'SELECT 1/0');
         SELECT mtask.schedule_at('paused', now() + interval '1 hour', 'SELECT 1');
         SELECT mtask.pause('paused')",
    );
    c.sql_in(
        "src",
        &format!(
            "SELECT mtask.schedule('tick', '2 seconds', $$INSERT INTO hits (what) VALUES ('tick')$$);
             SELECT mtask.schedule_at('long', now(),
                 $$SELECT pg_sleep(CASE WHEN current_database() = 'src'
                                        AND current_setting('server_version_num') = '{version}' THEN 3600 ELSE 0 END)$$,
                 transactional => false, retry_delay => '0.1 seconds')"
        ),
    );
    c.wait_for_in(
        "src",
        "SELECT count(*) FROM mtask.tasks WHERE (name IN ('done', 'failed', 'order #1 for listener 1') AND status <> 'scheduled')
            OR (name = 'hourly' AND run_count = 1) OR (name = 'long' AND status = 'running')",
        "5",
    );
    c
}

/// Dumps `src` with `format` and restores it into `db` of `target`, which
/// must exist, with the target's pg_dump, as a move to a newer version
/// takes. Returns the state `src` had, read in the dump's transaction.
fn dump_and_restore(source: &Cluster, target: &Cluster, db: &str, format: &str) -> String {
    let file = source.dir.join(format!("dump-{db}-{format}"));
    let path = file.display().to_string();
    let state = source.sql_in("src", STATE);
    target.client_of(source, "pg_dump", "src", &[&format!("-F{format}"), "-f", &path]);
    if format == "p" {
        target.client("psql", db, &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", &path]);
    } else {
        target.client("pg_restore", db, &["--exit-on-error", &path]);
    }
    state
}

/// What every restore must show: the dumped state, ids that go on, the
/// running task recovered and run again, the ticking task on its slots,
/// and the checks still in force.
fn assert_restored(c: &Cluster, db: &str, dumped: &str) {
    assert_eq!(c.sql_in(db, STATE), dumped);
    // The task that was running when dumped ran for its slot again.
    c.wait_for_in(db, "SELECT status, last_status FROM mtask.tasks WHERE name = 'long'", "done|succeeded");
    assert_eq!(
        c.sql_in(db, "SELECT string_agg(r.status, ',' ORDER BY r.id) FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'long'"),
        "crashed,succeeded"
    );
    // The ticking task runs on, on its two-second slots.
    let ticks: i64 = c.sql_in(db, "SELECT run_count FROM mtask.tasks WHERE name = 'tick'").parse().unwrap();
    c.wait_for_in(db, &format!("SELECT run_count > {ticks} + 1 FROM mtask.tasks WHERE name = 'tick'"), "t");
    assert_eq!(
        c.sql_in(
            db,
            "SELECT bool_and(r.started_at >= r.scheduled_for
                             AND extract(epoch FROM r.scheduled_for - t.start_at)::numeric % 2 = 0)
             FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'tick'"
        ),
        "t"
    );
    // New tasks and runs get ids past the restored ones.
    let (tasks, runs) =
        (c.sql_in(db, "SELECT max(id) FROM mtask.tasks"), c.sql_in(db, "SELECT max(id) FROM mtask.runs"));
    let id: i64 = c.sql_in(db, "SELECT mtask.schedule_at('new', now(), 'SELECT 1')").parse().unwrap();
    assert!(id > tasks.parse().unwrap(), "task id {id} after {tasks}");
    c.wait_for_in(db, &format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id}"), "1");
    assert_eq!(c.sql_in(db, &format!("SELECT min(id) > {runs} FROM mtask.runs WHERE task_id = {id}")), "t");
    // Paused, done and failed tasks stayed so; the pending delivery waits.
    assert_eq!(
        c.sql_in(db, "SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM mtask.tasks WHERE name IN ('done', 'failed', 'paused', 'order #2 for listener 1')"),
        "done:done,failed:failed,order #2 for listener 1:scheduled,paused:paused"
    );
    // The triggers still check what users write; a user's COPY is refused.
    let forged = "SET ROLE app; INSERT INTO mtask.tasks (name, command, status) VALUES ('forged', 'SELECT 1', 'done')";
    assert_error(c.try_sql_in(db, forged), "22023", &["must be 'scheduled' or 'paused'"]);
    let file = c.dir.join(format!("forged-{db}.csv"));
    std::fs::write(&file, "forged,SELECT 1,done\n").unwrap();
    let copy = format!("\\copy mtask.tasks (name, command, status) FROM '{}' CSV", file.display());
    let out = c.try_client("psql", db, &["-X", "-v", "ON_ERROR_STOP=1", "-c", "SET ROLE app", "-c", &copy]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // (Postgres refuses a COPY into a table with row-level security to
    // everyone but those who bypass it, which no restore mode changes.)
    assert!(!out.status.success() && stderr.contains("COPY FROM not supported with row-level security"), "{stderr}");
    assert_eq!(c.sql_in(db, "SELECT count(*) FROM mtask.tasks WHERE name = 'forged'"), "0");
}

#[test]
fn every_format_restores_into_a_new_database_of_the_same_cluster() {
    let c = source(pg_bin(), PRELOAD);
    for format in ["p", "c", "d"] {
        let db = format!("copy_{format}");
        c.sql(&format!("CREATE DATABASE {db}"));
        let dumped = dump_and_restore(&c, &c, &db, format);
        assert_restored(&c, &db, &dumped);
    }
}

#[test]
fn a_dump_restores_into_a_new_cluster() {
    let source = source(pg_bin(), PRELOAD);
    let target = Cluster::start("");
    target.sql("CREATE ROLE app LOGIN");
    target.sql("CREATE DATABASE restored");
    let dumped = dump_and_restore(&source, &target, "restored", "c");
    assert_restored(&target, "restored", &dumped);
}

#[test]
fn selective_dumps_leave_out_what_they_say() {
    let c = source(pg_bin(), PRELOAD);
    // The users' tables alone: no mtask comes along.
    c.sql("CREATE DATABASE only_hits");
    let path = c.dir.join("hits.sql").display().to_string();
    c.client("pg_dump", "src", &["--table", "public.hits", "-f", &path]);
    c.client("psql", "only_hits", &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", &path]);
    assert_eq!(c.sql_in("only_hits", "SELECT count(*) > 0 FROM hits"), "t");
    assert_eq!(c.sql_in("only_hits", "SELECT count(*) FROM pg_extension WHERE extname = 'mtask'"), "0");
    // The tasks without their history.
    c.sql("CREATE DATABASE no_history");
    let path = c.dir.join("no-history.dump").display().to_string();
    c.client("pg_dump", "src", &["-Fc", "--exclude-table-data", "mtask.runs", "-f", &path]);
    c.client("pg_restore", "no_history", &["--exit-on-error", &path]);
    assert_eq!(
        c.sql_in("no_history", "SELECT count(*) > 5, sum(run_count) > 0 FROM mtask.tasks WHERE name <> 'long'"),
        "t|t"
    );
    assert_eq!(
        c.sql_in("no_history", "SELECT count(*) FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name NOT IN ('tick', 'long')"),
        "0"
    );
}

#[test]
#[ignore = "needs PostgreSQL 15 and 18 with mtask: make test-versions"]
fn a_dump_of_15_restores_into_18() {
    let source = source(&pg_bin_of(15), PRELOAD);
    let target = Cluster::start_on(&pg_bin_of(18), PRELOAD, &[]);
    assert!(target.sql("SHOW server_version").starts_with("18"));
    target.sql("CREATE ROLE app LOGIN");
    target.sql("CREATE DATABASE restored");
    let dumped = dump_and_restore(&source, &target, "restored", "c");
    assert_restored(&target, "restored", &dumped);
}

/// pg_upgrade carries everything over as it was, and what came due while
/// the servers were down runs afterwards: each one-shot task exactly once,
/// one that the shutdown cut short included, and each slot of a recurring
/// task once.
#[test]
#[ignore = "needs PostgreSQL 15 and 17 with mtask: make test-versions"]
fn pg_upgrade_from_15_to_17_keeps_everything_and_runs_each_one_shot_task_once() {
    // Two workers for `src`, two for `once`.
    let conf = format!("{PRELOAD}\nmtask.max_workers = 4");
    let old = source(&pg_bin_of(15), &conf);
    old.sql("CREATE DATABASE once");
    old.sql_in(
        "once",
        "CREATE EXTENSION mtask;
         CREATE TABLE ran (name text);
         SELECT count(mtask.schedule_at('once ' || i, now() + i * interval '50 ms',
                                        format('INSERT INTO ran VALUES (%L)', 'once ' || i)))
         FROM generate_series(1, 80) i;
         SELECT mtask.schedule_at('cut short', now(), $$INSERT INTO ran VALUES ('cut short');
             SELECT pg_sleep(CASE WHEN current_setting('server_version_num')::int < 170000 THEN 3600 ELSE 0 END)$$)",
    );
    // Some ran on 15; the rest come due while the servers are down.
    old.wait_for_in("once", "SELECT count(*) FROM mtask.running WHERE name = 'cut short'", "1");
    old.wait_for_in("once", "SELECT count(*) >= 10 FROM ran", "t");
    let state = old.sql_in("src", STATE);
    old.stop("fast");

    let new = old.upgrade_to(&pg_bin_of(17), &conf);
    assert!(new.sql("SHOW server_version").starts_with("17"));
    assert_restored(&new, "src", &state);
    // The listener finds its handler, whose OID is not what it was on 15.
    new.sql_in("src", "SET ROLE app; SELECT mtask.emit('order', '{\"what\": \"after the upgrade\"}')");
    new.wait_for_in("src", "SELECT count(*) FROM hits WHERE what = 'after the upgrade'", "1");
    new.wait_for_in("once", "SELECT count(*) FROM mtask.tasks WHERE status = 'done'", "81");
    assert_eq!(new.sql_in("once", "SELECT count(*), count(DISTINCT name) FROM ran"), "81|81");
    assert_eq!(
        new.sql_in("once", "SELECT count(*), count(DISTINCT task_id) FROM mtask.runs WHERE status = 'succeeded'"),
        "81|81"
    );
    assert_eq!(
        new.sql_in(
            "src",
            "SELECT count(*) = count(DISTINCT r.scheduled_for)
             FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'tick'"
        ),
        "t"
    );
}
