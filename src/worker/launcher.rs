//! The launcher (backend type "mtask scheduler") keeps a pool of workers in
//! every database where mtask is installed. It holds no database
//! connection, so it cannot see which databases have the extension: it
//! starts one worker in each database it does not know about, which looks,
//! says what it found in shared memory, and either stays as that database's
//! pool or leaves. Then the launcher shares `mtask.max_workers` among the
//! databases that have mtask, at least one each, restarting a worker (at
//! most once a second per slot) when it exits. It looks again at a database
//! without mtask when CREATE EXTENSION asks it to, and at the list of
//! databases when a worker exits, on a reload, and every minute.

use super::pool;
use crate::report::warn;
use crate::{guc, shmem};
use pgrx::PgSqlErrorCode;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus, DynamicBackgroundWorker};
use pgrx::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How often the launcher reads the list of databases when nothing asks it
/// to: CREATE EXTENSION, DROP DATABASE, a worker's exit and a reload of
/// mtask.databases all make it read the list at once.
const RESCAN: Duration = Duration::from_secs(60);

struct Slot {
    worker: Option<DynamicBackgroundWorker>,
    database: pg_sys::Oid,
    started: Option<Instant>,
    /// shmem::look_again_requests() when its worker started: a worker that
    /// found no mtask before a CREATE EXTENSION committed looked too early.
    requests_at_start: u32,
    /// The last start failed: no background worker process was free.
    refused: bool,
}

impl Slot {
    fn alive(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| matches!(w.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)))
    }
}

/// What the launcher knows of a database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Known {
    /// Not looked at yet (or asked to look again): one worker goes to see.
    Unknown,
    Installed,
    Absent,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_launcher_main(_arg: pg_sys::Datum) {
    super::set_up_signals();
    // No database: it reads only pg_database, a shared catalog.
    pgrx::bgworkers::BackgroundWorker::connect_worker_to_spi(None, None);
    shmem::attach_launcher();
    // Workers of a launcher that crashed finish their task and leave.
    let generation = shmem::next_generation();
    let mut slots: Vec<Slot> = (0..shmem::MAX_WORKERS)
        .map(|_| Slot {
            worker: None,
            database: pg_sys::InvalidOid,
            started: None,
            requests_at_start: 0,
            refused: false,
        })
        .collect();
    for n in 0..shmem::MAX_WORKERS {
        shmem::assign(n, pg_sys::InvalidOid);
    }
    // By OID (Oid itself is not Ord).
    let mut databases: BTreeMap<u32, Known> = BTreeMap::new();
    let mut short_of_processes = false;
    let (mut looked_again, mut scanned) = (shmem::look_again_requests(), None::<Instant>);
    loop {
        let reloaded = super::reload_config_if_requested();
        // What the workers that ended found.
        let mut ended = false;
        for (n, slot) in slots.iter_mut().enumerate() {
            if slot.database != pg_sys::InvalidOid && !slot.alive() && slot.worker.is_some() {
                ended = true;
                slot.worker = None;
                if shmem::slot_found(n) == shmem::ABSENT {
                    let too_early = shmem::look_again_requests() != slot.requests_at_start;
                    databases.insert(slot.database.to_u32(), if too_early { Known::Unknown } else { Known::Absent });
                    slot.database = pg_sys::InvalidOid;
                    shmem::assign(n, pg_sys::InvalidOid);
                }
            } else if slot.alive() && shmem::slot_found(n) == shmem::INSTALLED {
                databases.insert(slot.database.to_u32(), Known::Installed);
            }
        }
        let requests = shmem::look_again_requests();
        let asked = requests != looked_again;
        if asked {
            looked_again = requests;
            databases.values_mut().filter(|k| **k == Known::Absent).for_each(|k| *k = Known::Unknown);
        }
        if ended || asked || reloaded || scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
            let present = list_databases();
            databases.retain(|oid, _| present.contains(oid) && !shmem::dropping(*oid));
            for oid in present.iter().filter(|oid| !shmem::dropping(**oid)) {
                databases.entry(*oid).or_insert(Known::Unknown);
            }
            shmem::forget_dropped(&present);
            scanned = Some(Instant::now());
        }

        let wanted = shares(&databases, guc::max_workers());
        fill(&mut slots, &wanted, generation);
        let missing = slots.iter().filter(|s| s.database != pg_sys::InvalidOid && s.refused).count();
        // One WARNING when the pool cannot be filled, not one per attempt.
        if missing > 0 && !short_of_processes {
            let all: usize = wanted.iter().map(|(_, n)| n).sum();
            warn(
                PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "mtask could start only {} of its {all} workers: max_worker_processes is used up",
                    all.saturating_sub(missing)
                ),
                "Raise max_worker_processes (mtask needs mtask.max_workers + 1) or lower mtask.max_workers; \
                 tasks still run on the workers that started.",
            );
        }
        short_of_processes = missing > 0;
        // Woken early when a worker exits (this process is its notify pid)
        // and when CREATE EXTENSION asks.
        super::wait(RESTART_DELAY);
        pg_sys::check_for_interrupts!();
    }
}

