//! A top-level transaction of the worker's own, from start to commit.

use crate::report::Failure;
use crate::shmem;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;

/// Runs `body` as one top-level transaction. An ERROR anywhere in it, the
/// commit included, aborts the transaction and comes back as `Err`.
pub fn run<R>(body: impl FnOnce() -> R) -> Result<R, Failure> {
    PgTryBuilder::new(AssertUnwindSafe(|| unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let r = body();
        pg_sys::PopActiveSnapshot();
        shmem::not_running();
        pg_sys::CommitTransactionCommand();
        Ok(r)
    }))
    .catch_others(|err| {
        shmem::not_running();
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(Failure::caught(&err))
    })
    .execute()
}
