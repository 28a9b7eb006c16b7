//! The foundation: the worker runs due rows of mtask.tasks on a real server.

mod common;

use common::{Cluster, assert_error};

#[test]
fn one_shot_task_runs_exactly_once() {
    let c = Cluster::with_hits("");
    let id = c.sql("SELECT mtask.schedule_at('once', now(), $$INSERT INTO hits VALUES ('once')$$)");
    c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE id = {id}"), "done");
    // A later task proves the scheduler went round again without re-running it.
    c.sql("SELECT mtask.schedule_at('later', now(), $$INSERT INTO hits VALUES ('later')$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'later'", "done");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'once'"), "1");
    assert_eq!(
        c.sql(&format!("SELECT run_count, last_status, next_run_at IS NULL FROM mtask.tasks WHERE id = {id}")),
        "1|succeeded|t"
    );
    assert_eq!(
        c.sql(&format!("SELECT count(*), min(status), min(rows) FROM mtask.runs WHERE task_id = {id}")),
        "1|succeeded|1"
    );
}

#[test]
fn one_shot_task_in_the_future_waits_for_its_time() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule_at('soon', now() + interval '2 seconds', $$INSERT INTO hits VALUES ('soon')$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'soon'", "done");
    assert_eq!(
        c.sql("SELECT bool_and(r.started_at >= t.start_at) FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id"),
        "t"
    );
}

#[test]
fn recurring_task_runs_repeatedly_on_its_fixed_rate_slots() {
    let c = Cluster::with_hits("");
    let id = c.sql("SELECT mtask.schedule('tick', '1 second', $$INSERT INTO hits VALUES ('tick')$$)");
    c.wait_for(&format!("SELECT run_count >= 3 FROM mtask.tasks WHERE id = {id}"), "t");
    let q = format!(
        "SELECT status, schedule,
                next_run_at > last_run_at,
                -- slots are start_at + k seconds: no drift by execution time
                extract(epoch FROM next_run_at - start_at) = round(extract(epoch FROM next_run_at - start_at))
         FROM mtask.tasks WHERE id = {id}"
    );
    assert_eq!(c.sql(&q), "scheduled|every 1 second|t|t");
    // Every run started at or after a slot, and no two runs shared a slot.
    let runs = format!(
        "SELECT count(*) = count(DISTINCT floor(extract(epoch FROM r.started_at - t.start_at)))
         FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.id = {id}"
    );
    assert_eq!(c.sql(&runs), "t");
}

#[test]
fn failing_command_is_recorded_and_the_worker_goes_on() {
    let c = Cluster::with_hits("");
    let bad = c.sql("SELECT mtask.schedule_at('bad', now(), $$INSERT INTO hits VALUES ('bad'); SELECT 1/0$$)");
    c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE id = {bad}"), "failed");
    assert_eq!(
        c.sql(&format!("SELECT status, sqlstate, message FROM mtask.runs WHERE task_id = {bad}")),
        "failed|22012|division by zero"
    );
    assert_eq!(
        c.sql(&format!("SELECT last_status, last_error, failure_count FROM mtask.tasks WHERE id = {bad}")),
        "failed|division by zero|1"
    );
    // The failed command's own effects were rolled back with it.
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'bad'"), "0");

    // A failing recurring task stays scheduled, and other tasks still run.
    let rec = c.sql("SELECT mtask.schedule('bad-again', '1 second', 'SELECT * FROM no_such_table')");
    c.sql("SELECT mtask.schedule_at('good', now(), $$INSERT INTO hits VALUES ('good')$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'good'", "done");
    c.wait_for(&format!("SELECT failure_count >= 2 FROM mtask.tasks WHERE id = {rec}"), "t");
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.tasks WHERE id = {rec}")), "scheduled");
    assert_eq!(c.sql(&format!("SELECT DISTINCT sqlstate FROM mtask.runs WHERE task_id = {rec}")), "42P01");
}

