//! Runs a command in another database of the cluster. A backend is bound to
//! its database, so the command runs in a background worker started there
//! for the one run ("mtask runner", `worker/runner.rs`), which runs it as
//! this process would here: as the task's owner, under its timeout, in one
//! transaction of its own or statement by statement. The request goes to
//! it, and the outcome comes back, through a dynamic shared memory segment;
//! the caller waits. Its effects there commit apart from the run's record
//! here, so such a run is at least once, as a non-transactional one is.

use super::{Command, Outcome, What};
use crate::report::Failure;
use mtask_core::states::RunStatus;
use pgrx::PgSqlErrorCode;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BackgroundWorkerStatus};
use pgrx::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a command runs when not here.
pub struct Elsewhere<'a> {
    pub name: &'a str,
    pub oid: pg_sys::Oid,
    /// In one transaction of its own, rather than statement by statement.
    pub transactional: bool,
}

/// Room for the outcome; each text in it is cut to a quarter of that.
const OUTCOME_ROOM: usize = 64 * 1024;

/// The head of the segment; the command follows, then the outcome's room.
#[repr(C)]
struct Header {
    database: u32,
    owner: u32,
    /// -1: none.
    timeout_ms: i32,
    transactional: bool,
    command_len: u32,
    /// The outcome's length once the runner has written it; 0 until then.
    outcome_len: AtomicU32,
}

/// What the runner is asked to do.
pub struct Request {
    pub database: pg_sys::Oid,
    pub owner: pg_sys::Oid,
    pub timeout_ms: Option<i32>,
    pub transactional: bool,
    pub command: String,
}

/// Runs `command` in `place`, and says how it went.
pub fn run(place: &Elsewhere, command: &Command) -> Outcome {
    let What::Sql(sql) = &command.what else {
        unreachable!("the tasks trigger refuses a program task in another database")
    };
    let size = size_of::<Header>() + sql.len() + OUTCOME_ROOM;
    let segment = unsafe { pg_sys::dsm_create(size, 0) };
    let outcome = unsafe {
        let header = pg_sys::dsm_segment_address(segment).cast::<Header>();
        header.write(Header {
            database: place.oid.to_u32(),
            owner: command.owner.to_u32(),
            timeout_ms: command.timeout_ms.unwrap_or(-1),
            transactional: place.transactional,
            command_len: sql.len() as u32,
            outcome_len: AtomicU32::new(0),
        });
        std::ptr::copy_nonoverlapping(sql.as_ptr(), header.add(1).cast::<u8>(), sql.len());
        let handle = pg_sys::dsm_segment_handle(segment);
        if !start_and_wait(place, handle) {
            Outcome::failed(Failure {
                hint: Some(
                    "Raise max_worker_processes: each run in another database takes one more while it lasts.".into(),
                ),
                ..Failure::new(
                    PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                    format!(
                        "could not start a worker to run it in database \"{}\": max_worker_processes is used up",
                        place.name
                    ),
                )
            })
        } else {
            match (*header).outcome_len.load(Ordering::Acquire) as usize {
                0 => Outcome::failed(Failure::untold(format!(
                    "its worker in database \"{}\" ended without saying how the run went; the server log says why",
                    place.name
                ))),
                len => {
                    let at = header.add(1).cast::<u8>().add(sql.len());
                    decode(std::slice::from_raw_parts(at, len))
                }
            }
        }
    };
    unsafe { pg_sys::dsm_detach(segment) };
    outcome
}

