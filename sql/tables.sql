-- mtask's tables as they are in this version, for a new installation. An
-- installed older version reaches the same tables through the scripts in
-- sql/updates/. Everything that is not a table, an index or a sequence
-- (functions, triggers, views, grants, policies, comments) lives in the
-- topic files that follow this one, and is applied again on every update.
--
-- A new column goes at the end of its table, so that an updated table and a
-- new one list their columns in the same order.

-- The extension owns its schema, so that DROP EXTENSION takes it, and the
-- grants on it, along. A schema mtask that an older version's DROP
-- EXTENSION left behind is taken over if it is empty.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'mtask') THEN
        CREATE SCHEMA mtask;
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = 'mtask'::regnamespace)
          OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = 'mtask'::regnamespace)
          OR EXISTS (SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = 'mtask'::regnamespace) THEN
        RAISE EXCEPTION 'schema "mtask" already exists and is not empty'
            USING ERRCODE = 'duplicate_schema',
                  HINT = 'mtask keeps its objects in a schema of its own. Move what is in it elsewhere, or drop it, and create the extension again.';
    ELSE
        ALTER EXTENSION mtask ADD SCHEMA mtask;
        -- Its grants were made by users, not by mtask: pg_dump keeps them.
        DELETE FROM pg_catalog.pg_init_privs
        WHERE classoid = 'pg_catalog.pg_namespace'::regclass AND objoid = 'mtask'::regnamespace;
    END IF;
END
$$;

-- One row per task. Its rules are in triggers (sql/triggers.sql), not in
-- the API, so a plain INSERT or UPDATE is checked as mtask.schedule() is.
CREATE TABLE mtask.tasks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    owner         regrole NOT NULL DEFAULT current_user::regrole,
    kind          text NOT NULL CONSTRAINT tasks_kind_check CHECK (kind IN ('once', 'recurring')),
    schedule      text,
    timezone      text NOT NULL,
    command       text NOT NULL,
    command_type  text NOT NULL DEFAULT 'sql',
    status        text NOT NULL DEFAULT 'scheduled'
                  CONSTRAINT tasks_status_check CHECK (status IN ('scheduled', 'running', 'paused', 'done', 'failed')),
    remark        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    start_at      timestamptz NOT NULL,
    next_run_at   timestamptz,
    last_run_at   timestamptz,
    last_status   text
                  CONSTRAINT tasks_last_status_check CHECK (last_status IN ('succeeded', 'failed', 'timeout', 'crashed')),
    last_error    text,
    run_count     bigint NOT NULL DEFAULT 0,
    failure_count bigint NOT NULL DEFAULT 0,
    -- 0.2.0: the window, the missed-run policy, timeouts and retries.
    end_at        timestamptz,
    max_runs      bigint,
    missed        text NOT NULL DEFAULT 'once',
    timeout                  interval,
    max_attempts             int NOT NULL DEFAULT 1,
    retry_delay              interval NOT NULL DEFAULT '10 seconds',
    retry_max_delay          interval NOT NULL DEFAULT '1 hour',
    max_consecutive_failures int,
    attempt                  int NOT NULL DEFAULT 1,
    retry_slot               timestamptz,
    consecutive_failures     int NOT NULL DEFAULT 0,
    pause_reason             text,
    transactional            boolean,
    overlap                  text NOT NULL DEFAULT 'skip',
    priority                 int NOT NULL DEFAULT 0,
    -- 0.3.0: events' deliveries, payloads and bounded history.
    payload              jsonb,
    event_id             bigint,
    listener_id          bigint,
    log_runs             text,
    history_max_age      interval,
    history_max_per_task int,
    -- 0.4.0: how the task does, kept on its row so that reading it costs no
    -- scan of the history; and a run asked for with mtask.run_now().
    success_count   bigint NOT NULL DEFAULT 0,
    timeout_count   bigint NOT NULL DEFAULT 0,
    crash_count     bigint NOT NULL DEFAULT 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_duration   interval,
    total_duration  interval NOT NULL DEFAULT '0',
        manual_from        text,
    manual_next_run_at timestamptz,
    -- Where the command runs, when not here (pg_cron's schedule_in_database).
    database           text,
    -- Whether it runs top-level, statement by statement: transactional's
    -- opposite, else what the command needs (sql/triggers.sql), else what a
    -- run found (a CALL of a procedure that commits).
    top_level          boolean NOT NULL DEFAULT false,
    CONSTRAINT tasks_schedule_matches_kind CHECK ((kind = 'recurring') = (schedule IS NOT NULL)),
    -- A task that runs at server start (@reboot) waits for it with no time.
    CONSTRAINT tasks_scheduled_has_next_run CHECK (status <> 'scheduled' OR next_run_at IS NOT NULL
                                                   OR schedule = '@reboot')
) WITH (fillfactor = 80);

