//! The scheduler's SQL on `mtask.tasks` and `mtask.runs`: claim one due task,
//! record how its run went, and find when the next one is due.

use crate::executor::Outcome;
use crate::lifecycle::{After, Skipped};
use crate::pg_schedule::to_pg;
use chrono::{DateTime, Utc};
use pgrx::PgOid;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as Type;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};
use std::cell::RefCell;
use std::collections::HashMap;
const INT4OID: Type = Type::INT4OID;
const INT8OID: Type = Type::INT8OID;
const TEXTOID: Type = Type::TEXTOID;
const TIMESTAMPTZOID: Type = Type::TIMESTAMPTZOID;

thread_local! {
    /// This worker's plans of the statements below, kept for its life so
    /// that the hot path parses and plans nothing of its own. Postgres
    /// re-plans a kept plan by itself when the tables change.
    static PLANS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs one of this module's statements through its kept plan.
fn execute<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &'static str,
    types: &[Type],
    limit: Option<i64>,
    args: &[DatumWithOid],
) -> SpiResult<SpiTupleTable<'conn>> {
    PLANS.with_borrow_mut(|plans| {
        if !plans.contains_key(sql) {
            let oids: Vec<PgOid> = types.iter().map(|t| PgOid::BuiltIn(*t)).collect();
            plans.insert(sql, client.prepare_mut(sql, &oids)?.keep());
        }
        client.update(&plans[sql], limit, args)
    })
}

#[derive(Debug, Clone)]
pub struct DueTask {
    pub id: i64,
    pub command: String,
    pub owner: pg_sys::Oid,
    pub kind: String,
    pub schedule: Option<String>,
    pub timezone: String,
    pub start_at: TimestampWithTimeZone,
    pub next_run_at: TimestampWithTimeZone,
    pub missed: String,
    pub end_at: Option<TimestampWithTimeZone>,
    pub max_runs: Option<i64>,
    pub run_count: i64,
    /// In milliseconds; `None`: `mtask.default_timeout`.
    pub timeout_ms: Option<i64>,
    pub max_attempts: i32,
    /// In microseconds.
    pub retry_delay: i64,
    pub retry_max_delay: i64,
    pub max_consecutive_failures: Option<i32>,
    pub attempt: i32,
    pub retry_slot: Option<TimestampWithTimeZone>,
    pub consecutive_failures: i32,
    pub transactional: bool,
    pub overlap: String,
    pub command_type: String,
    /// The task's own log_runs; NULL: mtask.log_runs.
    pub log_runs: Option<String>,
    /// What a notify task sends and a program task reads on stdin.
    pub payload: Option<String>,
}

/// The partial index tasks_due_idx (next_run_at, priority DESC, id) WHERE
/// status = 'scheduled' hands this the first due task in order without a
/// sort, and SKIP LOCKED lets other workers pass a task that is running.
/// Due time first, so no task starves; priority only breaks ties.
const CLAIM: &str = "
    SELECT id, command, owner::oid, kind, schedule, timezone, start_at, next_run_at,
           missed, end_at, max_runs, run_count,
           (extract(epoch FROM timeout) * 1000)::bigint,
           max_attempts,
           (extract(epoch FROM retry_delay) * 1000000)::bigint,
           (extract(epoch FROM retry_max_delay) * 1000000)::bigint,
           max_consecutive_failures, attempt, retry_slot, consecutive_failures, transactional, overlap,
           command_type, log_runs, payload::text
    FROM mtask.tasks
    WHERE status = 'scheduled' AND next_run_at <= now() AND (transactional OR $1)
    ORDER BY next_run_at, priority DESC, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED";

