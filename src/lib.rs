//! mtask: a task scheduler that runs inside PostgreSQL.
//!
//! The functional core (`schedule`, `lifecycle`) is plain Rust; the rest is the
//! Postgres shell around it. See docs/DESIGN.md.

::pgrx::pg_module_magic!();

mod api;
mod executor;
mod guc;
pub mod lifecycle;
mod pg_schedule;
pub mod retention;
pub mod retry;
mod roles;
pub mod schedule;
mod shmem;
mod utility;
mod worker;

use pgrx::prelude::*;
use std::sync::atomic::Ordering;

// A new installation replays the schema as released in 0.1.0 and then every
// upgrade script, in order: what `CREATE EXTENSION` builds is by construction
// what `ALTER EXTENSION mtask UPDATE` builds. A script that re-declares a
// Rust function comes after pgrx's own declaration of it.
pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../sql/mtask--0.1.0--0.2.0.sql", name = "upgrade_0_2_0", requires = [api::wake_at_commit]);
pgrx::extension_sql_file!(
    "../sql/mtask--0.2.0--0.3.0.sql",
    name = "upgrade_0_3_0",
    requires = ["upgrade_0_2_0", api::check_program]
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    guc::init();
    utility::init();
    if preloading {
        api::PRELOADED.store(true, Ordering::Relaxed);
        shmem::init();
        worker::register();
    }
}
