//! The execution engine on a real server: wake on commit, the worker pool.

mod common;

use common::Cluster;
use std::time::Duration;

/// With mtask.naptime at its 60 s maximum, only a wake-up at commit can start
/// these tasks within the 30 s this test allows.
#[test]
fn committing_a_due_task_wakes_the_workers() {
    let c = Cluster::with_hits("mtask.naptime = '60s'");
    // Nothing is due: the worker that looked has left, and the launcher waits.
    c.wait_for("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker'", "0");
    c.sql("SELECT mtask.schedule_at('now', now(), $$INSERT INTO hits VALUES ('now')$$)");
    c.wait_for_within("postgres", Duration::from_secs(30), "SELECT count(*) FROM hits WHERE task = 'now'", "1");
    // A task due in two seconds: the wake-up sets the workers' sleep to it.
    c.sql("SELECT mtask.schedule_at('soon', now() + interval '2 seconds', $$INSERT INTO hits VALUES ('soon')$$)");
    c.wait_for_within("postgres", Duration::from_secs(30), "SELECT count(*) FROM hits WHERE task = 'soon'", "1");
    // A resumed task, and a plain UPDATE that moves a run to now, wake them too.
    c.sql("SELECT mtask.schedule_at('paused', now() + interval '1 day', $$INSERT INTO hits VALUES ('moved')$$)");
    c.sql("UPDATE mtask.tasks SET next_run_at = now() WHERE name = 'paused'");
    c.wait_for_within("postgres", Duration::from_secs(30), "SELECT count(*) FROM hits WHERE task = 'moved'", "1");
    // A rolled-back schedule runs nothing.
    c.sql("BEGIN; SELECT mtask.schedule_at('gone', now(), $$INSERT INTO hits VALUES ('gone')$$); ROLLBACK");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks WHERE name = 'gone'"), "0");
}

#[test]
fn a_long_task_does_not_hold_up_others() {
    let c = Cluster::with_hits("mtask.max_workers = 2");
    c.sql("SELECT mtask.schedule_at('long', now(), 'SELECT pg_sleep(3600)')");
    let long =
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'";
    c.wait_for(long, "1");
    c.sql("SELECT mtask.schedule('short', 'every 0.2 seconds', $$INSERT INTO hits VALUES ('short')$$)");
    c.wait_for("SELECT count(*) >= 3 FROM hits WHERE task = 'short'", "t");
    assert_eq!(c.sql(long), "1", "the long task is still running");
}

/// A worker locks the next few due tasks ahead of their turn once its runs
/// are quick. A run before a task's turn may still pause it, in the very
/// transaction that holds that lock: the paused task must not run. Each of
/// 10 groups has a pauser among quick tasks, so that some pauser is not the
/// last of the tasks one statement locked.
#[test]
fn a_task_paused_by_a_run_before_its_turn_does_not_run() {
    let c = Cluster::with_hits("mtask.max_workers = 1\nmtask.worker_idle_timeout = '1h'");
    // A worker whose plans are made: its first runs are slow.
    c.sql("SELECT mtask.schedule_at('warm' || n, now(), $$INSERT INTO hits VALUES ('warm')$$) FROM generate_series(1, 50) n");
    c.wait_for("SELECT count(*) FROM hits WHERE task = 'warm'", "50");
    c.sql(
        "SELECT mtask.schedule_at(name, now() + interval '1 second', command)
           FROM generate_series(1, 10) g,
                LATERAL (VALUES (1, 't' || g || '_1', $$INSERT INTO hits VALUES ('t')$$),
                                (2, 't' || g || '_2', $$INSERT INTO hits VALUES ('t')$$),
                                (3, 'pauser' || g, format($$SELECT mtask.pause(name) FROM mtask.tasks
                                                           WHERE name LIKE 'b%s\\_%%'$$, g)),
                                (4, 'b' || g || '_1', $$INSERT INTO hits VALUES ('b')$$),
                                (5, 'b' || g || '_2', $$INSERT INTO hits VALUES ('b')$$)) AS t (k, name, command)
          ORDER BY g, k",
    );
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name LIKE 'pauser%' AND status = 'done'", "10");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 't'"), "20");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks WHERE name LIKE 'b%' AND status = 'paused'"), "20");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'b'"), "0");
}

