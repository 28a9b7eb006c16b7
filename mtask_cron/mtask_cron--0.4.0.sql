-- mtask_cron: pg_cron 1.6's functions and views, in schema cron, over
-- mtask's tasks and runs, so that code written for pg_cron runs unchanged.
-- A job is a recurring task of mtask.tasks, its id the job's id; an
-- unnamed job is a task named by its id. Every function runs as its caller,
-- so mtask's row-level security gives each role its own jobs, as pg_cron's
-- does. The README's "Moving from pg_cron" says where this differs.
\echo Use "CREATE EXTENSION mtask_cron" to load this file. \quit

CREATE SCHEMA cron;
COMMENT ON SCHEMA cron IS 'pg_cron''s API over mtask (extension mtask_cron)';

-- The role of exactly this name, as pg_cron reads a username: no quoting.
CREATE FUNCTION cron._role(username text) RETURNS regrole
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found regrole;
BEGIN
    SELECT r.oid::regrole INTO found FROM pg_roles r WHERE r.rolname = username;
    IF found IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', username
            USING ERRCODE = 'undefined_object',
                  HINT = 'A username is a role''s exact name, in its own case, without quotes.';
    END IF;
    RETURN found;
END
$$;

-- pg_cron's time zone for cron fields: cron.timezone if set, else GMT.
CREATE FUNCTION cron._timezone() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(current_setting('cron.timezone', true), ''), 'GMT') $$;

-- The job of that name and owner, schedule and command changed, or a new
-- one; pg_cron's schedule() and schedule_in_database() both come here.
CREATE FUNCTION cron._upsert(job_name text, schedule text, command text, database text, owner regrole,
                             active boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_id bigint;
    job_status text;
    mtask_schedule text := mtask._pg_cron_schedule(schedule);
    elsewhere text := nullif(database, current_database());
BEGIN
    IF job_name IS NOT NULL THEN
        SELECT t.id, t.status INTO job_id, job_status FROM mtask.tasks t
        WHERE t.name = job_name AND t.owner = _upsert.owner AND t.event_id IS NULL
        FOR UPDATE;
    END IF;
    IF job_id IS NULL THEN
        -- An unnamed job is named by its id, which the row gets first.
        INSERT INTO mtask.tasks (name, kind, schedule, timezone, command, owner, status, database)
        VALUES (coalesce(job_name, pg_catalog.gen_random_uuid()::text), 'recurring', mtask_schedule,
                cron._timezone(), command, owner, CASE WHEN active THEN 'scheduled' ELSE 'paused' END, elsewhere)
        RETURNING id INTO job_id;
        IF job_name IS NULL THEN
            UPDATE mtask.tasks t SET name = job_id::text WHERE t.id = job_id;
        END IF;
    ELSE
        UPDATE mtask.tasks t SET kind = 'recurring', schedule = mtask_schedule, timezone = cron._timezone(),
                                 command = _upsert.command, database = elsewhere
        WHERE t.id = job_id;
        IF active AND job_status = 'paused' THEN
            PERFORM mtask.resume(job_id);
        ELSIF NOT active AND job_status <> 'paused' THEN
            PERFORM mtask.pause(job_id);
        END IF;
    END IF;
    PERFORM mtask._check_scheduler();
    RETURN job_id;
END
$$;

-- An unnamed job, in this database.
CREATE FUNCTION cron.schedule(schedule text, command text) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cron._upsert(NULL, schedule, command, current_database(), current_user::regrole, true) $$;

-- A named job, in this database; an existing one of that name is changed.
CREATE FUNCTION cron.schedule(job_name text, schedule text, command text) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cron._upsert(job_name, schedule, command, current_database(), current_user::regrole, true) $$;

-- A named job that runs in another database, and as another role: as in
-- pg_cron, only superusers may call it unless granted.
CREATE FUNCTION cron.schedule_in_database(job_name text, schedule text, command text, database text,
                                          username text DEFAULT NULL, active boolean DEFAULT true)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT cron._upsert(job_name, schedule, command, database, cron._role(coalesce(username, current_user::text)),
                        coalesce(active, true))
$$;
REVOKE EXECUTE ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean) FROM PUBLIC;

