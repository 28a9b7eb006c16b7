-- mtask 0.1.0 -> 0.2.0: a task's window (end_at) and run limit (max_runs),
-- the missed-run policy, fixed-delay schedules ('after 10 minutes'),
-- mtask.alter(), 'skipped' runs that say which slots did not run, timeouts,
-- retries with backoff, pausing after repeated failures, and waking the
-- worker pool when a due task commits.
--
-- A new installation runs sql/schema.sql and then this file, exactly as an
-- upgrade does, so the two cannot drift apart.

ALTER TABLE mtask.tasks
    ADD COLUMN end_at   timestamptz,
    ADD COLUMN max_runs bigint,
    ADD COLUMN missed   text NOT NULL DEFAULT 'once';

ALTER TABLE mtask.tasks
    ADD COLUMN timeout                  interval,
    ADD COLUMN max_attempts             int NOT NULL DEFAULT 1,
    ADD COLUMN retry_delay              interval NOT NULL DEFAULT '10 seconds',
    ADD COLUMN retry_max_delay          interval NOT NULL DEFAULT '1 hour',
    ADD COLUMN max_consecutive_failures int,
    ADD COLUMN attempt                  int NOT NULL DEFAULT 1,
    ADD COLUMN retry_slot               timestamptz,
    ADD COLUMN consecutive_failures     int NOT NULL DEFAULT 0,
    ADD COLUMN pause_reason             text,
    ADD COLUMN transactional            boolean NOT NULL DEFAULT true,
    ADD COLUMN overlap                  text NOT NULL DEFAULT 'skip',
    ADD COLUMN priority                 int NOT NULL DEFAULT 0,
    DROP CONSTRAINT tasks_last_status_check,
    ADD CONSTRAINT tasks_last_status_check CHECK (last_status IN ('succeeded', 'failed', 'timeout', 'crashed'));

COMMENT ON COLUMN mtask.tasks.overlap IS 'A slot that comes while the task still runs: skip it, or queue one run right after.';
COMMENT ON COLUMN mtask.tasks.priority IS 'Among tasks due at the same instant, higher runs first.';

-- The claim orders by due time, then priority: one index walk, no sort.
DROP INDEX mtask.tasks_due_idx;
CREATE INDEX tasks_due_idx ON mtask.tasks (next_run_at, priority DESC, id) WHERE status = 'scheduled';

COMMENT ON COLUMN mtask.tasks.transactional IS 'false: each statement runs top-level in its own transaction (VACUUM, CREATE INDEX CONCURRENTLY, CALL with COMMIT); at-least-once.';

COMMENT ON COLUMN mtask.tasks.timeout IS 'A run past this is cancelled (status timeout); NULL: mtask.default_timeout; 0: none.';
COMMENT ON COLUMN mtask.tasks.max_attempts IS 'Runs per slot, retries included; 1: no retry.';
COMMENT ON COLUMN mtask.tasks.retry_delay IS 'Delay before the first retry; it doubles per retry, with jitter, up to retry_max_delay.';
COMMENT ON COLUMN mtask.tasks.max_consecutive_failures IS 'Pause the task after this many failed runs in a row; NULL: never.';
COMMENT ON COLUMN mtask.tasks.attempt IS 'The attempt number of the next run.';
COMMENT ON COLUMN mtask.tasks.retry_slot IS 'The slot the next run retries; NULL when it is not a retry.';
COMMENT ON COLUMN mtask.tasks.end_at IS 'No run starts after this instant; NULL: no end.';
COMMENT ON COLUMN mtask.tasks.max_runs IS 'The task is done after this many runs; NULL: no limit.';
COMMENT ON COLUMN mtask.tasks.missed IS 'After downtime or a pause: once (one catch-up run), skip, or all (up to mtask.max_catchup).';

