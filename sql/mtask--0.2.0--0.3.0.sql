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

-- Program tasks: command_type 'program' runs an executable with its
-- arguments, without a shell, and keeps its exit code and output. Like COPY
-- ... PROGRAM it acts as the server's OS user, so only superusers and roles
-- with the privileges of pg_execute_server_program may own one. The
-- command type is checked by trigger rather than by CHECK, like the options
-- of 0.2.0, since a CHECK is re-read on every write of the table.
ALTER TABLE mtask.tasks DROP CONSTRAINT tasks_command_type_check;
COMMENT ON COLUMN mtask.tasks.command_type IS 'sql: SQL run as the owner; program: an executable and its arguments, run without a shell.';

ALTER TABLE mtask.runs
    ADD COLUMN exit_code int,
    ADD COLUMN stdout text,
    ADD COLUMN stderr text;
COMMENT ON COLUMN mtask.runs.stdout IS 'A program''s output, up to mtask.program_output_limit bytes; stderr likewise.';

CREATE OR REPLACE FUNCTION mtask._check_program(command text) RETURNS void
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'check_program_wrapper';

CREATE FUNCTION mtask.tasks_check_command() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.command_type IS NULL OR NEW.command_type NOT IN ('sql', 'program') THEN
        RAISE EXCEPTION 'invalid command type "%" for task "%"', NEW.command_type, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''sql'' (the default) or ''program'' (an executable and its arguments, run without a shell).';
    END IF;
    IF NEW.command_type = 'program' THEN
        IF NOT pg_catalog.pg_has_role(NEW.owner, 'pg_execute_server_program', 'USAGE') THEN
            RAISE EXCEPTION 'permission denied to run programs as %', NEW.owner
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Only superusers and roles with the privileges of pg_execute_server_program may own program tasks, as with COPY ... PROGRAM.';
        END IF;
        PERFORM mtask._check_program(NEW.command);
        -- What a program does cannot be rolled back: it runs outside a
        -- transaction, at least once, as a non-transactional task does.
        NEW.transactional := false;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_check_command
    BEFORE INSERT OR UPDATE OF command_type, command, owner, transactional ON mtask.tasks
    FOR EACH ROW EXECUTE FUNCTION mtask.tasks_check_command();

-- Bounded history: which runs a task records, and how long and how many of
-- them are kept. NULL: the settings mtask.log_runs, mtask.history_max_age
-- and mtask.history_max_per_task. The scheduler purges in small batches.
ALTER TABLE mtask.tasks
    ADD COLUMN log_runs text,
    ADD COLUMN history_max_age interval,
    ADD COLUMN history_max_per_task int;
GRANT INSERT (log_runs, history_max_age, history_max_per_task),
      UPDATE (log_runs, history_max_age, history_max_per_task) ON mtask.tasks TO PUBLIC;
COMMENT ON COLUMN mtask.tasks.log_runs IS 'Which runs are recorded: all, failures or none; NULL: mtask.log_runs.';
COMMENT ON COLUMN mtask.tasks.history_max_age IS 'Runs older than this are purged; 0: kept for ever; NULL: mtask.history_max_age.';
COMMENT ON COLUMN mtask.tasks.history_max_per_task IS 'Only this many latest runs are kept; 0: all; NULL: mtask.history_max_per_task.';

CREATE FUNCTION mtask.tasks_check_history() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.log_runs NOT IN ('all', 'failures', 'none') THEN
        RAISE EXCEPTION 'invalid log_runs "%" for task "%"', NEW.log_runs, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''all'', ''failures'' or ''none'', or NULL for mtask.log_runs.';
    END IF;
    IF NEW.history_max_age < interval '0' OR NEW.history_max_per_task < 0 THEN
        RAISE EXCEPTION 'history_max_age and history_max_per_task of task "%" must not be negative', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give 0 to keep the history without that limit, or NULL for the setting.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_check_history
    BEFORE INSERT OR UPDATE OF log_runs, history_max_age, history_max_per_task ON mtask.tasks
    FOR EACH ROW EXECUTE FUNCTION mtask.tasks_check_history();

-- The API takes command_type and the history options; the functions are
-- otherwise as in 0.2.0.
DROP FUNCTION mtask.schedule(text, text, text, timestamptz, text, text, timestamptz, bigint, text, interval, int, interval, int, boolean, text, int);

