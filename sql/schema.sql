-- mtask's schema as released in 0.1.0. Do not edit: later versions change it
-- in their upgrade scripts, sql/mtask--A--B.sql, which a new installation
-- runs after this file.
--
-- mtask's tables and the checks that guard them. The trigger, not the API
-- functions, holds every rule, so a plain INSERT or UPDATE on mtask.tasks is
-- checked exactly as mtask.schedule() is.

CREATE TABLE mtask.tasks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    owner         regrole NOT NULL DEFAULT current_user::regrole,
    kind          text NOT NULL CHECK (kind IN ('once', 'recurring')),
    schedule      text,
    timezone      text NOT NULL,
    command       text NOT NULL,
    command_type  text NOT NULL DEFAULT 'sql' CHECK (command_type IN ('sql')),
    status        text NOT NULL DEFAULT 'scheduled'
                  CHECK (status IN ('scheduled', 'running', 'paused', 'done', 'failed')),
    remark        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    start_at      timestamptz NOT NULL,
    next_run_at   timestamptz,
    last_run_at   timestamptz,
    last_status   text CHECK (last_status IN ('succeeded', 'failed')),
    last_error    text,
    run_count     bigint NOT NULL DEFAULT 0,
    failure_count bigint NOT NULL DEFAULT 0,
    CONSTRAINT tasks_owner_name_key UNIQUE (owner, name),
    CONSTRAINT tasks_schedule_matches_kind CHECK ((kind = 'recurring') = (schedule IS NOT NULL)),
    CONSTRAINT tasks_scheduled_has_next_run CHECK (status <> 'scheduled' OR next_run_at IS NOT NULL)
) WITH (fillfactor = 80);

COMMENT ON TABLE mtask.tasks IS 'One row per task; the scheduler runs rows whose next_run_at has come.';

-- The scheduler's only questions are "what is due?" and "when is the next
-- one?": both read this small partial index, whatever the table's size.
CREATE INDEX tasks_due_idx ON mtask.tasks (next_run_at) WHERE status = 'scheduled';

CREATE TABLE mtask.runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES mtask.tasks (id) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    sqlstate    text,
    message     text,
    rows        bigint
);

COMMENT ON TABLE mtask.runs IS 'One row per execution, written in the same transaction as the command''s effects.';

CREATE INDEX runs_task_id_idx ON mtask.runs (task_id, id);

-- pg_dump keeps the tasks and their history.
SELECT pg_catalog.pg_extension_config_dump('mtask.tasks', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.runs', '');

CREATE FUNCTION mtask.tasks_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schedule_changed boolean;
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user, NEW.owner, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to make % the owner of task "%"', NEW.owner, NEW.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A task may be owned only by a role you are a member of.';
    END IF;
    IF NEW.name IS NULL OR pg_catalog.btrim(NEW.name) = '' THEN
        RAISE EXCEPTION 'a task needs a name'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name it so that you can pause, resume or unschedule it later.';
    END IF;
    IF NEW.command IS NULL OR pg_catalog.btrim(NEW.command) = '' THEN
        RAISE EXCEPTION 'task "%" has no command', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the SQL to run, e.g. ''CALL build_report()''.';
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name OR NEW.owner IS DISTINCT FROM OLD.owner)
       AND EXISTS (SELECT 1 FROM mtask.tasks t
                   WHERE t.owner = NEW.owner AND t.name = NEW.name AND t.id <> NEW.id) THEN
        RAISE EXCEPTION 'task "%" already exists for %', NEW.name, NEW.owner
            USING ERRCODE = 'unique_violation',
                  HINT = 'Choose another name, or remove the old task with mtask.unschedule().';
    END IF;

    IF TG_OP = 'INSERT' THEN
        NEW.kind := coalesce(NEW.kind, CASE WHEN NEW.schedule IS NULL THEN 'once' ELSE 'recurring' END);
        IF NEW.status NOT IN ('scheduled', 'paused') THEN
            RAISE EXCEPTION 'a new task must be ''scheduled'' or ''paused'', not ''%''', NEW.status
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Leave status out to schedule the task, or insert it ''paused''.';
        END IF;
        schedule_changed := true;
    ELSE
        schedule_changed := NEW.kind IS DISTINCT FROM OLD.kind
                         OR NEW.schedule IS DISTINCT FROM OLD.schedule
                         OR NEW.timezone IS DISTINCT FROM OLD.timezone
                         OR NEW.start_at IS DISTINCT FROM OLD.start_at;
    END IF;

    -- Only a change of what or when recomputes next_run_at: the scheduler's
    -- own bookkeeping updates, and a user moving next_run_at by hand, stand.
    IF schedule_changed THEN
        NEW.timezone := mtask._normalize_timezone(NEW.timezone);
        IF NEW.kind = 'recurring' THEN
            NEW.schedule := mtask._normalize_schedule(NEW.schedule);
            NEW.start_at := coalesce(NEW.start_at, now());
            NEW.next_run_at := mtask._next_run(NEW.schedule, NEW.timezone, NEW.start_at, now());
        ELSIF NEW.kind = 'once' THEN
            IF NEW.schedule IS NOT NULL THEN
                RAISE EXCEPTION 'one-shot task "%" cannot have a schedule', NEW.name
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Set its run time in start_at, or make it kind ''recurring''.';
            END IF;
            NEW.start_at := coalesce(NEW.start_at, NEW.next_run_at, now());
            IF NEW.start_at IN ('infinity', '-infinity') THEN
                RAISE EXCEPTION 'the run time of task "%" must be a finite timestamp', NEW.name
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Use a real point in time, not infinity.';
            END IF;
            NEW.next_run_at := NEW.start_at;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_check
    BEFORE INSERT OR UPDATE ON mtask.tasks
    FOR EACH ROW EXECUTE FUNCTION mtask.tasks_check();

