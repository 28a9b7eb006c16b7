//! One step of a pool worker: a transaction that claims due tasks one after
//! another, runs each in a subtransaction of its own and records it, and
//! commits them together; or, for a non-transactional task, the claim's
//! transaction, the run outside any transaction, and the record's.
//!
//! Sharing a commit among trivial tasks roughly halves their cost; the time
//! budget keeps the effects of the first from waiting long for the commit.
//! Each task is claimed only when its turn comes, so tasks not yet reached
//! stay free for other workers: a long task holds up no other task's start.

use super::claim::{self, Task};
use super::record::{self, RunRecord};
use super::transaction;
use super::version::SchemaCheck;
use crate::executor::{self, Outcome};
use crate::report::Failure;
use crate::{guc, pg_schedule};
use chrono::{DateTime, Utc};
use mtask_core::lifecycle::{After, Decision};
use mtask_core::states::{CommandType, RunStatus, Status};
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Tasks that one transaction may run back to back, and for how long it may
/// go on taking more.
const MAX_BATCH: usize = 64;
const BATCH_BUDGET: Duration = Duration::from_millis(5);

/// What a step did.
pub struct Stepped {
    /// Runs it committed.
    pub runs: usize,
    /// How long to sleep: zero after a run, as there may be more due tasks.
    pub sleep: Duration,
}

#[derive(Default)]
pub struct Stepper {
    /// Steps left to run one task per transaction, after a batch failed.
    single_steps: usize,
}

/// A claimed task that is about to run, kept outside the transaction so that
/// a failure at commit can still be recorded.
struct Claimed {
    task: Task,
    slot: DateTime<Utc>,
    started: TimestampWithTimeZone,
    /// The 'running' run row of a non-transactional run.
    run_id: Option<i64>,
}

/// What the claim's transaction leaves to do.
enum Next {
    Sleep(Duration),
    /// Run the claimed non-transactional task, outside any transaction.
    RunOutside,
}

/// What taking one due task did.
enum Taken {
    /// Nothing is due.
    Nothing,
    /// A task ran (or was passed over) and was recorded.
    Done,
    /// A non-transactional task is claimed, to run after the commit.
    RunOutside,
}

impl Stepper {
    /// Claims and runs due tasks, several in one transaction when they are
    /// quick.
    pub fn step(&mut self, schema: &mut SchemaCheck, leads: bool) -> Stepped {
        let claimed: RefCell<Option<Claimed>> = RefCell::new(None);
        let mut done = 0;
        let batch = if self.single_steps > 0 { 1 } else { MAX_BATCH };
        self.single_steps = self.single_steps.saturating_sub(1);
        let result = transaction::run(|| {
            if !schema.ready(leads) {
                return Next::Sleep(guc::naptime());
            }
            Spi::connect_mut(|client| {
                let begun = Instant::now();
                loop {
                    match take_one(client, &claimed, done == 0) {
                        Taken::Nothing if done == 0 => {
                            // Idle: a good moment to close runs whose worker died.
                            record::recover_orphans(client).unwrap_or_else(|e| error!("{e}"));
                            let next = record::next_due(client).unwrap_or_else(|e| error!("{e}"));
                            return Next::Sleep(sleep_until(next));
                        }
                        Taken::Nothing => return Next::Sleep(Duration::ZERO),
                        Taken::RunOutside => return Next::RunOutside,
                        Taken::Done => done += 1,
                    }
                    if done >= batch || begun.elapsed() >= BATCH_BUDGET {
                        return Next::Sleep(Duration::ZERO);
                    }
                }
            })
        });
        let runs = if result.is_ok() { done } else { 0 };
        let sleep = match result {
            Ok(Next::Sleep(sleep)) => sleep,
            Ok(Next::RunOutside) => {
                let run = claimed.take().expect("claimed before RunOutside");
                let outcome = executor::run_outside(&run.task.command());
                // If this fails, the run stays 'running' until recover_orphans
                // closes it once this worker is gone.
                record_apart(&run, outcome)
            }
            // Several tasks shared the transaction that failed, and which one
            // failed it is unknown. All their effects are rolled back; they run
            // again one per transaction, where a failure is theirs alone.
            Err(_) if done > 1 || (done == 1 && claimed.borrow().is_none()) => {
                self.single_steps = MAX_BATCH;
                Duration::ZERO
            }
            // The run's transaction failed outside the command's subtransaction,
            // e.g. a deferred constraint at commit: record that as a failed run so
            // the task moves on instead of being retried in a tight loop.
            Err(failure) => match claimed.take() {
                Some(run) => record_apart(&run, Outcome::failed(failure)),
                None => {
                    warning!("mtask scheduler: {failure}");
                    guc::naptime()
                }
            },
        };
        Stepped { runs, sleep }
    }
}

