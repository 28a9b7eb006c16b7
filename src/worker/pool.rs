//! A pool worker (backend type "mtask worker"): connects to its slot's
//! database and, until its slot is taken away, takes steps (`step.rs`:
//! claim, run and record due tasks), keeps its tables vacuumed
//! (`maintenance.rs`) and, as the pool's first worker, purges the history
//! (`retention.rs`); then sleeps until the next task is due, a commit wakes
//! it, or `mtask.naptime` passes. Workers share nothing but the tasks
//! table: the claim's `FOR UPDATE SKIP LOCKED` hands each due task to one
//! of them.

use super::maintenance::Vacuum;
use super::retention::Purger;
use super::step::Stepper;
use super::transaction;
use super::version::SchemaCheck;
use crate::{executor, guc, process, shmem};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

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
    process::pool_worker();
    let database = shmem::slot_database(slot);
    if database == pg_sys::InvalidOid || shmem::generation() != generation {
        return;
    }
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    executor::session::pin_worker_search_path();
    executor::session::note_baseline();
    shmem::attach(slot);

    let mut schema = SchemaCheck::new(slot);
    let mut stepper = Stepper::default();
    let mut vacuum = Vacuum::default();
    let mut purger = Purger::new();
    // Sent to see whether mtask is here: say so at once, even when disabled.
    let _ = transaction::run(|| schema.ready(shmem::leads(slot)));
    // A worker leaves when mtask is not (or no longer) installed here, when
    // a new launcher has taken over, or when the launcher has given its
    // slot away; it never leaves in the middle of a task.
    while shmem::slot_found(slot) != shmem::ABSENT
        && shmem::generation() == generation
        && shmem::slot_database(slot) == database
    {
        super::reload_config_if_requested();
        let leads = shmem::leads(slot);
        let mut sleep = guc::naptime();
        if guc::enabled() {
            let stepped = stepper.step(&mut schema, leads);
            shmem::add_runs(slot, stepped.runs);
            vacuum.ran(stepped.runs);
            sleep = stepped.sleep;
            if stepped.retire {
                // The launcher starts a fresh worker in the slot.
                break;
            }
        }
        if leads && guc::enabled() {
            sleep = sleep.min(purger.tick(database, &mut vacuum, || schema.ready(leads)));
        }
        vacuum.tick();
        if !sleep.is_zero() {
            super::wait(sleep);
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
