//! Claiming due tasks: the claim's SQL, the row it reads, and the `Task` a
//! claimed row becomes. The row's columns are declared once, in
//! `task_row!`, which makes both the claim's SELECT list and the reader, so
//! that a column cannot be read at the wrong position.

use super::plans;
use super::version::Restore;
use crate::executor::elsewhere::Elsewhere;
use crate::executor::{self, Command, What};
use crate::report::Failure;
use crate::{guc, pg_schedule};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mtask_core::lifecycle::{Missed, Overlap, Timing};
use mtask_core::retention::LogRuns;
use mtask_core::retry::RetryPolicy;
use mtask_core::schedule::Schedule;
use mtask_core::states::{CommandType, Kind, Status};
use pgrx::PgSqlErrorCode;
use pgrx::datum::{DatumWithOid, Interval};
use pgrx::pg_sys::PgBuiltInOids;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError, SpiResult};
use std::sync::OnceLock;

/// Declares `TaskRow`, one field per column the claim reads (`req`: never
/// NULL, `opt`: may be), and `SELECT_LIST`, the same columns in the same
/// order.
macro_rules! task_row {
    ($($field:ident: $null:ident $ty:ty = $sql:literal,)+) => {
        /// A claimed row as SQL gives it.
        pub struct TaskRow {
            $(pub $field: task_row!(@type $null $ty),)+
        }

        const SELECT_LIST: &str = concat!($($sql, ", ",)+ "NULL");

        impl TaskRow {
            fn read(row: &plans::Row) -> SpiResult<TaskRow> {
                let mut ordinal = 0;
                Ok(TaskRow {
                    $($field: {
                        ordinal += 1;
                        task_row!(@get $null row, ordinal, stringify!($field))
                    },)+
                })
            }
        }
    };
    (@type req $ty:ty) => { $ty };
    (@type opt $ty:ty) => { Option<$ty> };
    (@get req $row:ident, $n:ident, $name:expr) => { $row.get($n)?.ok_or_else(|| null_in($name))? };
    (@get opt $row:ident, $n:ident, $name:expr) => { $row.get($n)? };
}

task_row! {
    id: req i64 = "id",
    name: req String = "name",
    status: req String = "status",
    // Which version of the row was claimed: a run that ends finds out
    // whether the row changed meanwhile (record.rs).
    xmin: req i64 = "xmin::text::bigint",
    command: req String = "command",
    owner: req pg_sys::Oid = "owner::oid",
    kind: req String = "kind",
    schedule: opt String = "schedule",
    timezone: req String = "timezone",
    start_at: req TimestampWithTimeZone = "start_at",
    next_run_at: opt TimestampWithTimeZone = "next_run_at",
    missed: req String = "missed",
    end_at: opt TimestampWithTimeZone = "end_at",
    max_runs: opt i64 = "max_runs",
    run_count: req i64 = "run_count",
    timeout: opt Interval = "timeout",
    max_attempts: req i32 = "max_attempts",
    retry_delay: req Interval = "retry_delay",
    retry_max_delay: req Interval = "retry_max_delay",
    max_consecutive_failures: opt i32 = "max_consecutive_failures",
    attempt: req i32 = "attempt",
    retry_slot: opt TimestampWithTimeZone = "retry_slot",
    consecutive_failures: req i32 = "consecutive_failures",
    transactional: opt bool = "transactional",
    top_level: req bool = "top_level",
    overlap: req String = "overlap",
    command_type: req String = "command_type",
    log_runs: opt String = "log_runs",
    payload: opt String = "payload::text",
    event_id: opt i64 = "event_id",
    manual_from: opt String = "manual_from",
    manual_next_run_at: opt TimestampWithTimeZone = "manual_next_run_at",
    database: opt String = "database",
}

fn null_in(column: &str) -> SpiError {
    SpiError::DatumError(pgrx::datum::TryFromDatumError::IncompatibleTypes {
        rust_type: "a value",
        rust_oid: pg_sys::InvalidOid,
        datum_type: format!("NULL in column {column}"),
        datum_oid: pg_sys::InvalidOid,
    })
}