#[test]
fn when_the_pool_is_full_tasks_wait_in_due_order() {
    let c = Cluster::with_hits("mtask.max_workers = 2");
    c.sql(
        "SELECT mtask.schedule_at('long' || n, now(), 'SELECT pg_sleep(3600)') FROM generate_series(1, 2) n;
         SELECT mtask.schedule_at('second', now() + interval '0.2 seconds', $$INSERT INTO hits VALUES ('second')$$);
         SELECT mtask.schedule_at('first', now() + interval '0.1 seconds', $$INSERT INTO hits VALUES ('first')$$)",
    );
    let sleeping = "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
                    WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'";
    c.wait_for(
        &format!("SELECT count(*) FROM ({sleeping}) s WHERE string_agg IS NOT NULL AND string_agg LIKE '%,%'"),
        "1",
    );
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name IN ('first', 'second') AND next_run_at <= now()", "2");
    // Both workers are busy: the due tasks wait.
    assert_eq!(c.sql("SELECT count(*) FROM hits"), "0");
    // Freeing one worker runs them, oldest due first.
    let pid = c.sql(sleeping).split(',').next().unwrap().to_string();
    c.sql(&format!("SELECT pg_cancel_backend({pid})"));
    c.wait_for("SELECT string_agg(task, ',' ORDER BY at) FROM hits", "first,second");
}

#[test]
fn a_run_past_its_timeout_is_cancelled_and_the_pool_carries_on() {
    let c = Cluster::with_hits("mtask.default_timeout = '300ms'");
    c.sql("SELECT mtask.schedule_at('own', now(), 'SELECT pg_sleep(3600)', timeout => '0.5 seconds')");
    c.sql("SELECT mtask.schedule_at('default', now(), 'SELECT pg_sleep(3600)')");
    c.wait_for(
        "SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM mtask.tasks",
        "default:failed,own:failed",
    );
    assert_eq!(
        c.sql("SELECT string_agg(r.status || ':' || r.sqlstate, ',') FROM mtask.runs r"),
        "timeout:57014,timeout:57014"
    );
    assert_eq!(c.sql("SELECT string_agg(DISTINCT last_status, ',') FROM mtask.tasks"), "timeout");
    // Neither run stopped before its own limit.
    assert_eq!(
        c.sql("SELECT bool_and(finished_at - started_at >= CASE t.name WHEN 'own' THEN interval '0.5 s' ELSE interval '0.3 s' END)
               FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id"),
        "t"
    );
    // The workers are free again, and a timeout of 0 means none.
    c.sql("SELECT mtask.schedule_at('after', now(), $$SELECT pg_sleep(0.6); INSERT INTO hits VALUES ('after')$$, timeout => '0')");
    c.wait_for("SELECT count(*) FROM hits WHERE task = 'after'", "1");
}

#[test]
fn failed_runs_are_retried_with_their_attempt_numbers() {
    let c = Cluster::with_hits("");
    c.sql("CREATE SEQUENCE tries");
    // Fails on its first attempt only: nextval is not rolled back.
    c.sql(
        "SELECT mtask.schedule_at('flaky', now(), $$SELECT 1 / (nextval('tries') - 1)$$,
                                  max_attempts => 3, retry_delay => '0.1 seconds')",
    );
    c.sql("SELECT mtask.schedule_at('broken', now(), 'SELECT 1/0', max_attempts => 3, retry_delay => '0.1 seconds')");
    c.wait_for(
        "SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM mtask.tasks",
        "broken:failed,flaky:done",
    );
    let runs = |name: &str| {
        c.sql(&format!(
            "SELECT string_agg(r.attempt || ':' || r.status, ',' ORDER BY r.id), count(DISTINCT r.scheduled_for)
             FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = '{name}'"
        ))
    };
    assert_eq!(runs("flaky"), "1:failed,2:succeeded|1");
    assert_eq!(runs("broken"), "1:failed,2:failed,3:failed|1");
    // Each retry waited at least half its backoff: 0.05 s, then 0.1 s.
    assert_eq!(
        c.sql(
            "SELECT bool_and(gap >= interval '0.05 s') FROM (
                   SELECT r.started_at - lag(r.finished_at) OVER (ORDER BY r.id) AS gap
                   FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'broken') g"
        ),
        "t"
    );
}