#[test]
fn pause_resume_and_unschedule() {
    let c = Cluster::with_hits("");
    let id = c.sql("SELECT mtask.schedule('p', '1 hour', 'SELECT 1', now() + interval '1 hour')");
    assert_eq!(c.sql("SELECT mtask.pause('p')"), "t");
    assert_eq!(c.sql("SELECT mtask.pause('p')"), "f");
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.tasks WHERE id = {id}")), "paused");
    assert_eq!(c.sql(&format!("SELECT mtask.resume({id})")), "t");
    assert_eq!(c.sql(&format!("SELECT mtask.resume({id})")), "f");
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.tasks WHERE id = {id}")), "scheduled");
    assert_eq!(c.sql(&format!("SELECT mtask.pause({id})")), "t");

    // A paused task does not run; once resumed, an overdue one runs.
    c.sql(&format!("UPDATE mtask.tasks SET next_run_at = now() WHERE id = {id}"));
    let due = c.sql("SELECT mtask.schedule_at('marker', now(), $$INSERT INTO hits VALUES ('marker')$$)");
    c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE id = {due}"), "done");
    assert_eq!(c.sql(&format!("SELECT run_count FROM mtask.tasks WHERE id = {id}")), "0");
    c.sql("SELECT mtask.resume('p')");
    c.wait_for(&format!("SELECT run_count FROM mtask.tasks WHERE id = {id}"), "1");
    // It ran once for the missed time, then went back to its hourly slots.
    assert_eq!(
        c.sql(&format!("SELECT next_run_at > now() + interval '50 minutes' FROM mtask.tasks WHERE id = {id}")),
        "t"
    );

    assert_error(c.try_sql(&format!("SELECT mtask.resume({due})")), "55000", &["is done", "HINT:"]);
    assert_eq!(c.sql("SELECT mtask.unschedule('p')"), "t");
    assert_eq!(c.sql(&format!("SELECT mtask.unschedule({due})")), "t");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "0");
    // History goes with the task.
    assert_eq!(c.sql("SELECT count(*) FROM mtask.runs"), "0");
}

#[test]
fn bad_input_is_an_error_with_a_hint_and_changes_nothing() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule('taken', '1 hour', 'SELECT 1')");
    let cases: &[(&str, &str, &str)] = &[
        ("SELECT mtask.schedule('a', '1 hour', NULL)", "22023", "has no command"),
        ("SELECT mtask.schedule('a', '1 hour', '   ')", "22023", "has no command"),
        ("SELECT mtask.schedule_at('a', now(), '')", "22023", "has no command"),
        ("SELECT mtask.schedule('a', '0 seconds', 'SELECT 1')", "22023", "is not positive"),
        ("SELECT mtask.schedule('a', '-5 minutes', 'SELECT 1')", "22023", "is not positive"),
        ("SELECT mtask.schedule('a', '1 day -1 hour', 'SELECT 1')", "22023", "is not positive"),
        ("SELECT mtask.schedule('a', 'every banana', 'SELECT 1')", "22023", "invalid schedule"),
        ("SELECT mtask.schedule('a', '', 'SELECT 1')", "22023", "needs a schedule"),
        ("SELECT mtask.schedule('a', NULL, 'SELECT 1')", "22023", "needs a schedule"),
        ("SELECT mtask.schedule('a', '1 hour', 'SELECT 1', 'infinity')", "22023", "finite"),
        ("SELECT mtask.schedule_at('a', NULL, 'SELECT 1')", "22023", "needs a run time"),
        ("SELECT mtask.schedule_at('a', 'infinity', 'SELECT 1')", "22023", "finite"),
        ("SELECT mtask.schedule(NULL, '1 hour', 'SELECT 1')", "22023", "needs a name"),
        ("SELECT mtask.schedule('taken', '1 hour', 'SELECT 2')", "23505", "already exists"),
        ("SELECT mtask.unschedule('nope')", "42704", "does not exist"),
        ("SELECT mtask.unschedule(424242)", "42704", "does not exist"),
        ("SELECT mtask.pause('nope')", "42704", "does not exist"),
        ("SELECT mtask.resume(424242)", "42704", "does not exist"),
        (
            "INSERT INTO mtask.tasks (name, schedule, command) VALUES ('a', 'soon', 'SELECT 1')",
            "22023",
            "invalid schedule",
        ),
        (
            "INSERT INTO mtask.tasks (name, kind, schedule, command) VALUES ('a', 'once', '1 hour', 'SELECT 1')",
            "22023",
            "cannot have a schedule",
        ),
        (
            "INSERT INTO mtask.tasks (name, command, status) VALUES ('a', 'SELECT 1', 'done')",
            "22023",
            "must be 'scheduled' or 'paused'",
        ),
    ];
    for (sql, sqlstate, message) in cases {
        assert_error(c.try_sql(sql), sqlstate, &[message, "HINT:"]);
    }
    assert_eq!(c.sql("SELECT string_agg(name, ',') FROM mtask.tasks"), "taken");
}

