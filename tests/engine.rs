//! The execution engine on a real server: wake on commit, the worker pool.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

fn with_extension(conf: &str) -> Cluster {
    let c = Cluster::start(conf);
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE TABLE hits (task text, at timestamptz DEFAULT clock_timestamp())");
    c
}

/// Polls `sql` until it returns `expected`, failing after `deadline`.
fn wait_within(c: &Cluster, deadline: Duration, sql: &str, expected: &str) {
    let start = Instant::now();
    loop {
        let got = c.try_sql(sql).unwrap_or_default();
        if got == expected {
            return;
        }
        assert!(start.elapsed() < deadline, "`{sql}` still returns {got:?}, not {expected:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With mtask.naptime at its 60 s maximum, only a wake-up at commit can start
/// these tasks within the 30 s this test allows.
#[test]
fn committing_a_due_task_wakes_the_workers() {
    let c = with_extension("mtask.naptime = '60s'");
    c.worker_pids();
    // Let the workers finish their first look and go to sleep.
    c.wait_for(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND wait_event = 'Extension'",
        "2",
    );
    c.sql("SELECT mtask.schedule_at('now', now(), $$INSERT INTO hits VALUES ('now')$$)");
    wait_within(&c, Duration::from_secs(30), "SELECT count(*) FROM hits WHERE task = 'now'", "1");
    // A task due in two seconds: the wake-up sets the workers' sleep to it.
    c.sql("SELECT mtask.schedule_at('soon', now() + interval '2 seconds', $$INSERT INTO hits VALUES ('soon')$$)");
    wait_within(&c, Duration::from_secs(30), "SELECT count(*) FROM hits WHERE task = 'soon'", "1");
    // A resumed task, and a plain UPDATE that moves a run to now, wake them too.
    c.sql("SELECT mtask.schedule_at('paused', now() + interval '1 day', $$INSERT INTO hits VALUES ('moved')$$)");
    c.sql("UPDATE mtask.tasks SET next_run_at = now() WHERE name = 'paused'");
    wait_within(&c, Duration::from_secs(30), "SELECT count(*) FROM hits WHERE task = 'moved'", "1");
    // A rolled-back schedule runs nothing.
    c.sql("BEGIN; SELECT mtask.schedule_at('gone', now(), $$INSERT INTO hits VALUES ('gone')$$); ROLLBACK");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks WHERE name = 'gone'"), "0");
}

#[test]
fn a_long_task_does_not_hold_up_others() {
    let c = with_extension("mtask.max_workers = 2");
    c.sql("SELECT mtask.schedule_at('long', now(), 'SELECT pg_sleep(3600)')");
    let long = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'";
    c.wait_for(long, "1");
    c.sql("SELECT mtask.schedule('short', 'every 0.2 seconds', $$INSERT INTO hits VALUES ('short')$$)");
    c.wait_for("SELECT count(*) >= 3 FROM hits WHERE task = 'short'", "t");
    assert_eq!(c.sql(long), "1", "the long task is still running");
}

#[test]
fn when_the_pool_is_full_tasks_wait_in_due_order() {
    let c = with_extension("mtask.max_workers = 2");
    c.sql(
        "SELECT mtask.schedule_at('long' || n, now(), 'SELECT pg_sleep(3600)') FROM generate_series(1, 2) n;
         SELECT mtask.schedule_at('second', now() + interval '0.2 seconds', $$INSERT INTO hits VALUES ('second')$$);
         SELECT mtask.schedule_at('first', now() + interval '0.1 seconds', $$INSERT INTO hits VALUES ('first')$$)",
    );
    let sleeping = "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
                    WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'";
    c.wait_for(&format!("SELECT count(*) FROM ({sleeping}) s WHERE string_agg IS NOT NULL AND string_agg LIKE '%,%'"), "1");
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name IN ('first', 'second') AND next_run_at <= now()", "2");
    // Both workers are busy: the due tasks wait.
    assert_eq!(c.sql("SELECT count(*) FROM hits"), "0");
    // Freeing one worker runs them, oldest due first.
    let pid = c.sql(sleeping).split(',').next().unwrap().to_string();
    c.sql(&format!("SELECT pg_cancel_backend({pid})"));
    c.wait_for("SELECT string_agg(task, ',' ORDER BY at) FROM hits", "first,second");
}

#[test]
fn running_out_of_worker_processes_warns_once() {
    // Of three processes, the logical replication launcher takes one and
    // mtask's launcher another: one worker of four starts.
    let c = with_extension("max_worker_processes = 3\nmtask.max_workers = 4");
    let warning = "mtask could start only 1 of its 4 workers";
    c.wait_for_log(warning);
    c.sql("SELECT mtask.schedule_at('x', now(), $$INSERT INTO hits VALUES ('x')$$)");
    c.wait_for("SELECT count(*) FROM hits", "1");
    // The launcher has retried since (it does every second); a third
    // attempt proves it, and the warning still stands alone.
    c.sql("SELECT pg_sleep(2.5)");
    assert_eq!(c.log().matches(warning).count(), 1, "{}", c.log());
}
