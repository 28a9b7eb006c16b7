//! Messages for users and the log: ERRORs and WARNINGs with a hint, and what
//! an error caught from Postgres or Rust said. SQLSTATEs stay typed
//! (`PgSqlErrorCode`) until they are written into a run record.

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::ffi::CStr;

/// Reports a message with a hint at `level`; at ERROR it does not return.
pub fn report(level: PgLogLevel, code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) {
    ErrorReport::new(code, message.into(), "mtask").set_hint(hint.into()).report(level);
}

/// An ERROR with a hint.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    report(PgLogLevel::ERROR, code, message, hint);
    unreachable!("an ERROR report returns control to Postgres")
}

/// A WARNING with a hint.
pub fn warn(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) {
    report(PgLogLevel::WARNING, code, message, hint);
}

/// An error as a run record keeps it: whole, as the server log would.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// None where no error was raised: a run whose worker died.
    pub code: Option<PgSqlErrorCode>,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// Where it arose (the PL/pgSQL line, the statement): see
    /// `executor::context`, which keeps it, as pgrx does not.
    pub context: Option<String>,
}

impl Failure {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Failure {
        Failure { code: Some(code), message: message.into(), ..Failure::default() }
    }

    /// A failure no error told of.
    pub fn untold(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), ..Failure::default() }
    }

    /// What an error caught from Postgres or from Rust said.
    pub fn caught(err: &CaughtError) -> Failure {
        let report = match err {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
                r
            }
        };
        Failure {
            detail: report.detail().map(str::to_string),
            hint: report.hint().map(str::to_string),
            ..Failure::new(report.sql_error_code(), report.message())
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The five-character SQLSTATE of `code`, as `mtask.runs.sqlstate` holds it.
pub fn sqlstate(code: PgSqlErrorCode) -> String {
    unsafe { CStr::from_ptr(pg_sys::unpack_sql_state(code as i32)) }.to_string_lossy().into_owned()
}

/// Keeps Rust backtraces out of what clients see. pgrx's panic hook puts a
/// backtrace into an ERROR's DETAIL whenever Rust would capture one, which
/// RUST_BACKTRACE in the server's environment turns on for every error that
/// passes through Rust, user errors included. RUST_LIB_BACKTRACE=0 turns
/// capturing off whatever RUST_BACKTRACE says; it is read once, at the
/// first capture, so it must be set before any.
pub fn no_backtraces() {
    // SAFETY: _PG_init runs before this process has started any thread.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
}
