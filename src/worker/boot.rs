//! Tasks that run when the server starts (`@reboot`). They wait with no
//! time to run at; the first worker in each database after the server
//! started makes those due that have not run since, and were there before
//! it started. Nothing runs on a standby, so neither do they: a promoted
//! standby runs those that have not run since it started.

use pgrx::prelude::*;

const MAKE_DUE: &str = "
    UPDATE mtask.tasks SET next_run_at = now()
    WHERE schedule = '@reboot' AND status = 'scheduled' AND next_run_at IS NULL
      AND created_at < pg_catalog.pg_postmaster_start_time()
      AND (last_run_at IS NULL OR last_run_at < pg_catalog.pg_postmaster_start_time())";

/// Makes this start's `@reboot` tasks due; in a transaction.
pub fn make_due() {
    Spi::run(MAKE_DUE).unwrap_or_else(|e| error!("{e}"));
}
