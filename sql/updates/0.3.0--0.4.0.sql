-- mtask 0.3.0 -> 0.4.0: the DDL and data changes only, and the triggers that
-- went. The functions, triggers, views, grants, policies and comments of
-- 0.4.0 follow this file in the assembled update script, as they follow
-- sql/tables.sql in a new installation.

-- The rules on mtask.tasks are now checked by two triggers whose names say
-- their order (sql/triggers.sql).
DROP TRIGGER tasks_check ON mtask.tasks;
DROP TRIGGER tasks_check_limits ON mtask.tasks;
DROP TRIGGER tasks_check_command ON mtask.tasks;
DROP TRIGGER tasks_check_history ON mtask.tasks;
DROP TRIGGER tasks_check_status ON mtask.tasks;
DROP TRIGGER tasks_resume ON mtask.tasks;
-- Their functions go with the other leftovers, in sql/cleanup.sql.

-- The extension owns its schema (see sql/tables.sql). Until 0.3.0 the
-- control file named mtask as the extension's schema, so CREATE EXTENSION
-- made it, outside the extension; now the extension lives in pg_catalog,
-- and mtask is one of its members.
UPDATE pg_catalog.pg_extension SET extnamespace = 'pg_catalog'::regnamespace WHERE extname = 'mtask';
DELETE FROM pg_catalog.pg_depend
WHERE classid = 'pg_catalog.pg_extension'::regclass
  AND objid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'mtask')
  AND refclassid = 'pg_catalog.pg_namespace'::regclass AND refobjid = 'mtask'::regnamespace;
ALTER EXTENSION mtask ADD SCHEMA mtask;
-- Its grants were made by users, not by mtask: pg_dump keeps them.
DELETE FROM pg_catalog.pg_init_privs
WHERE classoid = 'pg_catalog.pg_namespace'::regclass AND objoid = 'mtask'::regnamespace;

-- Deliveries are not held to the unique names of tasks.
ALTER TABLE mtask.tasks DROP CONSTRAINT tasks_owner_name_key;
CREATE UNIQUE INDEX tasks_owner_name_key ON mtask.tasks (owner, name) WHERE event_id IS NULL;

-- pg_dump keeps where the ids have got to (see sql/tables.sql).
SELECT pg_catalog.pg_extension_config_dump('mtask.tasks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.listeners_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('mtask.events_id_seq', '');

-- How each task does, on its row; a run asked for by mtask.run_now(); why
-- each run ran, its error whole, and what ran as whom.
ALTER TABLE mtask.tasks
    ADD COLUMN success_count   bigint NOT NULL DEFAULT 0,
    ADD COLUMN timeout_count   bigint NOT NULL DEFAULT 0,
    ADD COLUMN crash_count     bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_success_at timestamptz,
    ADD COLUMN last_failure_at timestamptz,
    ADD COLUMN last_duration   interval,
    ADD COLUMN total_duration  interval NOT NULL DEFAULT '0',
    ADD COLUMN manual_from        text,
        ADD COLUMN manual_next_run_at timestamptz,
    ADD COLUMN database           text,
    ADD COLUMN top_level          boolean NOT NULL DEFAULT false;
-- A task that runs at server start (@reboot) waits for it with no time.
ALTER TABLE mtask.tasks DROP CONSTRAINT tasks_scheduled_has_next_run,
    ADD CONSTRAINT tasks_scheduled_has_next_run CHECK (status <> 'scheduled' OR next_run_at IS NOT NULL
                                                       OR schedule = '@reboot');
-- transactional NULL: as the command needs (sql/triggers.sql). Tasks of
-- 0.3.0 keep what they said.
ALTER TABLE mtask.tasks ALTER COLUMN transactional DROP NOT NULL, ALTER COLUMN transactional DROP DEFAULT;
UPDATE mtask.tasks SET top_level = NOT transactional OR command_type = 'program';
ALTER TABLE mtask.runs
    ADD COLUMN trigger text,
    ADD COLUMN detail  text,
    ADD COLUMN hint    text,
    ADD COLUMN context text,
    ADD COLUMN command text,
    ADD COLUMN owner   regrole,
    ADD COLUMN top_level boolean;
-- The counters from what 0.3.0 kept: successes exactly; timeouts, crashes
-- and the last success and failure as far as the history still holds them.
UPDATE mtask.tasks SET success_count = run_count - failure_count;
UPDATE mtask.tasks t SET
    timeout_count = h.timeouts,
    crash_count = h.crashes,
    last_success_at = h.last_success,
    last_failure_at = h.last_failure
FROM (SELECT task_id, count(*) FILTER (WHERE status = 'timeout') AS timeouts,
             count(*) FILTER (WHERE status = 'crashed') AS crashes,
             max(started_at) FILTER (WHERE status = 'succeeded') AS last_success,
             max(started_at) FILTER (WHERE status IN ('failed', 'timeout', 'crashed')) AS last_failure
      FROM mtask.runs GROUP BY task_id) h
WHERE h.task_id = t.id;

-- A listener names its handler in text (see sql/tables.sql): pg_upgrade
-- refuses a table with a regprocedure column.
CREATE FUNCTION mtask._handler_name(handler regprocedure) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS 'SELECT $1::text';
ALTER TABLE mtask.listeners ALTER COLUMN handler TYPE text USING mtask._handler_name(handler);
DROP FUNCTION mtask._handler_name(regprocedure);

-- A task's runs go with it by a trigger instead of a foreign key (see
-- sql/tables.sql).
ALTER TABLE mtask.runs DROP CONSTRAINT runs_task_id_fkey;
