//! Whether tasks may run in this database now.
//!
//! - It must hold the schema this library was built for: until an ALTER
//!   EXTENSION mtask UPDATE is due, the worker runs nothing, and the pool's
//!   first worker says so, once per version. Looked up once per wake-up.
//! - It must not be being restored. A restore (pg_restore, or psql playing a
//!   dump) writes the tables' rows with their ids, and sets the id sequences
//!   last, once the data is all there: until then a run would work on half
//!   a database, and its record could take an id the restore is about to
//!   write. Tasks there and a tasks sequence never used is that state
//!   (schedule() and plain inserts always use the sequence). Asked in every
//!   transaction, which so sees the same rows as its claims.

use super::plans;
use crate::report::warn;
use crate::shmem;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;

pub struct SchemaCheck {
    slot: usize,
    /// The version was looked up since the last wake-up.
    checked: bool,
    matches: bool,
    /// The mismatched version already warned about.
    warned: Option<String>,
}

impl SchemaCheck {
    pub fn new(slot: usize) -> SchemaCheck {
        SchemaCheck { slot, checked: false, matches: false, warned: None }
    }

    /// Looks again at the next call: an ALTER EXTENSION may have come.
    pub fn forget(&mut self) {
        self.checked = false;
    }

    /// Whether tasks may run now; in a transaction. Also tells the launcher,
    /// through shared memory, whether mtask is installed here at all.
    /// `leads`: this worker speaks for the pool.
    pub fn ready(&mut self, leads: bool) -> bool {
        if !self.checked {
            self.check_version(leads);
        }
        self.matches && !restoring()
    }

    fn check_version(&mut self, leads: bool) {
        const QUERY: &str = "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'mtask')";
        let installed: Option<String> = Spi::get_one(QUERY).unwrap_or_else(|e| error!("{e}"));
        shmem::found(self.slot, if installed.is_some() { shmem::INSTALLED } else { shmem::ABSENT });
        let built = env!("CARGO_PKG_VERSION");
        self.checked = true;
        self.matches = installed.as_deref() == Some(built);
        if let Some(v) = installed.filter(|v| leads && v != built && self.warned.as_ref() != Some(v)) {
            warn(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "mtask {v} is installed in this database, but the server runs mtask {built}; no task runs until they match"
                ),
                "Run ALTER EXTENSION mtask UPDATE.",
            );
            self.warned = Some(v);
        }
    }
}

/// Whether a restore is writing mtask's tables and has yet to set the ids.
fn restoring() -> bool {
    const QUERY: &str = "SELECT NOT (SELECT is_called FROM mtask.tasks_id_seq) AND EXISTS (SELECT 1 FROM mtask.tasks)";
    let rows = Spi::connect_mut(|client| {
        plans::execute(client, QUERY, &[], Some(1), &[]).and_then(|rows| plans::first(&rows))
    });
    rows.unwrap_or_else(|e| error!("{e}")) == Some(true)
}
