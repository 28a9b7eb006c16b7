//! Whether tasks may run in this database now.
//!
//! - It must hold the schema this library was built for: until an ALTER
//!   EXTENSION mtask UPDATE is due, the worker runs nothing, and one worker
//!   says so, once until the versions match again. Looked up once per
//!   wake-up.
//! - It must not be being restored. A restore (pg_restore, or psql playing a
//!   dump) writes the tables' rows with their ids, and sets the id sequences
//!   last, once the data is all there: until then a run would work on half
//!   a database, and its record could take an id the restore is about to
//!   write. Tasks there and a tasks sequence never used is that state
//!   (schedule() and plain inserts always use the sequence). Asked in every
//!   transaction, which so sees the same rows as its claims.

use super::plans;
use crate::report::warn;
use crate::shmem::databases;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;

pub struct SchemaCheck {
    database: pg_sys::Oid,
    /// databases::looks() before the last look.
    looks: u32,
    /// The version was looked up since the last wake-up.
    checked: bool,
    matches: bool,
}

impl SchemaCheck {
    pub fn new(database: pg_sys::Oid) -> SchemaCheck {
        SchemaCheck { database, looks: databases::looks(database), checked: false, matches: false }
    }

    /// Looks again at the next call: an ALTER EXTENSION may have come.
    pub fn forget(&mut self) {
        self.checked = false;
        self.looks = databases::looks(self.database);
    }

    /// Whether tasks may run now; in a transaction. Also tells the launcher,
    /// through shared memory, whether mtask is installed here at all.
    pub fn ready(&mut self) -> bool {
        if !self.checked {
            self.check_version();
        }
        self.matches && !restoring()
    }

    fn check_version(&mut self) {
        const QUERY: &str = "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'mtask')";
        let installed: Option<String> = Spi::get_one(QUERY).unwrap_or_else(|e| error!("{e}"));
        databases::set_known(self.database, installed.is_some(), self.looks);
        let built = env!("CARGO_PKG_VERSION");
        self.checked = true;
        self.matches = installed.as_deref() == Some(built);
        let tell = installed.is_some() && databases::version_mismatch_to_tell(self.database, self.matches);
        if let Some(v) = installed.filter(|_| tell) {
            warn(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "mtask {v} is installed in this database, but the server runs mtask {built}; no task runs until they match"
                ),
                "Run ALTER EXTENSION mtask UPDATE.",
            );
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
