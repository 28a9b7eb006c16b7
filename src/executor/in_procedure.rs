//! Runs a non-transactional task's SQL inside a procedure called with CALL
//! outside a transaction block (CALL mtask.run): statement by statement,
//! each committed on its own with SPI_commit, as a procedure that commits
//! runs. This is as close to top-level as a procedure gets: a CALL of a
//! procedure that commits works, but what must run at the top level itself
//! (VACUUM, CREATE INDEX CONCURRENTLY) is refused by Postgres here. It runs
//! in the caller's session, which is the caller's: only its search_path is
//! given back; what else the statements set or leave stays, as if the
//! caller had run them.

use super::context::Keeper;
use super::timer::Timer;
use super::{Outcome, session};
use crate::report::Failure;
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;

/// Runs `command` as `owner`; stops at the first error, which is rolled
/// back. Needs a non-atomic SPI connection (SPI_OPT_NONATOMIC) open.
pub fn run(command: &str, owner: pg_sys::Oid, timeout_ms: Option<i32>) -> Outcome {
    let statements = match split(command) {
        Ok(statements) => statements,
        Err(failure) => return Outcome::failed(failure),
    };
    let timer = Timer::start(timeout_ms);
    let (mut uid, mut sec) = (pg_sys::InvalidOid, 0);
    unsafe { pg_sys::GetUserIdAndSecContext(&mut uid, &mut sec) };
    let callers_path = session::search_path();
    let keeper = Keeper::new();
    let result = PgTryBuilder::new(AssertUnwindSafe(|| {
        session::enter_task(false);
        let mut rows = 0;
        for statement in &statements {
            unsafe {
                pg_sys::SetUserIdAndSecContext(owner, sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
                // Non-atomic, so that a CALL in it may commit; as in
                // PL/pgSQL, the snapshot is then the portal's, which a
                // commit ends.
                pg_sys::EnsurePortalSnapshotExists();
                let options = pg_sys::SPIExecuteOptions { allow_nonatomic: true, ..Default::default() };
                let status = pg_sys::SPI_execute_extended(statement.as_ptr(), &options);
                pg_sys::SetUserIdAndSecContext(uid, sec);
                if status < 0 {
                    return Err(Failure::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("SPI error {status}")));
                }
                rows = pg_sys::SPI_processed as i64;
                pg_sys::SPI_commit();
                pg_sys::SPI_start_transaction();
            }
        }
        Ok(rows)
    }))
    .catch_others(|err| {
        unsafe {
            pg_sys::SetUserIdAndSecContext(uid, sec);
            pg_sys::SPI_rollback();
            pg_sys::SPI_start_transaction();
        }
        Err(Failure::caught(&err))
    })
    .execute();
    let context = keeper.finish();
    timer.stop();
    session::set_search_path(&callers_path, pg_sys::GucAction::GUC_ACTION_SET);
    timer.outcome_of(result.map_err(|f| Failure { context, ..f }))
}

/// The statements of `command`, each as text of its own.
fn split(command: &str) -> Result<Vec<CString>, Failure> {
    let text = CString::new(command).map_err(|_| {
        Failure::new(PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, "the command contains a zero byte")
    })?;
    let parsed = PgTryBuilder::new(|| unsafe {
        let list = pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            text.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ));
        Ok(list.iter_ptr().map(|raw| ((*raw).stmt_location as usize, (*raw).stmt_len as usize)).collect::<Vec<_>>())
    })
    .catch_others(|err| Err(Failure::caught(&err)))
    .execute()?;
    let bytes = command.as_bytes();
    Ok(parsed
        .into_iter()
        .map(|(at, len)| {
            // A length of 0 means "to the end of the string".
            let end = if len == 0 { bytes.len() } else { (at + len).min(bytes.len()) };
            CString::new(&bytes[at..end]).expect("no zero byte, checked above")
        })
        .collect())
}
