//! Many databases: workers start where tasks are due and leave when they
//! are done, every database gets its turn when there are too few of them,
//! the warnings say why tasks cannot run, and a task can run its command in
//! another database.

mod common;

use common::Cluster;
use std::time::Duration;

const WORKERS: &str = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker'";

#[test]
fn twenty_databases_with_the_default_settings_each_run_their_task_on_time() {
    let c = Cluster::start("");
    let databases: Vec<String> = (1..=20).map(|i| format!("db{i:02}")).collect();
    for db in &databases {
        c.sql(&format!("CREATE DATABASE {db}"));
        c.sql_in(db, "CREATE EXTENSION mtask; SELECT mtask.schedule('tick', '2 seconds', 'SELECT 1')");
    }
    // Judged from when all twenty are there: five runs each after that.
    let ready = c.sql("SELECT now()");
    let since = format!("FROM mtask.runs WHERE scheduled_for > '{ready}'");
    for db in &databases {
        c.wait_for_in(db, &format!("SELECT count(*) >= 5 {since}"), "t");
    }
    for db in &databases {
        // Every slot ran, none failed or was skipped, each within a second.
        assert_eq!(
            c.sql_in(
                db,
                &format!(
                    "SELECT count(*) FILTER (WHERE status <> 'succeeded'),
                            bool_and(started_at < scheduled_for + interval '1 second'),
                            max(scheduled_for) - min(scheduled_for) = (count(*) - 1) * interval '2 seconds'
                     {since}"
                )
            ),
            "0|t|t",
            "{db}: {}",
            c.sql_in(
                db,
                "SELECT string_agg(scheduled_for || ' ' || started_at || ' ' || status, E'\\n') FROM mtask.runs"
            )
        );
    }
    eprintln!(
        "latest start after its slot, in any database: {}",
        databases
            .iter()
            .map(|db| c.sql_in(db, &format!("SELECT max(started_at - scheduled_for) {since}")))
            .max()
            .unwrap()
    );
}

#[test]
fn a_database_created_later_runs_its_first_task_at_once() {
    let c = Cluster::with_mtask("");
    c.sql("SELECT mtask.schedule('tick', '1 second', 'SELECT 1')");
    c.wait_for("SELECT count(*) >= 2 FROM mtask.runs", "t");
    c.sql("CREATE DATABASE late");
    c.sql_in("late", "CREATE EXTENSION mtask; SELECT mtask.schedule_at('first', now(), 'SELECT 1')");
    c.wait_for_in("late", "SELECT count(*) FROM mtask.runs WHERE status = 'succeeded'", "1");
    assert_eq!(c.sql_in("late", "SELECT started_at - scheduled_for < interval '2 seconds' FROM mtask.runs"), "t");
}

