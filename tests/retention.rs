//! Bounded run history: which runs are recorded (log_runs), and the
//! scheduler's purge of runs past history_max_per_task or history_max_age.

mod common;

use common::{Cluster, assert_error};
use std::time::{Duration, Instant};

/// Waits until task `id` has run `n` times, and returns its runs' statuses.
fn runs_after(c: &Cluster, id: &str, n: usize) -> String {
    c.wait_for(&format!("SELECT run_count >= {n} FROM mtask.tasks WHERE id = {id}"), "t");
    c.sql(&format!("SELECT coalesce(string_agg(status, ',' ORDER BY id), '') FROM mtask.runs WHERE task_id = {id}"))
}

#[test]
fn log_runs_decides_which_runs_are_recorded() {
    let c = Cluster::with_mtask("mtask.log_runs = 'failures'");
    // Succeeds twice, then fails.
    c.sql("CREATE SEQUENCE n");
    // (1 / 0 itself would fail every run: the planner folds constants first.)
    let flaky = "SELECT 1 / CASE WHEN nextval('n') > 2 THEN 0 ELSE 1 END";
    let id = c.sql(&format!("SELECT mtask.schedule('flaky', '10 ms', $${flaky}$$)"));
    let recorded = runs_after(&c, &id, 4);
    assert!(recorded.split(',').all(|s| s == "failed"), "{recorded}");
    assert_eq!(
        c.sql(&format!("SELECT last_status, run_count > failure_count FROM mtask.tasks WHERE id = {id}")),
        "failed|t"
    );

    // A task's own log_runs overrides the setting, either way.
    let all = c.sql("SELECT mtask.schedule_at('all', now(), 'SELECT 1', log_runs => 'all')");
    assert_eq!(runs_after(&c, &all, 1), "succeeded");
    let none = c.sql("SELECT mtask.schedule_at('none', now(), 'SELECT 1/0', log_runs => 'none')");
    assert_eq!(runs_after(&c, &none, 1), "");
    assert_eq!(c.sql(&format!("SELECT status, last_status FROM mtask.tasks WHERE id = {none}")), "failed|failed");
    // A non-transactional run's 'running' row goes once the run is over.
    let top = c.sql("SELECT mtask.schedule_at('top', now(), 'VACUUM', transactional => false, log_runs => 'none')");
    c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE id = {top}"), "done");
    assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {top}")), "0");
    // Changed by alter, and checked.
    c.sql("SELECT mtask.alter('flaky', log_runs => 'none')");
    assert_error(
        c.try_sql("SELECT mtask.alter('flaky', log_runs => 'some')"),
        "22023",
        &["invalid log_runs \"some\"", "HINT:"],
    );
    assert_error(
        c.try_sql("SELECT mtask.alter('flaky', history_max_per_task => -1)"),
        "22023",
        &["must not be negative", "HINT:"],
    );
}

#[test]
fn runs_older_than_history_max_age_are_purged() {
    let c = Cluster::with_mtask("mtask.history_max_age = '1d'");
    let later = "start_at => now() + interval '1 hour'";
    let short = c.sql(&format!("SELECT mtask.schedule('short', '1 hour', 'SELECT 1', {later})"));
    let long =
        c.sql(&format!("SELECT mtask.schedule('long', '1 hour', 'SELECT 1', {later}, history_max_age => '30 days')"));
    let forever =
        c.sql(&format!("SELECT mtask.schedule('forever', '1 hour', 'SELECT 1', {later}, history_max_age => '0')"));
    // A history made two days ago; then one run of each task now.
    c.sql(&format!(
        "INSERT INTO mtask.runs (task_id, started_at, finished_at, status)
         SELECT t, now() - interval '2 days', now() - interval '2 days', 'succeeded'
         FROM unnest(ARRAY[{short}, {long}, {forever}]) t, generate_series(1, 100)"
    ));
    c.sql("UPDATE mtask.tasks SET next_run_at = now()");
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {short}"), "1");
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.runs WHERE task_id = {short}")), "succeeded");
    assert_eq!(
        c.sql(&format!("SELECT count(*) FROM mtask.runs WHERE task_id IN ({long}, {forever}) GROUP BY task_id")),
        "101\n101"
    );
}

#[test]
fn a_task_running_every_second_for_a_simulated_day_keeps_its_history_bounded() {
    let c = Cluster::with_mtask("mtask.max_catchup = 100000\nmtask.history_max_per_task = 200\nautovacuum = off");
    // A day of one-second slots, all missed, caught up back to back: the
    // history a whole day would write, in the time it takes to run it.
    // (Two calls: psql before 15 prints only the last statement's result.)
    let id = c.sql(
        "SELECT mtask.schedule('tick', '1 second', 'SELECT 1', missed => 'all', start_at => now() - interval '1 day')",
    );
    c.sql("UPDATE mtask.tasks SET next_run_at = next_run_at - interval '1 day' WHERE name = 'tick'");
    let day = 86_400;
    // The most rows the history held, and the largest its table was in the
    // first half of the day.
    let (mut most_rows, mut first_half_size) = (0, 0);
    let start = Instant::now();
    loop {
        let row = c.sql(&format!(
            "SELECT run_count, (SELECT count(*) FROM mtask.runs WHERE task_id = {id}), pg_relation_size('mtask.runs')
             FROM mtask.tasks WHERE id = {id}"
        ));
        let v: Vec<i64> = row.split('|').map(|x| x.parse().unwrap()).collect();
        let (runs, rows, size) = (v[0], v[1], v[2]);
        most_rows = most_rows.max(rows);
        if runs < day / 2 {
            first_half_size = first_half_size.max(size);
        }
        if runs >= day {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(900), "only {runs} runs after 15 minutes");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The purge keeps up: the history never held more than a few rounds'
    // worth beyond its limit, against the 86,400 rows of an unpurged day...
    assert!(most_rows < 20_000, "the history grew to {most_rows} rows");
    // ...settles at the limit...
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id}"), "200");
    // ...and its table stopped growing once the limit was reached: at the
    // end of the day it is far smaller than the megabytes an unpurged day
    // of runs takes, and not much larger than at most in the first half (its
    // size swings with the dead rows between two of the purger's vacuums,
    // by up to a third here; unpurged, it would double).
    let size_at_end: i64 = c.sql("SELECT pg_relation_size('mtask.runs')").parse().unwrap();
    eprintln!(
        "most rows {most_rows}; mtask.runs at most {first_half_size} bytes in the first half, {size_at_end} at the end"
    );
    assert!(
        size_at_end < first_half_size * 2 && size_at_end < 4 << 20,
        "mtask.runs grew from at most {first_half_size} bytes in the first half to {size_at_end} at the end"
    );
}