-- A task's name is unique per owner. An event's deliveries are named after
-- it, and are not held to that: no name someone takes can stop an emit().
CREATE UNIQUE INDEX tasks_owner_name_key ON mtask.tasks (owner, name) WHERE event_id IS NULL;

-- The claim reads this partial index in due order, then priority: one
-- index walk, no sort, whatever the table's size.
CREATE INDEX tasks_due_idx ON mtask.tasks (next_run_at, priority DESC, id) WHERE status = 'scheduled';

-- One row per execution, written in the same transaction as the command's
-- effects (for a non-transactional run: committed as 'running' first).
-- task_id has no foreign key: a task's runs go with it by a trigger
-- (tasks_delete_runs, sql/triggers.sql). Runs are written only for a task
-- whose row the writer holds locked, so the key's check of each run row
-- could refuse none, and it was a seventh of the scheduler's cost of
-- recording a batch.
CREATE TABLE mtask.runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id       bigint NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    status        text NOT NULL
                  CONSTRAINT runs_status_check
                  CHECK (status IN ('succeeded', 'failed', 'timeout', 'skipped', 'running', 'crashed')),
    sqlstate      text,
    message       text,
    rows          bigint,
    -- 0.2.0
    scheduled_for timestamptz,
    attempt       int,
    pid           int,
    backend_start timestamptz,
    -- 0.3.0: a program's exit code and output.
    exit_code     int,
    stdout        text,
    stderr        text,
    -- 0.4.0: why it ran, the error whole, and what ran as whom.
    trigger       text,
    detail        text,
    hint          text,
    context       text,
    command       text,
    owner         regrole,
    top_level     boolean
);

CREATE INDEX runs_task_id_idx ON mtask.runs (task_id, id);
-- Finds the runs a crash left 'running'.
CREATE INDEX runs_running_idx ON mtask.runs (task_id) WHERE status = 'running';

-- Functions registered for the events of a name.
CREATE TABLE mtask.listeners (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event        text NOT NULL,
    -- As regprocedure prints it with only pg_catalog in the search path:
    -- public.f(jsonb). pg_upgrade refuses a table with a regprocedure
    -- column, since it keeps no function's OID.
    handler      text NOT NULL,
    owner        regrole NOT NULL DEFAULT current_user::regrole,
    takes_event  boolean NOT NULL DEFAULT false,
    max_attempts int NOT NULL DEFAULT 3,
    retry_delay  interval NOT NULL DEFAULT '10 seconds',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT listeners_event_handler_owner_key UNIQUE (event, handler, owner)
);

-- Emitted events. Each delivery to a listener is a one-shot task.
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
CREATE INDEX events_unhandled_idx ON mtask.events (event) WHERE status = 'unhandled';

ALTER TABLE mtask.tasks
    ADD CONSTRAINT tasks_event_id_fkey FOREIGN KEY (event_id) REFERENCES mtask.events (id) ON DELETE CASCADE,
    ADD CONSTRAINT tasks_listener_id_fkey FOREIGN KEY (listener_id) REFERENCES mtask.listeners (id) ON DELETE SET NULL;
CREATE INDEX tasks_event_id_idx ON mtask.tasks (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX tasks_listener_id_idx ON mtask.tasks (listener_id) WHERE listener_id IS NOT NULL;

-- pg_dump keeps the tables' rows with the extension, and where their ids
-- have got to, so that ids go on from there after a restore.
SELECT pg_catalog.pg_extension_config_dump('mtask.tasks', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.runs', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.listeners', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.events', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.tasks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.listeners_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.events_id_seq', '');
