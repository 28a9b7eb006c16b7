//! Crashes under load: every transactional task's effect is there exactly
//! once afterwards, whatever was in flight when the server went down.

mod common;

use common::Cluster;

const TASKS: usize = 3000;

/// A cluster draining TASKS one-shot tasks, each of which records its id.
fn loaded() -> Cluster {
    let c = Cluster::start("mtask.max_workers = 2\nmtask.enabled = off");
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE TABLE hits (task bigint)");
    c.sql(&format!(
        "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'n' || n, format('INSERT INTO hits VALUES (%s)', n), now() FROM generate_series(1, {TASKS}) n"
    ));
    c.enable_mtask();
    // Mid-batch: some tasks have run, not all.
    c.wait_for("SELECT count(*) >= 200 FROM hits", "t");
    c
}

/// Asserts, just before the crash, that the batch is not yet drained.
fn assert_mid_batch(c: &Cluster) {
    let done: usize = c.sql("SELECT count(*) FROM hits").parse().unwrap();
    assert!(done < TASKS, "the batch drained before the crash; make it larger");
}

fn assert_exactly_once(c: &Cluster) {
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status = 'done'", &TASKS.to_string());
    assert_eq!(
        c.sql("SELECT count(*), count(DISTINCT task), min(task), max(task) FROM hits"),
        format!("{TASKS}|{TASKS}|1|{TASKS}")
    );
    assert_eq!(
        c.sql("SELECT count(*), count(DISTINCT task_id) FROM mtask.runs WHERE status = 'succeeded'"),
        format!("{TASKS}|{TASKS}")
    );
    assert_eq!(c.sql("SELECT max(run_count) FROM mtask.tasks"), "1");
}

#[test]
fn killing_a_worker_mid_batch_loses_and_doubles_nothing() {
    let c = loaded();
    let pid = c.worker_pids().split(',').next().unwrap().to_string();
    assert_mid_batch(&c);
    std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
    // The postmaster resets every backend after a crash and starts afresh.
    c.wait_for_log("terminated by signal 9");
    assert_exactly_once(&c);
}

#[test]
fn an_immediate_shutdown_mid_batch_loses_and_doubles_nothing() {
    let c = loaded();
    assert_mid_batch(&c);
    c.stop("immediate");
    c.start_again();
    assert_exactly_once(&c);
}
