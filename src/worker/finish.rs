//! Finishing a run: what becomes of its task (the core's lifecycle decides),
//! its record, and its line in the server log. The pool's steps
//! (`step.rs`) and CALL mtask.run (`run_here.rs`) both finish runs so.

use super::claim::{self, Task};
use super::record::{self, RunRecord};
use crate::executor::Outcome;
use crate::report::Failure;
use crate::{guc, pg_schedule, shmem};
use chrono::{DateTime, Utc};
use mtask_core::lifecycle::After;
use mtask_core::states::{RunStatus, Status, Trigger};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

/// What a run whose worker died is recorded as.
pub const WORKER_DIED: &str = "the worker running it stopped before the run ended";

/// A claimed task that is about to run, kept outside the transaction so that
/// a failure at commit can still be recorded.
pub struct Claimed {
    pub task: Task,
    pub slot: DateTime<Utc>,
    pub started: TimestampWithTimeZone,
    /// The 'running' run row of a non-transactional run.
    pub run_id: Option<i64>,
}

/// What became of a run, for its task's next state.
pub enum Verdict {
    Ran {
        succeeded: bool,
    },
    /// Its worker died.
    Crashed,
    /// It was not run, and the task is paused with this reason.
    Refused(String),
}

pub fn crashed() -> Outcome {
    Outcome { status: RunStatus::Crashed, ..Outcome::failed(Failure::untold(WORKER_DIED)) }
}

/// Why a task that may not run is paused: what stops it, and what would let
/// it run again.
pub fn pause_reason(failure: &Failure, remedy: &str) -> String {
    format!("{failure}; {remedy}, then resume it")
}

/// Pauses a task that mtask cannot handle, saying why, so that it stops no
/// other task; it runs again once someone corrects it and resumes it.
pub fn set_aside(client: &mut SpiClient<'_>, id: i64, name: &str, why: &str) {
    warning!("mtask: task {id} (\"{name}\") was set aside: {why}");
    let reason = format!("set aside by mtask: {why}; correct it, then resume it");
    record::set_aside(client, id, &reason).unwrap_or_else(|e| error!("{e}"));
}

pub fn now() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() }).expect("the clock reads a finite time")
}

/// The task's next state after its run for `slot`, and why it is paused if
/// it is.
fn settle(task: &Task, slot: DateTime<Utc>, verdict: &Verdict) -> (After, Option<String>) {
    let jitter = crate::compat::random_fraction();
    let ended = Utc::now();
    let by_hand = task.manual.filter(|_| task.timing.schedule.is_some());
    let mut after = match (verdict, by_hand) {
        (Verdict::Ran { succeeded }, Some((back, next))) => task.timing.after_manual(back, next, *succeeded),
        (Verdict::Crashed, Some((back, next))) => task.timing.after_manual(back, next, false),
        (Verdict::Ran { succeeded }, None) => task.timing.after_run(slot, ended, *succeeded, jitter),
        (Verdict::Crashed, None) => task.timing.after_crash(slot, ended, jitter),
        (Verdict::Refused(_), _) => task.timing.after_run(slot, ended, false, 0.0),
    };
    let reason = match verdict {
        Verdict::Refused(reason) => {
            after.status = Status::Paused;
            Some(reason.clone())
        }
        _ => (after.status == Status::Paused).then(|| format!("paused after {} failed runs in a row", after.failures)),
    };
    (after, reason)
}

/// A run that ended, and what its task becomes, to be recorded.
pub struct Ended {
    record: RunRecord,
    verdict: Verdict,
}

/// Records the run that ended with `outcome`, and moves its task on.
pub fn finish(client: &mut SpiClient<'_>, run: &Claimed, outcome: Outcome, verdict: Verdict) {
    record_ended(client, vec![ended(run, outcome, verdict)]);
}

