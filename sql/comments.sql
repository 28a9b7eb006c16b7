-- What psql's \d+ and other tools show of mtask's tables and columns.

COMMENT ON TABLE mtask.tasks IS 'One row per task; the scheduler runs rows whose next_run_at has come.';
COMMENT ON TABLE mtask.runs IS 'One row per execution, written in the same transaction as the command''s effects.';
COMMENT ON COLUMN mtask.tasks.overlap IS 'A slot that comes while the task still runs: skip it, or queue one run right after.';
COMMENT ON COLUMN mtask.tasks.priority IS 'Among tasks due at the same instant, higher runs first.';
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
COMMENT ON COLUMN mtask.runs.pid IS 'For a non-transactional run: the worker running it, which pg_stat_activity shows while it runs.';
COMMENT ON COLUMN mtask.runs.scheduled_for IS 'The slot this run was for; for a skipped run, the first slot passed over.';
COMMENT ON COLUMN mtask.tasks.owner IS 'The role the task runs as; only its members (and superusers) see or change the task.';
COMMENT ON COLUMN mtask.tasks.command_type IS 'sql: SQL run as the owner; program: an executable and its arguments, run without a shell; notify: pg_notify(command, payload).';
COMMENT ON COLUMN mtask.runs.stdout IS 'A program''s output, up to mtask.program_output_limit bytes; stderr likewise.';
COMMENT ON TABLE mtask.listeners IS 'Functions that get the events of a name: handler(payload jsonb) or handler(event text, payload jsonb).';
COMMENT ON TABLE mtask.events IS 'Emitted events: queued (handed to its listeners, see mtask.deliveries) or unhandled (no listener).';
COMMENT ON COLUMN mtask.tasks.payload IS 'Sent by a notify task, and given on stdin to a program task.';
COMMENT ON COLUMN mtask.tasks.event_id IS 'For an event''s delivery to a listener: the event.';
COMMENT ON COLUMN mtask.tasks.log_runs IS 'Which runs are recorded: all, failures or none; NULL: mtask.log_runs.';
COMMENT ON COLUMN mtask.tasks.history_max_age IS 'Runs older than this are purged; 0: kept for ever; NULL: mtask.history_max_age.';
COMMENT ON COLUMN mtask.tasks.history_max_per_task IS 'Only this many latest runs are kept; 0: all; NULL: mtask.history_max_per_task.';
COMMENT ON COLUMN mtask.tasks.database IS 'The database the command runs in, as its owner, in a worker started there for the run; its runs are recorded here, at least once. NULL: this one.';
