//! mtask's shared memory, set up only when mtask is preloaded:
//! - per pool slot, the database the launcher gave it, the worker in it (so
//!   that a backend that commits a due task can wake that database's
//!   workers at once: background workers cannot LISTEN), and what the
//!   worker found there (whether mtask is installed);
//! - the launcher, so that CREATE EXTENSION can have it look again, and a
//!   counter of such requests;
//! - the pool's generation, so that workers left behind by a crashed
//!   launcher step aside;
//! - a count of runs, so that each database's purging worker knows when
//!   there is new history to purge.

use pgrx::prelude::*;
use pgrx::{PgAtomic, pg_shmem_init};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// The largest pool `mtask.max_workers` allows.
pub const MAX_WORKERS: usize = 64;

const NO_PROC: i32 = -1;

/// Per pool slot, the `pgprocno` of the worker in it, or `NO_PROC`.
static WORKERS: PgAtomic<[AtomicI32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_workers") };
/// Per pool slot, the OID of its database, or 0 for a free slot.
static SLOT_DATABASES: PgAtomic<[AtomicU32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_slot_databases") };
/// Per pool slot, what its worker found: `UNKNOWN`, `INSTALLED` or `ABSENT`.
static SLOT_FOUND: PgAtomic<[AtomicU32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_slot_found") };
static LAUNCHER: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"mtask_launcher") };
/// Databases being dropped, whose workers must leave and not come back.
static DROPPING: PgAtomic<[AtomicU32; 8]> = unsafe { PgAtomic::new(c"mtask_dropping") };
static LOOK_AGAIN: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"mtask_look_again") };
static GENERATION: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"mtask_generation") };
/// Per pool slot, the runs its workers have committed.
static RUNS: PgAtomic<[AtomicU64; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_runs") };

pub const UNKNOWN: u32 = 0;
pub const INSTALLED: u32 = 1;
pub const ABSENT: u32 = 2;

pub fn init() {
    pg_shmem_init!(WORKERS = [const { AtomicI32::new(NO_PROC) }; MAX_WORKERS]);
    pg_shmem_init!(SLOT_DATABASES = [const { AtomicU32::new(0) }; MAX_WORKERS]);
    pg_shmem_init!(SLOT_FOUND = [const { AtomicU32::new(UNKNOWN) }; MAX_WORKERS]);
    pg_shmem_init!(LAUNCHER = AtomicI32::new(NO_PROC));
    pg_shmem_init!(DROPPING = [const { AtomicU32::new(0) }; 8]);
    pg_shmem_init!(LOOK_AGAIN = AtomicU32::new(0));
    pg_shmem_init!(GENERATION = AtomicU32::new(0));
    pg_shmem_init!(RUNS = [const { AtomicU64::new(0) }; MAX_WORKERS]);
}

/// Gives `slot` to `database` (0: frees it, and wakes its worker to leave).
pub fn assign(slot: usize, database: pg_sys::Oid) {
    SLOT_FOUND.get()[slot].store(UNKNOWN, Ordering::Release);
    SLOT_DATABASES.get()[slot].store(database.to_u32(), Ordering::Release);
    if database == pg_sys::InvalidOid {
        set_latch(WORKERS.get()[slot].load(Ordering::Acquire));
    }
}

/// Marks `database` as being dropped, and asks the launcher to take its
/// workers away. False if there is no room to say so (eight drops at once).
pub fn drop_begins(database: pg_sys::Oid) -> bool {
    let marked = DROPPING
        .get()
        .iter()
        .any(|d| d.compare_exchange(0, database.to_u32(), Ordering::AcqRel, Ordering::Acquire).is_ok());
    ask_launcher_to_look_again();
    marked
}

/// Ends the mark, once the database is gone or the drop has failed.
pub fn drop_ends(database: pg_sys::Oid) {
    for d in DROPPING.get() {
        let _ = d.compare_exchange(database.to_u32(), 0, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Ends the marks of databases that are no longer in `present`: dropped.
pub fn forget_dropped(present: &[u32]) {
    for d in DROPPING.get() {
        let database = d.load(Ordering::Acquire);
        if database != 0 && !present.contains(&database) {
            let _ = d.compare_exchange(database, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

pub fn dropping(database: u32) -> bool {
    DROPPING.get().iter().any(|d| d.load(Ordering::Acquire) == database)
}

pub fn slot_database(slot: usize) -> pg_sys::Oid {
    pg_sys::Oid::from(SLOT_DATABASES.get()[slot].load(Ordering::Acquire))
}

/// Says what the worker in `slot` found in its database.
pub fn found(slot: usize, what: u32) {
    SLOT_FOUND.get()[slot].store(what, Ordering::Release);
}

pub fn slot_found(slot: usize) -> u32 {
    SLOT_FOUND.get()[slot].load(Ordering::Acquire)
}

/// Registers the calling process as the launcher.
pub fn attach_launcher() {
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    LAUNCHER.get().store(procno, Ordering::Release);
}

/// Asks the launcher to look again at which databases have mtask.
pub fn ask_launcher_to_look_again() {
    LOOK_AGAIN.get().fetch_add(1, Ordering::AcqRel);
    set_latch(LAUNCHER.get().load(Ordering::Acquire));
}

/// How many times the launcher has been asked to look again.
pub fn look_again_requests() -> u32 {
    LOOK_AGAIN.get().load(Ordering::Acquire)
}

/// Counts runs that the worker in `slot` has committed.
pub fn add_runs(slot: usize, n: usize) {
    RUNS.get()[slot].fetch_add(n as u64, Ordering::Relaxed);
}

/// Runs committed by the workers of `database` since the server started
/// (give or take those of slots since given to another database).
pub fn runs(database: pg_sys::Oid) -> u64 {
    let slots = SLOT_DATABASES.get().iter().zip(RUNS.get());
    slots.filter(|(d, _)| d.load(Ordering::Acquire) == database.to_u32()).map(|(_, r)| r.load(Ordering::Relaxed)).sum()
}

/// Whether `slot` is the first slot of its database: that worker alone
/// purges the history and warns, so that each is done once per database.
pub fn leads(slot: usize) -> bool {
    let database = SLOT_DATABASES.get()[slot].load(Ordering::Acquire);
    SLOT_DATABASES.get().iter().position(|d| d.load(Ordering::Acquire) == database) == Some(slot)
}

/// Puts the calling worker in `slot`, so that commits wake it.
pub fn attach(slot: usize) {
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    WORKERS.get()[slot].store(procno, Ordering::Release);
}

pub fn detach(slot: usize) {
    WORKERS.get()[slot].store(NO_PROC, Ordering::Release);
}

/// Sets the latch of every pool worker of the current database. A slot
/// left stale by a worker that died points at a PGPROC that is free or
/// reused: setting its latch is at worst a spurious wake-up, which every
/// latch user must tolerate.
pub fn wake_workers() {
    let here = unsafe { pg_sys::MyDatabaseId }.to_u32();
    for (worker, database) in WORKERS.get().iter().zip(SLOT_DATABASES.get()) {
        if database.load(Ordering::Acquire) == here {
            set_latch(worker.load(Ordering::Acquire));
        }
    }
}

fn set_latch(procno: i32) {
    if procno != NO_PROC {
        unsafe {
            let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&raw mut (*proc).procLatch);
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
