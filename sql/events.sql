-- Events: mtask.emit() queues a named event with a JSON payload, and each
-- listener registered for that name with mtask.listen() gets it when it is
-- due. A delivery is a one-shot task owned by the listener's owner, so it
-- runs in its own subtransaction, with the engine's timeouts, retries and
-- history; one failing listener does not hold up the others. An event
-- reaches only the listeners of roles its emitter is a member of, so
-- emitting runs nothing the emitter could not run itself.

-- A listener's handler must take (payload jsonb) or (event text, payload jsonb)
-- and be executable by its owner. It is written as regprocedure prints it
-- here, with only pg_catalog in the search path.
CREATE OR REPLACE FUNCTION mtask.listeners_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h regprocedure;
    f pg_proc;
BEGIN
    -- A restore writes rows as they were dumped (see mtask.tasks_check).
    IF TG_OP = 'INSERT' AND mtask._restoring() THEN
        RETURN NEW;
    END IF;
    IF NEW.event IS NULL OR NEW.event ~ '^[[:space:]]*$' OR octet_length(NEW.event) > 1000 THEN
        RAISE EXCEPTION 'a listener needs an event name of at most 1000 bytes'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the event it listens to, as mtask.emit() names it.';
    END IF;
    h := to_regprocedure(NEW.handler);
    IF h IS NULL THEN
        RAISE EXCEPTION 'handler % does not exist', NEW.handler
            USING ERRCODE = 'undefined_function',
                  HINT = 'Name it with its schema and argument types, as in public.f(jsonb); mtask.listen() takes any name.';
    END IF;
    NEW.handler := h::text;
    SELECT * INTO f FROM pg_proc p WHERE p.oid = h;
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
    IF NOT has_function_privilege(NEW.owner, h, 'EXECUTE') THEN
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

CREATE OR REPLACE TRIGGER listeners_check
    BEFORE INSERT OR UPDATE ON mtask.listeners
    FOR EACH ROW EXECUTE FUNCTION mtask.listeners_check();

-- Hands event e to its listeners (or to listener only_listener): one
-- delivery task each, due at the event's run_at. Returns how many.
CREATE OR REPLACE FUNCTION mtask._deliver(e mtask.events, only_listener bigint) RETURNS int
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
    JOIN pg_proc p ON p.oid = to_regprocedure(l.handler)
    JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE l.event = e.event
      AND (only_listener IS NULL OR l.id = only_listener)
      AND pg_has_role(e.owner, l.owner, 'MEMBER');
    GET DIAGNOSTICS delivered = ROW_COUNT;
    RETURN delivered;
END
$$;

CREATE OR REPLACE FUNCTION mtask.emit(event text, payload jsonb DEFAULT '{}', run_at timestamptz DEFAULT now()) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e mtask.events;
BEGIN
    IF event IS NULL OR event ~ '^[[:space:]]*$' THEN
        RAISE EXCEPTION 'an event needs a name'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name it as its listeners listen to it: mtask.emit(''order-paid'', ''{"order": 42}'').';
    END IF;
    IF octet_length(event) > 1000 THEN
        RAISE EXCEPTION 'an event name is at most 1000 bytes, not %', octet_length(event)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a short name, and put the rest in the payload.';
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
CREATE OR REPLACE FUNCTION mtask.listen(event text, handler regprocedure, max_attempts int DEFAULT 3,
                             retry_delay interval DEFAULT '10 seconds') RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    listener_id bigint;
    late interval := coalesce(nullif(current_setting('mtask.deliver_late', true), ''), '1d')::interval;
    e mtask.events;
BEGIN
    IF EXISTS (SELECT 1 FROM mtask.listeners l
               WHERE l.event = $1 AND l.handler = $2::text AND l.owner = current_user::regrole) THEN
        RAISE EXCEPTION '% already listens to event "%" with %', current_user, $1, $2
            USING ERRCODE = 'unique_violation',
                  HINT = 'A handler listens once to each event; mtask.unlisten() removes it.';
    END IF;
    INSERT INTO mtask.listeners (event, handler, max_attempts, retry_delay) VALUES ($1, $2::text, $3, $4)
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
CREATE OR REPLACE FUNCTION mtask.unlisten(event text, handler regprocedure) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gone bigint;
BEGIN
    SELECT l.id INTO gone FROM mtask.listeners l
    WHERE l.event = $1 AND l.handler = $2::text AND l.owner = current_user::regrole;
    IF gone IS NULL THEN
        RETURN false;
    END IF;
    DELETE FROM mtask.tasks t WHERE t.listener_id = gone AND t.status IN ('scheduled', 'paused');
    DELETE FROM mtask.listeners l WHERE l.id = gone;
    RETURN true;
END
$$;

