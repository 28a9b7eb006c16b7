//! The launcher keeps the pool full: one dynamic worker per slot below
//! `mtask.max_workers`, restarted (at most once a second per slot) when it
//! exits. It runs no task and holds no database connection.

use super::runner;
use crate::{guc, pg_schedule, shmem};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::time::{Duration, Instant};

const RESTART_DELAY: Duration = Duration::from_secs(1);

struct Slot {
    worker: Option<DynamicBackgroundWorker>,
    started: Option<Instant>,
    /// The last start failed: no background worker process was free.
    refused: bool,
}

impl Slot {
    fn alive(&self) -> bool {
        self.worker
            .as_ref()
            .is_some_and(|w| matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)))
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_launcher_main(_arg: pg_sys::Datum) {
    super::set_up_signals();
    // No database: this only gives the launcher a row in pg_stat_activity.
    pgrx::bgworkers::BackgroundWorker::connect_worker_to_spi(None, None);
    // Workers of a launcher that crashed finish their task and leave.
    let generation = shmem::next_generation();
    let mut slots: Vec<Slot> =
        (0..shmem::MAX_WORKERS).map(|_| Slot { worker: None, started: None, refused: false }).collect();
    let mut short_of_processes = false;
    loop {
        super::reload_config_if_requested();
        let wanted = guc::max_workers();
        for (n, slot) in slots.iter_mut().enumerate().take(wanted) {
            if slot.alive() || slot.started.is_some_and(|t| t.elapsed() < RESTART_DELAY) {
                continue;
            }
            slot.started = Some(Instant::now());
            slot.worker = start_worker(n, generation);
            slot.refused = slot.worker.is_none();
        }
        let missing = slots.iter().take(wanted).filter(|s| s.refused).count();
        // One WARNING when the pool cannot be filled, not one per attempt.
        if missing > 0 && !short_of_processes {
            pg_schedule::report(
                PgLogLevel::WARNING,
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "mtask could start only {} of its {wanted} workers: max_worker_processes is used up",
                    wanted - missing
                ),
                "Raise max_worker_processes (mtask needs mtask.max_workers + 1) or lower mtask.max_workers; \
                 tasks still run on the workers that started."
                    .into(),
            );
        }
        short_of_processes = missing > 0;
        // Woken early when a worker exits (this process is its notify pid).
        super::wait(RESTART_DELAY);
        pg_sys::check_for_interrupts!();
    }
}

fn start_worker(slot: usize, generation: u32) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(&format!("mtask worker {slot}"))
        .set_type("mtask worker")
        .set_library("mtask")
        .set_function("mtask_worker_main")
        .set_argument(Some(runner::argument(slot, generation)))
        .enable_spi_access()
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
        .load_dynamic()
        .ok()
}
