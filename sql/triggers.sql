-- The rules of mtask.tasks. They live in triggers, not in the API, so that
-- a plain INSERT or UPDATE is checked and completed exactly as
-- mtask.schedule() is.
--
-- BEFORE triggers of a table fire in the order of their names, so the
-- names say the order: tasks_1_check checks and completes a row a user
-- writes, then tasks_2_status rules on a change of status, and
-- tasks_3_next_run keeps next_run_at finite. Each fires only
-- for the columns it is about, so the scheduler's bookkeeping (run counts,
-- last run, next_run_at, status) runs no PL/pgSQL: that is most of what a
-- trivial task would otherwise cost.

-- Checks a task as a whole, in this order: who owns it and what it is
-- called; what it runs; when it runs (next_run_at is derived here); its
-- history options; its limits, timeouts and retries, once next_run_at is
-- known. Options are checked here rather than in CHECK constraints, since
-- Postgres reads every CHECK expression again for each statement that
-- writes the table, the scheduler's included.
-- That a task of "owner" may run its command in "target": it exists, takes
-- connections, is no template, and the owner may connect to it.
CREATE OR REPLACE FUNCTION mtask._check_database(target text, owner regrole) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
        db pg_catalog.pg_database;
BEGIN
    SELECT * INTO db FROM pg_catalog.pg_database d WHERE d.datname = target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'database "%" does not exist', target
            USING ERRCODE = 'invalid_catalog_name',
                  HINT = 'Name a database of this cluster; SELECT datname FROM pg_database lists them.';
    END IF;
        IF NOT db.datallowconn OR db.datistemplate THEN
        RAISE EXCEPTION 'database "%" is a template or does not allow connections, so no task can run there', target
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Name a database that sessions connect to.';
    END IF;
    IF NOT pg_catalog.has_database_privilege(owner, target, 'CONNECT') THEN
        RAISE EXCEPTION 'permission denied: % may not connect to database "%", so its task cannot run there', owner, target
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %s, or name another database.', target, owner);
    END IF;
END
$$;

-- The name check's plan is kept for the session. Made while VACUUM had
-- left the table with no pages, it was a sequential scan, and each task
-- scheduled after it read every task before it. With sequential scans off
-- it can only take tasks_owner_name_key; JIT is off with them, since the
-- cost that switches a path off would otherwise count as worth compiling.
CREATE OR REPLACE FUNCTION mtask.tasks_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    schedule_changed boolean;
    missing text;
