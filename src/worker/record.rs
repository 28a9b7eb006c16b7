//! Recording runs: how each run ended (its run row) and the task's new state,
//! in one statement for any number of runs. A run record is one struct,
//! `RunRecord`, and its binding to that statement lives in `record_columns!`
//! alone: one array parameter per field, unnested into rows.

use super::plans;
use crate::executor::Outcome;
use crate::pg_schedule::to_pg;
use crate::report;
use chrono::{DateTime, Utc};
use mtask_core::lifecycle::{After, Skipped};
use mtask_core::states::{RunStatus, Status, Trigger};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as Type;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};

/// How one run ended, and what becomes of its task.
pub struct RunRecord {
    pub task_id: i64,
    /// The version of the task's row the run was decided on: if the row has
    /// changed since (a user, or the task itself, altered or paused it),
    /// the task's new state is worked out again from the row as it is.
    pub xmin: i64,
    /// The 'running' run row of a non-transactional run, committed before it
    /// started; None for a run recorded in the transaction it ran in.
    pub run_id: Option<i64>,
    /// The slot the run was for.
    pub slot: DateTime<Utc>,
    pub attempt: i32,
    pub started_at: TimestampWithTimeZone,
    pub finished_at: TimestampWithTimeZone,
    pub outcome: Outcome,
    /// Why it ran.
    pub trigger: Trigger,
    /// What it ran, and as whom, as they were when it ran.
    pub command: String,
    pub owner: pg_sys::Oid,
    /// It ran statement by statement, each committed on its own.
    pub top_level: bool,
    /// Whether the task's log_runs keeps a run that ended so; if not, no run
    /// row is made, and a 'running' one is deleted.
    pub logged: bool,
    pub after: After,
    pub pause_reason: Option<String>,
}

impl RunRecord {
    /// How long it ran; None for a run whose worker died, whose end nobody saw.
    fn duration(&self) -> Option<pgrx::datum::Interval> {
        (self.outcome.status != RunStatus::Crashed).then(|| {
            let micros = i64::from(self.finished_at) - i64::from(self.started_at);
            pgrx::datum::Interval::new(0, 0, micros.max(0)).expect("a duration is a valid interval")
        })
    }
}

/// Declares `COLUMNS`, the record statement's parameters (a name, an SQL
/// array type and its OID each), and `bind`, which makes those parameters
/// from records: each is an array with one element per record.
macro_rules! record_columns {
    ($($name:ident $sqltype:literal $oid:ident => |$r:ident| $value:expr,)+) => {
        const COLUMNS: &[(&str, &str, Type)] = &[$((stringify!($name), $sqltype, Type::$oid),)+];

        fn bind(records: &[RunRecord]) -> Vec<DatumWithOid<'static>> {
            vec![$(DatumWithOid::from(records.iter().map(|$r| $value).collect::<Vec<_>>()),)+]
        }
    };
}

