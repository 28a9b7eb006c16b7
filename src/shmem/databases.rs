//! What the launcher knows of each database, kept current by its workers and
//! by the commits that make tasks due there:
//! - whether mtask is installed there (a worker looks; the launcher, which
//!   has no database, cannot);
//! - the earliest `next_run_at` of its scheduled tasks, so that the launcher
//!   starts a worker there when that comes, and none before;
//! - the runs committed there, so that its workers know when there is new
//!   history to purge and a table to vacuum;
//! - whether it waits for a worker (tasks are due, none is there, and none
//!   can start), since when, and whether a worker elsewhere has promised it
//!   its place: the fairness rule of docs/DESIGN.md.
//!
//! A commit only lowers the earliest due time; a worker sets it from what
//! it read, which may be older than a commit that lowered it meanwhile. So a
//! lowering counts itself, and a worker sets the time outright only if no
//! lowering came since it read the counter, before it looked. Whether mtask
//! is installed is settled the same way against CREATE EXTENSION.
//!
//! Only the launcher adds databases (`note`), from pg_database.

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};

/// The most databases mtask keeps track of.
pub const MAX_DATABASES: usize = 1024;

/// No task is due, as far as anyone knows.
pub const NOTHING_DUE: i64 = i64::MAX;

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Known {
    /// Not looked at yet: a worker must go and see.
    #[default]
    Unknown,
    Installed,
    Absent,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Database {
    /// 0: a free entry.
    pub oid: u32,
    pub known: Known,
    /// Requests to look again (CREATE EXTENSION) so far.
    looks: u32,
    /// The earliest next_run_at, in timestamptz microseconds; NOTHING_DUE.
    pub next_due: i64,
    /// Lowerings of next_due so far.
    lowered: u32,
    /// More tasks are due at next_due than one worker starts in the
    /// launcher's busy lag, as its worker last found.
    pub crowded: bool,
    runs: u64,
    /// `runs` when its tasks table was last vacuumed.
    vacuumed_at: u64,
    /// Since when (timestamptz microseconds) it has waited for a worker;
    /// 0: it does not wait.
    pub waiting_since: i64,
    /// A worker elsewhere has left to make room for it.
    pub promised: bool,
    /// It began to wait with no worker there; else its workers were busy.
    without_worker: bool,
    /// Its last worker could not start: max_worker_processes is used up.
    pub short_of_processes: bool,
    /// The drops its workers have looked at.
    drops_seen: u32,
    /// It holds another version of mtask than the server runs, and a
    /// worker has said so.
    mismatch_told: bool,
    /// Its tasks that run at server start have been made due, this start.
    booted: bool,
}

impl Database {
    /// Whether a worker has something to do there at `now`: look whether
    /// mtask is installed, or run a due task.
    pub fn wants_worker(&self, now: i64) -> bool {
        match self.known {
            Known::Unknown => true,
            Known::Installed => self.next_due <= now,
            Known::Absent => false,
        }
    }

    /// Whether it waits for a place that a worker of `mine` could give up:
    /// it had no worker when it began to wait (until its first run starts),
    /// or that worker found nothing to do (`idle`), or `mine` holds two
    /// places more than it, so that places level out between busy
    /// databases and do not pass back and forth. Not when it waits for a
    /// process: a place given up would go unused.
    fn owed_a_turn(&self, mine: pg_sys::Oid, idle: bool) -> bool {
        if self.oid == 0 || self.oid == mine.to_u32() || self.waiting_since == 0 || self.short_of_processes {
            return false;
        }
        self.without_worker || idle || super::pool::workers_in(mine.to_u32()) > super::pool::workers_in(self.oid) + 1
    }

    /// Where it stands in the queue for a worker: a database not yet looked
    /// at since it began waiting, one with tasks by its earliest due time.
    pub fn queued_at(&self) -> i64 {
        if self.known == Known::Unknown { self.waiting_since } else { self.next_due }
    }
}

#[derive(Clone, Copy)]
struct Table {
    databases: [Database; MAX_DATABASES],
    /// Databases dropped (or renamed) since the server started.
    drops: u32,
}

impl Default for Table {
    fn default() -> Self {
        Table { databases: [Database::default(); MAX_DATABASES], drops: 0 }
    }
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for Table {}

static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"mtask_databases") };

pub fn init() {
    pg_shmem_init!(TABLE);
}

fn find(table: &mut Table, oid: pg_sys::Oid) -> Option<&mut Database> {
    table.databases.iter_mut().find(|d| d.oid == oid.to_u32() && d.oid != 0)
}

