//! Operating mtask: run a task now (mtask.run_now, CALL mtask.run), see
//! what runs (mtask.running), how each task does (mtask.task_stats), why a
//! run failed (its error whole), and what reaches the server log.

mod common;

use common::{Cluster, assert_error};

/// A cluster with `app` (an ordinary role that owns tasks), `bob` (another,
/// not a member of app), and a table everyone may write.
fn desk(extra: &str) -> Cluster {
    let c = Cluster::with_mtask(extra);
    c.sql(
        "CREATE TABLE hits (who text DEFAULT current_user, what text, at timestamptz DEFAULT clock_timestamp());
         GRANT SELECT, INSERT ON hits TO PUBLIC;
         CREATE ROLE app LOGIN; CREATE ROLE bob LOGIN;
         GRANT USAGE ON SCHEMA mtask TO app, bob",
    );
    c
}

fn as_app(sql: &str) -> String {
    format!("SET ROLE app; {sql}")
}

/// The runs of a task, as `trigger:status` in order.
fn runs_of(c: &Cluster, name: &str) -> String {
    c.sql(&format!(
        "SELECT coalesce(string_agg(r.trigger || ':' || r.status, ',' ORDER BY r.id), '')
         FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = '{name}'"
    ))
}

#[test]
fn run_now_runs_a_task_at_once_and_leaves_its_schedule_where_it_was() {
    let c = desk("");
    c.sql(&as_app(
        "SELECT mtask.schedule('rate', '1 hour', $$INSERT INTO hits (what) VALUES ('rate')$$, start_at => now() + interval '10 minutes');
         SELECT mtask.schedule('delay', 'after 1 hour', $$INSERT INTO hits (what) VALUES ('delay')$$, start_at => now() + interval '10 minutes');
                  SELECT mtask.schedule('held', '1 hour', $$INSERT INTO hits (what) VALUES ('held')$$)",
    ));
    c.wait_for("SELECT count(*) FROM hits WHERE what = 'held'", "1");
    c.sql(&as_app("SELECT mtask.pause('held')"));
    let before = c.sql("SELECT string_agg(name || ' ' || next_run_at, ',' ORDER BY name) FROM mtask.tasks");
    for name in ["rate", "delay", "held"] {
        assert_eq!(c.sql(&as_app(&format!("SELECT mtask.run_now('{name}')"))), "t");
    }
    c.wait_for("SELECT count(*) FROM hits", "4");
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE manual_from IS NULL", "3");
    // Each ran once more, by hand; the schedules are where they were, and
    // the paused task is still paused.
    assert_eq!(runs_of(&c, "rate"), "manual:succeeded");
    assert_eq!(runs_of(&c, "held"), "schedule:succeeded,manual:succeeded");
    assert_eq!(c.sql("SELECT string_agg(name || ' ' || next_run_at, ',' ORDER BY name) FROM mtask.tasks"), before);
    assert_eq!(c.sql("SELECT status FROM mtask.tasks WHERE name = 'held'"), "paused");
    // A finished task is not run again so.
    c.sql(&as_app("SELECT mtask.schedule_at('once', now(), 'SELECT 1')"));
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'once'", "done");
    assert_error(c.try_sql(&as_app("SELECT mtask.run_now('once')")), "55000", &["cannot be run now", "HINT:"]);
}

