//! A run's timeout. Postgres' STATEMENT_TIMEOUT handler, registered for
//! every backend by InitPostgres, cancels the running statement just as
//! `statement_timeout` does; SPI never arms it, so a run does.

use super::Outcome;
use crate::report::Failure;
use mtask_core::states::RunStatus;
use pgrx::PgSqlErrorCode;

// Postgres' timeout API is not in pgrx's bindings.
const STATEMENT_TIMEOUT: std::ffi::c_int = 3;
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: std::ffi::c_int, delay_ms: std::ffi::c_int);
    fn disable_timeout(id: std::ffi::c_int, keep_indicator: bool);
}

/// Armed at a run's start; the judge of whether a cancel (57014) was the
/// timeout's.
pub struct Timer {
    started: std::time::Instant,
    timeout_ms: Option<i32>,
}

impl Timer {
    pub fn start(timeout_ms: Option<i32>) -> Timer {
        let timeout_ms = timeout_ms.filter(|ms| *ms > 0);
        if let Some(ms) = timeout_ms {
            unsafe { enable_timeout_after(STATEMENT_TIMEOUT, ms) };
        }
        Timer { started: std::time::Instant::now(), timeout_ms }
    }

    pub fn stop(&self) {
        unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
    }

    /// The outcome of a run that processed `rows`, or failed.
    pub fn outcome_of(&self, result: Result<i64, Failure>) -> Outcome {
        match result {
            Ok(rows) => Outcome::succeeded(Some(rows)),
            Err(failure) => {
                // A cancel once the timeout has passed is the timeout's.
                let timed_out = failure.code == Some(PgSqlErrorCode::ERRCODE_QUERY_CANCELED)
                    && self.timeout_ms.is_some_and(|ms| self.started.elapsed().as_millis() >= ms as u128);
                let status = if timed_out { RunStatus::Timeout } else { RunStatus::Failed };
                Outcome { status, ..Outcome::failed(failure) }
            }
        }
    }
}
