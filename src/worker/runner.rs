//! A pool worker's loop: one transaction per due task — claim, run, record,
//! commit — then sleep until the next task is due, a commit wakes it, or
//! `mtask.naptime` passes. Workers share nothing but the tasks table: the
//! claim's `FOR UPDATE SKIP LOCKED` hands each due task to one of them.

use super::store::{self, DueTask};
use crate::executor::{self, Outcome, RunStatus};
use crate::lifecycle::{After, Decision, Missed, Overlap, Timing};
use crate::retention::LogRuns;
use crate::retry::RetryPolicy;
use crate::{guc, pg_schedule, shmem};
use chrono::{DateTime, Utc};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::cell::RefCell;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Packs what a pool worker is told at start into its one argument.
pub fn argument(slot: usize, generation: u32) -> pg_sys::Datum {
    pg_sys::Datum::from((u64::from(generation) << 16) | slot as u64)
}

/// Set in pool workers: their own commits need not wake the pool, since a
/// worker looks for the next due task straight after each run.
pub static IN_POOL: AtomicBool = AtomicBool::new(false);

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_worker_main(arg: pg_sys::Datum) {
    let packed = arg.value() as u64;
    let (slot, generation) = ((packed & 0xffff) as usize, (packed >> 16) as u32);
    super::set_up_signals();
    IN_POOL.store(true, Ordering::Relaxed);
    let database = shmem::slot_database(slot);
    if database == pg_sys::InvalidOid || shmem::generation() != generation {
        return;
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    executor::session::pin_worker_search_path();
    shmem::attach(slot);

    let mut worker = Worker::new(slot);
    // Sent to see whether mtask is here: say so at once, even when disabled.
    let _ = in_transaction(|| worker.ready());
    // A worker leaves when mtask is not (or no longer) installed here, when
    // a new launcher has taken over, or when the launcher has given its
    // slot away; it never leaves in the middle of a task.
    while shmem::slot_found(slot) != shmem::ABSENT
        && shmem::generation() == generation
        && shmem::slot_database(slot) == database
    {
        super::reload_config_if_requested();
        worker.leads = shmem::leads(slot);
        let runs_before = worker.runs_since_vacuum;
        let mut sleep = if guc::enabled() { step(&mut worker) } else { guc::naptime() };
        shmem::add_runs(slot, worker.runs_since_vacuum.saturating_sub(runs_before));
        if worker.runs_since_vacuum >= VACUUM_EVERY {
            vacuum("mtask.tasks");
            worker.runs_since_vacuum = 0;
        }
        if worker.leads && guc::enabled() {
            // New runs, by any worker here, may have pushed a history past its limit.
            let runs = shmem::runs(database);
            if runs != worker.runs_at_purge {
                worker.next_purge = worker.next_purge.min(Instant::now() + PURGE_AGAIN);
                worker.runs_at_purge = runs;
            }
            if Instant::now() >= worker.next_purge {
                purge(&mut worker);
            }
            sleep = sleep.min(worker.next_purge.saturating_duration_since(Instant::now()));
        }
        if !sleep.is_zero() {
            super::wait(sleep);
            // An ALTER EXTENSION may have come while we slept.
            worker.checked = false;
        }
        unsafe {
            // A cancel that arrives between tasks has nothing to cancel.
            pg_sys::QueryCancelPending = 0;
        }
        pg_sys::check_for_interrupts!();
    }
    if shmem::generation() == generation {
        shmem::detach(slot);
    }
}

/// Every run updates its task's row, and the due index with it, so a busy
/// tasks table gathers dead row versions that the claim must step over, far
/// faster than autovacuum comes by (once a minute at best). Each worker
/// vacuums it after this many of its own runs; the table is small, and
/// SKIP_LOCKED lets a worker pass when another is already at it.
const VACUUM_EVERY: usize = 10_000;

fn vacuum(table: &str) {
    let command = format!("VACUUM (SKIP_LOCKED) {table}");
    let outcome = executor::top_level::run(&command, unsafe { pg_sys::GetUserId() }, None);
    if let Some(message) = outcome.message {
        log!("mtask: could not vacuum {table}: {message}");
    }
}

/// How soon the next purge round comes: soon while rounds find work, else
/// after a pause, so that an idle scheduler wakes for it rarely.
const PURGE_AGAIN: Duration = Duration::from_secs(1);
const PURGE_IDLE: Duration = Duration::from_secs(300);

/// One round of the history purge, in a transaction of its own, between
/// tasks. It deletes only finished runs, which nothing else locks, and
/// reads the tasks without locking them, so it delays no task. Runs of the
/// pool's first worker only: one purger is enough.
fn purge(worker: &mut Worker) {
    let (max_age_s, max_per_task) = guc::history_limits();
    let cursor = worker.purge_cursor;
    let result = in_transaction(|| {
        if !worker.ready() {
            return None;
        }
        Some(Spi::connect_mut(|client| store::purge(client, cursor, max_per_task, max_age_s)))
    });
    let busy = match result {
        Ok(Some(Ok(purged))) => {
            worker.purge_cursor = purged.next.unwrap_or(0);
            worker.purged_since_vacuum += purged.deleted.max(0) as usize;
            worker.purged_this_sweep += purged.deleted.max(0) as usize;
            // Rounds follow each other while a sweep over all tasks lasts,
            // and the next sweep follows at once if this one found work.
            let sweep_over = purged.next.is_none();
            let busy = !sweep_over || worker.purged_this_sweep > 0;
            if sweep_over {
                worker.purged_this_sweep = 0;
            }
            busy
        }
        Ok(None) => false,
        Ok(Some(Err(e))) => {
            warning!("mtask: could not purge the run history: {e}");
            false
        }
        Err((_, why)) => {
            warning!("mtask: could not purge the run history: {why}");
            false
        }
    };
    worker.next_purge = Instant::now() + if busy { PURGE_AGAIN } else { PURGE_IDLE };
    // Deleted rows leave space that only VACUUM makes reusable; without it
    // the history's table would keep growing while its row count does not.
    if worker.purged_since_vacuum >= VACUUM_EVERY {
        vacuum("mtask.runs");
        worker.purged_since_vacuum = 0;
    }
}

/// Runs `body` as one top-level transaction. An ERROR anywhere in it,
/// the commit included, aborts the transaction and comes back as `Err`.
fn in_transaction<R>(body: impl FnOnce() -> R) -> Result<R, (String, String)> {
    PgTryBuilder::new(AssertUnwindSafe(|| unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let r = body();
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        Ok(r)
    }))
    .catch_others(|err| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(executor::describe(&err))
    })
    .execute()
}

