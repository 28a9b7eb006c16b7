-- The views: what became of each delivery, and what a DBA on call reads,
-- what is running and how each task is doing.

-- Each view shows its reader the rows that row-level security on the tables
-- shows it. From PostgreSQL 15 on, security_invoker has a view read its
-- tables as the reader. 14 has no such option, and a view reads as its
-- owner, who bypasses row-level security: there the view applies the
-- policies' test, `policy`, itself, behind a security barrier (so that no
-- function of the reader's sees the rows it leaves out). A view made on 14
-- stays so through pg_upgrade until the next ALTER EXTENSION UPDATE.
CREATE OR REPLACE FUNCTION mtask._create_view(name text, query text, policy text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %s WITH (security_invoker = true) AS %s', name, query);
    ELSE
        EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %s WITH (security_barrier = true) AS %s WHERE %s',
                                  name, query, policy);
    END IF;
END
$$;

-- What became of each delivery: one row per event and listener.
SELECT mtask._create_view('mtask.deliveries', $q$
SELECT e.id AS event_id, e.event, e.run_at, t.listener_id, t.owner, t.id AS task_id, t.status,
       t.run_count AS attempts, t.last_status, t.last_error, t.last_run_at
FROM mtask.tasks t JOIN mtask.events e ON e.id = t.event_id
$q$, $q$pg_catalog.pg_has_role(t.owner, 'MEMBER') AND pg_catalog.pg_has_role(e.owner, 'MEMBER')$q$);

-- The runs in progress now, transactional ones included, from shared
-- memory, where each worker (and each CALL mtask.run) puts its run: it
-- costs nothing while nobody looks. Row-level security on mtask.tasks
-- limits it to the tasks one may see.
SELECT mtask._create_view('mtask.running', $q$
SELECT r.task_id, t.name, t.owner, r.pid, r.started_at, r.attempt, r.scheduled_for, t.command,
       coalesce(t.database, pg_catalog.current_database()) AS database
FROM mtask._running() r
JOIN mtask.tasks t ON t.id = r.task_id
$q$, $q$pg_catalog.pg_has_role(t.owner, 'MEMBER')$q$);

-- One row per task: its counters, kept on the task row so that this costs
-- no scan of the history, and the 95th percentile of the durations of its
-- kept runs (at most its last 1,000), computed only when asked for.
SELECT mtask._create_view('mtask.task_stats', $q$
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
FROM mtask.tasks t
$q$, $q$pg_catalog.pg_has_role(t.owner, 'MEMBER')$q$);

-- mtask's scripts and mtask_cron's use it; no one else needs it.
REVOKE EXECUTE ON FUNCTION mtask._create_view(text, text, text) FROM PUBLIC;
