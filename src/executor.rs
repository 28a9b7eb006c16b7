//! Runs one command inside the caller's transaction: in a subtransaction of
//! its own, as the task's owner, with any `SET` it makes undone afterwards.
//! A failure rolls back only the command; the caller records it and commits.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::ffi::CStr;
use std::panic::AssertUnwindSafe;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    pub sqlstate: Option<String>,
    pub message: Option<String>,
    pub rows: Option<i64>,
}

impl Outcome {
    pub fn failed(sqlstate: String, message: String) -> Self {
        Outcome { status: RunStatus::Failed, sqlstate: Some(sqlstate), message: Some(message), rows: None }
    }
}

fn sqlstate_text(code: pgrx::PgSqlErrorCode) -> String {
    unsafe { CStr::from_ptr(pg_sys::unpack_sql_state(code as i32)) }
        .to_string_lossy()
        .into_owned()
}

/// The SQLSTATE and message of an error caught from Postgres or from Rust.
pub fn describe(err: &pg_sys::panic::CaughtError) -> (String, String) {
    use pg_sys::panic::CaughtError::*;
    let report = match err {
        PostgresError(r) | ErrorReport(r) | RustPanic { ereport: r, .. } => r,
    };
    (sqlstate_text(report.sql_error_code()), report.message().to_string())
}

pub fn run(client: &mut SpiClient<'_>, command: &str, owner: pg_sys::Oid) -> Outcome {
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
            // LOCAL_USERID_CHANGE also forbids SET ROLE and SET SESSION
            // AUTHORIZATION, so the command cannot climb back to our user.
            pg_sys::SetUserIdAndSecContext(
                owner,
                caller_sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
            let rows = client.update(command, None, &[]).map(|t| t.len() as i64);
            pg_sys::AtEOXact_GUC(false, guc_level);
            pg_sys::SetUserIdAndSecContext(caller_uid, caller_sec);
            rows.map_err(|e| ("XX000".to_string(), e.to_string()))
        }))
        .catch_others(|err| Err(describe(&err)))
        .execute();

        // Aborting the subtransaction also restores the user id and the GUCs.
        match result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(caller_cxt);
        pg_sys::CurrentResourceOwner = caller_resowner;

        match result {
            Ok(rows) => Outcome { status: RunStatus::Succeeded, sqlstate: None, message: None, rows: Some(rows) },
            Err((sqlstate, message)) => Outcome::failed(sqlstate, message),
        }
    }
}