/// Starts the runner and waits for it to end, passing a cancel on to it, and
/// taking it down with this process if this one is told to stop. False if
/// it could not start: no background worker process is free.
fn start_and_wait(place: &Elsewhere, handle: pg_sys::dsm_handle) -> bool {
    let started = BackgroundWorkerBuilder::new(&format!("mtask runner in {}", place.name))
        .set_type("mtask runner")
        .set_library("mtask")
        .set_function("mtask_runner_main")
        .set_argument(Some(pg_sys::Datum::from(handle)))
        .enable_spi_access()
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    let Ok(runner) = started else {
        return false;
    };
    let mut seen_pid = None;
    loop {
        match runner.pid() {
            Ok(pid) if seen_pid.is_none() => {
                seen_pid = Some(pid);
                // mtask.running shows the process that runs it, which
                // pg_cancel_backend() cancels.
                crate::shmem::running_in(pid);
            }
            Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => {}
            Err(_) => return true,
        }
        unsafe {
            // Its start and its exit set the latch: this is its notify pid.
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                1000,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
            if pg_sys::ProcDiePending != 0 {
                runner.terminate();
                pg_sys::check_for_interrupts!();
                unreachable!("a pending die ends the process");
            }
            if pg_sys::QueryCancelPending != 0 {
                pg_sys::QueryCancelPending = 0;
                if let Some(pid) = seen_pid {
                    libc::kill(pid, libc::SIGINT);
                }
            }
        }
    }
}

/// The request in the segment `handle`, attached for the runner; None if the
/// segment is gone (its caller ended first).
pub fn request(handle: pg_sys::dsm_handle) -> Option<(Request, *mut pg_sys::dsm_segment)> {
    let segment = unsafe { pg_sys::dsm_attach(handle) };
    if segment.is_null() {
        return None;
    }
    unsafe {
        let header = pg_sys::dsm_segment_address(segment).cast::<Header>();
        let text = std::slice::from_raw_parts(header.add(1).cast::<u8>(), (*header).command_len as usize);
        let request = Request {
            database: pg_sys::Oid::from((*header).database),
            owner: pg_sys::Oid::from((*header).owner),
            timeout_ms: Some((*header).timeout_ms).filter(|ms| *ms >= 0),
            transactional: (*header).transactional,
            command: String::from_utf8_lossy(text).into_owned(),
        };
        Some((request, segment))
    }
}

/// Writes the runner's `outcome` into `segment`, and detaches from it.
pub fn answer(segment: *mut pg_sys::dsm_segment, outcome: &Outcome) {
    let bytes = encode(outcome);
    unsafe {
        let header = pg_sys::dsm_segment_address(segment).cast::<Header>();
        let at = header.add(1).cast::<u8>().add((*header).command_len as usize);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len());
        (*header).outcome_len.store(bytes.len() as u32, Ordering::Release);
        pg_sys::dsm_detach(segment);
    }
}

/// An outcome as bytes: its status, its row count, and its failure's error
/// code and texts, each as a text: its length, then its bytes.
fn encode(outcome: &Outcome) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = |text: Option<&str>| {
        // Cut at a character boundary, so that every text fits.
        let mut text = text.unwrap_or("");
        let mut end = text.len().min(OUTCOME_ROOM / 4 - 8);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    let failure = outcome.failure.as_ref();
    text(Some(outcome.status.as_sql()));
    text(outcome.rows.map(|n| n.to_string()).as_deref());
    text(failure.and_then(|f| f.code).map(|code| (code as i32).to_string()).as_deref());
    text(failure.map(|f| f.message.as_str()));
    text(failure.and_then(|f| f.detail.as_deref()));
    text(failure.and_then(|f| f.hint.as_deref()));
    text(failure.and_then(|f| f.context.as_deref()));
    out
}

fn decode(mut bytes: &[u8]) -> Outcome {
    let mut text = || {
        let len = bytes.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize);
        let value = bytes.get(4..4 + len).map(|b| String::from_utf8_lossy(b).into_owned());
        bytes = bytes.get(4 + len..).unwrap_or(&[]);
        value.filter(|v| !v.is_empty())
    };
    let status = text().as_deref().and_then(RunStatus::from_sql).unwrap_or(RunStatus::Failed);
    let rows = text().and_then(|n| n.parse().ok());
    let code = text().and_then(|code| code.parse::<i32>().ok()).map(PgSqlErrorCode::from);
    let message = text();
    let failure = message.map(|message| Failure { code, message, detail: text(), hint: text(), context: text() });
    Outcome { status, failure, rows, program: None }
}