/// Records a run in a transaction of its own. Returns how long to sleep:
/// a naptime if even that failed, so that a broken task is not retried in a
/// tight loop.
fn record_apart(run: &Claimed, outcome: Outcome) -> Duration {
    match transaction::run(|| Spi::connect_mut(|client| finish(client, run, outcome))) {
        Ok(()) => Duration::ZERO,
        Err(why) => {
            warning!("mtask: could not record the run of task {}: {why}", run.task.id);
            guc::naptime()
        }
    }
}

/// Claims the next due task and runs it (or passes it over) in the current
/// transaction; a non-transactional task only when it is the first.
fn take_one(client: &mut SpiClient<'_>, claimed: &RefCell<Option<Claimed>>, first: bool) -> Taken {
    claimed.replace(None);
    let Some(row) = claim::claim(client, first).unwrap_or_else(|e| error!("{e}")) else {
        return Taken::Nothing;
    };
    let task = Task::from_row(&row).unwrap_or_else(|why| error!("mtask: task {} cannot run: {why}", row.id));
    // One instant for the decision and the run's start, so that a run
    // never starts after the end_at it was allowed under.
    let started = now();
    let slot = match task.timing.before_run(task.due, pg_schedule::instant_or_raise("now", started), guc::catchup()) {
        Decision::Pass { skipped, status, next } => {
            if task.log_runs.records(RunStatus::Skipped) {
                record::record_skipped(client, task.id, &skipped).unwrap_or_else(|e| error!("{e}"));
            }
            record::pass(client, task.id, status, next).unwrap_or_else(|e| error!("{e}"));
            return Taken::Done;
        }
        Decision::Run { slot, skipped } => {
            if let Some(skipped) = skipped.filter(|_| task.log_runs.records(RunStatus::Skipped)) {
                record::record_skipped(client, task.id, &skipped).unwrap_or_else(|e| error!("{e}"));
            }
            slot
        }
    };
    if let Some((failure, remedy)) = refusal(&task) {
        let mut after = task.timing.after_run(slot, Utc::now(), false, 0.0);
        after.status = Status::Paused;
        let reason = format!("{failure}; {remedy}, then resume it");
        let run = Claimed { task, slot, started, run_id: None };
        write(client, &run, Outcome::failed(failure), after, Some(reason));
        return Taken::Done;
    }
    if task.outside {
        // Committed as 'running' first, so that a crash mid-run is
        // seen afterwards (recover_orphans) rather than lost.
        let run_id =
            record::start_run(client, task.id, slot, task.timing.attempt, started).unwrap_or_else(|e| error!("{e}"));
        claimed.replace(Some(Claimed { task, slot, started, run_id: Some(run_id) }));
        return Taken::RunOutside;
    }
    claimed.replace(Some(Claimed { task, slot, started, run_id: None }));
    let held = claimed.borrow();
    let run = held.as_ref().expect("just claimed");
    let outcome = executor::run_in_transaction(client, &run.task.command());
    finish(client, run, outcome);
    Taken::Done
}

/// Why a claimed task must not run, and what would let it: its owner is
/// gone, or may no longer run programs. Such a task is paused.
fn refusal(task: &Task) -> Option<(Failure, &'static str)> {
    if !crate::roles::role_exists(task.owner) {
        let why = format!("the task's owner, the role with OID {}, no longer exists", task.owner.to_u32());
        return Some((Failure::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, why), "give the task an existing owner"));
    }
    if task.command_type == CommandType::Program && !executor::program::may_run_programs(task.owner) {
        let why = "the task's owner may no longer run programs";
        return Some((
            Failure::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, why),
            "grant it pg_execute_server_program",
        ));
    }
    None
}

fn now() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() }).expect("the clock reads a finite time")
}

fn sleep_until(next: Option<TimestampWithTimeZone>) -> Duration {
    let naptime = guc::naptime();
    let Some(next) = next.and_then(pg_schedule::to_chrono) else {
        return naptime;
    };
    // Already past: it became due after the claim looked.
    (next - Utc::now()).to_std().map_or(Duration::ZERO, |d| d.min(naptime))
}

/// Records the run that ended with `outcome`, and moves its task on.
fn finish(client: &mut SpiClient<'_>, run: &Claimed, outcome: Outcome) {
    let succeeded = outcome.status == RunStatus::Succeeded;
    let jitter = unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) };
    let after = run.task.timing.after_run(run.slot, Utc::now(), succeeded, jitter);
    let reason =
        (after.status == Status::Paused).then(|| format!("paused after {} failed runs in a row", after.failures));
    write(client, run, outcome, after, reason);
}

fn write(client: &mut SpiClient<'_>, run: &Claimed, outcome: Outcome, after: After, pause_reason: Option<String>) {
    let record = RunRecord {
        task_id: run.task.id,
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
    record::record(client, std::slice::from_ref(&record)).unwrap_or_else(|e| error!("{e}"));
}