/// Which tasks are due and claimable: not beyond the horizon ($1), and
/// nothing while a restore is under way (see `version.rs`). Unless the
/// transaction found both ids set (`Restore::Done`), the restore check is
/// in each statement, in its snapshot, since the COPY of the tasks may
/// commit between any two. The tasks' ids are set once all the tasks are
/// there, and the runs' once all the runs are: until then a run would take
/// an id the restore is about to write. Its three subqueries cost a
/// tenth of a trivial task's claim.
fn due(restore: Restore) -> &'static str {
    macro_rules! due_now {
        () => {
            "next_run_at <= now() AND next_run_at <= $1"
        };
    }
    match restore {
        Restore::Done => due_now!(),
        Restore::Unsure => concat!(
            due_now!(),
            " AND (SELECT is_called FROM mtask.tasks_id_seq)
              AND ((SELECT is_called FROM mtask.runs_id_seq) OR NOT EXISTS (SELECT FROM mtask.runs))"
        ),
    }
}

/// `make(due(restore))`, made once for each `Restore`.
fn for_restore(sqls: &'static [OnceLock<String>; 2], restore: Restore, make: fn(&str) -> String) -> &'static str {
    sqls[restore as usize].get_or_init(|| make(due(restore)))
}

/// The first due tasks in order, unlocked, whole: a step's candidates. The partial
/// index tasks_due_idx (next_run_at, priority DESC, id) WHERE status =
/// 'scheduled' hands them over without a sort. Due time first, so no task
/// starves; priority only breaks ties.
///
/// Only that walk may plan it. Left to the statistics, which a bulk
/// INSERT of tasks leaves far behind, the planner chose a bitmap scan of
/// the index and a sort: every walk then read and sorted all the due rows,
/// and every row version the index still lists, however few it wanted, and
/// marked none of the dead ones (only an index scan does), so that each
/// walk cost more than the last until a vacuum.
///
/// One walk of the index serves the whole batch: the index keeps an entry
/// for every version of a due row until vacuum, and while another session's
/// transaction holds back the xmin horizon none can be pruned, so a walk
/// per task stepped over all the versions the runs before it left.
fn candidates_sql(restore: Restore) -> &'static str {
    static SQLS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    for_restore(&SQLS, restore, |due| {
        format!(
            "SELECT {SELECT_LIST} FROM mtask.tasks WHERE status = 'scheduled' AND {due}
             ORDER BY next_run_at, priority DESC, id LIMIT $2 OFFSET $3"
        )
    })
}

/// Locks one candidate, if it is still due and no other worker has it
/// (SKIP LOCKED), and says which version of its row it locked: a task
/// whose lock taken ahead no longer holds the row's current version.
///
/// It reads no more than the version: the walk read the rest, and setting
/// up a statement that returns the whole row cost more than running it.
///
/// `status || ''` keeps the planner off tasks_due_idx, whose predicate
/// `status = 'scheduled'` it would otherwise see implied: with `id` as a
/// key of that index too, it chose it after a vacuum, and then each claim
/// walked every dead entry a held-back xmin horizon left in it.
fn claim_sql(restore: Restore) -> &'static str {
    static SQLS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    for_restore(&SQLS, restore, |due| {
        format!(
            "SELECT xmin::text::bigint FROM mtask.tasks
             WHERE id = $2 AND status || '' = 'scheduled' AND {due}
             FOR UPDATE SKIP LOCKED"
        )
    })
}

/// Locks those of the candidates `$2` (ids) that are still due and that no
/// other worker has, as `claim_sql` locks one, and says which version of
/// each row it locked and where (`ahead.rs`). With `first`, only the first
/// of them in `$2`'s order: the candidates before it are gone, and those
/// after it are left free.
fn claim_ahead_sql(restore: Restore, first: bool) -> &'static str {
    static ALL: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    static FIRST: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    fn make(due: &str, order: &str) -> String {
        format!(
            "SELECT id, xmin::text::bigint, ctid, tableoid::oid FROM mtask.tasks
             WHERE id = ANY ($2) AND status || '' = 'scheduled' AND {due}
             {order} FOR UPDATE SKIP LOCKED"
        )
    }
    match first {
        false => for_restore(&ALL, restore, |due| make(due, "")),
        true => for_restore(&FIRST, restore, |due| make(due, "ORDER BY array_position($2, id) LIMIT 1")),
    }
}

/// A task by id, locked, whatever its status: to record what became of a
/// run when the row changed during it, or when its worker died.
fn by_id_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {SELECT_LIST} FROM mtask.tasks WHERE id = $1 FOR UPDATE"))
}

fn horizon_arg(horizon: Option<TimestampWithTimeZone>) -> DatumWithOid<'static> {
    DatumWithOid::from(horizon.unwrap_or(TimestampWithTimeZone::positive_infinity()))
}