#[test]
fn idle_databases_hold_no_worker_and_a_due_task_brings_one() {
    let c = Cluster::start("mtask.worker_idle_timeout = '200ms'");
    for db in ["one", "two", "three"] {
        c.sql(&format!("CREATE DATABASE {db}"));
        c.sql_in(
            db,
            "CREATE EXTENSION mtask; CREATE TABLE hits (at timestamptz DEFAULT clock_timestamp());
             SELECT mtask.schedule('nightly', '0 3 * * *', 'INSERT INTO hits DEFAULT VALUES')",
        );
    }
    // Each database was looked at, and each worker left: the launcher alone.
    c.wait_for(WORKERS, "0");
    assert_eq!(c.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask scheduler'"), "1");
    // A task that comes due brings a worker, which runs it and leaves.
    c.sql_in("two", "SELECT mtask.schedule_at('now', now(), 'INSERT INTO hits DEFAULT VALUES')");
    c.wait_for_in("two", "SELECT count(*) FROM hits", "1");
    c.wait_for(WORKERS, "0");
    // So does a task whose time comes later.
    c.sql_in(
        "three",
        "SELECT mtask.schedule_at('soon', now() + interval '1 second', 'INSERT INTO hits DEFAULT VALUES')",
    );
    c.wait_for(WORKERS, "0");
    c.wait_for_in("three", "SELECT count(*) FROM hits", "1");
    assert_eq!(c.sql_in("one", "SELECT count(*) FROM hits"), "0");
}

#[test]
fn a_worker_is_started_before_a_task_falls_due_and_waits_for_it() {
    // Its worker would leave after 200 ms with nothing due; not when
    // the next task is due within the launcher's early start.
    let c = Cluster::with_mtask("mtask.worker_idle_timeout = '200ms'");
    c.sql("CREATE TABLE hits (at timestamptz DEFAULT clock_timestamp())");
    c.wait_for(WORKERS, "0");
    let due = c.sql("SELECT clock_timestamp() + interval '3 seconds'");
    c.sql(&format!("SELECT mtask.schedule_at('soon', '{due}', 'INSERT INTO hits DEFAULT VALUES')"));
    c.wait_for(WORKERS, "1");
    let first = c.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'mtask worker'");
    c.wait_for("SELECT count(*) FROM hits", "1");
    // The first worker ran it: it did not leave for another to start. It
    // had started before the task was due.
    assert_eq!(c.sql("SELECT pid FROM mtask.runs"), first);
    assert_eq!(c.sql(&format!("SELECT backend_start < '{due}' FROM pg_stat_activity WHERE pid = {first}")), "t");
}

#[test]
fn a_crowd_due_at_one_instant_gets_its_second_worker_before_it_falls_due() {
    // The worker that looked whether mtask is here stays, and finds the
    // crowd as soon as it is scheduled: what follows does not wait on how
    // fast a worker starts and plans its first step.
    let c = Cluster::with_mtask("mtask.max_workers = 2\nmtask.worker_idle_timeout = '1h'");
    c.sql("CREATE TABLE hits (n int, pid int DEFAULT pg_backend_pid())");
    c.wait_for(WORKERS, "1");
    // More than one worker starts within the launcher's busy lag (CROWD).
    // Scheduled for later first, and then made due at one instant in one
    // quick statement: scheduling them may take seconds on a loaded machine.
    c.sql(
        "SELECT count(mtask.schedule_at('crowd ' || i, now() + interval '1 day', 'INSERT INTO hits (n) VALUES (' || i || ')'))
         FROM generate_series(1, 600) i",
    );
    let due = c.sql("SELECT clock_timestamp() + interval '3 seconds'");
    c.sql(&format!("UPDATE mtask.tasks SET next_run_at = '{due}'"));
    c.wait_for(WORKERS, "2");
    let started =
        c.sql("SELECT string_agg(backend_start::text, ', ') FROM pg_stat_activity WHERE backend_type = 'mtask worker'");
    let before_due =
        format!("SELECT bool_and(backend_start < '{due}') FROM pg_stat_activity WHERE backend_type = 'mtask worker'");
    let started_before_due = c.sql(&before_due);
    c.wait_for("SELECT count(*) FROM hits", "600");
    // Before, the second worker started once the first had been busy for
    // the busy lag, after the crowd was due. Both stayed for it.
    assert_eq!(started_before_due, "t", "due at {due}, workers started at {started}");
    assert_eq!(c.sql("SELECT count(DISTINCT pid) FROM hits"), "2");
}

/// A worker that has found mtask but not yet looked at the tasks is not a
/// busy one: the launcher did start a second (which then stayed, idle) when
/// it came round in that gap, as it did when the first step was slow on a
/// loaded machine.
#[test]
fn a_worker_yet_to_take_its_first_step_gets_no_second_one() {
    let c = Cluster::with_mtask("mtask.enabled = off\nmtask.max_workers = 3\nmtask.worker_idle_timeout = '1h'");
    c.sql("CREATE TABLE hits (pid int DEFAULT pg_backend_pid())");
    // Its first step waits on this lock, after it has said mtask is here.
    let lock = c.hold("LOCK TABLE mtask.tasks");
    c.enable_mtask();
    c.wait_for(&format!("{WORKERS} AND wait_event_type = 'Lock'"), "1");
    // CREATE EXTENSION elsewhere makes the launcher come round, and start
    // a worker there. With the fault, this database had taken all three
    // places by then, one every 50 ms, and that one never came.
    c.sql("CREATE DATABASE other");
    c.sql_in("other", "CREATE EXTENSION mtask");
    c.wait_for(&format!("{WORKERS} AND datname = 'other'"), "1");
    lock.release();
    // Past its first step, it runs what comes due, alone.
    c.sql("SELECT mtask.schedule_at('after', now(), 'INSERT INTO hits DEFAULT VALUES')");
    c.wait_for("SELECT count(*) FROM hits", "1");
    assert_eq!(c.sql(&format!("{WORKERS} AND datname = 'postgres'")), "1");
}

#[test]
fn a_waiting_database_gets_the_next_free_worker_before_the_busy_ones_newer_tasks() {
    let c = Cluster::start("mtask.max_workers = 2");
    for db in ["busy", "quiet"] {
        c.sql(&format!("CREATE DATABASE {db}"));
        c.sql_in(db, "CREATE EXTENSION mtask; CREATE TABLE go ()");
    }
    // Two tasks fill the pool until the test lets them go.
    let hold = "DO $$ BEGIN WHILE NOT EXISTS (SELECT FROM go) LOOP PERFORM pg_sleep(0.01); END LOOP; END $$";
    c.sql_in(
        "busy",
        &format!("SELECT mtask.schedule_at('long ' || i, now(), $q${hold}$q$) FROM generate_series(1, 2) i"),
    );
    c.wait_for(&format!("{WORKERS} AND datname = 'busy' AND query LIKE 'DO%'"), "2");
    // A task comes due in quiet, then newer ones in busy.
    c.sql_in("quiet", "SELECT mtask.schedule_at('waiting', now(), 'SELECT 1')");
    c.sql_in("busy", "SELECT mtask.schedule_at('newer ' || i, now(), 'SELECT 1') FROM generate_series(1, 5) i");
    let released = c.sql("SELECT clock_timestamp()");
    c.sql_in("busy", "INSERT INTO go DEFAULT VALUES");
    c.wait_for_in("quiet", "SELECT count(*) FROM mtask.runs WHERE status = 'succeeded'", "1");
    c.wait_for_in("busy", "SELECT count(*) FROM mtask.runs WHERE status = 'succeeded'", "7");
    let waiting = c.sql_in("quiet", "SELECT started_at FROM mtask.runs");
    let newer = c.sql_in(
        "busy",
        "SELECT min(r.started_at) FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name LIKE 'newer%'",
    );
    // It waited for a worker to free up, and took the first.
    assert_eq!(
        c.sql(&format!("SELECT '{waiting}'::timestamptz > '{released}', '{waiting}'::timestamptz < '{newer}'")),
        "t|t",
        "quiet started at {waiting}, busy's newer tasks from {newer}"
    );
}

/// A database whose one worker is held by a long task, and whose other
/// tasks wait behind it, while another database holds the rest of the
/// places: `others` says what those workers do. Returns once `b`'s quick
/// tasks have all run; before the places levelled out, they waited for the
/// long task, an hour.
fn held_database_gets_a_second_worker(max_workers: usize, others: &str) {
    let c = Cluster::start(&format!("mtask.max_workers = {max_workers}\nmtask.worker_idle_timeout = '1h'"));
    for db in ["a", "b"] {
        c.sql(&format!("CREATE DATABASE {db}"));
        c.sql_in(db, "CREATE EXTENSION mtask");
    }
    c.sql_in("a", "CREATE TABLE go ()");
    c.sql_in("a", others);
    c.wait_for(&format!("{WORKERS} AND datname = 'a'"), &max_workers.to_string());
    c.sql_in("a", "INSERT INTO go DEFAULT VALUES");
    c.sql_in("b", "SELECT mtask.schedule_at('hold', now(), 'SELECT pg_sleep(3600)')");
    c.wait_for_in("b", "SELECT count(*) FROM mtask.running WHERE name = 'hold'", "1");
    c.sql_in("b", "SELECT mtask.schedule_at('quick ' || i, now(), 'SELECT 1') FROM generate_series(1, 5) i");
    // Within half the launcher's rescan: a second worker that came only
    // with the rescan (a minute) came for want of a wake-up.
    let done = "SELECT count(*) FROM mtask.tasks WHERE name LIKE 'quick%' AND status = 'done'";
    c.wait_for_within("b", Duration::from_secs(30), done, "5");
    // The long task still holds its worker: a second one ran the others.
    assert_eq!(c.sql_in("b", "SELECT count(*) FROM mtask.running WHERE name = 'hold'"), "1");
}

#[test]
fn a_database_held_by_a_long_task_gets_a_place_of_an_idle_worker_elsewhere() {
    // Three workers of `a` ran a task each and then idle (for an hour).
    // Each task holds its worker until the test has seen all three, so that
    // no task ends before the third worker has started, however slow the
    // machine.
    held_database_gets_a_second_worker(
        3,
        "SELECT mtask.schedule_at('t' || i, now(),
             'DO $$ BEGIN WHILE NOT EXISTS (SELECT FROM go) LOOP PERFORM pg_sleep(0.01); END LOOP; END $$')
         FROM generate_series(1, 3) i",
    );
}

