//! The scheduler's loop: one transaction per due task — claim, run, record,
//! commit — then sleep until the next task is due or `mtask.naptime` passes.

use super::store::{self, DueTask};
use crate::executor::{self, Outcome, RunStatus};
use crate::lifecycle::{self, Kind};
use crate::{guc, pg_schedule};
use chrono::Utc;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

// pgrx exposes these only behind Rust guards; a signal handler must be the
// plain C function.
unsafe extern "C-unwind" {
    fn die(signal: std::ffi::c_int);
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_scheduler_main(_arg: pg_sys::Datum) {
    unsafe {
        // Postgres' own handlers, not pgrx's flag-only ones: with `die`, a task
        // sleeping in pg_sleep(3600) ends at its next CHECK_FOR_INTERRUPTS on a
        // fast shutdown. SIGINT keeps the default StatementCancelHandler, so
        // pg_cancel_backend cancels the running task only.
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(die));
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(SignalHandlerForConfigReload));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let database = guc::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("mtask scheduler started in database \"{database}\"");

    loop {
        reload_config_if_requested();
        let sleep = if guc::enabled() { step() } else { guc::naptime() };
        if !sleep.is_zero() {
            wait(sleep);
        }
        unsafe {
            // A cancel that arrives between tasks has nothing to cancel.
            pg_sys::QueryCancelPending = 0;
        }
        pg_sys::check_for_interrupts!();
    }
}

fn reload_config_if_requested() {
    unsafe {
        if pg_sys::ConfigReloadPending != 0 {
            pg_sys::ConfigReloadPending = 0;
            pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        }
    }
}

fn wait(timeout: Duration) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            // Rounded up: waking a hair early finds nothing due and costs a round.
            timeout.as_micros().div_ceil(1000) as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
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
    TimestampWithTimeZone::try_from(unsafe { pg_sys::GetCurrentTimestamp() })
        .expect("the clock reads a finite time")
}

fn extension_installed() -> bool {
    unsafe { pg_sys::get_extension_oid(c"mtask".as_ptr(), true) != pg_sys::InvalidOid }
}

fn report_activity(state: pg_sys::BackendState::Type, command: Option<&str>) {
    let text = command.and_then(|c| CString::new(c).ok());
    unsafe {
        pg_sys::pgstat_report_activity(state, text.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
    };
}

/// Claims and runs at most one due task. Returns how long to sleep before the
/// next step: zero after a run, as there may be more due tasks.
fn step() -> Duration {
    let claimed: RefCell<Option<(DueTask, TimestampWithTimeZone)>> = RefCell::new(None);
    let result = in_transaction(|| {
        if !extension_installed() {
            return guc::naptime();
        }
        Spi::connect_mut(|client| {
            let Some(task) = store::claim(client).unwrap_or_else(|e| error!("{e}")) else {
                let next = store::next_due(client).unwrap_or_else(|e| error!("{e}"));
                return sleep_until(next);
            };
            let started = now();
            claimed.replace(Some((task.clone(), started)));
            report_activity(pg_sys::BackendState::STATE_RUNNING, Some(&task.command));
            let outcome = executor::run(client, &task.command, task.owner);
            report_activity(pg_sys::BackendState::STATE_IDLE, None);
            finish(client, &task, started, &outcome);
            Duration::ZERO
        })
    });
    match result {
        Ok(sleep) => sleep,
        // The run's transaction failed outside the command's subtransaction,
        // e.g. a deferred constraint at commit: record that as a failed run so
        // the task moves on instead of being retried in a tight loop.
        Err((sqlstate, message)) => {
            report_activity(pg_sys::BackendState::STATE_IDLE, None);
            match claimed.take() {
                Some((task, started)) => {
                    let outcome = Outcome::failed(sqlstate, message);
                    let recorded = in_transaction(|| {
                        Spi::connect_mut(|client| finish(client, &task, started, &outcome))
                    });
                    if let Err((_, why)) = recorded {
                        warning!("mtask: could not record the failed run of task {}: {why}", task.id);
                        return guc::naptime();
                    }
                    Duration::ZERO
                }
                None => {
                    warning!("mtask scheduler: {message}");
                    guc::naptime()
                }
            }
        }
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

fn finish(
    client: &mut pgrx::spi::SpiClient<'_>,
    task: &DueTask,
    started: TimestampWithTimeZone,
    outcome: &Outcome,
) {
    let kind = Kind::from_sql(&task.kind).unwrap_or(Kind::Once);
    let following = match (kind, &task.schedule) {
        (Kind::Recurring, Some(text)) => {
            let schedule = pg_schedule::parse_or_raise(text);
            let anchor = pg_schedule::instant_or_raise("start_at", task.start_at);
            let scheduled = pg_schedule::instant_or_raise("next_run_at", task.next_run_at);
            let tz = pg_schedule::time_zone_or_raise(Some(&task.timezone));
            schedule.following_run(anchor, scheduled, Utc::now(), tz)
        }
        _ => None,
    };
    let (status, next) =
        lifecycle::after_run(kind, outcome.status == RunStatus::Succeeded, following);
    store::record(client, task, started, outcome, status, next.map(pg_schedule::to_pg))
        .unwrap_or_else(|e| error!("{e}"));
}
