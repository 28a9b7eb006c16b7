//! The pool's slots and the launcher:
//! - per slot, the database the launcher gave it (its worker leaves when
//!   that changes), the worker in it (so that a commit can set its latch:
//!   background workers cannot LISTEN), and whether that worker has taken
//!   its first step, is idle (nothing due) or has left cleanly;
//! - the launcher's latch, and a counter of requests to look again at the
//!   databases (CREATE EXTENSION, a worker's exit);
//! - the pool's generation, so that workers left behind by a crashed
//!   launcher step aside;
//! - databases being dropped, whose workers must leave and not come back.

use pgrx::prelude::*;
use pgrx::{PgAtomic, pg_shmem_init};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// The most workers `mtask.max_workers` allows.
pub const MAX_WORKERS: usize = 64;

const NO_PROC: i32 = -1;

/// Per slot, the `pgprocno` of the worker in it, or `NO_PROC`.
static WORKERS: PgAtomic<[AtomicI32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_workers") };
/// Per slot, the OID of its database, or 0 for a free slot.
static SLOT_DATABASES: PgAtomic<[AtomicU32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_slot_databases") };
/// Per slot, IDLE, LEFT and STEPPED; 0 while its worker starts.
static SLOT_STATE: PgAtomic<[AtomicU32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_slot_state") };
static LAUNCHER: PgAtomic<AtomicI32> = unsafe { PgAtomic::new(c"mtask_launcher") };
static DROPPING: PgAtomic<[AtomicU32; 8]> = unsafe { PgAtomic::new(c"mtask_dropping") };
static LOOK_AGAIN: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"mtask_look_again") };
static GENERATION: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"mtask_generation") };

/// The slot's worker sleeps with nothing due in its database.
const IDLE: u32 = 1;
/// The slot's worker has left of its own accord (it did not crash).
const LEFT: u32 = 2;
/// The slot's worker has looked at its tasks once: until then it is on its
/// way to take what is due, not busy with something else.
const STEPPED: u32 = 4;

pub fn init() {
    pg_shmem_init!(WORKERS = [const { AtomicI32::new(NO_PROC) }; MAX_WORKERS]);
    pg_shmem_init!(SLOT_DATABASES = [const { AtomicU32::new(0) }; MAX_WORKERS]);
    pg_shmem_init!(SLOT_STATE = [const { AtomicU32::new(0) }; MAX_WORKERS]);
    pg_shmem_init!(LAUNCHER = AtomicI32::new(NO_PROC));
    pg_shmem_init!(DROPPING = [const { AtomicU32::new(0) }; 8]);
    pg_shmem_init!(LOOK_AGAIN = AtomicU32::new(0));
    pg_shmem_init!(GENERATION = AtomicU32::new(0));
}

/// Gives `slot` to `database` for a worker about to start (0: frees it, and
/// wakes its worker to leave).
pub fn assign(slot: usize, database: pg_sys::Oid) {
    if database != pg_sys::InvalidOid {
        SLOT_STATE.get()[slot].store(0, Ordering::Release);
    }
    SLOT_DATABASES.get()[slot].store(database.to_u32(), Ordering::Release);
    if database == pg_sys::InvalidOid {
        set_latch(WORKERS.get()[slot].load(Ordering::Acquire));
    }
}

pub fn slot_database(slot: usize) -> pg_sys::Oid {
    pg_sys::Oid::from(SLOT_DATABASES.get()[slot].load(Ordering::Acquire))
}

/// Puts the calling worker in `slot`, so that commits wake it.
pub fn attach(slot: usize) {
    let procno = crate::compat::my_procno();
    WORKERS.get()[slot].store(procno, Ordering::Release);
    super::board::take_slot(slot);
}

/// Takes the calling worker out of `slot` as it leaves of its own accord.
pub fn detach(slot: usize) {
    WORKERS.get()[slot].store(NO_PROC, Ordering::Release);
    SLOT_STATE.get()[slot].store(LEFT, Ordering::Release);
}

/// Wakes every worker, to look again at what it may claim.
pub fn wake_all_workers() {
    for worker in WORKERS.get() {
        set_latch(worker.load(Ordering::Acquire));
    }
}

/// Whether the worker that was in `slot` left of its own accord, rather
/// than crashing.
pub fn left(slot: usize) -> bool {
    slot_state(slot) & LEFT != 0
}

