//! Clusters: workers in every database that has mtask and tasks due, as
//! databases and the extension come and go; nothing on a standby; and the
//! tasks carried across a failover. Many databases: tests/databases.rs.

mod common;

use common::Cluster;
use std::time::Instant;

/// The pool's workers per database, as "db:n" in name order.
const WORKERS_PER_DATABASE: &str = "
    SELECT coalesce(string_agg(datname || ':' || n, ',' ORDER BY datname), '')
    FROM (SELECT datname, count(*) n FROM pg_stat_activity WHERE backend_type = 'mtask worker' GROUP BY datname) w";

#[test]
fn every_database_with_mtask_runs_its_own_tasks() {
    let c = Cluster::start("mtask.max_workers = 4");
    for db in ["one", "two", "plain"] {
        c.sql(&format!("CREATE DATABASE {db}"));
    }
    for db in ["one", "two"] {
        c.sql_in(db, "CREATE EXTENSION mtask; CREATE TABLE hits (at timestamptz DEFAULT clock_timestamp())");
        c.sql_in(db, "SELECT mtask.schedule('tick', '100 ms', 'INSERT INTO hits DEFAULT VALUES')");
    }
    for db in ["one", "two"] {
        c.wait_for_in(db, "SELECT count(*) >= 5 FROM hits", "t");
    }
    // None stays where mtask is not installed.
    c.wait_for(&format!("SELECT ({WORKERS_PER_DATABASE}) NOT LIKE '%plain%'"), "t");
    // A third database runs its tasks too.
    c.sql_in("plain", "CREATE EXTENSION mtask; CREATE TABLE hits (at timestamptz DEFAULT clock_timestamp())");
    c.sql_in("plain", "SELECT mtask.schedule('tick', '100 ms', 'INSERT INTO hits DEFAULT VALUES')");
    c.wait_for_in("plain", "SELECT count(*) >= 5 FROM hits", "t");
    // The two kept running all along.
    for db in ["one", "two"] {
        let before: i64 = c.sql_in(db, "SELECT count(*) FROM hits").parse().unwrap();
        c.wait_for_in(db, &format!("SELECT count(*) > {before} FROM hits"), "t");
    }
}

#[test]
fn create_extension_starts_workers_and_drops_stop_them_cleanly() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    for db in ["fresh", "forced", "plain"] {
        c.sql(&format!("CREATE DATABASE {db}"));
    }
    // CREATE EXTENSION in a running cluster: its first task runs at once.
    let started = Instant::now();
    c.sql_in("fresh", "CREATE EXTENSION mtask; CREATE TABLE hits (n int)");
    c.sql_in("fresh", "SELECT mtask.schedule_at('first', now(), 'INSERT INTO hits VALUES (1)')");
    c.wait_for_in("fresh", "SELECT count(*) FROM hits", "1");
    eprintln!("CREATE EXTENSION to first run: {:?}", started.elapsed());

    // DROP EXTENSION: the workers leave and are not started again.
    c.sql_in("fresh", "DROP EXTENSION mtask");
    c.wait_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND datname = 'fresh'", "0");

    // DROP DATABASE, plain and WITH (FORCE), while workers are connected.
    c.sql_in("forced", "CREATE EXTENSION mtask; SELECT mtask.schedule('tick', '100 ms', 'SELECT 1')");
    c.sql_in("plain", "CREATE EXTENSION mtask; SELECT mtask.schedule('tick', '100 ms', 'SELECT pg_sleep(0.05)')");
    c.wait_for(
        "SELECT count(DISTINCT datname) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND datname <> 'postgres'",
        "2",
    );
    c.sql("DROP DATABASE forced WITH (FORCE)");
    c.sql("DROP DATABASE plain");
    c.sql("DROP DATABASE fresh");
    // Nothing is due anywhere now: every worker leaves.
    c.wait_for(WORKERS_PER_DATABASE, "");
    // Let the launcher look at the databases a few times: no worker for a
    // dropped one, and no error loop in the log.
    let log_then = c.log().len();
    let launcher_runs = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask scheduler'";
    for _ in 0..3 {
        c.sql("SELECT pg_sleep(1)");
        assert_eq!(c.sql(launcher_runs), "1");
    }
    let since = &c.log()[log_then..];
    assert!(!since.contains("ERROR") && !since.contains("FATAL"), "{since}");
    assert_eq!(c.sql(WORKERS_PER_DATABASE), "");
}

