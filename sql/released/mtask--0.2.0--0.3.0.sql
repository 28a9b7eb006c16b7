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
COMMENT ON COLUMN mtask.tasks.command_type IS 'sql: SQL run as the owner; program: an executable and its arguments, run without a shell; notify: pg_notify(command, payload).';

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
    IF NEW.command_type IS NULL OR NEW.command_type NOT IN ('sql', 'program', 'notify') THEN
        RAISE EXCEPTION 'invalid command type "%" for task "%"', NEW.command_type, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''sql'' (the default), ''program'' (an executable and its arguments, run without a shell) or ''notify'' (the command is a channel, the payload is sent to it).';
    END IF;
    IF NEW.command_type = 'notify' AND pg_catalog.octet_length(NEW.command) > 63 THEN
        RAISE EXCEPTION 'the channel of notify task "%" is longer than 63 bytes', NEW.name
            USING ERRCODE = 'name_too_long',
                  HINT = 'A notify task''s command is the channel name that its payload is sent to with pg_notify().';
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

-- Events: mtask.emit() queues a named event with a JSON payload, and each
-- listener registered for that name with mtask.listen() gets it when it is
-- due. A delivery is a one-shot task owned by the listener's owner, so it
-- runs in its own subtransaction, with the engine's timeouts, retries and
-- history; one failing listener does not hold up the others. An event
-- reaches only the listeners of roles its emitter is a member of, so
-- emitting runs nothing the emitter could not run itself.
CREATE TABLE mtask.listeners (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event        text NOT NULL,
    handler      regprocedure NOT NULL,
    owner        regrole NOT NULL DEFAULT current_user::regrole,
    takes_event  boolean NOT NULL DEFAULT false,
    max_attempts int NOT NULL DEFAULT 3,
    retry_delay  interval NOT NULL DEFAULT '10 seconds',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT listeners_event_handler_owner_key UNIQUE (event, handler, owner)
);
COMMENT ON TABLE mtask.listeners IS 'Functions that get the events of a name: handler(payload jsonb) or handler(event text, payload jsonb).';

CREATE TABLE mtask.events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event      text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}',
    owner      regrole NOT NULL DEFAULT current_user::regrole,
    run_at     timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    status     text NOT NULL DEFAULT 'queued',
    message    text
);
COMMENT ON TABLE mtask.events IS 'Emitted events: queued (handed to its listeners, see mtask.deliveries) or unhandled (no listener).';
CREATE INDEX events_unhandled_idx ON mtask.events (event) WHERE status = 'unhandled';

SELECT pg_catalog.pg_extension_config_dump('mtask.listeners', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.events', '');

-- A delivery's event and listener. Unlisten leaves the history of past
-- deliveries; purging an event removes its deliveries.
ALTER TABLE mtask.tasks
    ADD COLUMN payload jsonb,
    ADD COLUMN event_id bigint REFERENCES mtask.events (id) ON DELETE CASCADE,
    ADD COLUMN listener_id bigint REFERENCES mtask.listeners (id) ON DELETE SET NULL;
CREATE INDEX tasks_event_id_idx ON mtask.tasks (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX tasks_listener_id_idx ON mtask.tasks (listener_id) WHERE listener_id IS NOT NULL;
COMMENT ON COLUMN mtask.tasks.payload IS 'Sent by a notify task, and given on stdin to a program task.';
COMMENT ON COLUMN mtask.tasks.event_id IS 'For an event''s delivery to a listener: the event.';
-- mtask.emit() runs as its caller and makes the deliveries. Linking a task
-- of one's own to an event gives no right: it still runs as its owner.
GRANT INSERT (payload, event_id, listener_id), UPDATE (payload) ON mtask.tasks TO PUBLIC;

GRANT SELECT, DELETE ON mtask.listeners, mtask.events TO PUBLIC;
GRANT INSERT (event, handler, owner, max_attempts, retry_delay) ON mtask.listeners TO PUBLIC;
GRANT INSERT (event, payload, owner, run_at) ON mtask.events TO PUBLIC;
GRANT UPDATE (status, message) ON mtask.events TO PUBLIC;

ALTER TABLE mtask.listeners ENABLE ROW LEVEL SECURITY;
CREATE POLICY listeners_of_my_roles ON mtask.listeners
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));
ALTER TABLE mtask.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_of_my_roles ON mtask.events
    USING (pg_catalog.pg_has_role(owner, 'MEMBER'))
    WITH CHECK (pg_catalog.pg_has_role(owner, 'MEMBER'));

