-- Who may do what. USAGE on schema mtask is the one grant a DBA gives: the
-- tables are open to PUBLIC behind it, and row-level security, not the
-- grant, decides whose rows a role reaches. Users write only the columns
-- that say what a task is and when it runs; the scheduler's bookkeeping
-- (counts, last run, retry state) is its own. Superusers, and so the
-- scheduler, bypass the policies, so its hot path pays nothing for them.

GRANT SELECT, DELETE ON mtask.tasks TO PUBLIC;
GRANT INSERT (name, owner, kind, schedule, timezone, command, command_type, status, remark, start_at,
              next_run_at, end_at, max_runs, missed, timeout, max_attempts, retry_delay, retry_max_delay,
              max_consecutive_failures, transactional, overlap, priority, payload, event_id, listener_id,
                            log_runs, history_max_age, history_max_per_task, database)
    ON mtask.tasks TO PUBLIC;
GRANT UPDATE (name, owner, kind, schedule, timezone, command, command_type, status, remark, start_at,
              next_run_at, end_at, max_runs, missed, timeout, max_attempts, retry_delay, retry_max_delay,
              max_consecutive_failures, transactional, overlap, priority, payload,
                            log_runs, history_max_age, history_max_per_task, manual_from, manual_next_run_at, database)
    ON mtask.tasks TO PUBLIC;
GRANT SELECT ON mtask.runs TO PUBLIC;
-- mtask.emit() runs as its caller and makes the deliveries. Linking a task
-- of one's own to an event gives no right: it still runs as its owner.
GRANT SELECT, DELETE ON mtask.listeners, mtask.events TO PUBLIC;
GRANT INSERT (event, handler, owner, max_attempts, retry_delay) ON mtask.listeners TO PUBLIC;
GRANT INSERT (event, payload, owner, run_at) ON mtask.events TO PUBLIC;
GRANT UPDATE (status, message) ON mtask.events TO PUBLIC;
GRANT SELECT ON mtask.deliveries, mtask.running, mtask.task_stats TO PUBLIC;

-- A member of a role may do anything that role may, so a member sees and
-- changes its tasks. A policy cannot be replaced in place, so each is made
-- anew.
ALTER TABLE mtask.tasks ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tasks_of_my_roles ON mtask.tasks;
CREATE POLICY tasks_of_my_roles ON mtask.tasks
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));

ALTER TABLE mtask.runs ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS runs_of_my_roles ON mtask.runs;
CREATE POLICY runs_of_my_roles ON mtask.runs FOR SELECT
    USING (EXISTS (SELECT 1 FROM mtask.tasks t
                   WHERE t.id = task_id AND pg_catalog.pg_has_role(t.owner, 'MEMBER')));

ALTER TABLE mtask.listeners ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS listeners_of_my_roles ON mtask.listeners;
CREATE POLICY listeners_of_my_roles ON mtask.listeners
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));

ALTER TABLE mtask.events ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS events_of_my_roles ON mtask.events;
CREATE POLICY events_of_my_roles ON mtask.events
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));
