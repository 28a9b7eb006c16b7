//! Vacuuming the scheduler's own tables, which change far faster than
//! autovacuum comes by (once a minute at best).
//!
//! - Every run updates its task's row, and the due index with it, so a busy
//!   tasks table gathers dead row versions that the claim must step over.
//!   A worker vacuums it after every VACUUM_EVERY runs committed in its
//!   database (counted in shared memory: workers come and go); the table is
//!   small, and SKIP_LOCKED lets a worker pass when another is already at it.
//! - The purge's deleted runs leave space that only VACUUM makes reusable;
//!   without it the history's table would keep growing while its row count
//!   does not. The purger vacuums it after VACUUM_EVERY deleted runs.

use crate::executor::top_level;
use crate::shmem::databases;
use pgrx::prelude::*;

const VACUUM_EVERY: usize = 10_000;

#[derive(Default)]
pub struct Vacuum {
    tasks_due: bool,
    purged: usize,
}

impl Vacuum {
    /// Notes whether runs committed in `database` call for a vacuum of its
    /// tasks table.
    pub fn ran(&mut self, database: pg_sys::Oid) {
        self.tasks_due |= databases::vacuum_due(database, VACUUM_EVERY as u64);
    }

    /// Counts runs the purge has deleted.
    pub fn purged(&mut self, runs: usize) {
        self.purged += runs;
    }

    /// Vacuums what is due; call it between tasks, outside any transaction.
    pub fn tick(&mut self) {
        if std::mem::take(&mut self.tasks_due) {
            vacuum("mtask.tasks");
        }
        if self.purged >= VACUUM_EVERY {
            vacuum("mtask.runs");
            self.purged = 0;
        }
    }
}

fn vacuum(table: &str) {
    let command = format!("VACUUM (SKIP_LOCKED) {table}");
    let outcome = top_level::run(&command, unsafe { pg_sys::GetUserId() }, None);
    if let Some(failure) = outcome.failure {
        log!("mtask: could not vacuum {table}: {failure}");
    }
}
