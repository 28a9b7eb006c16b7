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
//!   there is new history to purge;
//! - the run board: per pool slot, the run its worker is in (so that a run
//!   whose worker died is known for what it was), and the runs of workers
//!   that died, until a worker records them.

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgAtomic, PgLwLock, pg_shmem_init};
use std::cell::Cell;
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

/// A run in progress, as the run board holds it.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Running {
    /// The database whose mtask.tasks holds the task; 0: no run.
    pub database: u32,
    pub task_id: i64,
    /// A non-transactional run's 'running' row; 0 for a run recorded in
    /// the transaction it runs in.
    pub run_id: i64,
    pub attempt: i32,
    /// As timestamptz microseconds.
    pub started_at: i64,
    pub scheduled_for: i64,
    /// The worker's process.
    pub pid: i32,
}

/// How many runs of dead workers the board remembers at once; the oldest
/// goes first.
const CRASHED: usize = 64;

/// Places on the board for runs in users' sessions (CALL mtask.run), after
/// the pool's.
const SESSIONS: usize = 32;

#[derive(Clone, Copy)]
struct RunBoard {
    running: [Running; MAX_WORKERS + SESSIONS],
    crashed: [Running; CRASHED],
    /// Where the next crashed run goes.
    next_crashed: usize,
}

impl Default for RunBoard {
    fn default() -> Self {
        RunBoard {
            running: [Running::default(); MAX_WORKERS + SESSIONS],
            crashed: [Running::default(); CRASHED],
            next_crashed: 0,
        }
    }
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for RunBoard {}

static RUN_BOARD: PgLwLock<RunBoard> = unsafe { PgLwLock::new(c"mtask_run_board") };

thread_local! {
    /// This worker's pool slot, once it has one.
    static MY_SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

pub fn init() {
    pg_shmem_init!(WORKERS = [const { AtomicI32::new(NO_PROC) }; MAX_WORKERS]);
    pg_shmem_init!(SLOT_DATABASES = [const { AtomicU32::new(0) }; MAX_WORKERS]);
    pg_shmem_init!(SLOT_FOUND = [const { AtomicU32::new(UNKNOWN) }; MAX_WORKERS]);
    pg_shmem_init!(LAUNCHER = AtomicI32::new(NO_PROC));
    pg_shmem_init!(DROPPING = [const { AtomicU32::new(0) }; 8]);
    pg_shmem_init!(LOOK_AGAIN = AtomicU32::new(0));
    pg_shmem_init!(GENERATION = AtomicU32::new(0));
    pg_shmem_init!(RUNS = [const { AtomicU64::new(0) }; MAX_WORKERS]);
    pg_shmem_init!(RUN_BOARD);
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
    let procno = crate::compat::my_procno();
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

/// Puts the calling worker in `slot`, so that commits wake it. A run the
/// slot's last worker was in when it died goes to the crashed runs.
pub fn attach(slot: usize) {
    let procno = crate::compat::my_procno();
    WORKERS.get()[slot].store(procno, Ordering::Release);
    MY_SLOT.set(Some(slot));
    let mut board = RUN_BOARD.exclusive();
    let left = std::mem::take(&mut board.running[slot]);
    if left.database != 0 {
        let n = board.next_crashed;
        board.crashed[n] = left;
        board.next_crashed = (n + 1) % CRASHED;
    }
}

/// Puts `run` on the board as this worker's, before the run starts.
pub fn running(run: Running) {
    if let Some(slot) = MY_SLOT.get() {
        RUN_BOARD.exclusive().running[slot] = run;
    }
}

/// Takes this worker's transactional run off the board: call it before the
/// transaction that records the run commits, or aborts, releasing the
/// task's row lock. While the board says a worker is in a transactional
/// run of a task, that worker holds the task's row lock or is dead.
pub fn not_running() {
    end_run(|r| r.run_id == 0);
}

/// Takes this worker's non-transactional run off the board, once its
/// record has committed. While the board shows such a run, its 'running'
/// row is under way, or its worker is dead.
pub fn outside_run_ended() {
    end_run(|r| r.run_id != 0);
}

fn end_run(which: impl Fn(&Running) -> bool) {
    if let Some(slot) = MY_SLOT.get() {
        let mut board = RUN_BOARD.exclusive();
        if board.running[slot].database != 0 && which(&board.running[slot]) {
            board.running[slot] = Running::default();
        }
    }
}

/// The run of task `task_id` of `database` that a worker that died was in,
/// taken off the board. Call it holding the task's row lock: then another
/// worker that the board says is in a run of it cannot be alive.
pub fn crashed_run(database: pg_sys::Oid, task_id: i64) -> Option<Running> {
    let database = database.to_u32();
    let mine = MY_SLOT.get();
    let mut board = RUN_BOARD.exclusive();
    let is_it = |r: &Running| r.database == database && r.task_id == task_id && r.run_id == 0;
    if let Some(r) = board.crashed.iter_mut().find(|r| is_it(r)) {
        return Some(std::mem::take(r));
    }
    let (slot, _) = board.running.iter().enumerate().find(|(slot, r)| Some(*slot) != mine && is_it(r))?;
    Some(std::mem::take(&mut board.running[slot]))
}

/// Puts a run in this session (CALL mtask.run) on the board; returns its
/// place, or None if every place is taken (the run is then not shown).
pub fn session_running(run: Running) -> Option<usize> {
    let mut board = RUN_BOARD.exclusive();
    let place = (MAX_WORKERS..MAX_WORKERS + SESSIONS).find(|p| board.running[*p].database == 0)?;
    board.running[place] = run;
    Some(place)
}

/// Takes a session's run off the board, at its `place`.
pub fn session_run_ended(place: usize) {
    RUN_BOARD.exclusive().running[place] = Running::default();
}

/// The runs on the board of `database` now.
pub fn runs_in(database: pg_sys::Oid) -> Vec<Running> {
    let board = RUN_BOARD.share();
    board.running.iter().filter(|r| r.database == database.to_u32()).copied().collect()
}

/// Whether the worker that committed 'running' row `run_id` of `database`
/// is alive and still in that run.
pub fn run_alive(database: pg_sys::Oid, run_id: i64) -> bool {
    let board = RUN_BOARD.share();
    board.running.iter().any(|r| {
        r.database == database.to_u32() && r.run_id == run_id && !unsafe { pg_sys::BackendPidGetProc(r.pid) }.is_null()
    })
}

/// Forgets the crashed run of 'running' row `run_id`, once it is recorded.
pub fn forget_crashed_run(database: pg_sys::Oid, run_id: i64) {
    let mut board = RUN_BOARD.exclusive();
    for r in board.crashed.iter_mut().filter(|r| r.database == database.to_u32() && r.run_id == run_id) {
        *r = Running::default();
    }
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
