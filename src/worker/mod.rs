//! mtask's background processes. The launcher (`launcher.rs`, backend type
//! "mtask scheduler") is registered at server start and starts dynamic
//! workers (`pool.rs`, "mtask worker") where tasks are due, at most
//! `mtask.max_workers` at a time. A
//! worker's step claims due tasks (`claim.rs`), has the executor run them,
//! and records their runs (`record.rs`); between steps it vacuums
//! (`maintenance.rs`) and purges the history (`retention.rs`). A runner
//! (`runner.rs`, "mtask runner") runs one command in another database.

mod ahead;
mod boot;
pub mod claim;
pub mod finish;
mod launcher;
mod maintenance;
pub(crate) mod plans;
mod pool;
pub mod record;
mod retention;
mod runner;
mod step;
mod targets;
pub mod transaction;
mod version;

use crate::compat;
use mtask_core::wake::{self, Wait};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use std::time::{Duration, Instant};

pub fn register() {
    BackgroundWorkerBuilder::new("mtask scheduler")
        .set_type("mtask scheduler")
        .set_library("mtask")
        .set_function("mtask_launcher_main")
        .enable_spi_access()
        // Not on a standby: it starts when recovery ends, i.e. on promotion.
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // pgrx's default is never to restart; a crashed launcher must come back.
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

// pgrx exposes these only behind Rust guards; a signal handler must be the
// plain C function.
unsafe extern "C-unwind" {
    fn die(signal: std::ffi::c_int);
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
}

/// Postgres' own handlers, not pgrx's flag-only ones: with `die`, a task
/// sleeping in pg_sleep(3600) ends at its next CHECK_FOR_INTERRUPTS on a fast
/// shutdown. SIGINT keeps the default StatementCancelHandler, so
/// pg_cancel_backend and timeouts cancel the running task only.
fn set_up_signals() {
    unsafe {
        compat::set_signal_handler(pg_sys::SIGTERM, Some(die));
        compat::set_signal_handler(pg_sys::SIGHUP, Some(SignalHandlerForConfigReload));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Reloads the configuration if a SIGHUP asked for it; says whether it did.
fn reload_config_if_requested() -> bool {
    unsafe {
        if pg_sys::ConfigReloadPending == 0 {
            return false;
        }
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        crate::executor::forget_command_plans();
        true
    }
}

/// Sleeps until the latch is set or `deadline` comes, waking on time
/// (mtask_core::wake says why a single latch wait would not).
fn wait_until(deadline: Instant) {
    loop {
        match wake::next_wait(deadline.saturating_duration_since(Instant::now())) {
            Wait::Latch(wait) => unsafe {
                let events = pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                    wait.as_millis() as _,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                if events & pg_sys::WL_LATCH_SET as i32 != 0 {
                    pg_sys::ResetLatch(pg_sys::MyLatch);
                    return;
                }
            },
            Wait::Sleep(rest) => unsafe { pg_sys::pg_usleep(rest.as_micros() as _) },
            Wait::Done => return,
        }
    }
}

/// Makes malloc hand every large block back to the system when it is freed.
/// glibc raises its mmap threshold to the size of each large block freed,
/// up to 32 MB, so that the next ones come from the heap; a heap keeps what
/// is freed below its top. The purging worker's occasional peaks (a VACUUM
/// of the history's table, say, sizes its dead-tuple array by the table)
/// then stayed resident, and its memory grew in steps while its memory
/// contexts did not. A fixed threshold turns that adjustment off.
fn keep_large_blocks_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // glibc's initial threshold.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