record_columns! {
    task_id "bigint[]" INT8ARRAYOID => |r| r.task_id,
    xmin "bigint[]" INT8ARRAYOID => |r| r.xmin,
    run_id "bigint[]" INT8ARRAYOID => |r| r.run_id,
    scheduled_for "timestamptz[]" TIMESTAMPTZARRAYOID => |r| to_pg(r.slot),
    attempt "int[]" INT4ARRAYOID => |r| r.attempt,
    started_at "timestamptz[]" TIMESTAMPTZARRAYOID => |r| r.started_at,
    finished_at "timestamptz[]" TIMESTAMPTZARRAYOID => |r| r.finished_at,
    status "text[]" TEXTARRAYOID => |r| r.outcome.status.as_sql(),
    sqlstate "text[]" TEXTARRAYOID => |r| r.outcome.failure.as_ref().and_then(|f| f.code).map(report::sqlstate),
    message "text[]" TEXTARRAYOID => |r| r.outcome.failure.as_ref().map(|f| f.message.clone()),
    detail "text[]" TEXTARRAYOID => |r| r.outcome.failure.as_ref().and_then(|f| f.detail.clone()),
    hint "text[]" TEXTARRAYOID => |r| r.outcome.failure.as_ref().and_then(|f| f.hint.clone()),
    context "text[]" TEXTARRAYOID => |r| r.outcome.failure.as_ref().and_then(|f| f.context.clone()),
    trigger "text[]" TEXTARRAYOID => |r| r.trigger.as_sql(),
    command "text[]" TEXTARRAYOID => |r| r.command.clone(),
    owner "oid[]" OIDARRAYOID => |r| r.owner,
    top_level "boolean[]" BOOLARRAYOID => |r| r.top_level,
    duration "interval[]" INTERVALARRAYOID => |r| r.duration(),
    rows "bigint[]" INT8ARRAYOID => |r| r.outcome.rows,
    exit_code "int[]" INT4ARRAYOID => |r| r.outcome.program.as_ref().and_then(|p| p.exit_code),
    stdout "text[]" TEXTARRAYOID => |r| r.outcome.program.as_ref().map(|p| p.stdout.clone()),
    stderr "text[]" TEXTARRAYOID => |r| r.outcome.program.as_ref().map(|p| p.stderr.clone()),
    logged "boolean[]" BOOLARRAYOID => |r| r.logged,
    next_status "text[]" TEXTARRAYOID => |r| r.after.status.as_sql(),
    next_run_at "timestamptz[]" TIMESTAMPTZARRAYOID => |r| r.after.next.and_then(to_pg),
    next_attempt "int[]" INT4ARRAYOID => |r| r.after.attempt,
    retry_slot "timestamptz[]" TIMESTAMPTZARRAYOID => |r| r.after.retry_slot.and_then(to_pg),
    failures "int[]" INT4ARRAYOID => |r| r.after.failures,
    pause_reason "text[]" TEXTARRAYOID => |r| r.pause_reason.clone(),
}