#[test]
fn a_task_that_keeps_failing_is_paused_with_the_reason() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule('bad', 'every 0.1 seconds', 'SELECT 1/0', max_consecutive_failures => 3)");
    c.wait_for("SELECT status FROM mtask.tasks", "paused");
    assert_eq!(
        c.sql("SELECT run_count, consecutive_failures, pause_reason, last_error FROM mtask.tasks"),
        "3|3|paused after 3 failed runs in a row|division by zero"
    );
    // Resuming starts a new streak.
    c.sql("SELECT mtask.alter('bad', command => 'SELECT 1'); SELECT mtask.resume('bad')");
    assert_eq!(c.sql("SELECT status, consecutive_failures, pause_reason IS NULL FROM mtask.tasks"), "scheduled|0|t");
    c.wait_for("SELECT last_status FROM mtask.tasks", "succeeded");
}

#[test]
fn non_transactional_tasks_run_each_statement_top_level() {
    let c = Cluster::with_hits("");
    c.sql(
        "CREATE TABLE big AS SELECT g AS n FROM generate_series(1, 1000) g;
         CREATE PROCEDURE twice() LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO hits VALUES ('one'); COMMIT; INSERT INTO hits VALUES ('two'); END $$",
    );
    // Forced into a transaction, VACUUM refuses to run: the error says what
    // to do. (Left to decide, it runs top-level: tests/commands.rs.)
    c.sql("SELECT mtask.schedule_at('vacuum-tx', now(), 'VACUUM big', transactional => true)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'vacuum-tx'", "failed");
    let error = c.sql("SELECT sqlstate || ' ' || message FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'vacuum-tx'");
    assert!(error.starts_with("25001") && error.contains("transactional => false"), "{error}");

    c.sql(
        "SELECT mtask.schedule_at('maintenance', now(),
             'VACUUM (ANALYZE) big; CREATE INDEX CONCURRENTLY big_n ON big (n); CALL twice()',
             transactional => false)",
    );
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'maintenance'", "done");
    assert_eq!(c.sql("SELECT last_status FROM mtask.tasks WHERE name = 'maintenance'"), "succeeded");
    assert_eq!(c.sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_n'::regclass"), "t");
    // Waited for: before 15 the statistics reach other sessions through the
    // stats collector, a little later.
    c.wait_for("SELECT count(*) > 0 FROM pg_stat_user_tables WHERE relname = 'big' AND last_vacuum IS NOT NULL", "t");
    assert_eq!(c.sql("SELECT string_agg(task, ',' ORDER BY at) FROM hits"), "one,two");
}

#[test]
fn a_failing_non_transactional_task_keeps_what_committed_before_the_failure() {
    let c = Cluster::with_hits("");
    c.sql(
        "SELECT mtask.schedule_at('partial', now(),
             $$INSERT INTO hits VALUES ('before'); SELECT 1/0; INSERT INTO hits VALUES ('after')$$,
             transactional => false)",
    );
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'partial'", "failed");
    assert_eq!(c.sql("SELECT string_agg(task, ',') FROM hits"), "before");
    assert_eq!(c.sql("SELECT status, sqlstate, finished_at IS NOT NULL FROM mtask.runs"), "failed|22012|t");
}

#[test]
fn a_run_left_running_by_a_dead_worker_is_closed_as_crashed_and_rescheduled() {
    let c = Cluster::with_hits("");
    c.sql("CREATE SEQUENCE tries");
    // Sleeps an hour the first time only; nextval survives the kill.
    c.sql(
        "SELECT mtask.schedule_at('victim', now(),
             $$SELECT pg_sleep(CASE WHEN nextval('tries') = 1 THEN 3600 ELSE 0 END)$$, transactional => false)",
    );
    c.wait_for("SELECT status FROM mtask.runs", "running");
    assert_eq!(c.sql("SELECT status FROM mtask.tasks"), "running");
    let pid = c.sql("SELECT pid FROM mtask.runs");
    assert_eq!(c.sql(&format!("SELECT pg_terminate_backend({pid})")), "t");
    c.wait_for("SELECT status FROM mtask.tasks", "done");
    assert_eq!(
        c.sql("SELECT string_agg(status, ',' ORDER BY id), count(finished_at) FROM mtask.runs"),
        "crashed,succeeded|2"
    );
    assert_eq!(c.sql("SELECT last_status, run_count FROM mtask.tasks"), "succeeded|1");
}