#[test]
fn call_run_runs_a_task_in_the_callers_session_as_its_owner() {
    let c = desk("");
    c.sql(
        "CREATE PROCEDURE public.twice() LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO hits (what) VALUES ('one'); COMMIT; INSERT INTO hits (what) VALUES ('two'); END $$;
         GRANT EXECUTE ON PROCEDURE public.twice() TO PUBLIC",
    );
    c.sql(&as_app(
        "SELECT mtask.schedule('mark', '1 day', $$INSERT INTO hits (what) VALUES ('mark')$$, start_at => now() + interval '1 hour');
         SELECT mtask.schedule_at('bad', now() + interval '1 hour', 'SELECT 1/0');
         SELECT mtask.schedule_at('slow', now() + interval '1 hour', 'SELECT pg_sleep(30)', timeout => '0.2 s');
         SELECT mtask.schedule_at('commits', now() + interval '1 hour', 'CALL public.twice()', transactional => false)",
    ));
    let next = c.sql("SELECT next_run_at FROM mtask.tasks WHERE name = 'mark'");
    // Done by the time CALL returns, as the owner, recorded as by hand.
    assert_eq!(c.sql(&as_app("CALL mtask.run('mark'); SELECT who FROM hits WHERE what = 'mark'")), "app");
    assert_eq!(runs_of(&c, "mark"), "manual:succeeded");
    assert_eq!(c.sql("SELECT next_run_at, run_count FROM mtask.tasks WHERE name = 'mark'"), format!("{next}|1"));
    // A superuser may run it too; it still runs as its owner.
    let id = c.sql("SELECT id FROM mtask.tasks WHERE name = 'mark'");
    c.sql(&format!("CALL mtask.run({id})"));
    assert_eq!(c.sql("SELECT string_agg(who, ',') FROM hits WHERE what = 'mark'"), "app,app");
    // Not a role that is no member of its owner.
    assert_error(c.try_sql(&format!("SET ROLE bob; CALL mtask.run({id})")), "42704", &["does not exist"]);
    // A failure is recorded, and raised to the caller. (A CALL alone, as
    // app: in a string of several statements it runs in a block.)
    let call =
        |sql: &str| c.try_client("psql", "postgres", &["-X", "-v", "ON_ERROR_STOP=1", "-c", "SET ROLE app", "-c", sql]);
    let out = call("CALL mtask.run('bad')");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("task") && stderr.contains("division by zero"), "{stderr}");
    assert_eq!(runs_of(&c, "bad"), "manual:failed");
    // Inside a transaction block, the record goes with the caller's rollback.
    assert_error(c.try_sql(&as_app("BEGIN; CALL mtask.run('bad')")), "22012", &["division by zero"]);
    assert_eq!(runs_of(&c, "bad"), "manual:failed");
    // Its timeout holds.
    let out = call("CALL mtask.run('slow')");
    assert!(String::from_utf8_lossy(&out.stderr).contains("canceling statement"), "{out:?}");
    assert_eq!(runs_of(&c, "slow"), "manual:timeout");
    // A non-transactional task may commit, called outside a block.
    assert!(call("CALL mtask.run('commits')").status.success());
    assert_eq!(c.sql("SELECT string_agg(what, ',' ORDER BY at) FROM hits WHERE what IN ('one', 'two')"), "one,two");
    assert_eq!(runs_of(&c, "commits"), "manual:succeeded");
    assert_eq!(c.sql("SELECT status FROM mtask.tasks WHERE name = 'commits'"), "done");
}

#[test]
fn running_shows_every_run_in_progress_to_those_who_may_see_its_task() {
    let c = desk("");
    let id = c.sql(&as_app("SELECT mtask.schedule_at('long', now(), 'SELECT pg_sleep(3600)')"));
    let row = format!("{id}|long|app|1|postgres");
    c.wait_for(&as_app("SELECT task_id, name, owner, attempt, database FROM mtask.running"), &row);
    // The worker running it, seen in pg_stat_activity too.
    assert_eq!(
        c.sql("SELECT r.pid = a.pid, a.backend_type FROM mtask.running r JOIN pg_stat_activity a ON a.pid = r.pid"),
        "t|mtask worker"
    );
    assert_eq!(c.sql("SELECT started_at <= now() AND command LIKE '%pg_sleep%' FROM mtask.running"), "t");
    assert_eq!(c.sql("SET ROLE bob; SELECT count(*) FROM mtask.running"), "0");
    assert_eq!(c.sql("SET ROLE bob; SELECT count(*) FROM mtask._running()"), "0");
    c.sql("SELECT pg_cancel_backend(pid) FROM mtask.running");
    c.wait_for("SELECT count(*) FROM mtask.running", "0");
}

/// Autovacuum works from the cumulative statistics, which hold only what
/// each process has handed over: a worker that never did kept every row its
/// tasks wrote from them (and from autovacuum) until it exited.
#[test]
fn what_tasks_write_reaches_the_statistics_while_their_worker_stays() {
    let c = Cluster::with_hits("mtask.max_workers = 1\nmtask.worker_idle_timeout = '1h'");
    c.sql("SELECT mtask.schedule_at('w' || i, now(), 'INSERT INTO hits (task) VALUES (''w'')') FROM generate_series(1, 50) i");
    c.wait_for("SELECT count(*) FROM hits", "50");
    let worker = c.worker_pids();
    c.wait_for("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'hits'::regclass", "50");
    c.wait_for("SELECT n_tup_ins >= 50 FROM pg_stat_user_tables WHERE relid = 'mtask.runs'::regclass", "t");
    assert_eq!(c.worker_pids(), worker, "the worker left, handing its statistics over as it went");
}