fn now() -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() }).expect("the clock reads a finite time")
}

/// A pool worker's state between steps: whether the database holds the
/// schema this library was built for (looked up once per wake-up rather than
/// once per task), and its counters.
struct Worker {
    /// Its pool slot.
    slot: usize,
    checked: bool,
    ready: bool,
    /// The mismatched version already warned about, so it is said once.
    warned: Option<String>,
    /// Whether this is the first worker of its database's pool, which alone
    /// warns (so the pool says it once) and purges the history.
    leads: bool,
    /// Steps left to run one task per transaction, after a batch failed.
    single_steps: usize,
    /// Tasks this worker has run since it last vacuumed the tasks table.
    runs_since_vacuum: usize,
    /// The purge: where its next round starts (a task id), when it is due,
    /// and the runs deleted since it last vacuumed the runs table and in
    /// the current sweep over all tasks.
    purge_cursor: i64,
    next_purge: Instant,
    purged_since_vacuum: usize,
    purged_this_sweep: usize,
    /// shmem::runs() when the purge last looked.
    runs_at_purge: u64,
}

impl Worker {
    fn new(slot: usize) -> Worker {
        Worker {
            slot,
            checked: false,
            ready: false,
            warned: None,
            leads: shmem::leads(slot),
            single_steps: 0,
            runs_since_vacuum: 0,
            purge_cursor: 0,
            next_purge: Instant::now(),
            purged_since_vacuum: 0,
            purged_this_sweep: 0,
            runs_at_purge: 0,
        }
    }