// How a run ends: its run row (inserted, or for a non-transactional run
// updated from 'running') and the task's new state, in one statement. $19
// says whether the task's log_runs keeps this run: if not, no row is
// inserted, and a 'running' row is deleted. A task whose command deleted it
// (say, by unscheduling itself) gets no run row.
macro_rules! record_task {
    () => {
        "UPDATE mtask.tasks SET
            last_run_at = $2,
            last_status = $3,
            last_error = $5,
            run_count = run_count + 1,
            failure_count = failure_count + CASE WHEN $3 = 'succeeded' THEN 0 ELSE 1 END,
            status = $7,
            next_run_at = $8,
            attempt = $11,
            retry_slot = $12,
            consecutive_failures = $13,
            pause_reason = $15
        WHERE id = $1"
    };
}
const RECORD_NEW_RUN: &str = concat!(
    "WITH run AS (
        INSERT INTO mtask.runs (task_id, scheduled_for, attempt, started_at, finished_at, status, sqlstate, message, rows,
                                exit_code, stdout, stderr)
        SELECT $1, $9, $10, $2, clock_timestamp(), $3, $4, $5, $6, $16, $17, $18
        WHERE $19 AND EXISTS (SELECT 1 FROM mtask.tasks WHERE id = $1)) ",
    record_task!()
);
const RECORD_RUNNING_RUN: &str = concat!(
    "WITH run AS (
        UPDATE mtask.runs SET finished_at = clock_timestamp(), status = $3, sqlstate = $4, message = $5, rows = $6,
                              exit_code = $16, stdout = $17, stderr = $18
        WHERE id = $14 AND $19
    ), unlogged AS (
        DELETE FROM mtask.runs WHERE id = $14 AND NOT $19) ",
    record_task!()
);
const RECORD_TYPES: &[Type] = &[
    INT8OID,
    TIMESTAMPTZOID,
    TEXTOID,
    TEXTOID,
    TEXTOID,
    INT8OID,
    TEXTOID,
    TIMESTAMPTZOID,
    TIMESTAMPTZOID,
    INT4OID,
    INT4OID,
    TIMESTAMPTZOID,
    INT4OID,
    INT8OID,
    TEXTOID,
    INT4OID,
    TEXTOID,
    TEXTOID,
    Type::BOOLOID,
];

/// A non-transactional run, committed before it starts.
const START_RUN: &str = "
    WITH run AS (
        INSERT INTO mtask.runs (task_id, scheduled_for, attempt, started_at, status, pid, backend_start)
        SELECT $1, $2, $3, $4, 'running', pid, backend_start
        FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()
        RETURNING id
    ), task AS (
        UPDATE mtask.tasks SET status = 'running' WHERE id = $1
    )
    SELECT id FROM run";

/// Runs left 'running' by a worker that is gone (a crash, a restart, a
/// terminated worker) are closed as 'crashed', and their tasks scheduled
/// again: their next_run_at is still the slot that was running, so the
/// missed-run policy decides whether it runs again.
const RECOVER_ORPHANS: &str = "
    WITH orphans AS (
        UPDATE mtask.runs r SET status = 'crashed', finished_at = now(),
               message = 'the worker running it stopped before the run ended'
        WHERE r.status = 'running'
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                          WHERE a.pid = r.pid AND a.backend_start = r.backend_start)
        RETURNING r.task_id
    )
    UPDATE mtask.tasks t SET status = 'scheduled', last_status = 'crashed',
           last_error = 'the worker running it stopped before the run ended'
    FROM orphans o WHERE t.id = o.task_id AND t.status = 'running'";

/// Strictly after the claim's now(): a task due by then but not claimed is
/// locked (running, or held by a user's transaction) and nothing would wake
/// us when the lock goes, so it is left to the next naptime.
const NEXT_DUE: &str = "SELECT min(next_run_at) FROM mtask.tasks WHERE status = 'scheduled' AND next_run_at > now()";

/// The first due task; a non-transactional one only if `any_kind`.
pub fn claim(client: &mut SpiClient<'_>, any_kind: bool) -> SpiResult<Option<DueTask>> {
    let table = execute(client, CLAIM, &[Type::BOOLOID], Some(1), &[any_kind.into()])?;
    if table.is_empty() {
        return Ok(None);
    }
    let row = table.first();
    let missing = || pgrx::spi::SpiError::InvalidPosition;
    Ok(Some(DueTask {
        id: row.get(1)?.ok_or_else(missing)?,
        command: row.get(2)?.ok_or_else(missing)?,
        owner: row.get(3)?.ok_or_else(missing)?,
        kind: row.get(4)?.ok_or_else(missing)?,
        schedule: row.get(5)?,
        timezone: row.get(6)?.ok_or_else(missing)?,
        start_at: row.get(7)?.ok_or_else(missing)?,
        next_run_at: row.get(8)?.ok_or_else(missing)?,
        missed: row.get(9)?.ok_or_else(missing)?,
        end_at: row.get(10)?,
        max_runs: row.get(11)?,
        run_count: row.get(12)?.ok_or_else(missing)?,
        timeout_ms: row.get(13)?,
        max_attempts: row.get(14)?.ok_or_else(missing)?,
        retry_delay: row.get(15)?.ok_or_else(missing)?,
        retry_max_delay: row.get(16)?.ok_or_else(missing)?,
        max_consecutive_failures: row.get(17)?,
        attempt: row.get(18)?.ok_or_else(missing)?,
        retry_slot: row.get(19)?,
        consecutive_failures: row.get(20)?.ok_or_else(missing)?,
        transactional: row.get(21)?.ok_or_else(missing)?,
        overlap: row.get(22)?.ok_or_else(missing)?,
        command_type: row.get(23)?.ok_or_else(missing)?,
        log_runs: row.get(24)?,
        payload: row.get(25)?,
    }))
}

