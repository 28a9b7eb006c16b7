//! mtask: a task scheduler that runs inside PostgreSQL.
//!
//! This crate is the Postgres shell around the functional core in
//! `mtask-core` (schedules, lifecycle, retry and history policy). A task
//! goes API (`sql/api.sql`) → `mtask.tasks` → a worker claims it
//! (`worker/claim.rs`) → `executor` → its run is recorded
//! (`worker/record.rs`). See docs/DESIGN.md.

::pgrx::pg_module_magic!();

mod api;
mod compat;
mod executor;
mod guc;
mod pg_schedule;
mod process;
mod report;
mod roles;
mod run_here;
mod shmem;
mod utility;
mod worker;

// The install script: the tables, then the topic files in this order. The
// update script from the last release is sql/updates/<from>--<to>.sql
// followed by the same topic files, in the same order (scripts/sql.sh
// reads this list), so that CREATE EXTENSION and ALTER EXTENSION UPDATE
// cannot drift apart.
pgrx::extension_sql_file!("../sql/tables.sql", name = "tables", bootstrap);
pgrx::extension_sql_file!("../sql/native.sql", name = "native", requires = ["tables"]);
pgrx::extension_sql_file!("../sql/triggers.sql", name = "triggers", requires = ["native"]);
pgrx::extension_sql_file!("../sql/api.sql", name = "api", requires = ["triggers"]);
pgrx::extension_sql_file!("../sql/events.sql", name = "events", requires = ["api"]);
pgrx::extension_sql_file!("../sql/pg_cron.sql", name = "pg_cron", requires = ["events"]);
pgrx::extension_sql_file!("../sql/views.sql", name = "views", requires = ["pg_cron"]);
pgrx::extension_sql_file!("../sql/grants.sql", name = "grants", requires = ["views"]);
pgrx::extension_sql_file!("../sql/comments.sql", name = "comments", requires = ["grants"]);
pgrx::extension_sql_file!("../sql/cleanup.sql", name = "cleanup", finalize);

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    report::no_backtraces();
    guc::init();
    utility::init();
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        process::preloaded();
        shmem::init();
        // Nothing runs while pg_upgrade has the server up (binary-upgrade
        // mode): it starts each cluster only to read or restore its
        // catalogs, and a pool worker connected to a database would keep it
        // from dropping and restoring that database.
        if !unsafe { pgrx::pg_sys::IsBinaryUpgrade } {
            worker::register();
        }
    }
}