/// `limit` due tasks in order after the first `offset`, none due after
/// `horizon`, as they were when read.
pub fn candidates(
    client: &mut SpiClient<'_>,
    horizon: Option<TimestampWithTimeZone>,
    restore: Restore,
    limit: usize,
    offset: usize,
) -> SpiResult<Vec<TaskRow>> {
    let args = [horizon_arg(horizon), DatumWithOid::from(limit as i64), DatumWithOid::from(offset as i64)];
    let types = [PgBuiltInOids::TIMESTAMPTZOID, PgBuiltInOids::INT8OID, PgBuiltInOids::INT8OID];
    let rows = plans::execute_in_index_order(client, candidates_sql(restore), &types, None, &args)?;
    rows.iter().map(TaskRow::read).collect()
}

/// Candidate `row`, locked, as it is now, if it is still due and free: the
/// row itself when it has not changed since the walk read it, else read
/// again.
pub fn claim(
    client: &mut SpiClient<'_>,
    row: TaskRow,
    horizon: Option<TimestampWithTimeZone>,
    restore: Restore,
) -> SpiResult<Option<TaskRow>> {
    let args = [horizon_arg(horizon), DatumWithOid::from(row.id)];
    let types = [PgBuiltInOids::TIMESTAMPTZOID, PgBuiltInOids::INT8OID];
    let rows = plans::execute(client, claim_sql(restore), &types, Some(1), &args)?;
    match plans::first::<i64>(&rows)? {
        None => Ok(None),
        Some(xmin) => as_locked(client, row, xmin),
    }
}

/// Candidate `row` as the version `xmin` that a claim locked: the row
/// itself when the walk read that version, else read again.
pub fn as_locked(client: &mut SpiClient<'_>, row: TaskRow, xmin: i64) -> SpiResult<Option<TaskRow>> {
    match xmin == row.xmin {
        true => Ok(Some(row)),
        false => by_id(client, row.id),
    }
}

/// A row a claim ahead locked: which task, which version, where, and in
/// which table.
pub struct Locked {
    pub id: i64,
    pub xmin: i64,
    pub ctid: pg_sys::ItemPointerData,
    pub table: pg_sys::Oid,
}

/// Those of tasks `ids` that are still due and free, locked; with `first`,
/// only the first of them. Planned as the walk is: left to the statistics,
/// a plan made while the table looked empty read the whole table for each
/// claim.
pub fn claim_ahead(
    client: &mut SpiClient<'_>,
    ids: &[i64],
    first: bool,
    horizon: Option<TimestampWithTimeZone>,
    restore: Restore,
) -> SpiResult<Vec<Locked>> {
    let args = [horizon_arg(horizon), DatumWithOid::from(ids.to_vec())];
    let types = [PgBuiltInOids::TIMESTAMPTZOID, PgBuiltInOids::INT8ARRAYOID];
    let rows = plans::execute_in_index_order(client, claim_ahead_sql(restore, first), &types, None, &args)?;
    fn field<T: FromDatum + IntoDatum>(row: &plans::Row, n: usize, name: &str) -> SpiResult<T> {
        row.get(n)?.ok_or_else(|| null_in(name))
    }
    rows.iter()
        .map(|row| {
            Ok(Locked {
                id: field(row, 1, "id")?,
                xmin: field(row, 2, "xmin")?,
                ctid: field(row, 3, "ctid")?,
                table: field(row, 4, "tableoid")?,
            })
        })
        .collect()
}

/// Task `id`, locked; None if it is gone.
pub fn by_id(client: &mut SpiClient<'_>, id: i64) -> SpiResult<Option<TaskRow>> {
    let rows = plans::execute(client, by_id_sql(), &[PgBuiltInOids::INT8OID], Some(1), &[id.into()])?;
    rows.first().map(TaskRow::read).transpose()
}

/// Why a task that runs in database `name`, which is gone, cannot run, and
/// what would let it.
pub fn database_gone(name: &str) -> (Failure, &'static str) {
    let why = format!("its database \"{name}\" does not exist (dropped, or renamed)");
    (
        Failure::new(PgSqlErrorCode::ERRCODE_INVALID_CATALOG_NAME, why),
        "point it at another database with mtask.alter(..., database => ...)",
    )
}