/// The record statements: one for runs recorded in the transaction they ran
/// in, one for runs committed as 'running' first. A task whose command
/// deleted it (say, by unscheduling itself) gets no run row.
///
/// Each join of the records with a table also names the ids as an array,
/// and the statement is planned with no sequential scan allowed, which
/// bounds that table's scan to an index's lookup of them whatever the
/// planner believes of its size. A VACUUM that runs while a bulk INSERT of
/// tasks is under way leaves pg_class saying "no rows" over the pages it
/// saw: planned on that, the join hashed every row of the table, 200 ms a
/// batch, until the next VACUUM. And a table of a thousand tasks looks
/// cheaper to read whole than to probe 64 times: the filter then searched
/// the array once per row, twice per batch, a tenth of a burst's CPU.
fn record_sql(running: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let [new, ran] = SQL.get_or_init(|| {
        let arrays: Vec<String> = COLUMNS.iter().enumerate().map(|(i, (_, t, _))| format!("${}::{t}", i + 1)).collect();
        let names: Vec<&str> = COLUMNS.iter().map(|(name, _, _)| *name).collect();
        let records = format!("r AS (SELECT * FROM unnest({}) AS r({}))", arrays.join(", "), names.join(", "));
        let array_of = |name: &str| &arrays[names.iter().position(|n| *n == name).expect("a record column")];
        let (task_ids, run_ids) = (array_of("task_id"), array_of("run_id"));
        let task = format!(
            "UPDATE mtask.tasks t SET
                 last_run_at = r.started_at,
                 last_status = r.status,
                 last_error = r.message,
                 run_count = t.run_count + CASE WHEN r.status = 'crashed' THEN 0 ELSE 1 END,
                 failure_count = t.failure_count + CASE WHEN r.status = 'succeeded' THEN 0 ELSE 1 END,
                 success_count = t.success_count + CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END,
                 timeout_count = t.timeout_count + CASE WHEN r.status = 'timeout' THEN 1 ELSE 0 END,
                 crash_count = t.crash_count + CASE WHEN r.status = 'crashed' THEN 1 ELSE 0 END,
                 last_success_at = CASE WHEN r.status = 'succeeded' THEN r.started_at ELSE t.last_success_at END,
                 last_failure_at = CASE WHEN r.status = 'succeeded' THEN t.last_failure_at ELSE r.started_at END,
                 last_duration = coalesce(r.duration, t.last_duration),
                 total_duration = t.total_duration + coalesce(r.duration, interval '0'),
                 manual_from = NULL,
                 manual_next_run_at = NULL,
                 status = r.next_status,
                 next_run_at = r.next_run_at,
                 attempt = r.next_attempt,
                 retry_slot = r.retry_slot,
                 consecutive_failures = r.failures,
                 pause_reason = r.pause_reason
             FROM r WHERE t.id = r.task_id AND t.id = ANY ({task_ids}) AND t.xmin::text::bigint = r.xmin
             RETURNING t.id"
        );
        [
            format!(
                "WITH {records},
                 new_run AS (
                     INSERT INTO mtask.runs (task_id, scheduled_for, attempt, started_at, finished_at, status,
                                             sqlstate, message, rows, exit_code, stdout, stderr, trigger, detail,
                                             hint, context, command, owner, top_level, pid)
                     SELECT r.task_id, r.scheduled_for, r.attempt, r.started_at, r.finished_at, r.status,
                            r.sqlstate, r.message, r.rows, r.exit_code, r.stdout, r.stderr, r.trigger, r.detail,
                            r.hint, r.context, r.command, r.owner::regrole, r.top_level, pg_catalog.pg_backend_pid()
                     FROM r JOIN mtask.tasks t ON t.id = r.task_id AND t.id = ANY ({task_ids})
                     WHERE r.logged)
                 {task}"
            ),
            format!(
                "WITH {records},
                 ended_run AS (
                     UPDATE mtask.runs u SET finished_at = r.finished_at, status = r.status, sqlstate = r.sqlstate,
                            message = r.message, rows = r.rows, exit_code = r.exit_code, stdout = r.stdout,
                            stderr = r.stderr, trigger = r.trigger, detail = r.detail, hint = r.hint,
                            context = r.context, command = r.command, owner = r.owner::regrole,
                            top_level = r.top_level
                     FROM r WHERE u.id = r.run_id AND u.id = ANY ({run_ids}) AND r.logged),
                 unlogged_run AS (
                     DELETE FROM mtask.runs d USING r WHERE d.id = r.run_id AND d.id = ANY ({run_ids}) AND NOT r.logged)
                 {task}"
            ),
        ]
    });
    if running { ran } else { new }
}

/// Records `records` in one statement: all of them runs recorded in the
/// transaction they ran in, or all committed as 'running' first. Returns
/// the tasks whose rows changed during their runs, which were not moved on.
pub fn record(client: &mut SpiClient<'_>, records: &[RunRecord]) -> SpiResult<Vec<i64>> {
    static TYPES: std::sync::OnceLock<Vec<Type>> = std::sync::OnceLock::new();
    let types = TYPES.get_or_init(|| COLUMNS.iter().map(|(_, _, oid)| *oid).collect());
    let running = records.iter().any(|r| r.run_id.is_some());
    debug_assert!(!running || records.iter().all(|r| r.run_id.is_some()));
    let rows = plans::execute_in_index_order(client, record_sql(running), types, None, &bind(records))?;
    let moved: Vec<i64> =
        rows.iter().map(|row| row.get::<i64>(1)).collect::<SpiResult<Vec<_>>>()?.into_iter().flatten().collect();
    Ok(records.iter().map(|r| r.task_id).filter(|id| !moved.contains(id)).collect())
}