    fn ready(&mut self) -> bool {
        if self.checked {
            return self.ready;
        }
        const QUERY: &str = "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'mtask')";
        let installed: Option<String> = Spi::get_one(QUERY).unwrap_or_else(|e| error!("{e}"));
        shmem::found(self.slot, if installed.is_some() { shmem::INSTALLED } else { shmem::ABSENT });
        let built = env!("CARGO_PKG_VERSION");
        self.checked = true;
        self.ready = installed.as_deref() == Some(built);
        if let Some(v) = installed.filter(|v| self.leads && v != built && self.warned.as_ref() != Some(v)) {
            pg_schedule::report(
                pgrx::PgLogLevel::WARNING,
                pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "mtask {v} is installed in this database, but the server runs mtask {built}; no task runs until they match"
                ),
                "Run ALTER EXTENSION mtask UPDATE.".into(),
            );
            self.warned = Some(v);
        }
        self.ready
    }
}

fn report_activity(state: pg_sys::BackendState::Type, command: Option<&str>) {
    let text = command.and_then(|c| CString::new(c).ok());
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())) };
}

/// A claimed task that is about to run, kept outside the transaction so that
/// a failure at commit can still be recorded.
struct Claimed {
    task: DueTask,
    timing: Timing,
    slot: DateTime<Utc>,
    started: TimestampWithTimeZone,
    /// The 'running' run row of a non-transactional run.
    run_id: Option<i64>,
}

impl Claimed {
    fn timeout_ms(&self) -> i32 {
        self.task.timeout_ms.map_or_else(guc::default_timeout_ms, |ms| ms.clamp(0, i32::MAX.into()) as i32)
    }
}

/// What the claim's transaction leaves to do.
enum Next {
    Sleep(Duration),
    /// Run the claimed non-transactional task, outside any transaction.
    RunOutside,
}

/// Tasks that one transaction may run back to back, and for how long it may
/// go on taking more. Sharing a commit among trivial tasks roughly halves
/// their cost; the budget keeps the effects of the first from waiting long
/// for the commit. Each task is claimed only when its turn comes, so tasks
/// not yet reached stay free for other workers: a long task holds up no
/// other task's start.
const MAX_BATCH: usize = 64;
const BATCH_BUDGET: std::time::Duration = std::time::Duration::from_millis(5);

/// What taking one due task did.
enum Taken {
    /// Nothing is due.
    Nothing,
    /// A task ran (or was passed over) and was recorded.
    Done,
    /// A non-transactional task is claimed, to run after the commit.
    RunOutside,
}

