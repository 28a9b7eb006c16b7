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
//!   write. Tasks (or runs) there and their sequence never used is that
//!   state (schedule(), plain inserts and the scheduler always use the
//!   sequences). pg_dump writes the runs first (its data comes in name
//!   order, since no foreign key links the tables), so the runs alone say
//!   it until the tasks come. Asked in every
//!   transaction, which so sees the same rows as its claims. Once both id
//!   sequences are set, no restore is under way or can begin without a
//!   DROP EXTENSION: the transaction's claims need not ask again
//!   (`Restore::Done`).

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
    /// What the last `ready` found of a restore.
    restore: Restore,
}

/// Whether the claims of a transaction must each make sure that no restore
/// is under way, in their own snapshots (see `claim::due`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Restore {
    /// Both id sequences are set: every restore has ended.
    Done,
    /// One may begin to write the rows before the next claim.
    Unsure,
}

impl SchemaCheck {
    pub fn new(database: pg_sys::Oid) -> SchemaCheck {
        SchemaCheck {
            database,
            looks: databases::looks(database),
            checked: false,
            matches: false,
            restore: Restore::Unsure,
        }
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
        if !self.matches {
            return false;
        }
        let (restoring, restore) = restore_state();
        self.restore = restore;
        !restoring
    }

    /// What the last `ready`, in this transaction, found of a restore.
    pub fn restore(&self) -> Restore {
        self.restore
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

/// Whether a restore is writing mtask's tables and has yet to set the ids,
/// and whether both ids are set.
fn restore_state() -> (bool, Restore) {
    const QUERY: &str = "SELECT (NOT t.is_called AND EXISTS (SELECT 1 FROM mtask.tasks))
                OR (NOT r.is_called AND EXISTS (SELECT 1 FROM mtask.runs)),
            t.is_called AND r.is_called
        FROM mtask.tasks_id_seq t, mtask.runs_id_seq r";
    let state = Spi::connect_mut(|client| {
        let rows = plans::execute(client, QUERY, &[], Some(1), &[])?;
        match rows.first() {
            Some(row) => Ok((row.get::<bool>(1)?, row.get::<bool>(2)?)),
            None => Ok::<_, pgrx::spi::SpiError>((None, None)),
        }
    });
    match state.unwrap_or_else(|e| error!("{e}")) {
        (restoring, Some(true)) => (restoring == Some(true), Restore::Done),
        (restoring, _) => (restoring == Some(true), Restore::Unsure),
    }
}
