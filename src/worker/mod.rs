//! The scheduler background worker: registration here, the loop in
//! `scheduler`, the SQL on task rows in `store`.

mod scheduler;
mod store;

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use std::time::Duration;

pub fn register() {
    BackgroundWorkerBuilder::new("mtask scheduler")
        .set_type("mtask scheduler")
        .set_library("mtask")
        .set_function("mtask_scheduler_main")
        .enable_spi_access()
        // Not on a standby: it starts when recovery ends, i.e. on promotion.
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // pgrx's default is never to restart; a crashed scheduler must come back.
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}