#[test]
fn a_database_held_by_a_long_task_gets_a_place_when_a_busy_one_holds_two_more() {
    // Four workers of `a` with more work than they can do: twelve tasks of
    // half a second every second. `b` gets one place, then a second.
    held_database_gets_a_second_worker(
        4,
        "SELECT mtask.schedule('t' || i, '1 second', 'SELECT pg_sleep(0.5)') FROM generate_series(1, 12) i",
    );
}

#[test]
fn running_out_of_worker_processes_is_said_once_with_the_numbers_and_by_schedule() {
    // Of two processes, the logical replication launcher takes one and
    // mtask's launcher the other: no worker can start.
    let c = Cluster::with_mtask("max_worker_processes = 2");
    c.sql("SELECT mtask.schedule_at('x', now(), 'SELECT 1')");
    let warning = "mtask could not start a worker for database \"postgres\": all 2 background worker processes \
                   (max_worker_processes) are in use, 1 by mtask and 1 by others";
    c.wait_for_log(warning);
    let hint = "raise max_worker_processes to at least 6: 4 for mtask.max_workers, 1 for mtask's launcher and 1 for the others";
    assert!(c.log().contains(hint), "{}", c.log());
    let said = c.sql_stderr("SELECT mtask.schedule_at('y', now(), 'SELECT 1')");
    assert!(said.contains("no mtask worker could start for database \"postgres\""), "{said}");
    // The launcher tries again every second, and says it no more.
    c.sql("SELECT pg_sleep(2.5)");
    assert_eq!(c.log().matches(warning).count(), 1, "{}", c.log());
}

