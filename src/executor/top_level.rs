//! Runs a command the way psql sends it: each statement a top-level
//! statement in a transaction of its own. This is what VACUUM, CREATE INDEX
//! CONCURRENTLY and a CALL of a procedure that commits need; none of them can
//! run through SPI, which is always inside a transaction and never top-level.
//! Statements that committed stay committed when a later one fails, so such
//! a task is at-least-once, not exactly-once.

use super::context::Keeper;
use super::timer::Timer;
use super::{Outcome, session};
use crate::compat;
use crate::report::Failure;
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CString;
use std::panic::AssertUnwindSafe;

/// Runs `command` as `owner`, statement by statement, each committed on its
/// own; stops at the first error. Must be called outside any transaction,
/// and returns outside one, with the session as clean as it found it.
pub fn run(command: &str, owner: pg_sys::Oid, timeout_ms: Option<i32>) -> Outcome {
    let Ok(text) = CString::new(command) else {
        return Outcome::failed(Failure::new(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "the command contains a zero byte",
        ));
    };
    let outcome = run_statements(&text, owner, timeout_ms);
    // Settings made by statements that committed are session settings now.
    PgTryBuilder::new(AssertUnwindSafe(|| unsafe {
        pg_sys::StartTransactionCommand();
        session::reset_settings();
        session::clean();
        pg_sys::CommitTransactionCommand();
    }))
    .catch_others(|err| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        // A worker that cannot clean its session must not run another task in it.
        error!("mtask: could not reset the session after a task: {}", Failure::caught(&err))
    })
    .execute();
    outcome
}

fn run_statements(text: &CString, owner: pg_sys::Oid, timeout_ms: Option<i32>) -> Outcome {
    session::enter_task(false);
    let timer = Timer::start(timeout_ms);
    unsafe {
        // The parse trees must outlive the transactions they run in.
        let parse_cxt = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"mtask top-level command".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let (mut own_uid, mut own_sec) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut own_uid, &mut own_sec);
        let keeper = Keeper::new();
        let result = PgTryBuilder::new(AssertUnwindSafe(|| {
            let old = pg_sys::MemoryContextSwitchTo(parse_cxt);
            let statements = pg_sys::pg_parse_query(text.as_ptr());
            pg_sys::MemoryContextSwitchTo(old);
            let mut rows = 0i64;
            let count = if statements.is_null() { 0 } else { (*statements).length as usize };
            for i in 0..count {
                let raw = (*(*statements).elements.add(i)).ptr_value.cast::<pg_sys::RawStmt>();
                rows = run_statement(raw, text, owner, own_sec, parse_cxt);
            }
            // A BEGIN that no COMMIT ended would keep the worker in the block,
            // holding its locks and snapshot, for ever.
            if pg_sys::IsTransactionBlock() {
                pg_sys::AbortOutOfAnyTransaction();
                return Err(Failure::new(
                    PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
                    "the command left a transaction block open (a BEGIN without COMMIT); what it did in the block \
                     was rolled back",
                ));
            }
            Ok(rows)
        }))
        // Out of a transaction block too: an error inside one leaves it
        // aborted, and nothing of the task may stay.
        .catch_others(|err| {
            pg_sys::AbortOutOfAnyTransaction();
            Err(Failure::caught(&err))
        })
        .execute();
        let context = keeper.finish();
        timer.stop();
        pg_sys::SetUserIdAndSecContext(own_uid, own_sec);
        pg_sys::MemoryContextDelete(parse_cxt);
        timer.outcome_of(result.map_err(|f| Failure { context, ..f }))
    }
}

/// One statement in a transaction of its own, as exec_simple_query runs it.
/// The plans live in `cxt`, not in the transaction: VACUUM commits and
/// starts transactions inside PortalRun, which then still reads them.
unsafe fn run_statement(
    raw: *mut pg_sys::RawStmt,
    text: &CString,
    owner: pg_sys::Oid,
    own_sec: i32,
    cxt: pg_sys::MemoryContext,
) -> i64 {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        // LOCAL_USERID_CHANGE also forbids SET ROLE and SET SESSION
        // AUTHORIZATION; an abort restores the worker's own user.
        pg_sys::SetUserIdAndSecContext(owner, own_sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        let snapshot = pg_sys::analyze_requires_snapshot(raw);
        if snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let old = pg_sys::MemoryContextSwitchTo(cxt);
        let queries = compat::analyze_and_rewrite(raw, text.as_ptr());
        let plans = pg_sys::pg_plan_queries(
            queries,
            text.as_ptr(),
            pg_sys::CURSOR_OPT_PARALLEL_OK as i32,
            std::ptr::null_mut(),
        );
        pg_sys::MemoryContextSwitchTo(old);
        if snapshot {
            pg_sys::PopActiveSnapshot();
        }
        let portal = pg_sys::CreatePortal(c"".as_ptr(), true, true);
        (*portal).visible = false;
        let tag = pg_sys::CreateCommandTag((*raw).stmt);
        pg_sys::PortalDefineQuery(portal, std::ptr::null(), text.as_ptr(), tag, plans, std::ptr::null_mut());
        pg_sys::PortalStart(portal, std::ptr::null_mut(), 0, std::ptr::null_mut());
        let receiver = pg_sys::CreateDestReceiver(pg_sys::CommandDest::DestNone);
        let mut completion: pg_sys::QueryCompletion = std::mem::zeroed();
        compat::portal_run(portal, receiver, &mut completion);
        if let Some(destroy) = (*receiver).rDestroy {
            destroy(receiver);
        }
        pg_sys::PortalDrop(portal, false);
        pg_sys::CommitTransactionCommand();
        completion.nprocessed as i64
    }
}