/// How many workers each database gets: one to look at a database not yet
/// known; `max_workers` shared evenly among those with mtask, at least one
/// each (the first ones by OID get the remainder).
fn shares(databases: &BTreeMap<u32, Known>, max_workers: usize) -> Vec<(pg_sys::Oid, usize)> {
    let installed = databases.values().filter(|k| **k == Known::Installed).count();
    let mut i = 0;
    databases
        .iter()
        .filter_map(|(oid, known)| match known {
            Known::Unknown => Some((pg_sys::Oid::from(*oid), 1)),
            Known::Absent => None,
            Known::Installed => {
                let share = (max_workers / installed).max(1) + usize::from(i < max_workers % installed);
                i += 1;
                Some((pg_sys::Oid::from(*oid), share))
            }
        })
        .collect()
}

/// Gives slots to databases as `wanted` says: frees a database's slots
/// beyond its share (their workers leave after their task), and starts
/// workers where it has fewer.
fn fill(slots: &mut [Slot], wanted: &[(pg_sys::Oid, usize)], generation: u32) {
    for (n, slot) in slots.iter_mut().enumerate() {
        let keep = wanted.iter().find(|(oid, _)| *oid == slot.database).map_or(0, |(_, k)| *k);
        let rank = (0..n).filter(|&m| shmem::slot_database(m) == slot.database).count();
        if slot.database != pg_sys::InvalidOid && rank >= keep {
            // Its worker sees this and leaves; the slot is reused once it has.
            slot.database = pg_sys::InvalidOid;
            shmem::assign(n, pg_sys::InvalidOid);
        }
    }
    for (database, share) in wanted {
        let mut have = slots.iter().filter(|s| s.database == *database).count();
        for (n, slot) in slots.iter_mut().enumerate() {
            if have >= *share {
                break;
            }
            if slot.database == pg_sys::InvalidOid && !slot.alive() {
                slot.database = *database;
                // The restart delay is for a worker that keeps failing, not
                // for a slot that changes hands.
                slot.started = None;
                shmem::assign(n, *database);
                have += 1;
            }
        }
    }
    for (n, slot) in slots.iter_mut().enumerate() {
        if slot.database == pg_sys::InvalidOid
            || slot.alive()
            || slot.started.is_some_and(|t| t.elapsed() < RESTART_DELAY)
        {
            continue;
        }
        slot.started = Some(Instant::now());
        slot.requests_at_start = shmem::look_again_requests();
        slot.worker = start_worker(n, generation);
        slot.refused = slot.worker.is_none();
    }
}

fn start_worker(slot: usize, generation: u32) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(&format!("mtask worker {slot}"))
        .set_type("mtask worker")
        .set_library("mtask")
        .set_function("mtask_worker_main")
        .set_argument(Some(pool::argument(slot, generation)))
        .enable_spi_access()
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::RecoveryFinished)
        .load_dynamic()
        .ok()
}

/// The databases mtask may run in: those that accept connections and are
/// not templates (a worker connected to a template would block CREATE
/// DATABASE from it), limited to `mtask.databases` when that is set. Read
/// from pg_database directly: with no database, SQL cannot name it.
fn list_databases() -> Vec<u32> {
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
            let name = std::ffi::CStr::from_ptr(db.datname.data.as_ptr()).to_string_lossy();
            if db.datallowconn
                && !db.datistemplate
                && allowed.as_ref().is_none_or(|list| list.iter().any(|d| *d == name))
            {
                found.push(db.oid.to_u32());
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        pg_sys::CommitTransactionCommand();
    }
    found
}
