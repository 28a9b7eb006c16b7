-- The API that users call. Each function writes mtask.tasks, whose triggers
-- (sql/triggers.sql) hold every rule; names are per owner, so a name means
-- one of the caller's own tasks, and any task can be named by its id.

CREATE OR REPLACE FUNCTION mtask._task_id(task_name text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT t.id INTO found_id FROM mtask.tasks t
    WHERE t.name = task_name AND t.owner = current_user::regrole AND t.event_id IS NULL;
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'task "%" does not exist', task_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Names are per owner; SELECT id, name, owner FROM mtask.tasks lists the tasks you can see, and any of them can be named by id.';
    END IF;
    RETURN found_id;
END
$$;

CREATE OR REPLACE FUNCTION mtask._task_status(task_id bigint) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_status text;
BEGIN
    SELECT t.status INTO found_status FROM mtask.tasks t WHERE t.id = task_id;
    IF found_status IS NULL THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT id, name, owner FROM mtask.tasks lists the tasks you can see.';
    END IF;
    RETURN found_status;
END
$$;

-- A recurring task. Its options are those of mtask.tasks; see the README.
CREATE OR REPLACE FUNCTION mtask.schedule(
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
    transactional boolean DEFAULT NULL,
    overlap text DEFAULT 'skip',
    priority int DEFAULT 0,
    command_type text DEFAULT 'sql',
    payload jsonb DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL,
    database text DEFAULT NULL
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
                             overlap, priority, command_type, payload, log_runs, history_max_age, history_max_per_task,
                             database)
    VALUES ($1, 'recurring', $2, $3, coalesce($4, now()), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21, $22)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

-- A one-shot task.
CREATE OR REPLACE FUNCTION mtask.schedule_at(
    name text,
    run_at timestamptz,
    command text,
    remark text DEFAULT NULL,
    missed text DEFAULT 'once',
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT 1,
    retry_delay interval DEFAULT '10 seconds',
    transactional boolean DEFAULT NULL,
    priority int DEFAULT 0,
    command_type text DEFAULT 'sql',
    payload jsonb DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL,
    database text DEFAULT NULL
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
                             transactional, priority, command_type, payload, log_runs, history_max_age,
                             history_max_per_task, database)
    VALUES ($1, 'once', $3, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

-- Changes any option of a task; NULL leaves an option as it is. A schedule
-- makes a one-shot task recurring. end_at => 'infinity', max_runs => 0 and
-- max_consecutive_failures => 0 remove those limits; timeout => '0' means
-- no timeout; database => current_database() runs it here again. Returns
-- the task as it now is.
CREATE OR REPLACE FUNCTION mtask.alter(
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
    payload jsonb DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL,
    database text DEFAULT NULL
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
        payload = coalesce($19, t.payload),
        log_runs = coalesce($20, t.log_runs),
        history_max_age = coalesce($21, t.history_max_age),
        history_max_per_task = coalesce($22, t.history_max_per_task),
        database = coalesce($23, t.database)
    WHERE t.id = $1
    RETURNING t.* INTO altered;
    IF NOT FOUND THEN
        PERFORM mtask._task_status($1);  -- raises: no such task
    END IF;
    PERFORM mtask._check_scheduler();
    RETURN altered;
END
$$;

CREATE OR REPLACE FUNCTION mtask.alter(
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
    payload jsonb DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL,
    database text DEFAULT NULL
) RETURNS mtask.tasks
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.alter(mtask._task_id($1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) $$;

CREATE OR REPLACE FUNCTION mtask.unschedule(task_id bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM mtask.tasks t WHERE t.id = task_id;
    IF NOT FOUND THEN
        PERFORM mtask._task_status(task_id);  -- raises: no such task
    END IF;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION mtask.unschedule(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.unschedule(mtask._task_id(task_name)) $$;

-- Moves a task from one status to another. The conditional UPDATE makes it
-- safe against the scheduler finishing a run at the same moment.
CREATE OR REPLACE FUNCTION mtask._set_status(task_id bigint, from_status text, to_status text, verb text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_status text;
BEGIN
    UPDATE mtask.tasks t SET status = to_status WHERE t.id = task_id AND t.status = from_status;
    IF FOUND THEN
        RETURN true;
    END IF;
    current_status := mtask._task_status(task_id);
    IF current_status = to_status THEN
        RETURN false;
    END IF;
    IF current_status = 'running' THEN
        RAISE EXCEPTION 'task % is running, so it cannot be % now', task_id, verb
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A non-transactional run goes on until it ends; try again then, or cancel the run with pg_cancel_backend() of the pid in its mtask.runs row.';
    END IF;
    RAISE EXCEPTION 'task % is %, so it cannot be %', task_id, current_status, verb
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = format('Only a %s task can be %s; schedule a new task to run it again.', from_status, verb);
END
$$;

-- pause and resume return false when the task already was in that state. A
-- resumed task whose run time passed while it was paused runs once at once,
-- then follows its schedule.
CREATE OR REPLACE FUNCTION mtask.pause(task_id bigint) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask._set_status(task_id, 'scheduled', 'paused', 'paused') $$;

CREATE OR REPLACE FUNCTION mtask.pause(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.pause(mtask._task_id(task_name)) $$;

CREATE OR REPLACE FUNCTION mtask.resume(task_id bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF mtask._set_status(task_id, 'paused', 'scheduled', 'resumed') THEN
        PERFORM mtask._check_scheduler();
        RETURN true;
    END IF;
    RETURN false;
END
$$;

CREATE OR REPLACE FUNCTION mtask.resume(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.resume(mtask._task_id(task_name)) $$;

-- Makes a task due at once, without moving its schedule: after the run it
-- is where it was, its regular next run and a pending retry included. A
-- paused task runs once and stays paused; a one-shot task's run by hand is
-- its run. Asking again before the run has happened changes nothing.
CREATE OR REPLACE FUNCTION mtask.run_now(task_id bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_status text := mtask._task_status(task_id);
BEGIN
    IF current_status NOT IN ('scheduled', 'paused') THEN
        RAISE EXCEPTION 'task % is %, so it cannot be run now', task_id, current_status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = CASE current_status WHEN 'running' THEN 'A task never runs twice at once; ask again when its run has ended.'
                              ELSE 'A finished task does not run again; CALL mtask.run() runs it once more, in your session.' END;
    END IF;
    UPDATE mtask.tasks t
    SET manual_from = t.status, manual_next_run_at = t.next_run_at, status = 'scheduled', next_run_at = now()
    WHERE t.id = task_id AND t.manual_from IS NULL;
    PERFORM mtask._check_scheduler();
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION mtask.run_now(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.run_now(mtask._task_id(task_name)) $$;
