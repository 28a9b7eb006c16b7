//! The launcher (backend type "mtask scheduler") starts workers where tasks
//! are due, at most `mtask.max_workers` at a time in the whole cluster, and
//! lets them go when they are done: an idle cluster holds the launcher
//! alone. It holds no database connection, so it knows the databases from
//! shared memory (`shmem::databases`), which the workers and the commits
//! that make tasks due keep current. A database it has not seen a worker
//! in yet (at start, after CREATE EXTENSION, after its worker crashed) gets
//! one to look. See docs/DESIGN.md, "Workers on demand", for the fairness
//! rule that decides who gets a worker when there are too few.

use super::pool;
use crate::report::warn;
use crate::shmem::databases::{self, Known};
use crate::{guc, shmem};
use pgrx::PgSqlErrorCode;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How soon after a worker started in a database the next may start there,
/// when it did not leave cleanly: a worker that keeps failing is retried
/// once a second, not in a loop.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often the launcher reads the list of databases when nothing asks it
/// to: CREATE EXTENSION, DROP DATABASE, a worker's crash and a reload all
/// make it read the list at once.
const RESCAN: Duration = Duration::from_secs(60);
/// A database whose workers are all busy gets one more when a task there has
/// been due for this long (microseconds) and none took it.
pub const BUSY_LAG: i64 = 50_000;
/// How long before a database's next task is due its worker starts, when
/// it has none and a place is free: a worker takes about a tenth of a
/// second to fork, connect and plan its claim on a quiet 2-core machine,
/// which a task due at a set time would otherwise wait on.
pub const EARLY_START: i64 = 1_000_000;

#[derive(Default)]
struct Slot {
    worker: Option<DynamicBackgroundWorker>,
    database: pg_sys::Oid,
    started: Option<Instant>,
}

impl Slot {
    /// Whether its worker has ended (or never was).
    fn ended(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| !matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)))
    }
}

/// What the launcher keeps between rounds.
struct Launcher {
    generation: u32,
    slots: Vec<Slot>,
    /// The databases mtask may run in, by OID, with their names.
    present: BTreeMap<u32, String>,
    /// pg_database as last read, those being dropped included.
    listed: Vec<(u32, String)>,
    scanned: Option<Instant>,
    looked_again: u32,
    /// Databases whose worker crashed, and when the next may start.
    not_before: BTreeMap<u32, Instant>,
    /// A start failed for want of processes, and that was said.
    warned_short: bool,
    warned_untracked: bool,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_launcher_main(_arg: pg_sys::Datum) {
    super::set_up_signals();
    // No database: it reads only pg_database, a shared catalog.
    pgrx::bgworkers::BackgroundWorker::connect_worker_to_spi(None, None);
    shmem::attach_launcher();
    let mut launcher = Launcher {
        // Workers of a launcher that crashed finish their task and leave.
        generation: shmem::next_generation(),
        slots: (0..shmem::MAX_WORKERS).map(|_| Slot::default()).collect(),
        present: BTreeMap::new(),
        listed: Vec::new(),
        scanned: None,
        looked_again: shmem::look_again_requests(),
        not_before: BTreeMap::new(),
        warned_short: false,
        warned_untracked: false,
    };
    for n in 0..shmem::MAX_WORKERS {
        shmem::assign(n, pg_sys::InvalidOid);
    }
    loop {
        let reloaded = super::reload_config_if_requested();
        let crashed = launcher.reap();
        let requests = shmem::look_again_requests();
        if crashed
            || reloaded
            || requests != launcher.looked_again
            || launcher.scanned.is_none_or(|t| t.elapsed() >= RESCAN)
        {
            launcher.looked_again = requests;
            launcher.rescan();
        }
        let sleep = launcher.start_where_due();
        // Woken early when a worker starts or exits (this process is its
        // notify pid), and when a commit or CREATE EXTENSION asks.
        super::wait_until(Instant::now() + sleep);
        pg_sys::check_for_interrupts!();
    }
}

impl Launcher {
    /// Frees the slots of workers that ended; says whether one crashed, i.e.
    /// did not say it was leaving: its database must be looked at again.
    fn reap(&mut self) -> bool {
        let mut crashed = false;
        for (n, slot) in self.slots.iter_mut().enumerate() {
            if slot.worker.is_none() || !slot.ended() {
                continue;
            }
            if !shmem::left(n) && slot.database != pg_sys::InvalidOid {
                crashed = true;
                databases::forget_known(slot.database);
                let started = slot.started.unwrap_or_else(Instant::now);
                self.not_before.insert(slot.database.to_u32(), started + RESTART_DELAY);
            }
            *slot = Slot::default();
            shmem::assign(n, pg_sys::InvalidOid);
        }
        crashed
    }