CREATE FUNCTION mtask.schedule(
    name text,
    schedule text,
    command text,
    start_at timestamptz DEFAULT now(),
    remark text DEFAULT NULL,
    timezone text DEFAULT NULL,
    end_at timestamptz DEFAULT NULL,
    max_runs bigint DEFAULT NULL,
    missed text DEFAULT 'once',
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT 1,
    retry_delay interval DEFAULT '10 seconds',
    max_consecutive_failures int DEFAULT NULL,
    transactional boolean DEFAULT true,
    overlap text DEFAULT 'skip',
    priority int DEFAULT 0,
    command_type text DEFAULT 'sql',
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF schedule IS NULL THEN
        RAISE EXCEPTION 'a recurring task needs a schedule'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give an interval such as ''10 seconds'', or use mtask.schedule_at for a one-shot task.';
    END IF;
    INSERT INTO mtask.tasks (name, kind, schedule, command, start_at, remark, timezone, end_at, max_runs, missed,
                             timeout, max_attempts, retry_delay, max_consecutive_failures, transactional,
                             overlap, priority, command_type, log_runs, history_max_age, history_max_per_task)
    VALUES ($1, 'recurring', $2, $3, coalesce($4, now()), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

DROP FUNCTION mtask.schedule_at(text, timestamptz, text, text, text, interval, int, interval, boolean, int);

CREATE FUNCTION mtask.schedule_at(
    name text,
    run_at timestamptz,
    command text,
    remark text DEFAULT NULL,
    missed text DEFAULT 'once',
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT 1,
    retry_delay interval DEFAULT '10 seconds',
    transactional boolean DEFAULT true,
    priority int DEFAULT 0,
    command_type text DEFAULT 'sql',
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id bigint;
BEGIN
    IF run_at IS NULL THEN
        RAISE EXCEPTION 'a one-shot task needs a run time'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use now() to run it as soon as possible.';
    END IF;
    INSERT INTO mtask.tasks (name, kind, command, start_at, remark, missed, timeout, max_attempts, retry_delay,
                             transactional, priority, command_type, log_runs, history_max_age, history_max_per_task)
    VALUES ($1, 'once', $3, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

-- alter() as in 0.2.0, with command_type.
DROP FUNCTION mtask.alter(text, text, text, timestamptz, timestamptz, bigint, text, text, text, interval, int, interval,
                          interval, int, boolean, text, int);
DROP FUNCTION mtask.alter(bigint, text, text, timestamptz, timestamptz, bigint, text, text, text, interval, int, interval,
                          interval, int, boolean, text, int);

CREATE FUNCTION mtask.alter(
    task_id bigint,
    schedule text DEFAULT NULL,
    command text DEFAULT NULL,
    start_at timestamptz DEFAULT NULL,
    end_at timestamptz DEFAULT NULL,
    max_runs bigint DEFAULT NULL,
    missed text DEFAULT NULL,
    timezone text DEFAULT NULL,
    remark text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT NULL,
    retry_delay interval DEFAULT NULL,
    retry_max_delay interval DEFAULT NULL,
    max_consecutive_failures int DEFAULT NULL,
    transactional boolean DEFAULT NULL,
    overlap text DEFAULT NULL,
    priority int DEFAULT NULL,
    command_type text DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL
) RETURNS mtask.tasks
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    altered mtask.tasks;
BEGIN
    UPDATE mtask.tasks t SET
        kind     = CASE WHEN $2 IS NULL THEN t.kind ELSE 'recurring' END,
        schedule = coalesce($2, t.schedule),
        command  = coalesce($3, t.command),
        start_at = coalesce($4, t.start_at),
        end_at   = coalesce($5, t.end_at),
        max_runs = coalesce($6, t.max_runs),
        missed   = coalesce($7, t.missed),
        timezone = coalesce($8, t.timezone),
        remark   = coalesce($9, t.remark),
        timeout  = coalesce($10, t.timeout),
        max_attempts    = coalesce($11, t.max_attempts),
        retry_delay     = coalesce($12, t.retry_delay),
        retry_max_delay = coalesce($13, t.retry_max_delay),
        max_consecutive_failures = coalesce($14, t.max_consecutive_failures),
        transactional = coalesce($15, t.transactional),
        overlap  = coalesce($16, t.overlap),
        priority = coalesce($17, t.priority),
        command_type = coalesce($18, t.command_type),
        log_runs = coalesce($19, t.log_runs),
        history_max_age = coalesce($20, t.history_max_age),
        history_max_per_task = coalesce($21, t.history_max_per_task)
    WHERE t.id = $1
    RETURNING t.* INTO altered;
    IF NOT FOUND THEN
        PERFORM mtask._task_status($1);  -- raises: no such task
    END IF;
    PERFORM mtask._check_scheduler();
    RETURN altered;
END
$$;

CREATE FUNCTION mtask.alter(
    task_name text,
    schedule text DEFAULT NULL,
    command text DEFAULT NULL,
    start_at timestamptz DEFAULT NULL,
    end_at timestamptz DEFAULT NULL,
    max_runs bigint DEFAULT NULL,
    missed text DEFAULT NULL,
    timezone text DEFAULT NULL,
    remark text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT NULL,
    retry_delay interval DEFAULT NULL,
    retry_max_delay interval DEFAULT NULL,
    max_consecutive_failures int DEFAULT NULL,
    transactional boolean DEFAULT NULL,
    overlap text DEFAULT NULL,
    priority int DEFAULT NULL,
    command_type text DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL
) RETURNS mtask.tasks
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.alter(mtask._task_id($1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) $$;