BEGIN
    -- A restore writes rows as they were dumped, each once valid.
    IF TG_OP = 'INSERT' AND mtask._restoring() THEN
        RETURN NEW;
    END IF;
    -- Options that have no "unset": a clear error, rather than NOT NULL's.
    missing := CASE WHEN NEW.owner IS NULL THEN 'owner'
                    WHEN NEW.command_type IS NULL THEN 'command_type'
                    WHEN NEW.missed IS NULL THEN 'missed'
                    WHEN NEW.max_attempts IS NULL THEN 'max_attempts'
                    WHEN NEW.retry_delay IS NULL THEN 'retry_delay'
                    WHEN NEW.retry_max_delay IS NULL THEN 'retry_max_delay'
                    WHEN NEW.overlap IS NULL THEN 'overlap'
                    WHEN NEW.priority IS NULL THEN 'priority' END;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION '% of task "%" must not be NULL', missing, NEW.name
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Leave it out to get its default; see the README''s SQL API for each option.';
    END IF;

    -- Owner and name.
    IF NOT pg_catalog.pg_has_role(current_user, NEW.owner, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to make % the owner of task "%"', NEW.owner, NEW.name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A task may be owned only by a role you are a member of.';
    END IF;
    -- A task runs as its owner, in this database: the owner must be able to
    -- connect to it, as a session of its own would. (An event's delivery is
    -- checked when it runs, so that no listener can make an emit() fail.)
    IF NEW.event_id IS NULL AND (TG_OP = 'INSERT' OR NEW.owner IS DISTINCT FROM OLD.owner)
       AND NOT pg_catalog.has_database_privilege(NEW.owner, pg_catalog.current_database(), 'CONNECT') THEN
        RAISE EXCEPTION 'permission denied: % may not connect to database "%", so it cannot own a task there',
              NEW.owner, pg_catalog.current_database()
            USING ERRCODE = 'insufficient_privilege',
                  HINT = pg_catalog.format('GRANT CONNECT ON DATABASE %I TO %s, or give the task another owner.',
                                           pg_catalog.current_database(), NEW.owner);
    END IF;
    IF NEW.name IS NULL OR NEW.name ~ '^[[:space:]]*$' THEN
        RAISE EXCEPTION 'a task needs a name'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name it so that you can pause, resume or unschedule it later.';
    END IF;
    IF pg_catalog.octet_length(NEW.name) > 1000 THEN
        RAISE EXCEPTION 'the name of a task is at most 1000 bytes, not %', pg_catalog.octet_length(NEW.name)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a short name, and say the rest in remark.';
    END IF;
    IF NEW.command IS NULL OR NEW.command ~ '^[[:space:]]*$' THEN
        RAISE EXCEPTION 'task "%" has no command', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give the SQL to run, e.g. ''CALL build_report()''.';
    END IF;
    IF NEW.event_id IS NULL
       AND (TG_OP = 'INSERT' OR NEW.name IS DISTINCT FROM OLD.name OR NEW.owner IS DISTINCT FROM OLD.owner)
       AND EXISTS (SELECT 1 FROM mtask.tasks t
                   WHERE t.owner = NEW.owner AND t.name = NEW.name AND t.id <> NEW.id AND t.event_id IS NULL) THEN
        RAISE EXCEPTION 'task "%" already exists for %', NEW.name, NEW.owner
            USING ERRCODE = 'unique_violation',
                  HINT = 'Choose another name, or remove the old task with mtask.unschedule().';
    END IF;

    -- What it runs.
    IF NEW.command_type IS NULL OR NEW.command_type NOT IN ('sql', 'program', 'notify') THEN
        RAISE EXCEPTION 'invalid command type "%" for task "%"', NEW.command_type, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''sql'' (the default), ''program'' (an executable and its arguments, run without a shell) or ''notify'' (the command is a channel, the payload is sent to it).';
    END IF;
    -- SQL is parsed now, so that a typo is an ERROR here and not a failed
    -- run tomorrow; names in it are looked up when it runs.
    IF NEW.command_type = 'sql'
       AND (TG_OP = 'INSERT' OR NEW.command IS DISTINCT FROM OLD.command OR NEW.command_type IS DISTINCT FROM OLD.command_type) THEN
        IF mtask._check_sql(NEW.command) = 0 THEN
            RAISE EXCEPTION 'task "%" has no command', NEW.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'It holds only white space, semicolons or comments; give the SQL to run, e.g. ''CALL build_report()''.';
        END IF;
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
    -- How it runs: as transactional says, else in a transaction unless a
    -- statement of it cannot run in one (VACUUM, CREATE INDEX CONCURRENTLY,
    -- ...), which the parse tree tells.
    IF TG_OP = 'INSERT' OR NEW.command IS DISTINCT FROM OLD.command
       OR NEW.command_type IS DISTINCT FROM OLD.command_type OR NEW.transactional IS DISTINCT FROM OLD.transactional THEN
        NEW.top_level := CASE WHEN NEW.transactional IS NOT NULL THEN NOT NEW.transactional
                              WHEN NEW.command_type = 'sql' THEN mtask._needs_top_level(NEW.command)
                              ELSE false END;
    END IF;
    -- Where it runs: this database (NULL), or another one the owner may
    -- connect to, as a session of its own would.
    IF NEW.database = pg_catalog.current_database() THEN
        NEW.database := NULL;
    END IF;
    IF NEW.database IS NOT NULL THEN
        IF NEW.command_type = 'program' THEN
            RAISE EXCEPTION 'program task "%" cannot run in another database', NEW.name
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'A program runs on the server, in no database: leave database out.';
        END IF;
        IF TG_OP = 'INSERT' OR NEW.database IS DISTINCT FROM OLD.database OR NEW.owner IS DISTINCT FROM OLD.owner THEN
            PERFORM mtask._check_database(NEW.database, NEW.owner);
        END IF;
    END IF;


    -- When it runs. Only a change of what or when derives next_run_at
    -- again: the scheduler's own updates, and a user moving next_run_at by
    -- hand, stand.
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

    -- History.
    IF NEW.log_runs NOT IN ('all', 'failures', 'none') THEN
        RAISE EXCEPTION 'invalid log_runs "%" for task "%"', NEW.log_runs, NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''all'', ''failures'' or ''none'', or NULL for mtask.log_runs.';
    END IF;
    IF NEW.history_max_age > interval '100 years' THEN
        RAISE EXCEPTION 'history_max_age of task "%" is at most 100 years, not %', NEW.name, NEW.history_max_age
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give 0 to keep the history without an age limit.';
    END IF;
    IF NEW.history_max_age < interval '0' OR NEW.history_max_per_task < 0 THEN
        RAISE EXCEPTION 'history_max_age and history_max_per_task of task "%" must not be negative', NEW.name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give 0 to keep the history without that limit, or NULL for the setting.';
    END IF;

    -- Limits, timeouts and retries.
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
    -- Bounds that keep every time the scheduler computes from them within
    -- what a timestamptz holds. A timeout is armed in milliseconds.
    IF NEW.timeout > interval '24 days' THEN
        RAISE EXCEPTION 'timeout of task "%" is at most 24 days, not %', NEW.name, NEW.timeout
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A run that may take longer needs no timeout: give 0.';
    END IF;
    IF NEW.retry_delay > interval '100 years' OR NEW.retry_max_delay > interval '100 years' THEN
        RAISE EXCEPTION '% of task "%" is at most 100 years, not %',
              CASE WHEN NEW.retry_delay > interval '100 years' THEN 'retry_delay' ELSE 'retry_max_delay' END, NEW.name,
              greatest(NEW.retry_delay, NEW.retry_max_delay)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Retries wait retry_delay, doubled for each further retry, but never longer than retry_max_delay (default 1 hour).';
    END IF;
    IF NEW.max_attempts < 1 THEN
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

CREATE OR REPLACE TRIGGER tasks_1_check
    BEFORE INSERT OR UPDATE OF name, owner, kind, schedule, timezone, command, command_type, start_at, end_at,
                               max_runs, missed, timeout, max_attempts, retry_delay, retry_max_delay,
                                                              max_consecutive_failures, transactional, overlap, priority, log_runs,
                               history_max_age, history_max_per_task, database
    ON mtask.tasks
    FOR EACH ROW EXECUTE FUNCTION mtask.tasks_check();

-- A change of status. Users move a task between 'scheduled' and 'paused';
-- every other status is the scheduler's to set. Resuming starts afresh: no
-- retry pending, no failure streak. The WHEN clause keeps the scheduler's
-- own status changes, and a superuser's, off PL/pgSQL. "Superuser" is the
-- current user's right, not the session's: inside a task the session is the
-- scheduler's, and the current user the task's owner.
CREATE OR REPLACE FUNCTION mtask.tasks_status() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status IS NULL THEN
        RAISE EXCEPTION 'status of task "%" must not be NULL', NEW.name
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Use mtask.pause() and mtask.resume().';
    END IF;
    IF (OLD.status NOT IN ('scheduled', 'paused') OR NEW.status NOT IN ('scheduled', 'paused'))
       AND NOT mtask._is_superuser() THEN
        RAISE EXCEPTION 'task "%" cannot be set from ''%'' to ''%''', NEW.name, OLD.status, NEW.status
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Use mtask.pause() and mtask.resume(); only the scheduler sets a task running, done or failed.';
    END IF;
    -- (A run by hand of a paused task is not a resume: after it, the task
    -- is paused as it was.)
    IF OLD.status = 'paused' AND NEW.status = 'scheduled' AND NEW.manual_from IS NULL THEN
        NEW.attempt := 1;
        NEW.retry_slot := NULL;
        NEW.consecutive_failures := 0;
        NEW.pause_reason := NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER tasks_2_status
    BEFORE UPDATE OF status ON mtask.tasks
    FOR EACH ROW WHEN ((OLD.status = 'paused' AND NEW.status = 'scheduled')
                       OR NEW.status IS NULL
                       OR (OLD.status IS DISTINCT FROM NEW.status
                           AND (OLD.status NOT IN ('scheduled', 'paused') OR NEW.status NOT IN ('scheduled', 'paused'))
                           AND NOT mtask._is_superuser()))
    EXECUTE FUNCTION mtask.tasks_status();

-- next_run_at is the scheduler's, but a user may move it by hand (to run a
-- task now, say); it must stay a point in time the scheduler can reach.
-- The WHEN clause is false for every value the scheduler writes.
CREATE OR REPLACE FUNCTION mtask.tasks_next_run() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'next_run_at of task "%" must be a finite timestamp, not %', NEW.name, coalesce(NEW.next_run_at::text, 'NULL')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Set it to a real point in time, e.g. now() to run the task at once, or pause the task.';
END
$$;

