//! mtask's shared memory: which processes run tasks, so that a backend that
//! commits a due task can wake them at once (background workers cannot
//! LISTEN), and the pool's generation, so that workers left behind by a
//! crashed launcher step aside, and a count of runs, so that the worker
//! that purges the history knows when there is new history to purge. Set
//! up only when mtask is preloaded.

use pgrx::prelude::*;
use pgrx::{PgAtomic, pg_shmem_init};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// The largest pool `mtask.max_workers` allows.
pub const MAX_WORKERS: usize = 64;

const NO_PROC: i32 = -1;

/// Per pool slot, the `pgprocno` of the worker in it, or `NO_PROC`.
static WORKERS: PgAtomic<[AtomicI32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_workers") };
static GENERATION: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"mtask_generation") };
static RUNS: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"mtask_runs") };

pub fn init() {
    pg_shmem_init!(WORKERS = [const { AtomicI32::new(NO_PROC) }; MAX_WORKERS]);
    pg_shmem_init!(GENERATION = AtomicU32::new(0));
    pg_shmem_init!(RUNS = AtomicU64::new(0));
}

/// Counts runs that the pool's workers have committed.
pub fn add_runs(n: usize) {
    RUNS.get().fetch_add(n as u64, Ordering::Relaxed);
}

/// Runs committed since the server started.
pub fn runs() -> u64 {
    RUNS.get().load(Ordering::Relaxed)
}

/// Puts the calling worker in `slot`, so that commits wake it.
pub fn attach(slot: usize) {
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    WORKERS.get()[slot].store(procno, Ordering::Release);
}

pub fn detach(slot: usize) {
    WORKERS.get()[slot].store(NO_PROC, Ordering::Release);
}

/// Sets the latch of every pool worker. A slot left stale by a worker that
/// died points at a PGPROC that is free or reused: setting its latch is at
/// worst a spurious wake-up, which every latch user must tolerate.
pub fn wake_workers() {
    for slot in WORKERS.get() {
        let procno = slot.load(Ordering::Acquire);
        if procno != NO_PROC {
            unsafe {
                let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
                pg_sys::SetLatch(&raw mut (*proc).procLatch);
            }
        }
    }
}

pub fn generation() -> u32 {
    GENERATION.get().load(Ordering::Acquire)
}

/// A new launcher's generation; workers of older ones leave.
pub fn next_generation() -> u32 {
    GENERATION.get().fetch_add(1, Ordering::AcqRel) + 1
}