#[test]
fn task_stats_count_and_time_the_runs() {
    let c = desk("");
    c.sql(&as_app(
        "SELECT mtask.schedule('ok', '0.2 seconds', 'SELECT pg_sleep(0.02)');
         SELECT mtask.schedule('bad', '0.2 seconds', 'SELECT 1/0');
         SELECT mtask.schedule('slow', '0.2 seconds', 'SELECT pg_sleep(1)', timeout => '0.05 s')",
    ));
    c.wait_for("SELECT bool_and(runs >= 5) FROM mtask.task_stats", "t");
    c.sql("SELECT mtask.pause(id) FROM mtask.tasks");
    assert_eq!(
        c.sql(&as_app(
            "SELECT string_agg(concat_ws('|', name, runs = succeeded + failed, succeeded > 0, failed > 0, timed_out > 0,
                                         last_success_at IS NOT NULL, last_failure_at IS NOT NULL), ',' ORDER BY name)
             FROM mtask.task_stats"
        )),
        "bad|t|f|t|f|f|t,ok|t|t|f|f|t|f,slow|t|f|t|t|f|t"
    );
    assert_eq!(c.sql("SELECT runs = timed_out FROM mtask.task_stats WHERE name = 'slow'"), "t");
    assert_eq!(
        c.sql(
            "SELECT last_duration >= interval '20 ms', mean_duration >= interval '20 ms', p95_duration >= interval '20 ms'
             FROM mtask.task_stats WHERE name = 'ok'"
        ),
        "t|t|t"
    );
    assert_eq!(c.sql("SET ROLE bob; SELECT count(*) FROM mtask.task_stats"), "0");
}

#[test]
fn a_failed_run_keeps_its_error_whole() {
    let c = desk("");
    c.sql(
        "CREATE TABLE u (x int PRIMARY KEY); INSERT INTO u VALUES (1); GRANT INSERT, SELECT ON u TO app;
         CREATE FUNCTION public.picky() RETURNS void LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'not today' USING DETAIL = 'It is Monday.', HINT = 'Try tomorrow.'; END $$",
    );
    c.sql(&as_app(
        "SELECT mtask.schedule_at('dup', now(), 'INSERT INTO u VALUES (1)');
         SELECT mtask.schedule_at('picky', now(), 'SELECT public.picky()')",
    ));
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status = 'failed'", "2");
    assert_eq!(
        c.sql("SELECT concat_ws('|', r.sqlstate, r.message, r.detail, r.command, r.owner) FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'dup'"),
        "23505|duplicate key value violates unique constraint \"u_pkey\"|Key (x)=(1) already exists.|INSERT INTO u VALUES (1)|app"
    );
    assert_eq!(
        c.sql("SELECT concat_ws('|', r.sqlstate, r.message, r.detail, r.hint, r.context LIKE 'PL/pgSQL function picky() line 2 at RAISE%') FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'picky'"),
        "P0001|not today|It is Monday.|Try tomorrow.|t"
    );
}

#[test]
fn failed_runs_and_starts_reach_the_server_log() {
    let c = desk("mtask.log_statement = on");
    let id = c.sql(&as_app("SELECT mtask.schedule_at('oops', now(), 'SELECT 1/0')"));
    c.wait_for_log(&format!(
        "mtask: run of task {id} (\"oops\") in database \"postgres\" failed, attempt 1: 22012: division by zero"
    ));
    c.wait_for_log(&format!("mtask: task {id} (\"oops\") in database \"postgres\" starts, attempt 1: SELECT 1/0"));
    // Off, a failure is in mtask.runs only.
    let c = desk("mtask.log_failures = off\nmtask.log_statement = on");
    let id = c.sql(&as_app("SELECT mtask.schedule_at('quiet', now(), 'SELECT 1/0')"));
    c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE id = {id}"), "failed");
    c.wait_for_log(&format!("mtask: task {id} (\"quiet\")"));
    assert!(!c.log().contains(&format!("run of task {id} ")), "{}", c.log());
}