CREATE OR REPLACE TRIGGER tasks_3_next_run
    BEFORE UPDATE OF next_run_at ON mtask.tasks
    FOR EACH ROW WHEN (NEW.next_run_at IN ('infinity', '-infinity')
                       OR (NEW.next_run_at IS NULL AND NEW.status = 'scheduled' AND NEW.schedule IS DISTINCT FROM '@reboot'))
    EXECUTE FUNCTION mtask.tasks_next_run();

-- A task that may now be due sooner wakes the workers when this commits.
-- The WHEN conditions are evaluated without a function call, and are false
-- for the scheduler's own updates, which only move next_run_at later.
CREATE OR REPLACE FUNCTION mtask.tasks_wake() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
        PERFORM mtask._wake_at_commit(NEW.next_run_at);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER tasks_wake_on_insert
    AFTER INSERT ON mtask.tasks
    FOR EACH ROW WHEN (NEW.status = 'scheduled')
    EXECUTE FUNCTION mtask.tasks_wake();

CREATE OR REPLACE TRIGGER tasks_wake_on_update
    AFTER UPDATE ON mtask.tasks
    FOR EACH ROW WHEN (NEW.status = 'scheduled'
                       AND (OLD.status IS DISTINCT FROM 'scheduled' OR NEW.next_run_at < OLD.next_run_at))
    EXECUTE FUNCTION mtask.tasks_wake();

-- A task's runs go with it, once per statement: by DELETE (the deleted
-- rows' transition table) or TRUNCATE. As its owner, as a foreign key's
-- cascade would: whoever may delete a task may not delete runs.
CREATE OR REPLACE FUNCTION mtask.tasks_delete_runs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE mtask.runs;
    ELSE
        DELETE FROM mtask.runs r USING gone g WHERE r.task_id = g.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER tasks_delete_runs
    AFTER DELETE ON mtask.tasks
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION mtask.tasks_delete_runs();

CREATE OR REPLACE TRIGGER tasks_truncate_runs
    AFTER TRUNCATE ON mtask.tasks
    FOR EACH STATEMENT EXECUTE FUNCTION mtask.tasks_delete_runs();

-- A limit option: NULL or 0 for none, else positive.
CREATE OR REPLACE FUNCTION mtask._limit(val bigint, what text, task_name text, hint text) RETURNS bigint
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