#[test]
fn a_task_runs_its_command_in_another_database_and_records_its_runs_at_home() {
    let c = Cluster::with_mtask("");
    c.sql("CREATE DATABASE app");
    c.sql("CREATE ROLE alice LOGIN; GRANT USAGE ON SCHEMA mtask TO alice");
    // mtask is not installed in app.
    c.sql_in(
        "app",
        "CREATE TABLE hits (who text, at timestamptz DEFAULT clock_timestamp()); GRANT INSERT ON hits TO alice",
    );
    let alice = |sql: &str| c.try_sql(&format!("SET ROLE alice; {sql}"));
    alice("SELECT mtask.schedule('remote', '1 second', 'INSERT INTO hits (who) VALUES (current_user)', database => 'app')")
        .unwrap();
    c.wait_for_in("app", "SELECT count(*) >= 2 FROM hits", "t");
    // It ran there as its owner; its runs are here, and app has no mtask.
    // (A slot that came while a run still went on is skipped: a busy
    // machine may make a run take a second.)
    assert_eq!(c.sql_in("app", "SELECT string_agg(DISTINCT who, ',') FROM hits"), "alice");
    assert_eq!(c.sql_in("app", "SELECT count(*) FROM pg_namespace WHERE nspname = 'mtask'"), "0");
    let runs = "FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'remote'";
    assert_eq!(
        c.sql(&format!(
            "SELECT bool_and(r.status = 'succeeded' AND r.owner = 'alice'::regrole), count(*) >= 2
             {runs} AND r.status <> 'skipped'"
        )),
        "t|t",
        "{}",
        c.sql(&format!("SELECT string_agg(r.status || ' ' || coalesce(r.message, ''), E'\\n') {runs}"))
    );
    // An error there is the run's, recorded here whole.
    alice("SELECT mtask.alter('remote', command => 'SELECT 1/0')").unwrap();
    c.wait_for("SELECT count(*) > 0 FROM mtask.runs WHERE sqlstate = '22012'", "t");
    assert_eq!(c.sql("SELECT message FROM mtask.runs WHERE sqlstate = '22012' LIMIT 1"), "division by zero");

    // mtask.running shows the process that runs it there; a runner that
    // ends without a word is a failed run, and the task goes on.
    alice("SELECT mtask.alter('remote', command => 'SELECT pg_sleep(60)')").unwrap();
    let runner = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'mtask runner' AND datname = 'app'";
    c.wait_for(&format!("SELECT count(*) FROM ({runner}) r"), "1");
    let pid = c.sql(runner);
    c.wait_for("SELECT string_agg(pid::text, ',') FROM mtask.running", &pid);
    c.sql(&format!("SELECT pg_terminate_backend({pid})"));
    c.wait_for("SELECT count(*) > 0 FROM mtask.runs WHERE message LIKE '%ended without saying how the run went%'", "t");
    alice("SELECT mtask.alter('remote', command => 'INSERT INTO hits (who) VALUES (current_user)')").unwrap();
    let before = c.sql_in("app", "SELECT count(*) FROM hits");
    c.wait_for_in("app", &format!("SELECT count(*) > {before} FROM hits"), "t");

    // Refused when written: no such database, no CONNECT there, a program.
    common::assert_error(
        alice("SELECT mtask.schedule_at('x', now(), 'SELECT 1', database => 'nowhere')"),
        "3D000",
        &["database \"nowhere\" does not exist"],
    );
    c.sql("CREATE DATABASE closed");
    c.sql("REVOKE CONNECT ON DATABASE closed FROM PUBLIC");
    common::assert_error(
        alice("SELECT mtask.schedule_at('x', now(), 'SELECT 1', database => 'closed')"),
        "42501",
        &["alice may not connect to database \"closed\"", "GRANT CONNECT ON DATABASE closed TO alice"],
    );
    common::assert_error(
        c.try_sql("SELECT mtask.schedule_at('x', now(), 'true', command_type => 'program', database => 'app')"),
        "22023",
        &["cannot run in another database"],
    );

    // Dropped, its database pauses its tasks, with why.
    c.sql("DROP DATABASE app WITH (FORCE)");
    c.wait_for(
        "SELECT status || ': ' || pause_reason FROM mtask.tasks WHERE name = 'remote'",
        "paused: its database \"app\" does not exist (dropped, or renamed); point it at another database with \
         mtask.alter(..., database => ...), then resume it",
    );
}