pub fn record(
    client: &mut SpiClient<'_>,
    task: &DueTask,
    run_id: Option<i64>,
    slot: DateTime<Utc>,
    started_at: TimestampWithTimeZone,
    outcome: &Outcome,
    after: &After,
    pause_reason: Option<&str>,
    logged: bool,
) -> SpiResult<()> {
    let program = outcome.program.as_ref();
    let args: [DatumWithOid; 19] = [
        task.id.into(),
        started_at.into(),
        outcome.status.as_str().into(),
        outcome.sqlstate.as_deref().into(),
        outcome.message.as_deref().into(),
        outcome.rows.into(),
        after.status.into(),
        after.next.map(to_pg).into(),
        to_pg(slot).into(),
        task.attempt.into(),
        after.attempt.into(),
        after.retry_slot.map(to_pg).into(),
        after.failures.into(),
        run_id.into(),
        pause_reason.into(),
        program.and_then(|p| p.exit_code).into(),
        program.map(|p| p.stdout.as_str()).into(),
        program.map(|p| p.stderr.as_str()).into(),
        logged.into(),
    ];
    let sql = if run_id.is_some() { RECORD_RUNNING_RUN } else { RECORD_NEW_RUN };
    execute(client, sql, RECORD_TYPES, None, &args)?;
    Ok(())
}

pub fn start_run(
    client: &mut SpiClient<'_>,
    task: &DueTask,
    slot: DateTime<Utc>,
    started_at: TimestampWithTimeZone,
) -> SpiResult<i64> {
    let args: [DatumWithOid; 4] = [task.id.into(), to_pg(slot).into(), task.attempt.into(), started_at.into()];
    let types = [INT8OID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID];
    let id: Option<i64> = execute(client, START_RUN, &types, Some(1), &args)?.first().get_one()?;
    id.ok_or(pgrx::spi::SpiError::InvalidPosition)
}

pub fn recover_orphans(client: &mut SpiClient<'_>) -> SpiResult<()> {
    execute(client, RECOVER_ORPHANS, &[], None, &[])?;
    Ok(())
}

/// Records slots that were passed over as one 'skipped' run.
pub fn record_skipped(client: &mut SpiClient<'_>, task_id: i64, skipped: &Skipped) -> SpiResult<()> {
    let message = if skipped.past_end {
        format!("not run: the task's end_at had passed when it came due at {}", skipped.from)
    } else {
        format!("not run: runs due from {} until {} were missed", skipped.from, skipped.until)
    };
    let args: [DatumWithOid; 3] = [task_id.into(), to_pg(skipped.from).into(), message.into()];
    client.update(
        "INSERT INTO mtask.runs (task_id, scheduled_for, started_at, finished_at, status, message)
         VALUES ($1, $2, now(), now(), 'skipped', $3)",
        None,
        &args,
    )?;
    Ok(())
}

/// Moves a task on without running it.
pub fn pass(
    client: &mut SpiClient<'_>,
    task_id: i64,
    status: &str,
    next_run_at: Option<TimestampWithTimeZone>,
) -> SpiResult<()> {
    let args: [DatumWithOid; 3] = [task_id.into(), status.into(), next_run_at.into()];
    client.update("UPDATE mtask.tasks SET status = $2, next_run_at = $3 WHERE id = $1", None, &args)?;
    Ok(())
}

