//! The run board: per pool slot (and per place kept for users' sessions),
//! the run its worker is in, so that a run whose worker died is known for
//! what it was; and the runs of workers that died, until a worker records
//! them. See docs/DESIGN.md, "When a task goes wrong".

use super::pool::MAX_WORKERS;
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};
use std::cell::Cell;

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
    /// The process that runs it in another database for the worker; 0 if
    /// none. It ends before the worker records the run, so whether the run
    /// is alive is the worker's pid's to say, not this one's.
    pub runner: i32,
}

impl Running {
    /// The process that runs it, as mtask.running shows it.
    pub fn process(&self) -> i32 {
        if self.runner != 0 { self.runner } else { self.pid }
    }
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
    pg_shmem_init!(RUN_BOARD);
}

/// Takes `slot` for this worker. A run the slot's last worker was in when
/// it died goes to the crashed runs.
pub fn take_slot(slot: usize) {
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
        super::pool::run_starts(slot);
    }
}

/// This worker's run goes on in process `pid`, which runs it in another
/// database for it.
pub fn running_in(pid: i32) {
    if let Some(slot) = MY_SLOT.get() {
        RUN_BOARD.exclusive().running[slot].runner = pid;
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