-- The API. Names are per owner, so a name means the caller's own task.

CREATE FUNCTION mtask._task_id(task_name text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_id bigint;
BEGIN
    SELECT t.id INTO found_id FROM mtask.tasks t
    WHERE t.name = task_name AND t.owner = current_user::regrole;
    IF found_id IS NULL THEN
        RAISE EXCEPTION 'task "%" does not exist', task_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Names are per owner; SELECT id, name, owner FROM mtask.tasks lists the tasks you can see, and any of them can be named by id.';
    END IF;
    RETURN found_id;
END
$$;

CREATE FUNCTION mtask._task_status(task_id bigint) RETURNS text
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

CREATE FUNCTION mtask.schedule(
    name text,
    schedule text,
    command text,
    start_at timestamptz DEFAULT now(),
    remark text DEFAULT NULL,
    timezone text DEFAULT NULL
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
    INSERT INTO mtask.tasks (name, kind, schedule, command, start_at, remark, timezone)
    VALUES ($1, 'recurring', $2, $3, coalesce($4, now()), $5, $6)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

CREATE FUNCTION mtask.schedule_at(
    name text,
    run_at timestamptz,
    command text,
    remark text DEFAULT NULL
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
    INSERT INTO mtask.tasks (name, kind, command, start_at, remark)
    VALUES ($1, 'once', $3, $2, $4)
    RETURNING id INTO new_id;
    PERFORM mtask._check_scheduler();
    RETURN new_id;
END
$$;

CREATE FUNCTION mtask.unschedule(task_id bigint) RETURNS boolean
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

CREATE FUNCTION mtask.unschedule(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.unschedule(mtask._task_id(task_name)) $$;

-- Moves a task from one status to another. The conditional UPDATE makes it
-- safe against the scheduler finishing a run at the same moment.
CREATE FUNCTION mtask._set_status(task_id bigint, from_status text, to_status text, verb text)
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
    RAISE EXCEPTION 'task % is %, so it cannot be %', task_id, current_status, verb
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = format('Only a %s task can be %s; schedule a new task to run it again.', from_status, verb);
END
$$;

-- pause and resume return false when the task already was in that state. A
-- resumed task whose run time passed while it was paused runs once at once,
-- then follows its schedule.
CREATE FUNCTION mtask.pause(task_id bigint) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask._set_status(task_id, 'scheduled', 'paused', 'paused') $$;

CREATE FUNCTION mtask.pause(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.pause(mtask._task_id(task_name)) $$;

CREATE FUNCTION mtask.resume(task_id bigint) RETURNS boolean
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

CREATE FUNCTION mtask.resume(task_name text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.resume(mtask._task_id(task_name)) $$;