/// A non-transactional run, committed as 'running' before it starts (with
/// the worker's pid and backend_start, for the DBA; the run board says
/// whether it still runs), and its task marked 'running', so it cannot
/// start twice. Returns the run's id and the task row's new version.
const START_RUN: &str = "
    WITH run AS (
        INSERT INTO mtask.runs (task_id, scheduled_for, attempt, started_at, status, pid, backend_start)
        SELECT $1, $2, $3, $4, 'running', pid, backend_start
        FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()
        RETURNING id
    ), task AS (
        UPDATE mtask.tasks SET status = 'running' WHERE id = $1 RETURNING xmin::text::bigint AS xmin
    )
    SELECT run.id, task.xmin FROM run, task";

pub fn start_run(
    client: &mut SpiClient<'_>,
    task_id: i64,
    slot: DateTime<Utc>,
    attempt: i32,
    started_at: TimestampWithTimeZone,
) -> SpiResult<(i64, i64)> {
    let args = [task_id.into(), to_pg(slot).into(), attempt.into(), started_at.into()];
    let types = [Type::INT8OID, Type::TIMESTAMPTZOID, Type::INT4OID, Type::TIMESTAMPTZOID];
    let rows = plans::execute(client, START_RUN, &types, Some(1), &args)?;
    let row = rows.first().ok_or(pgrx::spi::SpiError::InvalidPosition)?;
    match (row.get(1)?, row.get(2)?) {
        (Some(id), Some(xmin)) => Ok((id, xmin)),
        _ => Err(pgrx::spi::SpiError::InvalidPosition),
    }
}

/// The 'running' runs of this database: a non-transactional run under way,
/// or one whose worker died.
const RUNNING_RUNS: &str = "SELECT id, task_id, scheduled_for, started_at FROM mtask.runs WHERE status = 'running'";

/// A run committed as 'running' whose worker is gone.
pub struct Orphan {
    pub run_id: i64,
    pub task_id: i64,
    pub slot: Option<TimestampWithTimeZone>,
    pub started_at: TimestampWithTimeZone,
}

/// The 'running' runs whose worker the run board does not show alive.
pub fn orphans(client: &mut SpiClient<'_>) -> SpiResult<Vec<Orphan>> {
    let rows = plans::execute(client, RUNNING_RUNS, &[], None, &[])?;
    let mut orphans = Vec::new();
    for row in &rows {
        let (Some(run_id), Some(task_id), Some(started_at)) = (row.get(1)?, row.get(2)?, row.get(4)?) else {
            continue;
        };
        if !crate::shmem::run_alive(unsafe { pg_sys::MyDatabaseId }, run_id) {
            orphans.push(Orphan { run_id, task_id, slot: row.get(3)?, started_at });
        }
    }
    Ok(orphans)
}

/// Whether run `run_id` is still 'running'.
pub fn still_running(client: &mut SpiClient<'_>, run_id: i64) -> SpiResult<bool> {
    const STILL_RUNNING: &str = "SELECT EXISTS (SELECT FROM mtask.runs WHERE id = $1 AND status = 'running')";
    let rows = plans::execute(client, STILL_RUNNING, &[Type::INT8OID], Some(1), &[run_id.into()])?;
    Ok(plans::first(&rows)?.unwrap_or(false))
}

/// Closes an orphan whose task is gone.
pub fn close_orphan(client: &mut SpiClient<'_>, run_id: i64, message: &str) -> SpiResult<()> {
    let args = [run_id.into(), message.into(), RunStatus::Crashed.as_sql().into()];
    client.update(
        "UPDATE mtask.runs SET status = $3, finished_at = now(), message = $2 WHERE id = $1 AND status = 'running'",
        None,
        &args,
    )?;
    Ok(())
}