/// The OID of the database called `name`, if there is one.
fn database_oid(name: &str) -> Option<pg_sys::Oid> {
    let name = std::ffi::CString::new(name).ok()?;
    let oid = unsafe { pg_sys::get_database_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// An interval as elapsed time, a month being 30 days as in Postgres'
/// extract(epoch ...); saturating rather than overflowing.
fn duration_of(iv: &Interval) -> chrono::Duration {
    let micros = (i128::from(iv.months()) * 30 + i128::from(iv.days())) * 86_400_000_000 + i128::from(iv.micros());
    chrono::Duration::microseconds(micros.clamp(0, i128::from(i64::MAX / 1000)) as i64)
}

/// A claimed task, in the core's terms.
pub struct Task {
    pub id: i64,
    pub name: String,
    pub status: Status,
    pub xmin: i64,
    pub command: String,
    pub owner: pg_sys::Oid,
    pub command_type: CommandType,
    /// What a notify task sends and a program task reads on stdin.
    pub payload: Option<String>,
    /// Runs outside the transaction that records it: top-level, a program,
    /// or in another database.
    pub outside: bool,
    /// Runs statement by statement, each committed on its own.
    pub top_level: bool,
    /// Runs as its command needs (transactional is NULL), which a run may
    /// teach: a CALL of a procedure that commits runs top-level.
    pub learns: bool,
    pub due: DateTime<Utc>,
    /// The task's own log_runs, else the setting's.
    pub log_runs: LogRuns,
    /// In whole milliseconds, rounded up; None: mtask.default_timeout.
    timeout_ms: Option<i64>,
    pub timing: Timing,
    /// It delivers an event to a listener.
    pub delivers_event: bool,
    /// A run asked for by hand (mtask.run_now): where the task goes back to
    /// after it, scheduled or paused, and its regular next run.
    pub manual: Option<(Status, Option<DateTime<Utc>>)>,
    /// The database it runs in, when not this one.
    pub elsewhere: Option<Target>,
}

/// Another database a task runs in.
pub struct Target {
    pub name: String,
    /// None: there is no such database (any more).
    pub oid: Option<pg_sys::Oid>,
    pub transactional: bool,
}

impl Task {
    /// The task a claimed row says, or why it cannot be run.
    pub fn from_row(row: &TaskRow) -> Result<Task, String> {
        let instant = |what: &str, ts: TimestampWithTimeZone| {
            pg_schedule::to_chrono(ts).ok_or_else(|| format!("its {what} is not a finite timestamp"))
        };
        let named = |what: &str, text: &str| format!("its {what} \"{text}\" is not one mtask knows");
        let status = Status::from_sql(&row.status).ok_or_else(|| named("status", &row.status))?;
        let kind = Kind::from_sql(&row.kind).ok_or_else(|| named("kind", &row.kind))?;
        let schedule = match (kind, &row.schedule) {
            (Kind::Recurring, Some(text)) => {
                Some(pg_schedule::parse(text).map_err(|e| format!("its schedule is not valid: {}", e.message()))?)
            }
            (Kind::Recurring, None) => return Err("it is recurring but has no schedule".into()),
            (Kind::Once, _) => None,
        };
        let tz: Tz = mtask_core::schedule::time_zone(&row.timezone).map_err(|e| format!("its {}", e.message()))?;
        let command_type =
            CommandType::from_sql(&row.command_type).ok_or_else(|| named("command type", &row.command_type))?;
        let log_runs = match &row.log_runs {
            Some(text) => LogRuns::from_sql(text).ok_or_else(|| named("log_runs", text))?,
            None => guc::log_runs(),
        };
        // A delay the clock cannot add up would make every retry time
        // overflow; the tasks trigger refuses more than 100 years.
        let delay = |what: &str, iv: &Interval| {
            let d = duration_of(iv);
            (d <= chrono::Duration::days(36_525 * 2)).then_some(d).ok_or_else(|| format!("its {what} is too long"))
        };
        let timing = Timing {
            schedule,
            anchor: instant("start_at", row.start_at)?,
            tz,
            missed: Missed::from_sql(&row.missed).ok_or_else(|| named("missed-run policy", &row.missed))?,
            overlap: Overlap::from_sql(&row.overlap).ok_or_else(|| named("overlap policy", &row.overlap))?,
            end_at: row.end_at.map(|t| instant("end_at", t)).transpose()?,
            max_runs: row.max_runs,
            runs: row.run_count,
            retry: RetryPolicy {
                max_attempts: row.max_attempts,
                base: delay("retry_delay", &row.retry_delay)?,
                cap: delay("retry_max_delay", &row.retry_max_delay)?,
                max_consecutive_failures: row.max_consecutive_failures,
            },
            attempt: row.attempt,
            retry_slot: row.retry_slot.map(|t| instant("retry_slot", t)).transpose()?,
            failures: row.consecutive_failures,
        };
        let manual = match &row.manual_from {
            None => None,
            Some(from) => match Status::from_sql(from) {
                Some(back @ (Status::Scheduled | Status::Paused)) => {
                    Some((back, row.manual_next_run_at.map(|t| instant("manual_next_run_at", t)).transpose()?))
                }
                _ => return Err(named("manual_from", from)),
            },
        };
        let due = match row.next_run_at {
            Some(t) => instant("next_run_at", t)?,
            None if status == Status::Scheduled && !timing.schedule.as_ref().is_some_and(Schedule::is_at_start) => {
                return Err("it is scheduled but has no next_run_at".into());
            }
            None => timing.anchor,
        };
        Ok(Task {
            id: row.id,
            name: row.name.clone(),
            status,
            xmin: row.xmin,
            command: row.command.clone(),
            owner: row.owner,
            command_type,
            payload: row.payload.clone(),
            // A program's effects cannot be rolled back, whatever the row
            // says, nor can another database's together with the record.
            outside: row.top_level || command_type == CommandType::Program || row.database.is_some(),
            top_level: row.top_level,
            learns: row.transactional.is_none() && command_type == CommandType::Sql && row.database.is_none(),
            due,
            log_runs,
            timeout_ms: row
                .timeout
                .as_ref()
                .map(|iv| (duration_of(iv).num_microseconds().unwrap_or(i64::MAX) as u64).div_ceil(1000) as i64),
            timing,
            delivers_event: row.event_id.is_some(),
            manual,
            elsewhere: row.database.as_ref().map(|name| Target {
                name: name.clone(),
                oid: database_oid(name),
                transactional: !row.top_level,
            }),
        })
    }

    /// Why a claimed task must not run, and what would let it: its owner is
    /// gone, may no longer connect here, or may no longer run programs. Such a
    /// task is paused.
    pub fn refusal(&self) -> Option<(Failure, &'static str)> {
        if !crate::roles::role_exists(self.owner) {
            let why = format!("the task's owner, the role with OID {}, no longer exists", self.owner.to_u32());
            return Some((
                Failure::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, why),
                "give the task an existing owner",
            ));
        }
        if !crate::roles::may_connect(self.owner, unsafe { pg_sys::MyDatabaseId }) {
            let why = "the task's owner may not connect to this database (it lacks CONNECT)";
            return Some((
                Failure::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, why),
                "grant it CONNECT on the database",
            ));
        }
        if let Some(target) = &self.elsewhere {
            let Some(oid) = target.oid else {
                return Some(database_gone(&target.name));
            };
            if !crate::roles::may_connect(self.owner, oid) {
                let why = format!("the task's owner may not connect to its database \"{}\"", target.name);
                return Some((
                    Failure::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, why),
                    "grant it CONNECT on that database",
                ));
            }
        }
        if self.command_type == CommandType::Program && !executor::program::may_run_programs(self.owner) {
            let why = "the task's owner may no longer run programs";
            return Some((
                Failure::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, why),
                "grant it pg_execute_server_program",
            ));
        }
        None
    }

    /// The run's timeout: the task's own, else mtask.default_timeout.
    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms.map_or_else(guc::default_timeout_ms, |ms| ms.clamp(0, i32::MAX.into()) as i32)
    }

    /// What the task runs: a notify task's channel and payload become the
    /// pg_notify() that sends it.
    pub fn command(&self) -> Command<'_> {
        let what = match self.command_type {
            CommandType::Sql => What::Sql(self.command.as_str().into()),
            CommandType::Notify => What::notify(&self.command, self.payload.as_deref().unwrap_or("")),
            CommandType::Program => What::Program { command: &self.command, stdin: self.payload.as_deref() },
        };
        let elsewhere = self
            .elsewhere
            .as_ref()
            .and_then(|t| Some(Elsewhere { name: &t.name, oid: t.oid?, transactional: t.transactional }));
        Command { what, owner: self.owner, timeout_ms: Some(self.timeout_ms()), elsewhere }
    }
}