/// The run that ended with `outcome`, said in the server log if it failed.
pub fn ended(run: &Claimed, outcome: Outcome, verdict: Verdict) -> Ended {
    let (after, pause_reason) = settle(&run.task, run.slot, &verdict);
    if let Some(failure) = outcome.failure.as_ref().filter(|_| guc::log_failures()) {
        let what = match outcome.status {
            RunStatus::Timeout => "timed out",
            RunStatus::Crashed => "crashed",
            _ => "failed",
        };
        log!(
            "mtask: run of task {} (\"{}\") in database \"{}\" {what}, attempt {}: {}{}",
            run.task.id,
            run.task.name,
            database_name(),
            run.task.timing.attempt,
            failure.code.map(|c| format!("{}: ", crate::report::sqlstate(c))).unwrap_or_default(),
            failure.message
        );
    }
    let record = RunRecord {
        task_id: run.task.id,
        trigger: trigger(&run.task, run.slot, run.started),
        command: run.task.command.clone(),
        owner: run.task.owner,
        top_level: run.task.top_level,
        xmin: run.task.xmin,
        run_id: run.run_id,
        slot: run.slot,
        attempt: run.task.timing.attempt,
        started_at: run.started,
        finished_at: now(),
        logged: run.task.log_runs.records(outcome.status),
        outcome,
        after,
        pause_reason,
    };
    Ended { record, verdict }
}

/// Records runs that ended, in one statement, and moves their tasks on. If
/// a task's row changed during its run, its next state is worked out again
/// from the row as it now is, so that what the change said is kept: a new
/// schedule is followed, and a task paused meanwhile stays paused.
pub fn record_ended(client: &mut SpiClient<'_>, ended: Vec<Ended>) {
    if ended.is_empty() {
        return;
    }
    let (records, verdicts): (Vec<RunRecord>, Vec<Verdict>) = ended.into_iter().map(|e| (e.record, e.verdict)).unzip();
    let changed = record::record(client, &records).unwrap_or_else(|e| error!("{e}"));
    for (record, verdict) in records.into_iter().zip(verdicts).filter(|(r, _)| changed.contains(&r.task_id)) {
        record_again(client, record, &verdict);
    }
}

/// Moves on a task whose row changed during its run, whose run row is
/// written.
fn record_again(client: &mut SpiClient<'_>, record: RunRecord, verdict: &Verdict) {
    let Some(row) = claim::by_id(client, record.task_id).unwrap_or_else(|e| error!("{e}")) else {
        return; // the task deleted itself
    };
    let now_task = match Task::from_row(&row) {
        Ok(task) => task,
        Err(why) => return set_aside(client, row.id, &row.name, &why),
    };
    let (mut after, mut pause_reason) = settle(&now_task, record.slot, verdict);
    if now_task.status == Status::Paused && after.status == Status::Scheduled {
        after.status = Status::Paused;
        pause_reason = None;
    }
    let again = RunRecord { xmin: now_task.xmin, run_id: None, logged: false, after, pause_reason, ..record };
    record::record(client, std::slice::from_ref(&again)).unwrap_or_else(|e| error!("{e}"));
}

/// Why the run of `task` for `slot`, started at `started`, runs.
fn trigger(task: &Task, slot: DateTime<Utc>, started: TimestampWithTimeZone) -> Trigger {
    if task.manual.is_some() {
        Trigger::Manual
    } else if task.delivers_event {
        Trigger::Event
    } else {
        let started = pg_schedule::to_chrono(started).unwrap_or(slot);
        task.timing.trigger(slot, started, guc::catchup().grace)
    }
}

pub fn database_name() -> String {
    unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) }.to_string_lossy().into_owned()
}

/// With mtask.log_statement, says in the server log that a run starts.
pub fn log_start(task: &Task) {
    if guc::log_statement() {
        log!(
            "mtask: task {} (\"{}\") in database \"{}\" starts, attempt {}: {}",
            task.id,
            task.name,
            database_name(),
            task.timing.attempt,
            task.command
        );
    }
}

/// `run` as the run board shows it.
pub fn on_board(run: &Claimed) -> shmem::Running {
    shmem::Running {
        database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        task_id: run.task.id,
        run_id: run.run_id.unwrap_or(0),
        attempt: run.task.timing.attempt,
        started_at: run.started.into(),
        scheduled_for: pg_schedule::to_pg(run.slot).map_or(0, i64::from),
        pid: unsafe { pg_sys::MyProcPid },
        runner: 0,
    }
}
