//! One step of a pool worker: a transaction that finds the first due tasks,
//! claims them a few at a time (`ahead.rs`), runs each in a subtransaction
//! of its own, records them all in one statement, and commits them
//! together; or, for a non-transactional task, the claim's transaction, the
//! run outside any transaction, and the record's.
//!
//! Sharing a commit and a record statement among trivial tasks costs a
//! fraction of a transaction and a statement each; the time budget keeps
//! the effects of the first from waiting long for the commit, and the
//! claims ahead of their turn to the few that the step's pace says fit in
//! it, so tasks not yet reached stay free for other workers.
//!
//! Nothing a single task is or does may stop the step for the others: a
//! claimed row that cannot be made a `Task`, or whose run cannot be
//! recorded, is set aside (paused, with why) instead.

use super::ahead::Ahead;
use super::claim::{self, Task, TaskRow};
use super::finish::{
    Claimed, Ended, Verdict, WORKER_DIED, crashed, ended, finish, log_start, now, on_board, pause_reason, record_ended,
    set_aside,
};
use super::record;
use super::transaction;
use super::version::{Restore, SchemaCheck};
use crate::executor::{self, Outcome, session, statements};
use crate::shmem::databases;
use crate::{guc, pg_schedule, shmem};
use chrono::Utc;
use mtask_core::candidates::{self, Candidates};
use mtask_core::lifecycle::Decision;
use mtask_core::states::RunStatus;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// Tasks that one transaction may run back to back, and for how long it may
/// go on taking more. Past 64 subtransactions that wrote
/// (PGPROC_MAX_CACHED_SUBXIDS), every other backend's snapshots get slower.
const MAX_BATCH: usize = 64;
const BATCH_BUDGET: Duration = Duration::from_millis(5);

/// What a step did.
pub struct Stepped {
    /// Runs it committed.
    pub runs: usize,
    /// How long to sleep: zero after a run, as there may be more due tasks.
    pub sleep: Duration,
    pub found: Found,
    /// This worker must leave: its session holds another role's state.
    pub retire: bool,
}

/// What a step found to do.
pub enum Found {
    /// There may be more to do: look again.
    Work,
    /// Nothing more it may claim is due. `next` (timestamptz microseconds)
    /// is when to look again: the earliest task due after the horizon (or
    /// now), or None when no task is scheduled. Past when tasks are due
    /// but held back for another database. `crowded`: more tasks are due
    /// with `next` than one worker starts in the launcher's busy lag.
    Nothing { next: Option<i64>, crowded: bool },
}

pub struct Stepper {
    me: Me,
    /// Steps left to run one task per transaction, after a batch failed.
    single_steps: usize,
    candidates: Candidates<TaskRow>,
}

/// The worker that steps.
struct Me {
    slot: usize,
    /// It has started a run, or ended a step.
    arrived: Cell<bool>,
}

/// What a step's claims may take: nothing due after `horizon`, and what
/// its transaction found of a restore.
#[derive(Clone, Copy)]
struct At {
    horizon: Option<TimestampWithTimeZone>,
    restore: Restore,
}

/// What the claim's transaction leaves to do.
enum Next {
    Sleep(Duration),
    /// Nothing to claim; the earliest due time after the horizon, and
    /// whether a crowd is due with it.
    Nothing((Option<TimestampWithTimeZone>, bool)),
    /// The schema is not ready: look again after a naptime.
    NotReady,
    /// Run the claimed non-transactional task, outside any transaction.
    RunOutside,
    /// Leave: the next task is another role's.
    Retire,
}

/// What taking one candidate did.
enum Taken {
    /// Another worker has it, or it is no longer due.
    Gone,
    /// A task ran (or was passed over, or set aside); its run, if any, is
    /// recorded with the batch's.
    Done,
    /// A non-transactional task is claimed, to run after the commit.
    RunOutside,
    /// The claimed task is another role's, and this session holds state it
    /// must not see: the task is left as it was.
    Yield,
    /// The task turned out to need to run top-level; it is left due, to be
    /// claimed again as such.
    Learned,
    /// A top-level task, which runs only as the first of a step: it is left
    /// due, for the next step to claim first.
    Later,
}

impl Stepper {
    pub fn new(slot: usize) -> Stepper {
        shmem::list_claims_in(slot);
        Stepper { me: Me { slot, arrived: Cell::new(false) }, single_steps: 0, candidates: Candidates::default() }
    }

