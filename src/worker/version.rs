//! Whether this database holds the schema this library was built for. Until
//! it does (an ALTER EXTENSION mtask UPDATE is due), the worker runs nothing
//! and the pool's first worker says so, once per version.

use crate::report::warn;
use crate::shmem;
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;

pub struct SchemaCheck {
    slot: usize,
    /// Looked up since the last wake-up: once per wake-up, not per task.
    checked: bool,
    ready: bool,
    /// The mismatched version already warned about.
    warned: Option<String>,
}

impl SchemaCheck {
    pub fn new(slot: usize) -> SchemaCheck {
        SchemaCheck { slot, checked: false, ready: false, warned: None }
    }

    /// Looks again at the next call: an ALTER EXTENSION may have come.
    pub fn forget(&mut self) {
        self.checked = false;
    }

    /// Whether the installed schema is this library's; in a transaction.
    /// Also tells the launcher, through shared memory, whether mtask is
    /// installed here at all. `leads`: this worker speaks for the pool.
    pub fn ready(&mut self, leads: bool) -> bool {
        if self.checked {
            return self.ready;
        }
        const QUERY: &str = "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'mtask')";
        let installed: Option<String> = Spi::get_one(QUERY).unwrap_or_else(|e| error!("{e}"));
        shmem::found(self.slot, if installed.is_some() { shmem::INSTALLED } else { shmem::ABSENT });
        let built = env!("CARGO_PKG_VERSION");
        self.checked = true;
        self.ready = installed.as_deref() == Some(built);
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
        self.ready
    }
}