-- A 'skipped' run is a record of slots that passed without a run, so that a
-- DBA can tell "did not run" from "was never due".
ALTER TABLE mtask.runs
    ADD COLUMN scheduled_for timestamptz,
    ADD COLUMN attempt int,
    ADD COLUMN pid int,
    ADD COLUMN backend_start timestamptz,
    ALTER COLUMN finished_at DROP NOT NULL,
    DROP CONSTRAINT runs_status_check,
    ADD CONSTRAINT runs_status_check
        CHECK (status IN ('succeeded', 'failed', 'timeout', 'skipped', 'running', 'crashed'));

COMMENT ON COLUMN mtask.runs.pid IS 'For a non-transactional run: the worker running it, which pg_stat_activity shows while it runs.';

-- Finds the runs a crash left 'running'.
CREATE INDEX runs_running_idx ON mtask.runs (task_id) WHERE status = 'running';

COMMENT ON COLUMN mtask.runs.scheduled_for IS 'The slot this run was for; for a skipped run, the first slot passed over.';

-- Functions in Rust that this version adds. A new installation has already
-- made them from the library's own declarations; these must say the same.
CREATE OR REPLACE FUNCTION mtask._wake_at_commit() RETURNS void
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'wake_at_commit_wrapper';

-- A limit option: NULL or 0 for none, else positive.
CREATE FUNCTION mtask._limit(val bigint, what text, task_name text, hint text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF val < 0 THEN
        RAISE EXCEPTION '% of task "%" must be positive, not %', what, task_name, val
            USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    RETURN nullif(val, 0);
END
$$;

-- The rules on the new options, in a trigger of their own. They are not
-- also CHECK constraints: Postgres re-reads every CHECK expression of a
-- table each time a statement writes it, and for the scheduler's one UPDATE
-- per run that was the largest single cost of a trivial task. that fires after
-- tasks_check (triggers fire in name order), once next_run_at is known.
CREATE FUNCTION mtask.tasks_check_limits() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.missed IS NULL OR NEW.missed NOT IN ('once', 'skip', 'all') THEN
        RAISE EXCEPTION 'invalid missed-run policy "%" for task "%"', NEW.missed, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''once'' (one catch-up run), ''skip'' (none) or ''all'' (every missed run, up to mtask.max_catchup).';
    END IF;
    -- 0 and infinity mean "no limit", as they do for Postgres' own settings.
    NEW.max_runs := mtask._limit(NEW.max_runs, 'max_runs', NEW.name,
        'Give the number of runs after which the task is done, or 0 for no limit.');
    NEW.max_consecutive_failures := mtask._limit(NEW.max_consecutive_failures, 'max_consecutive_failures', NEW.name,
        'Give how many failed runs in a row pause the task, or 0 to never pause it.');
    IF NEW.end_at = 'infinity' THEN
        NEW.end_at := NULL;
    ELSIF NEW.end_at = '-infinity' THEN
        RAISE EXCEPTION 'end_at of task "%" must be a finite timestamp', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a real point in time, or ''infinity'' for no end.';
    END IF;
    IF NEW.overlap IS NULL OR NEW.overlap NOT IN ('skip', 'queue') THEN
        RAISE EXCEPTION 'invalid overlap policy "%" for task "%"', NEW.overlap, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''skip'' (a slot that comes during a run is passed over) or ''queue'' (it runs right after).';
    END IF;
    IF NEW.timeout < interval '0' OR NEW.retry_delay < interval '0' OR NEW.retry_max_delay < interval '0' THEN
        RAISE EXCEPTION 'timeout, retry_delay and retry_max_delay of task "%" must not be negative', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give an interval such as ''5 minutes''; a timeout of 0 means none.';
    END IF;
    IF NEW.max_attempts IS NULL OR NEW.max_attempts < 1 THEN
        RAISE EXCEPTION 'max_attempts of task "%" must be at least 1, not %', NEW.name, NEW.max_attempts
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It counts the first run: 1 means no retry, 3 means up to two retries.';
    END IF;
    IF NEW.end_at < NEW.start_at THEN
        RAISE EXCEPTION 'task "%" ends at % before it starts at %', NEW.name, NEW.end_at, NEW.start_at
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'end_at must be at or after start_at.';
    END IF;
    -- A window or run limit that leaves no run: an error for a new task, the
    -- end for one that has run (the scheduler reaches the same verdict).
    IF NEW.status = 'scheduled' AND (NEW.next_run_at > NEW.end_at OR NEW.run_count >= NEW.max_runs) THEN
        IF TG_OP = 'INSERT' THEN
            RAISE EXCEPTION 'task "%" would never run: its first run at % is after its end_at %',
                  NEW.name, NEW.next_run_at, NEW.end_at
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Move end_at later, or start_at earlier.';
        END IF;
        NEW.status := 'done';
        NEW.next_run_at := NULL;
    END IF;
    RETURN NEW;
END
$$;

-- Each trigger fires only for the columns it checks, so the scheduler's own
-- bookkeeping updates (run counts, status, next_run_at) call no PL/pgSQL:
-- that is most of the cost of a trivial task.
DROP TRIGGER tasks_check ON mtask.tasks;
CREATE TRIGGER tasks_check
    BEFORE INSERT OR UPDATE OF name, owner, command, kind, schedule, timezone, start_at ON mtask.tasks
    FOR EACH ROW EXECUTE FUNCTION mtask.tasks_check();

CREATE TRIGGER tasks_check_limits
    BEFORE INSERT OR UPDATE OF kind, schedule, timezone, start_at, end_at, max_runs, missed, overlap,
                               timeout, max_attempts, retry_delay, retry_max_delay, max_consecutive_failures
    ON mtask.tasks
    FOR EACH ROW EXECUTE FUNCTION mtask.tasks_check_limits();

-- Resuming starts afresh: no retry pending, no failure streak.
CREATE FUNCTION mtask.tasks_resume() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.attempt := 1;
    NEW.retry_slot := NULL;
    NEW.consecutive_failures := 0;
    NEW.pause_reason := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_resume
    BEFORE UPDATE OF status ON mtask.tasks
    FOR EACH ROW WHEN (OLD.status = 'paused' AND NEW.status = 'scheduled')
    EXECUTE FUNCTION mtask.tasks_resume();

-- A task that may now be due sooner wakes the workers when this commits.
-- The WHEN conditions are evaluated without a function call, and are false
-- for the scheduler's own updates, which only move next_run_at later.
CREATE FUNCTION mtask.tasks_wake() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM mtask._wake_at_commit();
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_wake_on_insert
    AFTER INSERT ON mtask.tasks
    FOR EACH ROW WHEN (NEW.status = 'scheduled')
    EXECUTE FUNCTION mtask.tasks_wake();

CREATE TRIGGER tasks_wake_on_update
    AFTER UPDATE ON mtask.tasks
    FOR EACH ROW WHEN (NEW.status = 'scheduled'
                       AND (OLD.status IS DISTINCT FROM 'scheduled' OR NEW.next_run_at < OLD.next_run_at))
    EXECUTE FUNCTION mtask.tasks_wake();

DROP FUNCTION mtask.schedule(text, text, text, timestamptz, text, text);

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
    priority int DEFAULT 0
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
                             overlap, priority)
    VALUES ($1, 'recurring', $2, $3, coalesce($4, now()), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

DROP FUNCTION mtask.schedule_at(text, timestamptz, text, text);

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
    priority int DEFAULT 0
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
                             transactional, priority)
    VALUES ($1, 'once', $3, $2, $4, $5, $6, $7, $8, $9, $10)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

-- Changes any option of a task; NULL leaves an option as it is. A schedule
-- makes a one-shot task recurring. end_at => 'infinity', max_runs => 0 and
-- max_consecutive_failures => 0 remove those limits; timeout => '0' means
-- no timeout. Returns the task as it now is.
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
    priority int DEFAULT NULL
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
        priority = coalesce($17, t.priority)
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
    priority int DEFAULT NULL
) RETURNS mtask.tasks
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.alter(mtask._task_id($1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) $$;
