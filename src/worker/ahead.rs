//! Claims made in one statement for several candidates
//! (`claim::claim_ahead`) instead of one statement each: setting up a
//! locking statement cost more than the lock. Once a step's runs show its
//! tasks are quick, it locks the next few candidates ahead of their turn;
//! how many is the core's `candidates::claim_ahead`, so that the others
//! stay free for other workers. Otherwise it locks the first free one of
//! the next few: candidates that another worker has run since the walk
//! found them are passed over in the same statement.
//!
//! A task locked ahead still waits for its turn, and the runs before it
//! may change its row: a task's SQL runs in this very transaction, whose
//! row locks do not keep it out. So a lock taken ahead is used only while
//! the version it locked is still the row's current one, as this
//! transaction sees it; otherwise the task is claimed afresh.

use super::claim::{self, Locked, TaskRow};
use super::version::Restore;
use crate::compat;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use std::collections::{HashMap, HashSet};

/// What this step's claims ahead found.
#[derive(Default)]
pub struct Ahead {
    /// Locked, not yet taken.
    locked: HashMap<i64, Locked>,
    /// Tried and not locked: another worker had them, or they were no
    /// longer due.
    missed: HashSet<i64>,
}

impl Ahead {
    /// A claim ahead has tried task `id`, and its turn has not come.
    pub fn tried(&self, id: i64) -> bool {
        self.locked.contains_key(&id) || self.missed.contains(&id)
    }

    /// Locks those of `ids` (candidates in due order) still due and free,
    /// or with `first` only the first of them, and returns what it locked.
    pub fn claim(
        &mut self,
        client: &mut SpiClient<'_>,
        ids: &[i64],
        first: bool,
        horizon: Option<TimestampWithTimeZone>,
        restore: Restore,
    ) -> SpiResult<Vec<i64>> {
        let locked = claim::claim_ahead(client, ids, first, horizon, restore)?;
        // Those after the first one locked were not tried.
        let tried = match (first, locked.first()) {
            (true, Some(row)) => ids.iter().position(|&id| id == row.id).unwrap_or(ids.len()),
            _ => ids.len(),
        };
        self.missed.extend(&ids[..tried]);
        Ok(locked
            .into_iter()
            .map(|row| {
                self.missed.remove(&row.id);
                let id = row.id;
                self.locked.insert(id, row);
                id
            })
            .collect())
    }

    /// Candidate `row`, which a claim ahead has tried, locked, as it is now,
    /// if it is still due and free: by the lock taken ahead while it holds
    /// the row's current version, else by a claim of its own.
    pub fn take(
        &mut self,
        client: &mut SpiClient<'_>,
        row: TaskRow,
        horizon: Option<TimestampWithTimeZone>,
        restore: Restore,
    ) -> SpiResult<Option<TaskRow>> {
        match self.locked.remove(&row.id) {
            Some(locked) if is_current(&locked) => claim::as_locked(client, row, locked.xmin),
            Some(_) => claim::claim(client, row, horizon, restore),
            None => {
                self.missed.remove(&row.id);
                Ok(None)
            }
        }
    }
}

/// Whether the row version `locked` is still its row's current one, in
/// this transaction's own eyes (SnapshotSelf): no run since, of this
/// transaction or of a subtransaction it kept, has updated or deleted it.
/// Its lock keeps every other transaction off it.
fn is_current(locked: &Locked) -> bool {
    unsafe {
        let relation = pg_sys::RelationIdGetRelation(locked.table);
        if relation.is_null() {
            return false;
        }
        let mut tuple = pg_sys::HeapTupleData { t_self: locked.ctid, ..Default::default() };
        let mut buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
        let seen = compat::heap_fetch(relation, &raw mut pg_sys::SnapshotSelfData, &mut tuple, &mut buffer);
        if seen {
            pg_sys::ReleaseBuffer(buffer);
        }
        pg_sys::RelationClose(relation);
        seen
    }
}