#[test]
fn a_slot_that_comes_during_a_run_is_skipped_or_queued() {
    let c = Cluster::with_hits("mtask.max_workers = 2");
    for overlap in ["skip", "queue"] {
        c.sql(&format!(
            "SELECT mtask.schedule('{overlap}', 'every 0.5 seconds', 'SELECT pg_sleep(1.2)', overlap => '{overlap}')"
        ));
    }
    c.wait_for("SELECT bool_and(run_count >= 3) FROM mtask.tasks", "t");
    // Consecutive runs of each task, as (previous, next) pairs.
    let pairs = |name: &str, condition: &str| {
        c.sql(&format!(
            "SELECT bool_and({condition}), count(*) >= 2 FROM (
                 SELECT lag(r.started_at) OVER w AS prev_started, lag(r.finished_at) OVER w AS prev_finished,
                        r.started_at, r.scheduled_for
                 FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = '{name}'
                 WINDOW w AS (ORDER BY r.id)) p
             WHERE prev_started IS NOT NULL"
        ))
    };
    // Never two runs of a task at once.
    assert_eq!(pairs("skip", "started_at >= prev_finished"), "t|t");
    assert_eq!(pairs("queue", "started_at >= prev_finished"), "t|t");
    // skip: the next run is for a slot after the previous run ended.
    assert_eq!(pairs("skip", "scheduled_for > prev_started + interval '1.2 s'"), "t|t");
    // queue: the next run is for a slot that came while the previous ran.
    assert_eq!(pairs("queue", "scheduled_for <= prev_finished"), "t|t");
}

#[test]
fn priority_breaks_ties_between_tasks_due_together() {
    let c = Cluster::with_hits("mtask.max_workers = 1");
    c.sql("SELECT mtask.schedule_at('long', now(), 'SELECT pg_sleep(3600)')");
    let running =
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%pg_sleep(3600)%'";
    c.wait_for(&format!("SELECT count(*) FROM ({running}) r"), "1");
    c.sql(
        "INSERT INTO mtask.tasks (name, command, start_at, priority)
         SELECT name, format('INSERT INTO hits VALUES (%L)', name), now(), priority
         FROM (VALUES ('low', -1), ('normal', 0), ('high', 5)) v(name, priority)",
    );
    c.sql(&format!("SELECT pg_cancel_backend(({running}))"));
    c.wait_for("SELECT string_agg(task, ',' ORDER BY at) FROM hits", "high,normal,low");
}

/// A failure at commit, outside every task's subtransaction, while quick
/// tasks share transactions: it is pinned on its task, and every other task
/// still runs exactly once.
#[test]
fn a_failure_at_commit_is_pinned_on_its_task() {
    let c = Cluster::with_hits("mtask.enabled = off\nmtask.max_workers = 1");
    c.sql(
        "CREATE TABLE parent (id int PRIMARY KEY);
         CREATE TABLE child (parent int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);
         INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'good' || n, format('INSERT INTO hits VALUES (%L)', n), now() FROM generate_series(1, 10) n;
         INSERT INTO mtask.tasks (name, command, start_at) VALUES ('bad', 'INSERT INTO child VALUES (42)', now());
         INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'good' || n, format('INSERT INTO hits VALUES (%L)', n), now() FROM generate_series(11, 20) n",
    );
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status IN ('done', 'failed')", "21");
    assert_eq!(c.sql("SELECT status, last_status, run_count FROM mtask.tasks WHERE name = 'bad'"), "failed|failed|1");
    assert_eq!(
        c.sql("SELECT sqlstate FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'bad'"),
        "23503"
    );
    assert_eq!(c.sql("SELECT count(*), count(DISTINCT task) FROM hits"), "20|20");
    assert_eq!(c.sql("SELECT count(*), count(DISTINCT task_id) FROM mtask.runs WHERE status = 'succeeded'"), "20|20");
    assert_eq!(c.sql("SELECT count(*) FROM child"), "0");
}