    /// Reads the list of databases again: new ones are to be looked at,
    /// dropped ones forgotten, and workers of those no longer listed leave.
    fn rescan(&mut self) {
        let listed = list_databases();
        // A database gone, or renamed: tasks elsewhere may name it.
        if self.listed.iter().any(|entry| !listed.contains(entry)) {
            databases::database_dropped(unsafe { pg_sys::GetCurrentTimestamp() });
        }
        self.present = listed.iter().filter(|(oid, _)| !shmem::dropping(*oid)).cloned().collect();
        self.listed = listed;
        let oids: Vec<u32> = self.present.keys().copied().collect();
        let untracked = oids.iter().filter(|oid| !databases::note(pg_sys::Oid::from(**oid))).count();
        if untracked > 0 && !std::mem::replace(&mut self.warned_untracked, true) {
            warn(
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "mtask keeps track of at most {} databases: the tasks of {untracked} more will not run",
                    databases::MAX_DATABASES
                ),
                "List the databases that have tasks in mtask.databases.",
            );
        }
        databases::keep_only(&oids);
        shmem::forget_dropped(&oids);
        self.not_before.retain(|oid, _| oids.contains(oid));
        self.scanned = Some(Instant::now());
    }

    /// Starts workers where tasks are due, within mtask.max_workers, and
    /// says how long to sleep before the next is due.
    fn start_where_due(&mut self) -> Duration {
        let enabled = guc::enabled();
        for (n, slot) in self.slots.iter_mut().enumerate() {
            let gone = !self.present.contains_key(&slot.database.to_u32()) || shmem::dropping(slot.database.to_u32());
            // Its worker sees this and leaves after its task.
            if slot.database != pg_sys::InvalidOid && (gone || !enabled) {
                slot.database = pg_sys::InvalidOid;
                shmem::assign(n, pg_sys::InvalidOid);
            }
        }
        let now = unsafe { pg_sys::GetCurrentTimestamp() };
        let mut sleep = RESCAN.saturating_sub(self.scanned.map_or(Duration::ZERO, |t| t.elapsed()));
        // Databases that want a worker and have none, and databases whose
        // workers are all busy while a task there waits.
        let (mut first, mut more) = (Vec::new(), Vec::new());
        // Those that have none (or one, and a crowd due) and a task due
        // within EARLY_START: a worker if a place is free, but no wait for
        // one, which would take a place from a database whose task is due
        // already.
        let mut early = Vec::new();
        // Those that waited and do neither any more.
        let mut settled = Vec::new();
        for d in databases::all().into_iter().filter(|d| self.present.contains_key(&d.oid)) {
            let oid = pg_sys::Oid::from(d.oid);
            let held_back = self.not_before.get(&d.oid).filter(|t| **t > Instant::now());
            if let Some(t) = held_back {
                sleep = sleep.min(t.saturating_duration_since(Instant::now()));
            }
            let workers = self.slots.iter().filter(|s| s.database == oid).count();
            let alone = workers == 0;
            // A crowd gets its second worker ahead of time too: one started
            // once the first has been busy for BUSY_LAG would come after the
            // crowd's first hundred milliseconds, to which one worker is
            // not enough.
            let wants_early_start = alone || (d.crowded && workers == 1);
            if !enabled || held_back.is_some() || !d.wants_worker(now) {
                if wants_early_start && d.known == Known::Installed && d.next_due != databases::NOTHING_DUE {
                    let until_due = d.next_due.saturating_sub(now).max(0);
                    // Until its early start, if it may have one; else (or
                    // if no place is free for it now) until it is due.
                    let may_start_early = enabled && held_back.is_none();
                    let wake_in = if may_start_early && until_due > EARLY_START {
                        until_due - EARLY_START
                    } else {
                        if may_start_early {
                            early.push(d);
                        }
                        until_due
                    };
                    sleep = sleep.min(Duration::from_micros(wake_in as u64));
                }
                if d.waiting_since != 0 {
                    databases::done_waiting(oid);
                }
            } else if alone {
                first.push(d);
            } else if d.known == Known::Installed && !shmem::has_worker_to_take(oid) {
                // Its workers may take the task yet: look again after the lag.
                match d.next_due.saturating_add(BUSY_LAG).saturating_sub(now) {
                    ..=0 => more.push(d),
                    lag => sleep = sleep.min(Duration::from_micros(lag as u64)),
                }
            } else if d.known == Known::Unknown {
                // Its worker has yet to say whether mtask is there. A worker
                // wakes the launcher as its first run starts, and as its
                // first after idling, but not one already past both (busy
                // when CREATE EXTENSION asked for a new look): look again
                // after the lag, in case it needs another.
                sleep = sleep.min(Duration::from_micros(BUSY_LAG as u64));
            } else if d.known == Known::Installed && d.waiting_since != 0 && shmem::has_idle_worker(oid) {
                // A worker yet to take its first step ends the wait itself,
                // as that step starts a run (or finds none to start).
                settled.push(oid);
            }
        }
        settled.into_iter().for_each(databases::done_waiting);
        // Promised a place first, then by how long each has waited.
        first.sort_by_key(|d| (!d.promised, d.queued_at()));
        more.sort_by_key(|d| (!d.promised, d.next_due));
        let mut free = guc::max_workers().saturating_sub(self.slots.iter().filter(|s| s.worker.is_some()).count());
        // The database a start failed for, for want of processes.
        let mut short = None;
        for d in &first {
            let oid = pg_sys::Oid::from(d.oid);
            if free == 0 || short.is_some() {
                databases::wait_for_worker(oid, now, true);
                continue;
            }
            // It waits on until its worker's first run has started.
            match self.start(oid) {
                Ok(()) => free -= 1,
                Err(()) => {
                    databases::wait_for_worker(oid, now, true);
                    short = Some(oid);
                }
            }
            databases::set_short_of_processes(oid, short.is_some());
        }
        // Only when no database waits: a worker more for a busy one. Those
        // left without one wait, and workers elsewhere that can spare a
        // place give it up (`databases::take_turn`).
        for d in &more {
            let oid = pg_sys::Oid::from(d.oid);
            if free == 0 || short.is_some() {
                databases::wait_for_worker(oid, now, false);
            } else if self.start(oid).is_ok() {
                free -= 1;
            } else {
                short = Some(oid);
            }
        }
        early.sort_by_key(|d| d.next_due);
        for d in early.iter().take(if short.is_some() { 0 } else { free }) {
            let _ = self.start(pg_sys::Oid::from(d.oid));
        }
        if let Some(oid) = short {
            self.warn_short(oid);
            // The start is tried again soon, and whenever a worker exits.
            sleep = sleep.min(RESTART_DELAY);
        } else {
            self.warned_short = false;
        }
        sleep
    }

