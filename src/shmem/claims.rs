//! Per pool slot, the tasks its worker's open transaction has claimed: a
//! hint, read without a lock, that lets another worker pass over a
//! candidate without a claim statement that would find it locked.
//!
//! Every worker of a database walks the same due index and finds the same
//! candidates in the same order. Without the hint, two workers going down
//! the same candidates would each find every other one taken, and pay a
//! statement for each. The row lock (`FOR UPDATE SKIP LOCKED`) still
//! decides who runs a task: a claim not yet on the board costs a statement,
//! and a task on it is passed only while the transaction that claimed it is
//! open, so none is passed for longer than that.

use super::pool::MAX_WORKERS;
use pgrx::prelude::*;
use pgrx::{PgAtomic, pg_shmem_init};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

/// Claims a slot's transaction may list; more are not listed.
pub const CLAIMS: usize = 80;

/// Per slot, the ids of the tasks its open transaction claimed, the first
/// `CLAIM_COUNT[slot]` of them.
static CLAIMED: PgAtomic<[[AtomicI64; CLAIMS]; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_claimed") };
static CLAIM_COUNT: PgAtomic<[AtomicU32; MAX_WORKERS]> = unsafe { PgAtomic::new(c"mtask_claim_count") };

pub fn init() {
    pg_shmem_init!(CLAIMED = [const { [const { AtomicI64::new(0) }; CLAIMS] }; MAX_WORKERS]);
    pg_shmem_init!(CLAIM_COUNT = [const { AtomicU32::new(0) }; MAX_WORKERS]);
}

/// The calling worker lists its claims in `slot`, and takes them off when
/// it exits, however it exits: a slot whose worker died with claims listed
/// would keep other workers off those tasks for good. (A crash of the
/// server process resets all shared memory.)
pub fn list_claims_in(slot: usize) {
    #[pg_guard]
    unsafe extern "C-unwind" fn end(_code: i32, slot: pg_sys::Datum) {
        claims_end(slot.value());
    }
    claims_end(slot);
    unsafe { pg_sys::before_shmem_exit(Some(end), pg_sys::Datum::from(slot)) };
}

/// The transaction of the worker in `slot` has ended (or begins): it holds
/// no claim.
pub fn claims_end(slot: usize) {
    CLAIM_COUNT.get()[slot].store(0, Ordering::Release);
}

/// The worker in `slot` has claimed task `id`, locked until its transaction
/// ends.
pub fn claimed(slot: usize, id: i64) {
    let count = CLAIM_COUNT.get()[slot].load(Ordering::Acquire) as usize;
    if count < CLAIMS {
        CLAIMED.get()[slot][count].store(id, Ordering::Release);
        CLAIM_COUNT.get()[slot].store(count as u32 + 1, Ordering::Release);
    }
}

/// Whether another worker of the same database as `slot` holds task `id`
/// claimed. A slot that has just ended its transaction and begun another
/// may still show an id of the one before: that task, then, is not due any
/// more, or its claim was rolled back and the next walk finds it again.
pub fn claimed_by_another(slot: usize, id: i64) -> bool {
    let database = super::slot_database(slot);
    (0..MAX_WORKERS).filter(|&other| other != slot && super::slot_database(other) == database).any(|other| {
        let count = (CLAIM_COUNT.get()[other].load(Ordering::Acquire) as usize).min(CLAIMS);
        CLAIMED.get()[other][..count].iter().any(|claimed| claimed.load(Ordering::Acquire) == id)
    })
}