/// A top-level task runs only as the first of a step: met in the middle of
/// a batch of quick tasks, it ends the batch and runs next, top-level.
#[test]
fn a_top_level_task_among_quick_ones_runs_top_level_and_each_task_once() {
    let c = Cluster::with_hits("mtask.enabled = off\nmtask.max_workers = 1");
    c.sql(
        "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'quick' || n, format('INSERT INTO hits VALUES (%L)', n), now() - interval '1 minute' + n * interval '1 ms'
         FROM generate_series(1, 20) n;
         INSERT INTO mtask.tasks (name, command, start_at)
         VALUES ('vacuum', 'VACUUM hits; INSERT INTO hits VALUES (''vacuum'')', now() - interval '1 minute' + interval '1.5 ms')",
    );
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status = 'done'", "21");
    assert_eq!(
        c.sql("SELECT r.status, r.top_level FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'vacuum'"),
        "succeeded|t"
    );
    assert_eq!(c.sql("SELECT count(*), count(DISTINCT task) FROM hits"), "21|21");
}

/// A worker finds its candidates 256 at a time, unlocked, and claims each by
/// id: when every one of them is locked elsewhere, it looks past them.
#[test]
fn a_due_task_behind_more_locked_ones_than_one_walk_finds_still_runs() {
    let c = Cluster::with_hits("mtask.enabled = off\nmtask.max_workers = 1");
    c.sql(
        "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'locked' || n, $$INSERT INTO hits VALUES ('locked')$$, now() - interval '1 hour'
         FROM generate_series(1, 300) n;
         INSERT INTO mtask.tasks (name, command, start_at) VALUES ('free', $$INSERT INTO hits VALUES ('free')$$, now())",
    );
    let locks = c.hold("SELECT count(*) FROM (SELECT FROM mtask.tasks WHERE name LIKE 'locked%' FOR UPDATE) l");
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM hits WHERE task = 'free'", "1");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'locked'"), "0");
    locks.release();
    // Once the locks go, the others run, each once.
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status = 'done'", "301");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'locked'"), "300");
}

/// Every run rewrites its task's row; the workers vacuum the tasks table
/// themselves every 10,000 runs each, well before autovacuum would.
#[test]
fn busy_workers_vacuum_the_tasks_table() {
    let c = Cluster::with_hits("mtask.enabled = off\nmtask.max_workers = 1\nautovacuum = off");
    c.sql(
        "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'n' || n, 'SELECT 1', now() FROM generate_series(1, 10500) n",
    );
    assert_eq!(c.sql("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'tasks'"), "0");
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status = 'done'", "10500");
    c.wait_for("SELECT vacuum_count > 0 FROM pg_stat_user_tables WHERE relname = 'tasks'", "t");
}

/// Tasks found due by the first worker of a database, all at once, get the
/// pool's second worker too, though nothing commits meanwhile to wake the
/// launcher: the first worker stays busy from its first step on. (The
/// launcher once slept a minute there, and a drain ran on one worker.)
#[test]
fn due_tasks_found_by_a_new_worker_get_the_pools_other_worker() {
    let c = Cluster::with_hits("mtask.enabled = off\nmtask.max_workers = 2");
    c.sql(
        "CREATE TABLE go ();
         INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 'held' || n, $o$DO $d$ BEGIN WHILE NOT EXISTS (SELECT FROM go) LOOP PERFORM pg_sleep(0.01); END LOOP; END $d$$o$, now()
         FROM generate_series(1, 2) n",
    );
    c.enable_mtask();
    c.wait_for_within(
        "postgres",
        std::time::Duration::from_secs(20),
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND query LIKE '%FROM go%'",
        "2",
    );
    c.sql("INSERT INTO go DEFAULT VALUES");
    c.wait_for("SELECT count(DISTINCT pid) FROM mtask.runs WHERE status = 'succeeded'", "2");
}

