-- The functions mtask implements in Rust (src/api.rs), declared here, once,
-- for a new installation and every update alike. The symbol of each is its
-- Rust function's name with "_wrapper"; an older script may still name a
-- symbol, so a Rust function is renamed only with a new SQL name.

-- The canonical form of a schedule text, or an ERROR with a hint. This is
-- the first function the topic files declare: sql/cleanup.sql counts from it.
CREATE OR REPLACE FUNCTION mtask._normalize_schedule(schedule text) RETURNS text
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_schedule_wrapper';

-- The canonical name of a time zone; NULL means mtask.timezone.
CREATE OR REPLACE FUNCTION mtask._normalize_timezone(timezone text) RETURNS text
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'normalize_timezone_wrapper';

-- The first run of a schedule in a time zone, anchored at anchor, at or
-- after not_before; NULL if there is none.
CREATE OR REPLACE FUNCTION mtask._next_run(schedule text, timezone text, anchor timestamptz, not_before timestamptz)
RETURNS timestamptz
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'next_run_wrapper';

-- An ERROR with a hint unless a program command splits into words.
CREATE OR REPLACE FUNCTION mtask._check_program(command text) RETURNS void
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'check_program_wrapper';

-- How many statements a task's SQL holds; an ERROR if it does not parse.
CREATE OR REPLACE FUNCTION mtask._check_sql(command text) RETURNS int
STRICT STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'check_sql_wrapper';

-- Whether the current user (inside a task, its owner) is a superuser.
CREATE OR REPLACE FUNCTION mtask._is_superuser() RETURNS boolean
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'is_superuser_wrapper';

-- Whether the rows being written are pg_dump's, being restored: a COPY by a
-- superuser.
CREATE OR REPLACE FUNCTION mtask._restoring() RETURNS boolean
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'restoring_wrapper';

-- Whether a statement of a command cannot run in a transaction block.
CREATE OR REPLACE FUNCTION mtask._needs_top_level(command text) RETURNS boolean
STRICT IMMUTABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'needs_top_level_wrapper';

-- What psql would print after a command whose last statement processed
-- "rows" rows, e.g. 'INSERT 0 1'.
CREATE OR REPLACE FUNCTION mtask._command_tag(command text, rows bigint) RETURNS text
IMMUTABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'command_tag_wrapper';

-- The mtask schedule of a schedule as pg_cron reads it, or pg_cron's ERROR.
CREATE OR REPLACE FUNCTION mtask._pg_cron_schedule(schedule text) RETURNS text
STRICT IMMUTABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'pg_cron_schedule_wrapper';

-- Warns when tasks scheduled in this session would not run.
CREATE OR REPLACE FUNCTION mtask._check_scheduler() RETURNS void
STRICT VOLATILE
LANGUAGE c AS 'MODULE_PATHNAME', 'check_scheduler_wrapper';

-- Says, when the transaction commits, that a task of this database is due
-- at "due": its workers wake, or the launcher starts one.
CREATE OR REPLACE FUNCTION mtask._wake_at_commit(due timestamptz) RETURNS void
STRICT VOLATILE
LANGUAGE c AS 'MODULE_PATHNAME', 'wake_due_at_commit_wrapper';

-- What a schedule will do: its next n runs from "from", for a task created
-- then, in timezone (default mtask.timezone).
CREATE OR REPLACE FUNCTION mtask.next_runs(schedule text, n int DEFAULT 5, "from" timestamptz DEFAULT now(),
                                           timezone text DEFAULT NULL)
RETURNS SETOF timestamptz
STABLE PARALLEL SAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'next_runs_wrapper';

-- The runs in progress in this database now, from shared memory (see the
-- view mtask.running).
CREATE OR REPLACE FUNCTION mtask._running(OUT task_id bigint, OUT pid int, OUT started_at timestamptz,
                                          OUT attempt int, OUT scheduled_for timestamptz)
RETURNS SETOF record
STRICT VOLATILE
LANGUAGE c AS 'MODULE_PATHNAME', 'running_wrapper';

-- Runs a task now, in the caller's session (src/run_here.rs).
CREATE OR REPLACE PROCEDURE mtask.run(task_id bigint)
LANGUAGE c AS 'MODULE_PATHNAME', 'run_by_id_wrapper';
CREATE OR REPLACE PROCEDURE mtask.run(task_name text)
LANGUAGE c AS 'MODULE_PATHNAME', 'run_by_name_wrapper';
