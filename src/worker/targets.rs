//! Tasks that run in another database whose database is gone: dropped, or
//! renamed. A worker pauses them, with why, when the launcher has seen a
//! database go; one that comes due before that is paused when claimed
//! (`claim.rs`, `Task::refusal`).

use super::claim::database_gone;
use super::finish::pause_reason;
use pgrx::prelude::*;

const GONE: &str = "
    SELECT DISTINCT t.database FROM mtask.tasks t
    WHERE t.database IS NOT NULL AND t.status = 'scheduled'
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_database d WHERE d.datname = t.database)";

const PAUSE: &str =
    "UPDATE mtask.tasks SET status = 'paused', pause_reason = $2 WHERE database = $1 AND status = 'scheduled'";

/// Pauses the tasks whose database is gone; in a transaction.
pub fn pause_where_gone() {
    Spi::connect_mut(|client| {
        let gone: Vec<String> = client
            .select(GONE, None, &[])
            .and_then(|rows| rows.map(|row| row.get::<String>(1)).filter_map(Result::transpose).collect())
            .unwrap_or_else(|e| error!("{e}"));
        for name in gone {
            let (failure, remedy) = database_gone(&name);
            let reason = pause_reason(&failure, remedy);
            client
                .update(PAUSE, None, &[name.as_str().into(), reason.as_str().into()])
                .unwrap_or_else(|e| error!("{e}"));
        }
    });
}