/// Claims and runs due tasks, several in one transaction when they are
/// quick. Returns how long to sleep before the next step: zero after a run,
/// as there may be more due tasks.
fn step(worker: &mut Worker) -> Duration {
    let claimed: RefCell<Option<Claimed>> = RefCell::new(None);
    let mut done = 0;
    let batch = if worker.single_steps > 0 { 1 } else { MAX_BATCH };
    worker.single_steps = worker.single_steps.saturating_sub(1);
    let result = in_transaction(|| {
        if !worker.ready() {
            return Next::Sleep(guc::naptime());
        }
        Spi::connect_mut(|client| {
            let begun = std::time::Instant::now();
            loop {
                match take_one(client, &claimed, done == 0) {
                    Taken::Nothing if done == 0 => {
                        // Idle: a good moment to close runs whose worker died.
                        store::recover_orphans(client).unwrap_or_else(|e| error!("{e}"));
                        let next = store::next_due(client).unwrap_or_else(|e| error!("{e}"));
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
    if result.is_ok() {
        worker.runs_since_vacuum += done;
    }
    match result {
        Ok(Next::Sleep(sleep)) => sleep,
        Ok(Next::RunOutside) => {
            let run = claimed.take().expect("claimed before RunOutside");
            report_activity(pg_sys::BackendState::STATE_RUNNING, Some(&run.task.command));
            let outcome = if run.task.command_type == "program" {
                executor::program::run(&run.task.command, run.task.payload.as_deref(), Some(run.timeout_ms()))
            } else {
                executor::top_level::run(&sql_of(&run.task), run.task.owner, Some(run.timeout_ms()))
            };
            report_activity(pg_sys::BackendState::STATE_IDLE, None);
            // If this fails, the run stays 'running' until recover_orphans
            // closes it once this worker is gone.
            record_apart(&run, &outcome)
        }
        // Several tasks shared the transaction that failed, and which one
        // failed it is unknown. All their effects are rolled back; they run
        // again one per transaction, where a failure is theirs alone.
        Err(_) if done > 1 || (done == 1 && claimed.borrow().is_none()) => {
            report_activity(pg_sys::BackendState::STATE_IDLE, None);
            worker.single_steps = MAX_BATCH;
            Duration::ZERO
        }
        // The run's transaction failed outside the command's subtransaction,
        // e.g. a deferred constraint at commit: record that as a failed run so
        // the task moves on instead of being retried in a tight loop.
        Err((sqlstate, message)) => {
            report_activity(pg_sys::BackendState::STATE_IDLE, None);
            match claimed.take() {
                Some(run) => record_apart(&run, &Outcome::failed(sqlstate, message)),
                None => {
                    warning!("mtask scheduler: {message}");
                    guc::naptime()
                }
            }
        }
    }
}

/// Records a run in a transaction of its own. Returns how long to sleep:
/// a naptime if even that failed, so that a broken task is not retried in a
/// tight loop.
fn record_apart(run: &Claimed, outcome: &Outcome) -> Duration {
    match in_transaction(|| Spi::connect_mut(|client| finish(client, run, outcome))) {
        Ok(()) => Duration::ZERO,
        Err((_, why)) => {
            warning!("mtask: could not record the run of task {}: {why}", run.task.id);
            guc::naptime()
        }
    }
}

/// Claims the next due task and runs it (or passes it over) in the current
/// transaction; a non-transactional task only when it is the first.
fn take_one(client: &mut SpiClient<'_>, claimed: &RefCell<Option<Claimed>>, first: bool) -> Taken {
    claimed.replace(None);
    let Some(task) = store::claim(client, first).unwrap_or_else(|e| error!("{e}")) else {
        return Taken::Nothing;
    };
    let timing = timing_of(&task);
    let due = pg_schedule::instant_or_raise("next_run_at", task.next_run_at);
    // One instant for the decision and the run's start, so that a run
    // never starts after the end_at it was allowed under.
    let started = now();
    let slot = match timing.before_run(due, pg_schedule::instant_or_raise("now", started), guc::catchup()) {
        Decision::Pass { skipped, status, next } => {
            if log_runs(&task).records("skipped") {
                store::record_skipped(client, task.id, &skipped).unwrap_or_else(|e| error!("{e}"));
            }
            store::pass(client, task.id, status, next.map(pg_schedule::to_pg)).unwrap_or_else(|e| error!("{e}"));
            return Taken::Done;
        }
        Decision::Run { slot, skipped } => {
            if let Some(skipped) = skipped.filter(|_| log_runs(&task).records("skipped")) {
                store::record_skipped(client, task.id, &skipped).unwrap_or_else(|e| error!("{e}"));
            }
            slot
        }
    };
    if let Some((sqlstate, why, remedy)) = refusal(&task) {
        let run = Claimed { task, timing, slot, started, run_id: None };
        let mut after = run.timing.after_run(slot, Utc::now(), false, 0.0);
        after.status = "paused";
        let reason = format!("{why}; {remedy}, then resume it");
        record(client, &run, &Outcome::failed(sqlstate.into(), why), &after, Some(&reason));
        return Taken::Done;
    }
    if !task.transactional {
        // Committed as 'running' first, so that a crash mid-run is
        // seen afterwards (recover_orphans) rather than lost.
        let run_id = store::start_run(client, &task, slot, started).unwrap_or_else(|e| error!("{e}"));
        claimed.replace(Some(Claimed { task, timing, slot, started, run_id: Some(run_id) }));
        return Taken::RunOutside;
    }
    claimed.replace(Some(Claimed { task, timing, slot, started, run_id: None }));
    let held = claimed.borrow();
    let run = held.as_ref().expect("just claimed");
    report_activity(pg_sys::BackendState::STATE_RUNNING, Some(&run.task.command));
    let outcome = executor::run(client, &sql_of(&run.task), run.task.owner, Some(run.timeout_ms()));
    report_activity(pg_sys::BackendState::STATE_IDLE, None);
    finish(client, run, &outcome);
    Taken::Done
}

/// Why a claimed task must not run, and what would let it: its owner is
/// gone, or may no longer run programs. Such a task is paused.
fn refusal(task: &DueTask) -> Option<(&'static str, String, &'static str)> {
    if !crate::roles::role_exists(task.owner) {
        let why = format!("the task's owner, the role with OID {}, no longer exists", task.owner.to_u32());
        return Some(("42704", why, "give the task an existing owner"));
    }
    if task.command_type == "program" && !executor::program::may_run_programs(task.owner) {
        let why = "the task's owner may no longer run programs".to_string();
        return Some(("42501", why, "grant it pg_execute_server_program"));
    }
    None
}

/// The SQL a task runs: its command, or for a notify task the pg_notify()
/// of its payload on the channel its command names.
fn sql_of(task: &DueTask) -> std::borrow::Cow<'_, str> {
    if task.command_type == "notify" {
        executor::notify_command(&task.command, task.payload.as_deref().unwrap_or("")).into()
    } else {
        task.command.as_str().into()
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

fn timing_of(task: &DueTask) -> Timing {
    let schedule = match (task.kind.as_str(), &task.schedule) {
        ("recurring", Some(text)) => Some(pg_schedule::parse_or_raise(text)),
        _ => None,
    };
    Timing {
        schedule,
        anchor: pg_schedule::instant_or_raise("start_at", task.start_at),
        tz: pg_schedule::time_zone_or_raise(Some(&task.timezone)),
        missed: Missed::from_sql(&task.missed).unwrap_or(Missed::Once),
        overlap: Overlap::from_sql(&task.overlap).unwrap_or(Overlap::Skip),
        end_at: task.end_at.and_then(pg_schedule::to_chrono),
        max_runs: task.max_runs,
        runs: task.run_count,
        retry: RetryPolicy {
            max_attempts: task.max_attempts,
            base: chrono::Duration::microseconds(task.retry_delay),
            cap: chrono::Duration::microseconds(task.retry_max_delay),
            max_consecutive_failures: task.max_consecutive_failures,
        },
        attempt: task.attempt,
        retry_slot: task.retry_slot.and_then(pg_schedule::to_chrono),
        failures: task.consecutive_failures,
    }
}

fn finish(client: &mut SpiClient<'_>, run: &Claimed, outcome: &Outcome) {
    let succeeded = outcome.status == RunStatus::Succeeded;
    let jitter = unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) };
    let after = run.timing.after_run(run.slot, Utc::now(), succeeded, jitter);
    let reason = (after.status == "paused").then(|| format!("paused after {} failed runs in a row", after.failures));
    record(client, run, outcome, &after, reason.as_deref());
}

fn record(client: &mut SpiClient<'_>, run: &Claimed, outcome: &Outcome, after: &After, pause_reason: Option<&str>) {
    let logged = log_runs(&run.task).records(outcome.status.as_str());
    store::record(client, &run.task, run.run_id, run.slot, run.started, outcome, after, pause_reason, logged)
        .unwrap_or_else(|e| error!("{e}"));
}

fn log_runs(task: &DueTask) -> LogRuns {
    task.log_runs.as_deref().and_then(LogRuns::from_sql).unwrap_or_else(guc::log_runs)
}
