-- What a DBA on call reads: what is running, and how each task is doing.

-- The runs in progress now, transactional ones included, from shared
-- memory, where each worker (and each CALL mtask.run) puts its run: it
-- costs nothing while nobody looks. Row-level security on mtask.tasks
-- limits it to the tasks one may see.
CREATE OR REPLACE VIEW mtask.running WITH (security_invoker = true) AS
SELECT r.task_id, t.name, t.owner, r.pid, r.started_at, r.attempt, r.scheduled_for, t.command,
       coalesce(t.database, pg_catalog.current_database()) AS database
FROM mtask._running() r
JOIN mtask.tasks t ON t.id = r.task_id;

-- One row per task: its counters, kept on the task row so that this costs
-- no scan of the history, and the 95th percentile of the durations of its
-- kept runs (at most its last 1,000), computed only when asked for.
CREATE OR REPLACE VIEW mtask.task_stats WITH (security_invoker = true) AS
SELECT t.id AS task_id, t.name, t.owner, t.status,
       t.run_count + t.crash_count AS runs,
       t.success_count AS succeeded,
       t.failure_count AS failed,
       t.timeout_count AS timed_out,
       t.crash_count AS crashed,
       t.last_success_at, t.last_failure_at, t.last_duration,
       CASE WHEN t.run_count > 0 THEN t.total_duration / t.run_count END AS mean_duration,
       (SELECT pg_catalog.percentile_cont(0.95) WITHIN GROUP (ORDER BY k.finished_at - k.started_at)
        FROM (SELECT r.started_at, r.finished_at FROM mtask.runs r
              WHERE r.task_id = t.id AND r.status IN ('succeeded', 'failed', 'timeout')
              ORDER BY r.id DESC LIMIT 1000) k) AS p95_duration,
       t.next_run_at
FROM mtask.tasks t;