CREATE FUNCTION cron.unschedule(job_id bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM mtask.tasks t WHERE t.id = job_id AND t.kind = 'recurring' AND t.event_id IS NULL) THEN
        RAISE EXCEPTION 'could not find valid entry for job %', job_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT jobid, jobname FROM cron.job lists your jobs.';
    END IF;
    RETURN mtask.unschedule(job_id);
END
$$;

-- The caller's own job of that name.
CREATE FUNCTION cron.unschedule(job_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_id bigint;
BEGIN
    SELECT t.id INTO job_id FROM mtask.tasks t
    WHERE t.name = job_name AND t.owner = current_user::regrole AND t.kind = 'recurring' AND t.event_id IS NULL;
    IF job_id IS NULL THEN
        RAISE EXCEPTION 'could not find valid entry for job ''%''', job_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT jobid, jobname FROM cron.job lists your jobs.';
    END IF;
    RETURN mtask.unschedule(job_id);
END
$$;

-- Changes what is given of a job; NULL leaves it as it is. Changing the
-- username takes a superuser. As in pg_cron, only superusers may call it
-- unless granted.
CREATE FUNCTION cron.alter_job(job_id bigint, schedule text DEFAULT NULL, command text DEFAULT NULL,
                               database text DEFAULT NULL, username text DEFAULT NULL, active boolean DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_status text;
BEGIN
    IF num_nonnulls(schedule, command, database, username, active) = 0 THEN
        RAISE EXCEPTION 'no updates specified'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'You must specify at least one job attribute to change when calling alter_job';
    END IF;
    SELECT t.status INTO job_status FROM mtask.tasks t
    WHERE t.id = job_id AND t.kind = 'recurring' AND t.event_id IS NULL
    FOR UPDATE;
    IF job_status IS NULL THEN
        RAISE EXCEPTION 'Job % does not exist or you don''t own it', job_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT jobid, jobname FROM cron.job lists your jobs.';
    END IF;
    IF username IS NOT NULL THEN
        IF NOT mtask._is_superuser() THEN
            RAISE EXCEPTION 'must be superuser to alter username' USING ERRCODE = 'insufficient_privilege';
        END IF;
        UPDATE mtask.tasks t SET owner = cron._role(alter_job.username) WHERE t.id = job_id;
    END IF;
    IF database IS NOT NULL AND NOT EXISTS (SELECT FROM pg_database d WHERE d.datname = alter_job.database) THEN
        RAISE EXCEPTION 'database "%" does not exist', database USING ERRCODE = 'invalid_catalog_name';
    END IF;
    PERFORM mtask.alter(job_id, schedule => mtask._pg_cron_schedule(alter_job.schedule), command => alter_job.command,
                        database => alter_job.database,
                        timezone => CASE WHEN alter_job.schedule IS NOT NULL THEN cron._timezone() END);
    IF active AND job_status = 'paused' THEN
        PERFORM mtask.resume(job_id);
    ELSIF NOT active AND job_status <> 'paused' THEN
        PERFORM mtask.pause(job_id);
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION cron.alter_job(bigint, text, text, text, text, boolean) FROM PUBLIC;

-- The jobs: mtask's recurring tasks, in pg_cron's columns. Intervals show
-- as pg_cron writes them ("5 seconds"), cron fields as mtask keeps them.
SELECT mtask._create_view('cron.job', $q$
SELECT t.id AS jobid,
       CASE WHEN t.schedule LIKE 'every %' THEN pg_catalog.substr(t.schedule, 7) ELSE t.schedule END AS schedule,
       t.command,
       'localhost'::text AS nodename,
       pg_catalog.current_setting('port')::int AS nodeport,
       coalesce(t.database, pg_catalog.current_database())::text AS database,
       pg_catalog.pg_get_userbyid(t.owner::oid)::text AS username,
       t.status IN ('scheduled', 'running') AS active,
       CASE WHEN t.name <> t.id::text THEN t.name END::name AS jobname
FROM (SELECT * FROM mtask.tasks WHERE kind = 'recurring' AND event_id IS NULL) t
$q$, $q$pg_catalog.pg_has_role(t.owner, 'MEMBER')$q$);

-- The runs of the jobs, in pg_cron's columns and words, and those running
-- now (from shared memory, as mtask.running shows them: a transactional
-- run has no row until it ends). Skipped slots are not runs to pg_cron.
SELECT mtask._create_view('cron.job_run_details', $q$
SELECT d.jobid, d.runid, d.job_pid, d.database, d.username, d.command, d.status, d.return_message,
       d.start_time, d.end_time
FROM (
    SELECT r.task_id AS jobid, r.id AS runid, r.pid AS job_pid,
           coalesce(t.database, pg_catalog.current_database())::text AS database,
           pg_catalog.pg_get_userbyid(coalesce(r.owner, t.owner)::oid)::text AS username,
           coalesce(r.command, t.command) AS command,
           CASE WHEN r.status IN ('succeeded', 'running') THEN r.status ELSE 'failed' END AS status,
           -- As pg_cron has libpq print them: the command tag, or the error.
           CASE WHEN r.status = 'succeeded' THEN mtask._command_tag(coalesce(r.command, t.command), r.rows)
                ELSE 'ERROR:  ' || r.message || E'\n' END AS return_message,
           r.started_at AS start_time, r.finished_at AS end_time, t.owner
    FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id
    WHERE t.kind = 'recurring' AND t.event_id IS NULL AND r.status <> 'skipped'
    UNION ALL
    SELECT x.task_id, NULL, x.pid, coalesce(t.database, pg_catalog.current_database())::text,
           pg_catalog.pg_get_userbyid(t.owner::oid)::text, t.command, 'running', NULL, x.started_at, NULL, t.owner
    FROM mtask._running() x JOIN mtask.tasks t ON t.id = x.task_id
    WHERE t.kind = 'recurring' AND t.event_id IS NULL
      AND NOT EXISTS (SELECT FROM mtask.runs r WHERE r.task_id = x.task_id AND r.status = 'running')
) d
$q$, $q$pg_catalog.pg_has_role(d.owner, 'MEMBER')$q$);

-- pg_cron's clean-up, DELETE FROM cron.job_run_details WHERE ..., deletes
-- the runs. The rows it is given are those the caller can see; a run in
-- progress stays.
CREATE FUNCTION cron._delete_run() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.runid IS NULL OR OLD.status = 'running' THEN
        RETURN NULL;
    END IF;
    DELETE FROM mtask.runs r WHERE r.id = OLD.runid AND r.status <> 'running';
    RETURN CASE WHEN FOUND THEN OLD END;
END
$$;
REVOKE EXECUTE ON FUNCTION cron._delete_run() FROM PUBLIC;
CREATE TRIGGER delete_run INSTEAD OF DELETE ON cron.job_run_details
    FOR EACH ROW EXECUTE FUNCTION cron._delete_run();

GRANT SELECT ON cron.job TO PUBLIC;
GRANT SELECT, DELETE ON cron.job_run_details TO PUBLIC;

COMMENT ON FUNCTION cron.schedule(text, text) IS 'pg_cron: an unnamed job in this database; returns its jobid';
COMMENT ON FUNCTION cron.schedule(text, text, text) IS 'pg_cron: a named job; an existing job of that name is changed';
COMMENT ON FUNCTION cron.schedule_in_database(text, text, text, text, text, boolean) IS
    'pg_cron: a named job that runs in another database, as another role';
COMMENT ON FUNCTION cron.unschedule(bigint) IS 'pg_cron: removes a job';
COMMENT ON FUNCTION cron.unschedule(text) IS 'pg_cron: removes your job of that name';
COMMENT ON FUNCTION cron.alter_job(bigint, text, text, text, text, boolean) IS 'pg_cron: changes what is given of a job';
COMMENT ON VIEW cron.job IS 'pg_cron: the jobs, mtask''s recurring tasks';
COMMENT ON VIEW cron.job_run_details IS 'pg_cron: the jobs'' runs, those in progress included';