fn update(oid: pg_sys::Oid, change: impl FnOnce(&mut Database)) {
    if let Some(d) = find(&mut TABLE.exclusive(), oid) {
        change(d);
    }
}

/// Makes sure `oid` is in the table, as not looked at yet if new, and due
/// at once so that the look comes soon. False when the table is full.
pub fn note(oid: pg_sys::Oid) -> bool {
    let mut table = TABLE.exclusive();
    if find(&mut table, oid).is_some() {
        return true;
    }
    let drops = table.drops;
    let Some(free) = table.databases.iter_mut().find(|d| d.oid == 0) else {
        return false;
    };
    *free = Database { oid: oid.to_u32(), next_due: i64::MIN, drops_seen: drops, ..Database::default() };
    true
}

/// Forgets every database not in `present`, and returns what is left.
pub fn keep_only(present: &[u32]) -> Vec<Database> {
    let mut table = TABLE.exclusive();
    for d in table.databases.iter_mut().filter(|d| d.oid != 0 && !present.contains(&d.oid)) {
        *d = Database::default();
    }
    table.databases.iter().filter(|d| d.oid != 0).copied().collect()
}

/// Every database the table knows.
pub fn all() -> Vec<Database> {
    TABLE.share().databases.iter().filter(|d| d.oid != 0).copied().collect()
}

pub fn get(oid: pg_sys::Oid) -> Option<Database> {
    TABLE.share().databases.iter().find(|d| d.oid == oid.to_u32() && d.oid != 0).copied()
}

/// How many times `oid` has been asked to be looked at again; read it
/// before looking whether mtask is installed.
pub fn looks(oid: pg_sys::Oid) -> u32 {
    get(oid).map_or(0, |d| d.looks)
}

/// Says what a worker found after reading `seen` looks: whether mtask is
/// installed in `oid`. Absence found before a CREATE EXTENSION committed
/// is stale, and not kept.
pub fn set_known(oid: pg_sys::Oid, installed: bool, seen: u32) {
    update(oid, |d| {
        if installed {
            d.known = Known::Installed;
        } else if d.looks == seen {
            d.known = Known::Absent;
        }
    });
}

/// Says whether the version of mtask installed in `oid` matches the
/// server's; true if it does not and no worker has said so yet (since it
/// last matched), so that each mismatch is told once, not by every worker.
pub fn version_mismatch_to_tell(oid: pg_sys::Oid, matches: bool) -> bool {
    let mut tell = false;
    update(oid, |d| tell = !matches && !std::mem::replace(&mut d.mismatch_told, !matches));
    tell
}

/// Asks for `oid` to be looked at again: CREATE EXTENSION there, or its
/// worker ended without saying what it found.
pub fn forget_known(oid: pg_sys::Oid) {
    update(oid, |d| {
        d.known = Known::Unknown;
        d.looks = d.looks.wrapping_add(1);
    });
}

/// A committed transaction made a task of `oid` due at `at` (or sooner than
/// was known). Says whether that is sooner than the launcher knew; None if
/// the launcher does not know the database yet.
pub fn lower_due(oid: pg_sys::Oid, at: i64) -> Option<bool> {
    let mut table = TABLE.exclusive();
    let d = find(&mut table, oid)?;
    let sooner = at < d.next_due;
    d.next_due = d.next_due.min(at);
    // The crowd was due at the time known before; its worker looks again.
    d.crowded &= !sooner;
    d.lowered = d.lowered.wrapping_add(1);
    // A task here means mtask is here, whatever an early look found.
    if d.known == Known::Absent {
        d.known = Known::Unknown;
    }
    Some(sooner)
}

/// How many lowerings `oid` has had; read it before looking at the tasks.
pub fn lowerings(oid: pg_sys::Oid) -> u32 {
    get(oid).map_or(0, |d| d.lowered)
}

/// A worker of `oid` found the earliest due time `next` in a snapshot
/// taken after it read `seen` lowerings, and a crowd due with it or not.
/// A crowd newly found wakes the launcher, which may start a worker more
/// for it ahead of time.
pub fn publish_due(oid: pg_sys::Oid, seen: u32, next: i64, crowded: bool) {
    let mut newly_crowded = false;
    update(oid, |d| {
        d.next_due = if d.lowered == seen { next } else { d.next_due.min(next) };
        newly_crowded = crowded && !d.crowded;
        d.crowded = crowded;
    });
    if newly_crowded {
        super::pool::wake_launcher();
    }
}