/// Says, at the end of a step, whether the worker in `slot` sleeps with
/// nothing due.
pub fn set_idle(slot: usize, idle: bool) {
    stepped(slot, if idle { IDLE } else { 0 });
}

/// The worker in `slot` starts a run. If it was idle, or on its way, the
/// launcher looks whether its database needs one more worker: this one is
/// busy now.
pub fn run_starts(slot: usize) {
    let was = stepped(slot, 0);
    if was & IDLE != 0 || was & STEPPED == 0 {
        wake_launcher();
    }
}

/// Marks the worker in `slot` as past its first step, idle or not as
/// `idle` says; returns its state before.
fn stepped(slot: usize, idle: u32) -> u32 {
    let update = |state: u32| Some(state & !IDLE | STEPPED | idle);
    SLOT_STATE.get()[slot].fetch_update(Ordering::AcqRel, Ordering::Acquire, update).unwrap_or_else(|was| was)
}

fn slot_state(slot: usize) -> u32 {
    SLOT_STATE.get()[slot].load(Ordering::Acquire)
}

/// Whether some worker of `database` sleeps with nothing due, and so would
/// take a task that becomes due at once.
pub fn has_idle_worker(database: pg_sys::Oid) -> bool {
    has_worker(database, |state| state & IDLE != 0)
}

/// Whether some worker of `database` will take its next due task without
/// another's help: it is idle, or has yet to take its first step (which a
/// lock, a slow start or a loaded machine may hold up for long, but a
/// second worker would wait on the same).
pub fn has_worker_to_take(database: pg_sys::Oid) -> bool {
    has_worker(database, |state| state & IDLE != 0 || state & STEPPED == 0)
}

/// Whether some worker of `database` that has not left is in a state
/// `wanted` accepts.
fn has_worker(database: pg_sys::Oid, wanted: impl Fn(u32) -> bool) -> bool {
    (0..MAX_WORKERS).filter(|slot| slot_database(*slot) == database).map(slot_state).any(|s| s & LEFT == 0 && wanted(s))
}

/// How many slots `database` holds, its workers starting included.
pub fn workers_in(database: u32) -> usize {
    SLOT_DATABASES.get().iter().filter(|d| d.load(Ordering::Acquire) == database).count()
}

/// Whether `slot` is the first slot of its database: that worker alone
/// purges the history, so that one purger works in each database.
pub fn leads(slot: usize) -> bool {
    let database = SLOT_DATABASES.get()[slot].load(Ordering::Acquire);
    SLOT_DATABASES.get().iter().position(|d| d.load(Ordering::Acquire) == database) == Some(slot)
}

/// Sets the latch of every worker of `database`. A slot left stale by a
/// worker that died points at a PGPROC that is free or reused: setting its
/// latch is at worst a spurious wake-up, which every latch user tolerates.
pub fn wake_workers(database: pg_sys::Oid) {
    for (worker, slot_database) in WORKERS.get().iter().zip(SLOT_DATABASES.get()) {
        if slot_database.load(Ordering::Acquire) == database.to_u32() {
            set_latch(worker.load(Ordering::Acquire));
        }
    }
}

/// Registers the calling process as the launcher.
pub fn attach_launcher() {
    let procno = crate::compat::my_procno();
    LAUNCHER.get().store(procno, Ordering::Release);
}

/// Wakes the launcher, to start a worker where work is due.
pub fn wake_launcher() {
    set_latch(LAUNCHER.get().load(Ordering::Acquire));
}

/// Asks the launcher to look again at which databases have mtask.
pub fn ask_launcher_to_look_again() {
    LOOK_AGAIN.get().fetch_add(1, Ordering::AcqRel);
    wake_launcher();
}

/// How many times the launcher has been asked to look again.
pub fn look_again_requests() -> u32 {
    LOOK_AGAIN.get().load(Ordering::Acquire)
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

pub fn generation() -> u32 {
    GENERATION.get().load(Ordering::Acquire)
}

/// A new launcher's generation; workers of older ones leave.
pub fn next_generation() -> u32 {
    GENERATION.get().fetch_add(1, Ordering::AcqRel) + 1
}

fn set_latch(procno: i32) {
    if procno != NO_PROC {
        unsafe {
            let proc = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&raw mut (*proc).procLatch);
        }
    }
}