/// The plans auto_explain logged of statements whose text has `marker`,
/// each as its lines (the query text first).
fn logged_plans<'a>(log: &'a str, marker: &str) -> Vec<Vec<&'a str>> {
    log.split("  plan:\n")
        .skip(1)
        // The entry's own lines are indented; the next log line is not.
        .map(|entry| entry.lines().take_while(|l| l.starts_with('\t')).collect::<Vec<_>>())
        .filter(|plan| plan.iter().take_while(|l| !l.contains("(cost=")).any(|l| l.contains(marker)))
        .collect()
}

/// The most rows that a scan of mtask.tasks or mtask.runs read in any plan
/// of the record statement that auto_explain logged: those it gave and
/// those its filter removed.
fn largest_scan_in_record_plans(log: &str) -> f64 {
    let mut largest: f64 = 0.0;
    for plan in logged_plans(log, "FROM unnest(") {
        for (i, line) in plan.iter().enumerate().filter(|(_, l)| l.contains(" on tasks ") || l.contains(" on runs ")) {
            // PostgreSQL 18 gives rows with decimals ("rows=64.00").
            let rows = line.split("actual rows=").nth(1).and_then(|r| r.split(' ').next()).map(str::parse::<f64>);
            let rows = rows.and_then(Result::ok).expect("an analyzed scan");
            // The scan's own detail lines, up to the next node.
            let removed: f64 = plan[i + 1..]
                .iter()
                .take_while(|l| !l.contains("(cost="))
                .filter_map(|l| l.split("Rows Removed by Filter: ").nth(1))
                .map(|n| n.trim().parse::<f64>().expect("a count of rows"))
                .sum();
            largest = largest.max(rows + removed);
        }
    }
    largest
}

/// Sets mtask going, waits for `tasks` runs' hits, and checks that no
/// record statement read more of a table than its batch's rows.
fn assert_records_read_only_their_tasks(c: &Cluster, tasks: u32) {
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM hits", &tasks.to_string());
    // A batch holds at most 64 tasks, each with a version or two in the
    // primary key; a scan of the whole table reads every task.
    let largest = largest_scan_in_record_plans(&c.log());
    assert!(largest > 0.0, "no plan of the record statement was logged");
    assert!(largest <= 256.0, "a plan of the record statement scanned {largest} rows of a table");
}

/// A cluster whose statements' plans auto_explain logs (with `extra` in
/// its postgresql.conf), autovacuum and mtask off, and `tasks` tasks due,
/// each inserting 1 into `hits (n int)`: mtask.enabled on sets them going.
fn explained_with_due_tasks(extra: &str, tasks: u32) -> Cluster {
    let c = Cluster::start_with(&format!(
        "shared_preload_libraries = 'mtask,auto_explain'
         auto_explain.log_min_duration = 0
         auto_explain.log_analyze = on
         auto_explain.log_timing = off
         autovacuum = off
         mtask.enabled = off
         {extra}"
    ));
    c.sql("CREATE EXTENSION mtask; CREATE TABLE hits (n int)");
    insert_due_tasks(&c, "t", tasks);
    c
}

/// `tasks` tasks named `prefix` and a number, due now, each inserting 1
/// into `hits`.
fn insert_due_tasks(c: &Cluster, prefix: &str, tasks: u32) {
    c.sql(&format!(
        "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT '{prefix}' || i, 'INSERT INTO hits VALUES (1)', now() FROM generate_series(1, {tasks}) i"
    ));
}

#[test]
fn the_record_of_a_batch_reads_only_its_tasks_when_statistics_say_the_tables_are_empty() {
    // A VACUUM that runs during a bulk INSERT of tasks leaves pg_class
    // saying "no rows" over the pages it saw, as set here by hand. Planned
    // on that, the record statement hashed every task, for each batch.
    let c = explained_with_due_tasks("", 3000);
    c.sql(
        "UPDATE pg_class SET reltuples = 0, relpages = pg_relation_size(oid) / current_setting('block_size')::int
         WHERE oid IN ('mtask.tasks'::regclass, 'mtask.runs'::regclass)",
    );
    assert_records_read_only_their_tasks(&c, 3000);
}