/// Sets a task that cannot be handled aside: paused, with why.
pub fn set_aside(client: &mut SpiClient<'_>, task_id: i64, why: &str) -> SpiResult<()> {
    let args = [task_id.into(), why.into(), Status::Paused.as_sql().into()];
    client.update("UPDATE mtask.tasks SET status = $3, pause_reason = $2 WHERE id = $1", None, &args)?;
    Ok(())
}

/// Records slots that were passed over as one 'skipped' run.
pub fn record_skipped(client: &mut SpiClient<'_>, task_id: i64, skipped: &Skipped) -> SpiResult<()> {
    let message = if skipped.past_end {
        format!("not run: the task's end_at had passed when it came due at {}", skipped.from)
    } else {
        format!("not run: runs due from {} until {} were missed", skipped.from, skipped.until)
    };
    let args = [task_id.into(), to_pg(skipped.from).into(), message.into(), RunStatus::Skipped.as_sql().into()];
    client.update(
        "INSERT INTO mtask.runs (task_id, scheduled_for, started_at, finished_at, status, message)
         VALUES ($1, $2, now(), now(), $4, $3)",
        None,
        &args,
    )?;
    Ok(())
}

/// Makes task `id` run top-level from now on: its command turned out to
/// commit, which it cannot do inside the transaction that records it.
pub fn learn_top_level(client: &mut SpiClient<'_>, id: i64) -> SpiResult<()> {
    client.update("UPDATE mtask.tasks SET top_level = true WHERE id = $1", None, &[id.into()])?;
    Ok(())
}

/// Moves a task on without running it.
pub fn pass(client: &mut SpiClient<'_>, task_id: i64, status: Status, next: Option<DateTime<Utc>>) -> SpiResult<()> {
    let args = [task_id.into(), status.as_sql().into(), next.and_then(to_pg).into()];
    client.update("UPDATE mtask.tasks SET status = $2, next_run_at = $3 WHERE id = $1", None, &args)?;
    Ok(())
}

/// Strictly after the claim's now(): a task due by then but not claimed is
/// locked (running, or held by a user's transaction) and nothing would wake
/// us when the lock goes, so it is left to the next naptime.
/// After a horizon, the first task due after it, which may be due now.
/// And whether the CROWD-th task after it is due within the launcher's
/// busy lag of it: more than one worker can start in that time.
const NEXT_DUE: &str = "
    SELECT min(next_run_at),
           (SELECT next_run_at FROM mtask.tasks
            WHERE status = 'scheduled' AND next_run_at > least(now(), $1)
            ORDER BY next_run_at OFFSET $2 - 1 LIMIT 1) <= min(next_run_at) + $3
    FROM mtask.tasks WHERE status = 'scheduled' AND next_run_at > least(now(), $1)";

/// So many tasks due within the busy lag of each other keep one worker busy
/// past it: a trivial task takes a worker about 0.1 ms.
const CROWD: i64 = 500;

/// The next task due after the horizon (or now), if any, and whether a
/// crowd of tasks is due with it.
pub fn next_due(
    client: &mut SpiClient<'_>,
    horizon: Option<TimestampWithTimeZone>,
) -> SpiResult<(Option<TimestampWithTimeZone>, bool)> {
    let lag = pgrx::datum::Interval::new(0, 0, super::launcher::BUSY_LAG).expect("the busy lag is an interval");
    let args = [
        DatumWithOid::from(horizon.unwrap_or(TimestampWithTimeZone::positive_infinity())),
        DatumWithOid::from(CROWD),
        DatumWithOid::from(lag),
    ];
    let types = [PgBuiltInOids::TIMESTAMPTZOID, PgBuiltInOids::INT8OID, PgBuiltInOids::INTERVALOID];
    // The crowd's scan must follow the due index and stop at its offset.
    let rows = plans::execute_in_index_order(client, NEXT_DUE, &types, Some(1), &args)?;
    let Some(row) = rows.first() else { return Ok((None, false)) };
    Ok((row.get(1)?, row.get::<bool>(2)?.unwrap_or(false)))
}
