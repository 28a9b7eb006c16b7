//! A pool worker (backend type "mtask worker"): the launcher starts it in a
//! database where a task is due, or to see whether mtask is installed
//! there. It takes steps (`step.rs`: claim, run and record due tasks), keeps
//! its tables vacuumed (`maintenance.rs`) and, as its database's first
//! worker, purges the history (`retention.rs`); between steps it sleeps
//! until the next task is due, a commit wakes it, or `mtask.naptime`
//! passes. It leaves when nothing has been due for
//! `mtask.worker_idle_timeout`, and at once when another database waits for
//! its place (docs/DESIGN.md, "Workers on demand"). Workers share nothing
//! but the tasks table: the claim's `FOR UPDATE SKIP LOCKED` hands each due
//! task to one of them.

use super::maintenance::Vacuum;
use super::retention::Purger;
use super::step::{Found, Stepper};
use super::transaction;
use super::version::SchemaCheck;
use super::{boot, launcher, targets};
use crate::shmem::databases::{self, Known};
use crate::{executor, guc, process, shmem};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use std::time::{Duration, Instant};

/// How long a worker that holds back for a waiting database sleeps before
/// it looks again, if nothing wakes it sooner.
const HELD_BACK_NAP: Duration = Duration::from_millis(50);

/// How long a worker may keep its statistics to itself: as a backend does,
/// it hands them over at most once a second (PGSTAT_MIN_INTERVAL).
const STATS_HELD_AT_MOST: Duration = Duration::from_secs(1);

/// Packs what a pool worker is told at start into its one argument.
pub fn argument(slot: usize, generation: u32) -> pg_sys::Datum {
    pg_sys::Datum::from((u64::from(generation) << 16) | slot as u64)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_worker_main(arg: pg_sys::Datum) {
    let packed = arg.value() as u64;
    let (slot, generation) = ((packed & 0xffff) as usize, (packed >> 16) as u32);
    super::set_up_signals();
    super::keep_large_blocks_apart();
    process::pool_worker();
    if shmem::generation() != generation {
        return;
    }
    let database = shmem::slot_database(slot);
    if database == pg_sys::InvalidOid {
        shmem::detach(slot);
        return;
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    executor::session::pin_worker_search_path();
    executor::session::note_baseline();
    shmem::attach(slot);

    let mut schema = SchemaCheck::new(database);
    let mut stepper = Stepper::new(slot);
    let mut vacuum = Vacuum::default();
    let mut purger = Purger::new();
    let mut idle_since: Option<Instant> = None;
    // Sent to see whether mtask is here: say so at once, even when disabled.
    let _ = transaction::run(|| schema.ready());
    // A worker leaves when mtask is not (or no longer) installed here, when
    // a new launcher has taken over, or when the launcher has taken its slot
    // back; never in the middle of a task.
    while databases::get(database).is_some_and(|d| d.known != Known::Absent)
        && shmem::generation() == generation
        && shmem::slot_database(slot) == database
        && guc::enabled()
    {
        super::reload_config_if_requested();
        let leads = shmem::leads(slot);
        if databases::boot_pending(database) {
            match transaction::run(|| schema.ready().then(boot::make_due)) {
                Ok(Some(())) => databases::booted(database),
                Ok(None) => {}
                Err(why) => warning!("mtask: could not make the tasks that run at server start due: {why}"),
            }
        }
        if databases::drops_unseen(database) {
            let paused = transaction::run(|| schema.ready().then(targets::pause_where_gone));
            if let Err(why) = paused {
                warning!("mtask: could not pause the tasks whose database is gone: {why}");
            }
        }
        let seen = databases::lowerings(database);
        let horizon = databases::horizon(database);
        let stepped = stepper.step(&mut schema, horizon);
        // What follows (a purge, say) must not put off a wake-up it was
        // told: the sleep counts from here.
        let stepped_at = Instant::now();
        databases::add_runs(database, stepped.runs);
        vacuum.ran(database);
        if let Found::Nothing { next, crowded } = stepped.found {
            databases::publish_due(database, seen, next.unwrap_or(databases::NOTHING_DUE), crowded);
        }
        if stepped.retire {
            // The launcher starts a fresh worker when one is needed.
            break;
        }
        let idle = matches!(stepped.found, Found::Nothing { .. }) && stepped.runs == 0;
        // Another database waits for a worker: the first worker to end a
        // step that owes it one gives it its place.
        if (horizon.is_some() || idle) && databases::take_turn(database, idle) {
            break;
        }
        let mut sleep = stepped.sleep;
        match stepped.found {
            Found::Nothing { next, .. } if stepped.runs == 0 => {
                let now = unsafe { pg_sys::GetCurrentTimestamp() };
                if next.is_some_and(|t| t <= now) {
                    // Held back: due here, but after a waiting database's task.
                    idle_since = None;
                    sleep = HELD_BACK_NAP;
                } else {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    let left = guc::worker_idle_timeout().saturating_sub(since.elapsed());
                    // Within the launcher's early start of the next task,
                    // it would only start another worker for it.
                    let soon = next.is_some_and(|t| t.saturating_sub(now) <= launcher::EARLY_START);
                    if !soon {
                        if left.is_zero() {
                            break;
                        }
                        sleep = sleep.min(left);
                    }
                }
            }
            _ => idle_since = None,
        }
        shmem::set_idle(slot, idle_since.is_some());
        if leads {
            sleep = sleep.min(purger.tick(database, &mut vacuum, || schema.ready()));
        }
        vacuum.tick();
        // A backend hands over its statistics when it goes idle; a worker
        // never does, so without this autovacuum would not see what its
        // tasks write (nor it its own tables) until it exits. Forced before
        // a long sleep, which would otherwise hold the last second's back.
        crate::compat::report_stats(sleep >= STATS_HELD_AT_MOST);
        if !sleep.is_zero() {
            super::wait_until(stepped_at + sleep);
            schema.forget();
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
