//! Runs a task's command as its owner. `run` runs it inside the caller's
//! transaction, in a subtransaction of its own, with any `SET` it makes undone
//! afterwards: a failure rolls back only the command, and the caller records
//! it and commits, so effects and record commit together. `top_level::run`
//! runs it as psql would, for commands that cannot run inside a transaction.

pub mod program;
pub mod session;
pub mod top_level;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::ffi::CStr;
use std::panic::AssertUnwindSafe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// Failed because it ran past its timeout.
    Timeout,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub rows: Option<i64>,
    /// What a 'program' task's process left.
    pub program: Option<ProgramOutput>,
}

#[derive(Debug, Clone)]
pub struct ProgramOutput {
    /// None when it was killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn succeeded(rows: Option<i64>) -> Self {
        Outcome { status: RunStatus::Succeeded, sqlstate: None, message: None, rows, program: None }
    }

    pub fn failed(sqlstate: String, message: String) -> Self {
        Outcome {
            status: RunStatus::Failed,
            sqlstate: Some(sqlstate),
            message: Some(message),
            rows: None,
            program: None,
        }
    }
}

fn sqlstate_text(code: pgrx::PgSqlErrorCode) -> String {
    unsafe { CStr::from_ptr(pg_sys::unpack_sql_state(code as i32)) }.to_string_lossy().into_owned()
}

/// The SQLSTATE and message of an error caught from Postgres or from Rust.
pub fn describe(err: &pg_sys::panic::CaughtError) -> (String, String) {
    use pg_sys::panic::CaughtError::*;
    let report = match err {
        PostgresError(r) | ErrorReport(r) | RustPanic { ereport: r, .. } => r,
    };
    (sqlstate_text(report.sql_error_code()), report.message().to_string())
}

// Postgres' timeout API is not in pgrx's bindings. STATEMENT_TIMEOUT's
// handler, registered for every backend by InitPostgres, cancels the running
// statement just as `statement_timeout` does; SPI never arms it, so we do.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}

/// A run's timeout: armed at the start, and the judge of whether a cancel
/// (57014) was the timeout's.
struct Timer {
    started: std::time::Instant,
    timeout_ms: Option<i32>,
}

impl Timer {
    fn start(timeout_ms: Option<i32>) -> Timer {
        let timeout_ms = timeout_ms.filter(|ms| *ms > 0);
        if let Some(ms) = timeout_ms {
            unsafe { enable_timeout_after(STATEMENT_TIMEOUT, ms) };
        }
        Timer { started: std::time::Instant::now(), timeout_ms }
    }

    fn stop(&self) {
        unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
    }

    fn outcome_of(&self, result: Result<i64, (String, String)>) -> Outcome {
        match result {
            Ok(rows) => Outcome::succeeded(Some(rows)),
            Err((sqlstate, message)) => {
                // A cancel once the timeout has passed is the timeout's.
                let timed_out = sqlstate == "57014"
                    && self.timeout_ms.is_some_and(|ms| self.started.elapsed().as_millis() >= ms as u128);
                let status = if timed_out { RunStatus::Timeout } else { RunStatus::Failed };
                Outcome { status, ..Outcome::failed(sqlstate, message) }
            }
        }
    }
}

/// `SELECT pg_notify(channel, payload)`, with both quoted by Postgres'
/// own quote_literal, so that no channel or payload can break out.
pub fn notify_command(channel: &str, payload: &str) -> String {
    let quote = |text: &str| {
        // Text cannot hold a zero byte; cut there, as Postgres' own input would refuse it.
        let text = std::ffi::CString::new(text.split('\0').next().unwrap_or("")).expect("no zero byte");
        let quoted = unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(text.as_ptr())) };
        quoted.to_string_lossy().into_owned()
    };
    format!("SELECT pg_catalog.pg_notify({}, {})", quote(channel), quote(payload))
}

/// Runs `command` as `owner` in a subtransaction of the caller's
/// transaction, cancelled after `timeout_ms` if given.
pub fn run(client: &mut SpiClient<'_>, command: &str, owner: pg_sys::Oid, timeout_ms: Option<i32>) -> Outcome {
    let timer = Timer::start(timeout_ms);
    unsafe {
        let caller_cxt = pg_sys::CurrentMemoryContext;
        let caller_resowner = pg_sys::CurrentResourceOwner;
        let (mut caller_uid, mut caller_sec) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut caller_uid, &mut caller_sec);

        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        // Results are copied out in the caller's context, which outlives the
        // subtransaction.
        pg_sys::MemoryContextSwitchTo(caller_cxt);

        let result = PgTryBuilder::new(AssertUnwindSafe(|| {
            let guc_level = pg_sys::NewGUCNestLevel();
            session::enter_task(true);
            // LOCAL_USERID_CHANGE also forbids SET ROLE and SET SESSION
            // AUTHORIZATION, so the command cannot climb back to our user.
            pg_sys::SetUserIdAndSecContext(owner, caller_sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
            let rows = client.update(command, None, &[]).map(|t| t.len() as i64);
            pg_sys::AtEOXact_GUC(false, guc_level);
            pg_sys::SetUserIdAndSecContext(caller_uid, caller_sec);
            rows.map_err(|e| ("XX000".to_string(), e.to_string()))
        }))
        .catch_others(|err| Err(describe(&err)))
        .execute();
        timer.stop();

        // Aborting the subtransaction also restores the user id and the GUCs.
        match result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(caller_cxt);
        pg_sys::CurrentResourceOwner = caller_resowner;
        session::clean();

        let mut outcome = timer.outcome_of(result);
        if outcome.sqlstate.as_deref() == Some("25001") {
            // VACUUM and the like refuse a transaction block: say where they run.
            if let Some(m) = outcome.message.as_mut() {
                m.push_str(" (run it in a task with transactional => false)");
            }
        }
        outcome
    }
}
