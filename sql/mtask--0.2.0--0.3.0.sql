-- mtask 0.2.0 -> 0.3.0: mtask for ordinary roles. A role with USAGE on
-- schema mtask may schedule tasks, which run as that role; row-level
-- security shows each role only the tasks, and the runs, of roles it is a
-- member of, for the API and plain DML alike.
--
-- A new installation runs sql/schema.sql and then each upgrade script in
-- order, exactly as an upgrade does.

-- USAGE on the schema is the one grant a DBA gives: the tables are open to
-- PUBLIC behind it, and row-level security, not the grant, decides whose rows.
-- Users write only the columns that say what a task is and when it runs; the
-- scheduler's bookkeeping (counts, last run, retry state) is its own.
GRANT SELECT, DELETE ON mtask.tasks TO PUBLIC;
GRANT INSERT (name, owner, kind, schedule, timezone, command, command_type, status, remark, start_at,
              next_run_at, end_at, max_runs, missed, timeout, max_attempts, retry_delay, retry_max_delay,
              max_consecutive_failures, transactional, overlap, priority)
    ON mtask.tasks TO PUBLIC;
GRANT UPDATE (name, owner, kind, schedule, timezone, command, command_type, status, remark, start_at,
              next_run_at, end_at, max_runs, missed, timeout, max_attempts, retry_delay, retry_max_delay,
              max_consecutive_failures, transactional, overlap, priority)
    ON mtask.tasks TO PUBLIC;
GRANT SELECT ON mtask.runs TO PUBLIC;

-- A member of a role may do anything that role may, so a member sees and
-- changes its tasks. Superusers, and the scheduler, bypass these policies.
ALTER TABLE mtask.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tasks_of_my_roles ON mtask.tasks
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));

ALTER TABLE mtask.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY runs_of_my_roles ON mtask.runs FOR SELECT
    USING (EXISTS (SELECT 1 FROM mtask.tasks t
                   WHERE t.id = task_id AND pg_catalog.pg_has_role(t.owner, 'MEMBER')));

-- Users move a task between 'scheduled' and 'paused'; every other status is
-- the scheduler's to set. The WHEN clause keeps the scheduler's own status
-- changes, and a superuser's, off PL/pgSQL.
CREATE FUNCTION mtask.tasks_check_status() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'task "%" cannot be set from ''%'' to ''%''', NEW.name, OLD.status, NEW.status
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Use mtask.pause() and mtask.resume(); only the scheduler sets a task running, done or failed.';
END
$$;

CREATE TRIGGER tasks_check_status
    BEFORE UPDATE OF status ON mtask.tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND (OLD.status NOT IN ('scheduled', 'paused') OR NEW.status NOT IN ('scheduled', 'paused'))
                       AND NOT pg_catalog.current_setting('is_superuser')::boolean)
    EXECUTE FUNCTION mtask.tasks_check_status();

COMMENT ON COLUMN mtask.tasks.owner IS 'The role the task runs as; only its members (and superusers) see or change the task.';