    fn start(&mut self, database: pg_sys::Oid) -> Result<(), ()> {
        let n = self.slots.iter().position(|s| s.worker.is_none()).ok_or(())?;
        shmem::assign(n, database);
        let started = BackgroundWorkerBuilder::new(&format!("mtask worker {n}"))
            .set_type("mtask worker")
            .set_library("mtask")
            .set_function("mtask_worker_main")
            .set_argument(Some(pool::argument(n, self.generation)))
            .enable_spi_access()
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
            .load_dynamic();
        match started {
            Ok(worker) => {
                self.slots[n] = Slot { worker: Some(worker), database, started: Some(Instant::now()) };
                Ok(())
            }
            Err(_) => {
                shmem::assign(n, pg_sys::InvalidOid);
                Err(())
            }
        }
    }

    /// Says once, until a start succeeds again, that max_worker_processes is
    /// used up, with what it would take.
    fn warn_short(&mut self, database: pg_sys::Oid) {
        if std::mem::replace(&mut self.warned_short, true) {
            return;
        }
        let total = unsafe { pg_sys::max_worker_processes } as usize;
        // Every process is in use when a start fails: the launcher, the
        // workers, and what others run.
        let ours = 1 + self.slots.iter().filter(|s| s.worker.is_some()).count();
        let others = total.saturating_sub(ours);
        let max_workers = guc::max_workers();
        let name = self.present.get(&database.to_u32()).map_or("?", String::as_str);
        warn(
            PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            format!(
                "mtask could not start a worker for database \"{name}\": all {total} background worker processes \
                 (max_worker_processes) are in use, {ours} by mtask and {others} by others"
            ),
            format!(
                "Tasks of databases without a worker wait until a process is free. To run mtask.max_workers \
                 tasks at once, raise max_worker_processes to at least {}: {max_workers} for mtask.max_workers, \
                 1 for mtask's launcher and {others} for the others; then restart PostgreSQL. Or lower \
                 mtask.max_workers.",
                max_workers + 1 + others
            ),
        );
    }
}

/// The databases mtask may run in, with their names: those that accept
/// connections and are not templates (a worker connected to a template
/// would block CREATE DATABASE from it), limited to `mtask.databases` when
/// that is set. Read from pg_database directly: with no database, SQL
/// cannot name it.
fn list_databases() -> Vec<(u32, String)> {
    let allowed = guc::databases();
    let mut found = Vec::new();
    unsafe {
        pg_sys::StartTransactionCommand();
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let db = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            let name = std::ffi::CStr::from_ptr(db.datname.data.as_ptr()).to_string_lossy().into_owned();
            if db.datallowconn && !db.datistemplate && allowed.as_ref().is_none_or(|list| list.contains(&name)) {
                found.push((db.oid.to_u32(), name));
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        pg_sys::CommitTransactionCommand();
    }
    found
}