CREATE FUNCTION mtask.listeners_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    f pg_proc;
BEGIN
    IF NEW.event IS NULL OR btrim(NEW.event) = '' THEN
        RAISE EXCEPTION 'a listener needs an event name'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the event it listens to, as mtask.emit() names it.';
    END IF;
    SELECT * INTO f FROM pg_proc p WHERE p.oid = NEW.handler;
    IF f.prokind = 'f' AND f.pronargs = 1 AND f.proargtypes[0] = 'jsonb'::regtype THEN
        NEW.takes_event := false;
    ELSIF f.prokind = 'f' AND f.pronargs = 2 AND f.proargtypes[0] = 'text'::regtype
          AND f.proargtypes[1] = 'jsonb'::regtype THEN
        NEW.takes_event := true;
    ELSE
        RAISE EXCEPTION 'handler % must be a function of (payload jsonb) or (event text, payload jsonb)', NEW.handler
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Declare it as CREATE FUNCTION f(payload jsonb) RETURNS void, or f(event text, payload jsonb).';
    END IF;
    IF NOT has_function_privilege(NEW.owner, NEW.handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied: % may not execute handler %', NEW.owner, NEW.handler
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The handler runs as the listener''s owner, who needs EXECUTE on it.';
    END IF;
    IF NEW.max_attempts < 1 OR NEW.retry_delay < interval '0' THEN
        RAISE EXCEPTION 'max_attempts must be at least 1 and retry_delay not negative'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'max_attempts counts the first delivery: 1 means no retry.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER listeners_check
    BEFORE INSERT OR UPDATE ON mtask.listeners
    FOR EACH ROW EXECUTE FUNCTION mtask.listeners_check();

-- Hands event e to its listeners (or to listener only_listener): one
-- delivery task each, due at the event's run_at. Returns how many.
CREATE FUNCTION mtask._deliver(e mtask.events, only_listener bigint) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    delivered int;
BEGIN
    INSERT INTO mtask.tasks (name, owner, kind, command, start_at, remark, max_attempts, retry_delay,
                             event_id, listener_id)
    SELECT format('%s #%s for listener %s', e.event, e.id, l.id), l.owner, 'once',
           CASE WHEN l.takes_event
                THEN format('SELECT %I.%I(%L::text, %L::jsonb)', n.nspname, p.proname, e.event, e.payload)
                ELSE format('SELECT %I.%I(%L::jsonb)', n.nspname, p.proname, e.payload) END,
           e.run_at, format('delivers event %s (id %s) to %s', e.event, e.id, l.handler),
           l.max_attempts, l.retry_delay, e.id, l.id
    FROM mtask.listeners l
    JOIN pg_proc p ON p.oid = l.handler
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE l.event = e.event
      AND (only_listener IS NULL OR l.id = only_listener)
      AND pg_has_role(e.owner, l.owner, 'MEMBER');
    GET DIAGNOSTICS delivered = ROW_COUNT;
    RETURN delivered;
END
$$;

CREATE FUNCTION mtask.emit(event text, payload jsonb DEFAULT '{}', run_at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e mtask.events;
BEGIN
    IF event IS NULL OR btrim(event) = '' THEN
        RAISE EXCEPTION 'an event needs a name'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name it as its listeners listen to it: mtask.emit(''order-paid'', ''{"order": 42}'').';
    END IF;
    IF run_at IN ('infinity', '-infinity') THEN
        RAISE EXCEPTION 'the run time of event "%" must be a finite timestamp', event
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use now() to deliver it as soon as possible.';
    END IF;
    INSERT INTO mtask.events (event, payload, run_at) VALUES ($1, coalesce($2, '{}'), coalesce($3, now()))
    RETURNING * INTO e;
    IF mtask._deliver(e, NULL) = 0 THEN
        UPDATE mtask.events SET status = 'unhandled',
               message = format('no listener for event "%s" when it was emitted; one that listens later gets it if mtask.deliver_late allows', $1)
        WHERE id = e.id;
    END IF;
    PERFORM mtask._check_scheduler();
    RETURN e.id;
END
$$;

-- A new listener also gets the events of its name that are not due yet,
-- and those that found no listener, unless they are older than
-- mtask.deliver_late.
CREATE FUNCTION mtask.listen(event text, handler regprocedure, max_attempts int DEFAULT 3,
                             retry_delay interval DEFAULT '10 seconds') RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    listener_id bigint;
    late interval := coalesce(nullif(current_setting('mtask.deliver_late', true), ''), '1d')::interval;
    e mtask.events;
BEGIN
    INSERT INTO mtask.listeners (event, handler, max_attempts, retry_delay) VALUES ($1, $2, $3, $4)
    RETURNING id INTO listener_id;
    FOR e IN SELECT * FROM mtask.events x
             WHERE x.event = $1
               AND (x.run_at > now() OR (x.status = 'unhandled' AND late > interval '0' AND x.run_at >= now() - late))
             FOR UPDATE
    LOOP
        IF mtask._deliver(e, listener_id) > 0 AND e.status = 'unhandled' THEN
            UPDATE mtask.events SET status = 'queued', message = format('delivered late, to listener %s', listener_id)
            WHERE id = e.id;
        END IF;
    END LOOP;
    RETURN listener_id;
END
$$;

-- Removes the caller's listener; its deliveries not yet run go with it.
CREATE FUNCTION mtask.unlisten(event text, handler regprocedure) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone bigint;
BEGIN
    SELECT l.id INTO gone FROM mtask.listeners l
    WHERE l.event = $1 AND l.handler = $2 AND l.owner = current_user::regrole;
    IF gone IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM mtask.tasks t WHERE t.listener_id = gone AND t.status IN ('scheduled', 'paused');
    DELETE FROM mtask.listeners l WHERE l.id = gone;
    RETURN true;
END
$$;

-- What became of each delivery: one row per event and listener.
CREATE VIEW mtask.deliveries WITH (security_invoker = true) AS
SELECT e.id AS event_id, e.event, e.run_at, t.listener_id, t.owner, t.id AS task_id, t.status,
       t.run_count AS attempts, t.last_status, t.last_error, t.last_run_at
FROM mtask.tasks t JOIN mtask.events e ON e.id = t.event_id;
GRANT SELECT ON mtask.deliveries TO PUBLIC;

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
    payload jsonb DEFAULT NULL,
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
                             overlap, priority, command_type, payload, log_runs, history_max_age, history_max_per_task)
    VALUES ($1, 'recurring', $2, $3, coalesce($4, now()), $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21)
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
    payload jsonb DEFAULT NULL,
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
                             transactional, priority, command_type, payload, log_runs, history_max_age,
                             history_max_per_task)
    VALUES ($1, 'once', $3, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
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
    payload jsonb DEFAULT NULL,
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
        payload = coalesce($19, t.payload),
        log_runs = coalesce($20, t.log_runs),
        history_max_age = coalesce($21, t.history_max_age),
        history_max_per_task = coalesce($22, t.history_max_per_task)
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
    payload jsonb DEFAULT NULL,
    log_runs text DEFAULT NULL,
    history_max_age interval DEFAULT NULL,
    history_max_per_task int DEFAULT NULL
) RETURNS mtask.tasks
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mtask.alter(mtask._task_id($1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) $$;