/// How many tasks one purge round examines, how many of those with runs it
/// purges, and the most runs it deletes: enough that a sweep over a million
/// tasks that have not run takes a hundred cheap rounds, few enough that a
/// round is a short transaction.
const PURGE_EXAMINE: i64 = 10_000;
const PURGE_TASKS: i64 = 50;
const PURGE_ROWS: i64 = 10_000;

/// One purge round from the task after `after` (by id): of the next
/// PURGE_EXAMINE tasks, the first PURGE_TASKS that have run have their runs
/// past history_max_per_task and older than history_max_age deleted, never
/// a 'running' one. Each task's runs are read through runs_task_id_idx,
/// newest first for the count and oldest first for the age, so the cost is
/// bounded by the history kept, not by the table. Returns where the next
/// round starts (NULL: the sweep is over) and how many runs went.
const PURGE: &str = "
    WITH examined AS (
        SELECT id, run_count, history_max_per_task, history_max_age
        FROM mtask.tasks WHERE id > $1 ORDER BY id LIMIT $6
    ), picked AS (
        SELECT id, coalesce(history_max_per_task, $2) AS keep,
               coalesce(history_max_age, make_interval(secs => $3)) AS max_age
        FROM examined WHERE run_count > 0 ORDER BY id LIMIT $4
    ), doomed AS (
        SELECT r.id FROM picked p CROSS JOIN LATERAL (
            SELECT id FROM mtask.runs
            WHERE task_id = p.id AND status <> 'running' AND p.keep > 0
            ORDER BY id DESC OFFSET p.keep) r
        UNION
        SELECT r.id FROM picked p CROSS JOIN LATERAL (
            SELECT id FROM mtask.runs
            WHERE task_id = p.id AND status <> 'running' AND p.max_age > interval '0'
              AND started_at < now() - p.max_age
            ORDER BY id) r
        LIMIT $5
    ), gone AS (
        DELETE FROM mtask.runs WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT CASE WHEN (SELECT count(*) FROM picked) = $4 THEN (SELECT max(id) FROM picked)
                WHEN (SELECT count(*) FROM examined) = $6 THEN (SELECT max(id) FROM examined) END,
           (SELECT count(*) FROM gone)";

/// Events older than mtask.history_max_age whose deliveries have all
/// ended (or that found no listener) go, and their deliveries and those
/// deliveries' runs with them, oldest first, a batch at a time.
const PURGE_EVENTS: &str = "
    WITH doomed AS (
        SELECT e.id FROM mtask.events e
        WHERE $1 > 0 AND e.run_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM mtask.tasks t
                          WHERE t.event_id = e.id AND t.status IN ('scheduled', 'running', 'paused'))
        ORDER BY e.id LIMIT $2
    ), gone AS (
        DELETE FROM mtask.events WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT count(*) FROM gone";

/// What a purge round did.
pub struct Purged {
    /// Where the next round starts; None when this one ended a sweep over
    /// all tasks, so the next starts again from the first.
    pub next: Option<i64>,
    pub deleted: i64,
}

pub fn purge(client: &mut SpiClient<'_>, after: i64, max_per_task: i32, max_age_s: i32) -> SpiResult<Purged> {
    let args: [DatumWithOid; 6] = [
        after.into(),
        max_per_task.into(),
        max_age_s.into(),
        PURGE_TASKS.into(),
        PURGE_ROWS.into(),
        PURGE_EXAMINE.into(),
    ];
    let types = [INT8OID, INT4OID, INT4OID, INT8OID, INT8OID, INT8OID];
    let table = execute(client, PURGE, &types, Some(1), &args)?;
    let row = table.first();
    let (next, runs): (Option<i64>, Option<i64>) = (row.get(1)?, row.get(2)?);
    let args: [DatumWithOid; 2] = [max_age_s.into(), PURGE_ROWS.into()];
    let events: Option<i64> = execute(client, PURGE_EVENTS, &[INT4OID, INT8OID], Some(1), &args)?.first().get_one()?;
    Ok(Purged { next, deleted: runs.unwrap_or(0) + events.unwrap_or(0) })
}

pub fn next_due(client: &mut SpiClient<'_>) -> SpiResult<Option<TimestampWithTimeZone>> {
    execute(client, NEXT_DUE, &[], Some(1), &[])?.first().get_one()
}