#[test]
fn direct_insert_is_checked_and_derived() {
    let c = Cluster::with_hits("");
    c.sql("INSERT INTO mtask.tasks (name, schedule, command) VALUES ('ins', 'every 1 second', $$INSERT INTO hits VALUES ('ins')$$)");
    assert_eq!(
        c.sql("SELECT kind, schedule, status, owner, next_run_at >= start_at, created_at IS NOT NULL FROM mtask.tasks WHERE name = 'ins'"),
        "recurring|every 1 second|scheduled|postgres|t|t"
    );
    c.sql("INSERT INTO mtask.tasks (name, command) VALUES ('ins-once', $$INSERT INTO hits VALUES ('ins-once')$$)");
    assert_eq!(c.sql("SELECT kind FROM mtask.tasks WHERE name = 'ins-once'"), "once");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'ins-once'", "done");
    c.wait_for("SELECT count(*) >= 2 FROM hits WHERE task = 'ins'", "t");
    // Changing the schedule by UPDATE re-derives it too.
    c.sql("UPDATE mtask.tasks SET schedule = '2 hours' WHERE name = 'ins'");
    assert_eq!(
        c.sql("SELECT schedule, next_run_at > now() + interval '1 hour' FROM mtask.tasks WHERE name = 'ins'"),
        "every 2 hours|t"
    );
    // A role may not make another role the owner.
    c.sql("CREATE ROLE app LOGIN; CREATE ROLE other; GRANT USAGE ON SCHEMA mtask TO app; GRANT INSERT, SELECT ON mtask.tasks TO app");
    let forged =
        c.try_sql("SET ROLE app; INSERT INTO mtask.tasks (name, owner, command) VALUES ('x', 'other', 'SELECT 1')");
    assert_error(forged, "42501", &["permission denied", "HINT:"]);
}

#[test]
fn tasks_run_again_when_the_extension_is_dropped_and_created_again() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule_at('first', now(), $$INSERT INTO hits VALUES ('first')$$)");
    c.wait_for("SELECT count(*) FROM hits WHERE task = 'first'", "1");
    c.sql("DROP EXTENSION mtask");
    c.sql("CREATE EXTENSION mtask");
    c.sql("SELECT mtask.schedule_at('second', now(), $$INSERT INTO hits VALUES ('second')$$)");
    c.wait_for("SELECT count(*) FROM hits WHERE task = 'second'", "1");
    assert!(!c.log().contains("ERROR"), "{}", c.log());
}

#[test]
fn worker_waits_quietly_until_the_extension_exists() {
    let c = Cluster::start("");
    c.scheduler_pid();
    c.sql("CREATE TABLE hits (task text)");
    c.sql("CREATE EXTENSION mtask");
    c.sql("SELECT mtask.schedule_at('x', now(), $$INSERT INTO hits VALUES ('x')$$)");
    c.wait_for("SELECT count(*) FROM hits", "1");
    assert!(!c.log().contains("ERROR"), "{}", c.log());
}

#[test]
fn tasks_survive_a_server_restart_and_continue() {
    let c = Cluster::with_hits("");
    let id = c.sql("SELECT mtask.schedule('tick', '1 second', $$INSERT INTO hits VALUES ('tick')$$)");
    c.sql("SELECT mtask.schedule_at('later', now() + interval '3 seconds', $$INSERT INTO hits VALUES ('later')$$)");
    c.wait_for(&format!("SELECT run_count >= 1 FROM mtask.tasks WHERE id = {id}"), "t");
    c.restart();
    let before: i64 = c.sql(&format!("SELECT run_count FROM mtask.tasks WHERE id = {id}")).parse().unwrap();
    c.wait_for(&format!("SELECT run_count > {} FROM mtask.tasks WHERE id = {id}", before + 1), "t");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'later'", "done");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'later'"), "1");
}

#[test]
fn fast_shutdown_ends_a_long_task_and_the_run_is_not_lost() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule_at('sleepy', now(), $$INSERT INTO hits VALUES ('sleepy'); SELECT pg_sleep(3600)$$)");
    c.wait_for(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'",
        "1",
    );
    // pg_ctl gives up (and the test fails) if the worker ignores the shutdown.
    c.stop("fast");
    c.start_again();
    // The interrupted run left neither effect nor record, so the task is due
    // again and runs again.
    assert_eq!(c.sql("SELECT count(*) FROM hits"), "0");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.runs"), "0");
    c.wait_for(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'",
        "1",
    );
    assert_eq!(c.sql("SELECT status, run_count FROM mtask.tasks"), "scheduled|0");
}