#[test]
fn mtask_databases_limits_where_tasks_run() {
    let c = Cluster::start("mtask.databases = 'postgres'");
    c.sql("CREATE DATABASE other");
    c.sql("CREATE EXTENSION mtask");
    c.sql_in("other", "CREATE EXTENSION mtask");
    let warning = c.sql_stderr_in("other", "SELECT mtask.schedule_at('x', now(), 'SELECT 1')");
    assert!(warning.contains("mtask.databases does not include \"other\""), "{warning}");
    // Tasks run in postgres, none in other.
    c.sql("CREATE TABLE hits (n int); SELECT mtask.schedule_at('y', now(), 'INSERT INTO hits VALUES (1)')");
    c.wait_for("SELECT count(*) FROM hits", "1");
    assert_eq!(c.sql_in("other", "SELECT status FROM mtask.tasks WHERE name = 'x'"), "scheduled");
    assert_eq!(
        c.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND datname = 'other'"),
        "0"
    );
    // Added on reload, it gets its workers and its task runs.
    c.sql("ALTER SYSTEM SET mtask.databases = 'postgres, other'");
    c.sql("SELECT pg_reload_conf()");
    c.wait_for_in("other", "SELECT status FROM mtask.tasks WHERE name = 'x'", "done");
}

#[test]
fn a_standby_runs_nothing_and_its_promotion_carries_every_task_on_once() {
    let primary = Cluster::start("mtask.max_workers = 2");
    primary.sql(
        "CREATE EXTENSION mtask;
         CREATE TABLE hits (task bigint, at timestamptz DEFAULT clock_timestamp());
         SELECT mtask.schedule('tick', '200 ms', 'INSERT INTO hits (task) VALUES (0)');
         SELECT mtask.schedule('boot', '@reboot', 'INSERT INTO hits (task) VALUES (-1)')",
    );
    let standby = Cluster::standby_of(&primary, "");
    // One-shot tasks due over the next few seconds, each counting itself.
    primary.sql(
        "SELECT mtask.schedule_at('once ' || i, now() + i * interval '5 ms',
                                  format('INSERT INTO hits (task) VALUES (%s)', i))
         FROM generate_series(1, 600) i",
    );
    // The standby replays the primary's runs but runs nothing itself.
    standby.wait_for("SELECT count(*) > 0 FROM hits WHERE task > 0", "t");
    assert_eq!(standby.sql("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(standby.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'mtask%'"), "0");
    // The @reboot task came after the primary started, so it did not run
    // there; nor does it on the standby, which started after it came.
    assert_eq!(standby.sql("SELECT count(*) FROM hits WHERE task = -1"), "0");

    // The primary dies in the middle of the one-shot tasks.
    primary.wait_for("SELECT count(*) >= 100 FROM hits WHERE task > 0", "t");
    primary.stop("immediate");
    let ran_on_old: i64 = standby.sql("SELECT count(DISTINCT task) FROM hits WHERE task > 0").parse().unwrap();
    let ticks_before: i64 = standby.sql("SELECT run_count FROM mtask.tasks WHERE name = 'tick'").parse().unwrap();
    assert!(ran_on_old < 600, "every task ran before the primary stopped; the test proves nothing");

    let promoted = Instant::now();
    assert_eq!(standby.sql("SELECT pg_promote()"), "t");
    let promoted_at = standby.sql("SELECT now()");
    // Every one-shot task ran exactly once, on one primary or the other.
    standby.wait_for("SELECT count(*) FROM mtask.tasks WHERE name LIKE 'once %' AND status = 'done'", "600");
    assert_eq!(standby.sql("SELECT count(*), count(DISTINCT task) FROM hits WHERE task > 0"), "600|600");
    eprintln!(
        "{ran_on_old} one-shot tasks ran on the old primary; the rest within {:?} of pg_promote(); \
         the first run on the new primary started {} after promotion",
        promoted.elapsed(),
        standby.sql(&format!(
            "SELECT min(started_at) - '{promoted_at}' FROM mtask.runs WHERE started_at > '{promoted_at}'"
        ))
    );
    // And the recurring task goes on.
    standby.wait_for(&format!("SELECT run_count > {ticks_before} + 5 FROM mtask.tasks WHERE name = 'tick'"), "t");
    // The promoted standby ran the @reboot task once, as its first start as
    // a primary.
    standby.wait_for("SELECT count(*) FROM hits WHERE task = -1", "1");
    assert_eq!(standby.sql("SELECT status, next_run_at IS NULL FROM mtask.tasks WHERE name = 'boot'"), "scheduled|t");
}