/// Counts `n` runs committed in `oid`.
pub fn add_runs(oid: pg_sys::Oid, n: usize) {
    if n > 0 {
        update(oid, |d| d.runs += n as u64);
    }
}

/// Runs committed in `oid` since the server started.
pub fn runs(oid: pg_sys::Oid) -> u64 {
    get(oid).map_or(0, |d| d.runs)
}

/// Whether `every` runs have been committed in `oid` since its tasks table
/// was last vacuumed; if so, the caller vacuums it, and the count restarts.
pub fn vacuum_due(oid: pg_sys::Oid, every: u64) -> bool {
    let mut due = false;
    update(oid, |d| {
        due = d.runs - d.vacuumed_at >= every;
        if due {
            d.vacuumed_at = d.runs;
        }
    });
    due
}

/// Says that `oid` waits for a worker as of `now`, having none there
/// (`without_worker`) or only busy ones; a database that keeps waiting
/// keeps the time it began, until `done_waiting`. Workers wake when it
/// begins, so that an idle one gives up its place at once.
pub fn wait_for_worker(oid: pg_sys::Oid, now: i64, without_worker: bool) {
    let mut began = false;
    update(oid, |d| {
        began = d.waiting_since == 0;
        if began {
            d.waiting_since = now;
        }
        d.without_worker |= without_worker;
    });
    if began {
        super::pool::wake_all_workers();
    }
}

/// `oid` no longer waits for a worker: one has come and started its first
/// run there (or found none to start), one of its workers is idle, or it
/// has nothing due any more.
/// Workers that held back for it go on. The launcher looks again: the
/// wait it ends may also have been for one worker more, which the
/// database may still need (a first worker that came for one long task,
/// with quick ones queued behind it), and nothing else would make the
/// launcher say so again before its next rescan, a minute later.
pub fn done_waiting(oid: pg_sys::Oid) {
    let mut waited = false;
    update(oid, |d| {
        waited = d.waiting_since != 0;
        d.waiting_since = 0;
        d.promised = false;
        d.without_worker = false;
    });
    if waited {
        super::pool::wake_all_workers();
        super::pool::wake_launcher();
    }
}

/// Says whether the last worker the launcher tried to start in `oid` could
/// not start for want of a background worker process.
pub fn set_short_of_processes(oid: pg_sys::Oid, short: bool) {
    update(oid, |d| d.short_of_processes = short);
}

/// The earliest due time among the databases other than `mine` that wait
/// for a worker and are owed one by `mine`'s busy workers: a worker claims
/// nothing due later than that, so that no database's newer tasks start
/// before another's older ones.
pub fn horizon(mine: pg_sys::Oid) -> Option<i64> {
    let table = TABLE.share();
    table.databases.iter().filter(|d| d.owed_a_turn(mine, false)).map(Database::queued_at).min()
}

/// Takes the turn of the database other than `mine` that has waited for a
/// worker the longest, is owed a place by a worker of `mine` that is `idle`
/// or not, and has no place promised yet, promising it the caller's: the
/// caller then leaves. False if no database is owed one.
pub fn take_turn(mine: pg_sys::Oid, idle: bool) -> bool {
    let mut table = TABLE.exclusive();
    let waiting =
        table.databases.iter_mut().filter(|d| d.owed_a_turn(mine, idle) && !d.promised).min_by_key(|d| d.queued_at());
    match waiting {
        Some(d) => {
            d.promised = true;
            true
        }
        None => false,
    }
}

/// Whether the tasks of `oid` that run at server start are yet to be made
/// due, this start.
pub fn boot_pending(oid: pg_sys::Oid) -> bool {
    get(oid).is_some_and(|d| !d.booted)
}

/// Says that they have been.
pub fn booted(oid: pg_sys::Oid) {
    update(oid, |d| d.booted = true);
}

/// A database was dropped or renamed: tasks elsewhere may name it. Each
/// database with mtask gets a worker to look at once.
pub fn database_dropped(now: i64) {
    let mut table = TABLE.exclusive();
    table.drops = table.drops.wrapping_add(1);
    for d in table.databases.iter_mut().filter(|d| d.known == Known::Installed) {
        d.next_due = d.next_due.min(now);
        d.lowered = d.lowered.wrapping_add(1);
    }
}

/// Whether a database was dropped or renamed since a worker of `oid` last
/// asked; it then looks for tasks that named it.
pub fn drops_unseen(oid: pg_sys::Oid) -> bool {
    let mut table = TABLE.exclusive();
    let drops = table.drops;
    find(&mut table, oid).is_some_and(|d| std::mem::replace(&mut d.drops_seen, drops) != drops)
}