#[test]
fn cancel_ends_only_the_running_task() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule_at('sleepy', now(), 'SELECT pg_sleep(3600)')");
    let running = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep%'";
    c.wait_for(&format!("SELECT count(*) FROM ({running}) r"), "1");
    let pid = c.sql(running);
    assert_eq!(c.sql(&format!("SELECT pg_cancel_backend({pid})")), "t");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'sleepy'", "failed");
    assert_eq!(c.sql("SELECT sqlstate FROM mtask.runs"), "57014");
    c.sql("SELECT mtask.schedule_at('after', now(), $$INSERT INTO hits VALUES ('after')$$)");
    c.wait_for("SELECT count(*) FROM hits", "1");
    assert!(c.worker_pids().split(',').any(|p| p == pid), "the worker itself must survive the cancel");
}

#[test]
fn scheduler_restarts_after_a_crash() {
    let c = Cluster::with_hits("");
    let pid = c.scheduler_pid();
    std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    c.wait_for_in("postgres", "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask scheduler'", "1");
    assert_ne!(c.scheduler_pid(), pid);
    c.sql("SELECT mtask.schedule_at('x', now(), $$INSERT INTO hits VALUES ('x')$$)");
    c.wait_for("SELECT count(*) FROM hits", "1");
}

#[test]
fn tasks_run_as_their_owner_and_settings_do_not_leak() {
    let c = Cluster::with_hits("");
    c.sql("CREATE ROLE alice NOLOGIN; GRANT INSERT ON hits TO alice");
    c.sql("INSERT INTO mtask.tasks (name, owner, command) VALUES ('who', 'alice', $$INSERT INTO hits VALUES (current_user)$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'who'", "done");
    assert_eq!(c.sql("SELECT task FROM hits"), "alice");

    for (name, command, sqlstate) in
        [("authid", "SELECT count(*) FROM pg_authid", "42501"), ("setrole", "SET ROLE postgres", "42501")]
    {
        c.sql(&format!("INSERT INTO mtask.tasks (name, owner, command) VALUES ('{name}', 'alice', $${command}$$)"));
        c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE name = '{name}'"), "failed");
        assert_eq!(
            c.sql(&format!(
                "SELECT r.sqlstate FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = '{name}'"
            )),
            sqlstate,
            "{command}"
        );
    }

    c.sql("SELECT mtask.schedule_at('setter', now(), $$SET work_mem = '1234kB'; SET search_path = nowhere$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'setter'", "done");
    c.sql("SELECT mtask.schedule_at('reader', now(), $$INSERT INTO public.hits VALUES (current_setting('work_mem') || ' ' || current_setting('search_path'))$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'reader'", "done");
    assert_eq!(c.sql("SELECT task FROM hits WHERE task LIKE '%user%'"), "4MB \"$user\", public");
}

#[test]
fn settings_reload_on_sighup() {
    let c = Cluster::with_hits("mtask.enabled = off");
    let warning = c.sql_stderr("SELECT mtask.schedule_at('x', now(), $$INSERT INTO hits VALUES ('x')$$)");
    assert!(warning.contains("mtask.enabled is off"), "{warning}");
    assert_eq!(c.sql("SELECT run_count FROM mtask.tasks"), "0");
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM hits", "1");
}

#[test]
fn without_preload_create_extension_works_and_schedule_warns() {
    let c = Cluster::start_with("");
    c.sql("CREATE EXTENSION mtask");
    let warning = c.sql_stderr("SELECT mtask.schedule('x', '1 hour', 'SELECT 1')");
    assert!(warning.contains("scheduler is not running"), "{warning}");
    assert!(warning.contains("shared_preload_libraries"), "{warning}");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "1");
}

/// Scheduling many tasks in one session into a table that VACUUM has
/// truncated to nothing stays one index probe per task. The name check's
/// plan, made while the table was empty, was a sequential scan, and every
/// task scheduled after it read all the tasks before it: 1,000 tasks, 1,000
/// scans and 499,500 rows read.
#[test]
fn scheduling_into_a_vacuumed_empty_table_does_not_scan_it_per_task() {
    let c = Cluster::with_mtask("");
    c.sql("SELECT mtask.schedule_at('first', now() + interval '1 day', 'SELECT 1')");
    c.sql("DELETE FROM mtask.tasks");
    c.sql("VACUUM mtask.tasks");
    assert_eq!(c.sql("SELECT relpages FROM pg_class WHERE oid = 'mtask.tasks'::regclass"), "0");
    // One transaction, as statements sent together are. psql prints the
    // last statement's result, and since PostgreSQL 15 each one's.
    let scans = c.sql(
        "SELECT count(mtask.schedule_at('t' || i, now() + interval '1 day', 'SELECT 1')) FROM generate_series(1, 1000) i;
         SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'mtask.tasks'::regclass",
    );
    let scans: i64 = scans.lines().last().unwrap().parse().unwrap();
    assert!(scans < 10, "sequential scans of mtask.tasks: {scans}");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "1000");
}
