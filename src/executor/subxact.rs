//! Runs SQL as a task's owner in a subtransaction of the caller's
//! transaction, with any `SET` it makes undone afterwards: a failure rolls
//! back only the command, and the caller records it and commits, so the
//! command's effects and its record commit together. What else the command
//! leaves in the session is the caller's to clean (the worker does).

use super::command_plans;
use super::context::Keeper;
use super::timer::Timer;
use super::{Outcome, session};
use crate::report::Failure;
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use std::panic::AssertUnwindSafe;

/// Runs `command` as `owner`, cancelled after `timeout_ms` if given.
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

        let keeper = Keeper::new();
        let result = PgTryBuilder::new(AssertUnwindSafe(|| {
            let guc_level = pg_sys::NewGUCNestLevel();
            session::enter_task(true);
            // LOCAL_USERID_CHANGE also forbids SET ROLE and SET SESSION
            // AUTHORIZATION, so the command cannot climb back to our user.
            pg_sys::SetUserIdAndSecContext(owner, caller_sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
            let rows = command_plans::run(client, command, owner);
            pg_sys::AtEOXact_GUC(false, guc_level);
            pg_sys::SetUserIdAndSecContext(caller_uid, caller_sec);
            rows.map_err(|e| Failure::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, e.to_string()))
        }))
        .catch_others(|err| Err(Failure::caught(&err)))
        .execute();
        let context = keeper.finish();
        timer.stop();

        // Aborting the subtransaction also restores the user id and the GUCs.
        match result {
            Ok(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Err(_) => pg_sys::RollbackAndReleaseCurrentSubTransaction(),
        }
        pg_sys::MemoryContextSwitchTo(caller_cxt);
        pg_sys::CurrentResourceOwner = caller_resowner;

        let mut outcome = timer.outcome_of(result.map_err(|f| Failure { context, ..f }));
        let needs_top_level =
            [PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION, PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_TERMINATION];
        if let Some(f) = outcome.failure.as_mut().filter(|f| f.code.is_some_and(|c| needs_top_level.contains(&c))) {
            // VACUUM and the like refuse a transaction block, and a procedure
            // cannot commit inside one: say where they run.
            f.message.push_str(" (run it in a task with transactional => false)");
        }
        outcome
    }
}
