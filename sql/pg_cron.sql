-- The move from pg_cron: mtask.import_pg_cron() copies pg_cron's jobs into
-- mtask.tasks, run in the database that holds them (pg_cron's
-- cron.database_name) while pg_cron is still installed there. The API
-- pg_cron's users call is mtask_cron's (mtask_cron/), a second extension.

-- Each job keeps its id, name, schedule, command, owner (the role of that
-- exact name) and database; an inactive job becomes a paused task, and an
-- unnamed one is named by its id. Its cron fields are read in pg_cron's
-- time zone, cron.timezone (GMT unless set). A job that cannot be imported
-- is named in a WARNING that says why, and the others are imported. A job
-- imported before is passed over, so that a second call imports nothing
-- twice. Returns how many jobs it imported.
CREATE OR REPLACE FUNCTION mtask.import_pg_cron() RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job record;
    imported bigint := 0;
    job_owner regrole;
    job_schedule text;
    job_name text;
    zone text := coalesce(nullif(current_setting('cron.timezone', true), ''), 'GMT');
    why text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run mtask.import_pg_cron() in the database of pg_cron''s jobs (cron.database_name) before DROP EXTENSION pg_cron.';
    END IF;
    IF NOT mtask._is_superuser() THEN
        RAISE EXCEPTION 'permission denied to import pg_cron''s jobs'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A superuser imports them: their tasks keep their owners.';
    END IF;
    FOR job IN EXECUTE 'SELECT jobid, schedule, command, nodename, nodeport, database, username, active, jobname
                        FROM cron.job ORDER BY jobid'
    LOOP
        job_name := coalesce(job.jobname, job.jobid::text);
        why := NULL;
        IF EXISTS (SELECT FROM mtask.tasks t WHERE t.id = job.jobid) THEN
            -- Imported before, or an id mtask has given to a task of its own.
            CONTINUE WHEN EXISTS (SELECT FROM mtask.tasks t
                                  WHERE t.id = job.jobid AND t.name = job_name AND t.command = job.command);
            why := pg_catalog.format('mtask task %s has its id', job.jobid);
        ELSIF job.nodename NOT IN ('localhost', '127.0.0.1', '::1', '')
              AND job.nodename NOT LIKE '/%' THEN
            why := pg_catalog.format('it runs on another server, %s:%s, and mtask runs tasks here only',
                                     job.nodename, job.nodeport);
        ELSE
            SELECT r.oid::regrole INTO job_owner FROM pg_roles r WHERE r.rolname = job.username;
            IF job_owner IS NULL THEN
                why := pg_catalog.format('role "%s" does not exist', job.username);
            END IF;
        END IF;
        IF why IS NULL THEN
            BEGIN
                job_schedule := mtask._pg_cron_schedule(job.schedule);
                INSERT INTO mtask.tasks (id, name, kind, schedule, timezone, command, owner, status, database)
                OVERRIDING SYSTEM VALUE
                VALUES (job.jobid, job_name, 'recurring', job_schedule, zone, job.command, job_owner,
                        CASE WHEN job.active THEN 'scheduled' ELSE 'paused' END,
                        nullif(job.database, current_database()));
                imported := imported + 1;
            EXCEPTION WHEN OTHERS THEN
                why := SQLERRM;
            END;
        END IF;
        IF why IS NOT NULL THEN
            RAISE WARNING 'pg_cron job % (%) is not imported: %', job.jobid, job_name, why
                USING HINT = 'Schedule it with mtask.schedule, or fix it in cron.job and import again.';
        END IF;
    END LOOP;
    -- New tasks take ids after the imported ones.
    IF (SELECT max(id) FROM mtask.tasks) >= (SELECT s.last_value FROM mtask.tasks_id_seq s) THEN
        PERFORM setval('mtask.tasks_id_seq', (SELECT max(id) FROM mtask.tasks));
    END IF;
    PERFORM mtask._check_scheduler();
    RETURN imported;
END
$$;