    /// Claims and runs due tasks, several in one transaction when they are
    /// quick.
    /// `horizon` (timestamptz microseconds): claim no task due later.
    pub fn step(&mut self, schema: &mut SchemaCheck, horizon: Option<i64>) -> Stepped {
        let claimed: RefCell<Option<Claimed>> = RefCell::new(None);
        let mut done = 0;
        let batch = if self.single_steps > 0 { 1 } else { MAX_BATCH };
        self.single_steps = self.single_steps.saturating_sub(1);
        let candidates = &mut self.candidates;
        candidates.begin_step(Instant::now());
        let slot = self.me.slot;
        let result = transaction::run(|| {
            if !schema.ready() {
                return Next::NotReady;
            }
            let horizon = horizon.and_then(|t| TimestampWithTimeZone::try_from(t).ok());
            let at = At { horizon, restore: schema.restore() };
            Spi::connect_mut(|client| {
                let begun = Instant::now();
                let mut ran = Vec::with_capacity(batch);
                let mut ahead = Ahead::default();
                let next = loop {
                    let walk = |limit, offset| {
                        claim::candidates(client, at.horizon, at.restore, limit, offset)
                            .unwrap_or_else(|e| error!("{e}"))
                    };
                    let Some(candidate) = candidates.next(Instant::now(), walk) else {
                        if done > 0 {
                            break Next::Sleep(Duration::ZERO);
                        }
                        // Idle: a good moment to close runs whose worker died;
                        // not while a restore may be writing their tasks.
                        if at.restore == Restore::Done {
                            recover_orphans(client);
                        }
                        break Next::Nothing(record::next_due(client, at.horizon).unwrap_or_else(|e| error!("{e}")));
                    };
                    let chunk = candidates::claim_ahead(done, begun.elapsed(), BATCH_BUDGET, batch - done);
                    let taken = match claim(client, &mut ahead, candidate, candidates, chunk, at, slot) {
                        None => Taken::Gone,
                        Some(row) => take_one(client, row, &claimed, done == 0, &self.me, &mut ran),
                    };
                    let stop = match taken {
                        Taken::Gone => None,
                        Taken::Done => {
                            done += 1;
                            candidates.took();
                            None
                        }
                        Taken::RunOutside => Some(Next::RunOutside),
                        Taken::Yield => Some(Next::Retire),
                        // The next step walks the index afresh, so that it
                        // finds this task before any due after it.
                        Taken::Learned | Taken::Later => {
                            candidates.forget();
                            Some(Next::Sleep(Duration::ZERO))
                        }
                    };
                    if let Some(next) = stop {
                        break next;
                    }
                    // Not before a run: passing candidates that other workers
                    // hold does not use up the budget, or a step could never
                    // get past them.
                    if done >= batch || (done > 0 && begun.elapsed() >= BATCH_BUDGET) {
                        break Next::Sleep(Duration::ZERO);
                    }
                };
                record_ended(client, ran);
                // Before the commit lets the row locks go: a task listed
                // after that would be passed over while free.
                shmem::claims_end(slot);
                next
            })
        });
        shmem::claims_end(slot);
        let runs = if result.is_ok() { done } else { 0 };
        if runs == 0 || !matches!(result, Ok(Next::Sleep(_))) {
            self.candidates.forget();
        }
        let mut retire = false;
        let mut found = Found::Work;
        let sleep = match result {
            Ok(Next::Sleep(sleep)) => sleep,
            Ok(Next::Nothing((next, crowded))) => {
                found = Found::Nothing { next: next.map(i64::from), crowded };
                sleep_until(next)
            }
            Ok(Next::NotReady) => {
                let naptime = guc::naptime();
                let later = unsafe { pg_sys::GetCurrentTimestamp() }.saturating_add(naptime.as_micros() as i64);
                found = Found::Nothing { next: Some(later), crowded: false };
                naptime
            }
            Ok(Next::Retire) => {
                retire = true;
                Duration::ZERO
            }
            Ok(Next::RunOutside) => {
                let run = claimed.take().expect("claimed before RunOutside");
                let outcome = executor::run_outside(&run.task.command());
                // If this fails, the run stays 'running' until a worker finds
                // it has no worker and closes it.
                let sleep = record_apart(&run, outcome);
                shmem::outside_run_ended();
                sleep
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
        arrive(&self.me.arrived);
        Stepped { runs, sleep, found, retire }
    }
}

/// The first time a worker starts a run (or ends a step without one), its
/// database stops waiting for a worker: only then may workers that held
/// back for it go on, so that none of their newer tasks starts first.
fn arrive(arrived: &Cell<bool>) {
    if !arrived.replace(true) {
        databases::done_waiting(unsafe { pg_sys::MyDatabaseId });
    }
}

/// Records a run in a transaction of its own. If even that fails, the task
/// is set aside, so that it is not claimed again and again. Returns how long
/// to sleep: a naptime if nothing could be recorded.
fn record_apart(run: &Claimed, outcome: Outcome) -> Duration {
    let verdict = Verdict::Ran { succeeded: outcome.status == RunStatus::Succeeded };
    let Err(why) = transaction::run(|| Spi::connect_mut(|client| finish(client, run, outcome, verdict))) else {
        return Duration::ZERO;
    };
    let reason = format!("its run could not be recorded: {why}");
    match transaction::run(|| Spi::connect_mut(|client| set_aside(client, run.task.id, &run.task.name, &reason))) {
        Ok(()) => Duration::ZERO,
        Err(again) => {
            warning!("mtask: could not record the run of task {}, nor set it aside: {again}", run.task.id);
            guc::naptime()
        }
    }
}

/// `candidate`, locked, as it is now, if it is still due and free. Unless a
/// claim ahead has tried it, it is tried together with the next of
/// `candidates` not yet tried (`claim_ahead`).
fn claim(
    client: &mut SpiClient<'_>,
    ahead: &mut Ahead,
    candidate: TaskRow,
    candidates: &Candidates<TaskRow>,
    chunk: usize,
    at: At,
    slot: usize,
) -> Option<TaskRow> {
    if shmem::claimed_by_another(slot, candidate.id) {
        return None;
    }
    if !ahead.tried(candidate.id) {
        claim_ahead(client, ahead, &candidate, candidates, chunk, at, slot);
    }
    ahead.take(client, candidate, at.horizon, at.restore).unwrap_or_else(|e| error!("{e}"))
}

/// Locks `candidate` and the next of `candidates` not yet tried, `chunk` in
/// all, in one statement; with a `chunk` of one, the first free one of
/// them, `MAX_AHEAD` in all. Other workers are told of the locks at once.
fn claim_ahead(
    client: &mut SpiClient<'_>,
    ahead: &mut Ahead,
    candidate: &TaskRow,
    candidates: &Candidates<TaskRow>,
    chunk: usize,
    at: At,
    slot: usize,
) {
    let first = chunk < 2;
    let window = if first { candidates::MAX_AHEAD } else { chunk };
    // `claim` has already looked at the candidate itself.
    let ids: Vec<i64> = std::iter::once(candidate.id)
        .chain(
            candidates
                .upcoming(window - 1)
                .map(|c| c.id)
                .filter(|&id| !ahead.tried(id) && !shmem::claimed_by_another(slot, id)),
        )
        .collect();
    for id in ahead.claim(client, &ids, first, at.horizon, at.restore).unwrap_or_else(|e| error!("{e}")) {
        shmem::claimed(slot, id);
    }
}

/// Runs the claimed `row` (or passes it over) in the current transaction,
/// adding its run to `ran`; a top-level task only as the step's first. A
/// candidate gone before this left `claimed` as it was: if the transaction
/// then fails, the run before it is still the one to blame.
fn take_one(
    client: &mut SpiClient<'_>,
    row: TaskRow,
    claimed: &RefCell<Option<Claimed>>,
    first: bool,
    me: &Me,
    ran: &mut Vec<Ended>,
) -> Taken {
    let task = match Task::from_row(&row) {
        Ok(task) => task,
        Err(why) => {
            claimed.replace(None);
            set_aside(client, row.id, &row.name, &why);
            return Taken::Done;
        }
    };
    if task.top_level && !first {
        return Taken::Later;
    }
    claimed.replace(None);
    if !session::may_run_as(task.owner) {
        return Taken::Yield;
    }
    // One instant for the decision and the run's start, so that a run
    // never starts after the end_at it was allowed under.
    let started = now();
    arrive(&me.arrived);
    if let Some(crash) = shmem::crashed_run(unsafe { pg_sys::MyDatabaseId }, task.id) {
        let instant = |micros: i64| TimestampWithTimeZone::try_from(micros).ok();
        let slot = instant(crash.scheduled_for).and_then(pg_schedule::to_chrono).unwrap_or(task.due);
        let started = instant(crash.started_at).unwrap_or(started);
        let run = Claimed { task, slot, started, run_id: None };
        ran.push(ended(&run, crashed(), Verdict::Crashed));
        return Taken::Done;
    }
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
    if let Some((failure, remedy)) = task.refusal() {
        let reason = pause_reason(&failure, remedy);
        let run = Claimed { task, slot, started, run_id: None };
        ran.push(ended(&run, Outcome::failed(failure), Verdict::Refused(reason)));
        return Taken::Done;
    }
    session::runs_as(task.owner);
    if task.outside {
        // Committed as 'running' first, so that a crash mid-run is seen
        // afterwards rather than lost.
        let (run_id, xmin) =
            record::start_run(client, task.id, slot, task.timing.attempt, started).unwrap_or_else(|e| error!("{e}"));
        let mut task = task;
        task.xmin = xmin;
        let run = Claimed { task, slot, started, run_id: Some(run_id) };
        shmem::running(on_board(&run));
        log_start(&run.task);
        claimed.replace(Some(run));
        return Taken::RunOutside;
    }
    let run = Claimed { task, slot, started, run_id: None };
    shmem::running(on_board(&run));
    log_start(&run.task);
    claimed.replace(Some(run));
    let held = claimed.borrow();
    let run = held.as_ref().expect("just claimed");
    let outcome = executor::run_in_transaction(client, &run.task.command());
    let commits = outcome
        .failure
        .as_ref()
        .is_some_and(|f| f.code == Some(PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION));
    if commits && run.task.learns && statements::is_one_call(&run.task.command) {
        // The procedure commits, which it cannot do here; its subtransaction
        // took back what it did. It runs top-level, now and from now on.
        record::learn_top_level(client, run.task.id).unwrap_or_else(|e| error!("{e}"));
        return Taken::Learned;
    }
    let verdict = Verdict::Ran { succeeded: outcome.status == RunStatus::Succeeded };
    ran.push(ended(run, outcome, verdict));
    Taken::Done
}

/// Closes the runs committed as 'running' whose worker is gone, as crashed,
/// and moves their tasks on.
fn recover_orphans(client: &mut SpiClient<'_>) {
    let database = unsafe { pg_sys::MyDatabaseId };
    for orphan in record::orphans(client).unwrap_or_else(|e| error!("{e}")) {
        let row = claim::by_id(client, orphan.task_id).unwrap_or_else(|e| error!("{e}"));
        // A run in a user's session (CALL mtask.run) leaves the run board
        // before its record commits. The task's row lock, just taken,
        // waited for that commit: a run no longer 'running' now ended.
        if !record::still_running(client, orphan.run_id).unwrap_or_else(|e| error!("{e}")) {
            continue;
        }
        match row.as_ref().map(Task::from_row) {
            Some(Ok(task)) => {
                let slot = orphan.slot.and_then(pg_schedule::to_chrono).unwrap_or(task.due);
                let run = Claimed { task, slot, started: orphan.started_at, run_id: Some(orphan.run_id) };
                finish(client, &run, crashed(), Verdict::Crashed);
            }
            Some(Err(why)) => {
                record::close_orphan(client, orphan.run_id, WORKER_DIED).unwrap_or_else(|e| error!("{e}"));
                set_aside(client, orphan.task_id, row.as_ref().map_or("", |r| r.name.as_str()), &why);
            }
            None => record::close_orphan(client, orphan.run_id, WORKER_DIED).unwrap_or_else(|e| error!("{e}")),
        }
        shmem::forget_crashed_run(database, orphan.run_id);
    }
}

fn sleep_until(next: Option<TimestampWithTimeZone>) -> Duration {
    let naptime = guc::naptime();
    let Some(next) = next.and_then(pg_schedule::to_chrono) else {
        return naptime;
    };
    // Already past: it became due after the claim looked.
    (next - Utc::now()).to_std().map_or(Duration::ZERO, |d| d.min(naptime))
}
