//! SQL functions implemented in Rust. The user-facing API (`mtask.schedule`,
//! `mtask.pause`, ...) is SQL in `sql/`; it and the tasks table's trigger call
//! these helpers, so that direct DML on `mtask.tasks` gets the same checks.

use crate::{guc, pg_schedule};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in the postmaster when it preloads mtask; every backend inherits it.
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

/// The canonical form of a schedule text, or an ERROR with a hint.
#[pg_extern(stable, parallel_safe, name = "_normalize_schedule")]
fn normalize_schedule(schedule: Option<&str>) -> String {
    pg_schedule::parse_or_raise(schedule.unwrap_or("")).to_string()
}

/// The first run of `schedule`, anchored at `anchor`, at or after `not_before`.
#[pg_extern(stable, parallel_safe, name = "_next_run")]
fn next_run(
    schedule: &str,
    anchor: TimestampWithTimeZone,
    not_before: TimestampWithTimeZone,
) -> Option<TimestampWithTimeZone> {
    let schedule = pg_schedule::parse_or_raise(schedule);
    let anchor = pg_schedule::instant_or_raise("start_at", anchor);
    let not_before = pg_schedule::instant_or_raise("not_before", not_before);
    schedule.next_run(anchor, not_before).map(pg_schedule::to_pg)
}

/// Warns when tasks created in this session would not run.
#[pg_extern(volatile, name = "_check_scheduler")]
fn check_scheduler() {
    if !PRELOADED.load(Ordering::Relaxed) {
        warn(
            "mtask's scheduler is not running",
            "Add mtask to shared_preload_libraries in postgresql.conf and restart PostgreSQL.",
        );
        return;
    }
    let here = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) };
    let there = guc::database();
    if here.to_bytes() != there.as_bytes() {
        warn(
            &format!(
                "mtask's scheduler runs tasks in database \"{there}\", not in \"{}\"",
                here.to_string_lossy()
            ),
            "Create tasks in that database, or set mtask.database and restart PostgreSQL.",
        );
    } else if !guc::enabled() {
        warn(
            "mtask.enabled is off: tasks will not run until it is turned on",
            "Set mtask.enabled = on and reload the configuration.",
        );
    }
}

fn warn(message: &str, hint: &str) {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        message.to_string(),
        "mtask",
    )
    .set_hint(hint)
    .report(pgrx::PgLogLevel::WARNING);
}