/// A worker plans its record statement once, on the table as it is then,
/// and keeps the plan. Planned while the table held a few tasks, reading
/// it whole looked cheaper than probing its key for each of a batch's
/// tasks, and stayed so for the burst that came next: the record statement
/// scanned every task twice a batch, testing each against every id of the
/// batch, a tenth of the workers' CPU.
#[test]
fn the_record_of_a_batch_reads_only_its_tasks_when_planned_on_a_small_table() {
    // A worker that stayed, so that the plan it made for the first ten
    // tasks is the one that records the burst.
    let c = explained_with_due_tasks("mtask.worker_idle_timeout = '1h'", 10);
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM hits", "10");
    insert_due_tasks(&c, "burst", 1000);
    assert_records_read_only_their_tasks(&c, 1010);
}

/// A walk of the due tasks follows tasks_due_idx in its order and stops at
/// its limit, whatever the statistics say. Planned on those a bulk INSERT
/// of tasks leaves (the worker's own writes never reached them), it was a
/// bitmap scan and a sort: each walk read every row version the index
/// still listed, those of the tasks already done included (a bitmap scan
/// marks none dead), so that it cost more with every run until a vacuum.
#[test]
fn the_walk_of_due_tasks_follows_the_due_index_whatever_the_statistics_say() {
    let c = explained_with_due_tasks("mtask.max_workers = 1", 3000);
    c.enable_mtask();
    c.wait_for("SELECT count(*) FROM hits", "3000");
    c.sql("SELECT mtask.schedule_at('after', now(), 'INSERT INTO hits VALUES (2)')");
    c.wait_for("SELECT count(*) FROM hits WHERE n = 2", "1");
    let log = c.log();
    let walks = logged_plans(&log, "ORDER BY next_run_at, priority DESC, id LIMIT");
    assert!(walks.len() >= 2, "too few walks were logged: {}", walks.len());
    for plan in walks {
        let plan = plan.join("\n");
        assert!(plan.contains("Index Scan using tasks_due_idx on tasks"), "a walk not in index order:\n{plan}");
        // A sort or a bitmap scan anywhere in it, or JIT (a sign that the
        // planner found only paths it was told not to take).
        for unwanted in ["Sort Key", "Bitmap", "JIT:"] {
            assert!(!plan.contains(unwanted), "a walk with {unwanted}:\n{plan}");
        }
    }
}

/// The worker's anonymous (private) resident memory, in kB.
fn rss_anon_kb(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the worker is running");
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("Linux reports RssAnon");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse().ok()).expect("RssAnon in kB")
}

/// A worker gives back the memory of the large blocks its tasks free. By
/// default glibc raises its mmap threshold to the size of the first large
/// block freed and serves the next ones from the heap, which keeps them
/// resident: a plain backend that builds a 20 MB string and then a 10 MB
/// one holds about 10 MB more afterwards. So did a long-lived worker after
/// its VACUUMs of the history, whose memory grew in steps.
#[test]
fn a_worker_gives_back_the_memory_of_the_large_blocks_its_tasks_free() {
    let c = Cluster::with_mtask("mtask.max_workers = 1\nmtask.worker_idle_timeout = '10min'");
    c.sql("SELECT mtask.schedule_at('warm', now(), 'SELECT 1')");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'warm'", "done");
    let pid = c.worker_pids();
    let before = rss_anon_kb(&pid);
    for (name, bytes) in [("big", 20_000_000), ("mid", 10_000_000)] {
        c.sql(&format!("SELECT mtask.schedule_at('{name}', now(), 'SELECT length(repeat(''x'', {bytes}))')"));
        c.wait_for(&format!("SELECT status FROM mtask.tasks WHERE name = '{name}'"), "done");
    }
    // The run is visible a moment before its memory is freed.
    let start = std::time::Instant::now();
    let mut after = rss_anon_kb(&pid);
    while after >= before + 5_000 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        after = rss_anon_kb(&pid);
    }
    assert_eq!(c.worker_pids(), pid, "one worker ran every task");
    assert!(after < before + 5_000, "the worker kept {} kB of freed blocks ({before} -> {after} kB)", after - before);
}
