//! SQL functions implemented in Rust. The user-facing API (`mtask.schedule`,
//! `mtask.pause`, ...) is SQL in `sql/`; it and the tasks table's trigger call
//! these helpers, so that direct DML on `mtask.tasks` gets the same checks.

use crate::{guc, pg_schedule};
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, PgXactCallbackEvent};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in the postmaster when it preloads mtask; every backend inherits it.
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

/// The canonical form of a schedule text, or an ERROR with a hint.
#[pg_extern(stable, parallel_safe, name = "_normalize_schedule")]
fn normalize_schedule(schedule: Option<&str>) -> String {
    pg_schedule::parse_or_raise(schedule.unwrap_or("")).to_string()
}

/// The canonical name of a time zone; NULL means `mtask.timezone`.
#[pg_extern(stable, parallel_safe, name = "_normalize_timezone")]
fn normalize_timezone(timezone: Option<&str>) -> String {
    pg_schedule::time_zone_or_raise(timezone).name().to_string()
}

/// The first run of `schedule` in `timezone`, anchored at `anchor`, at or
/// after `not_before`.
#[pg_extern(stable, parallel_safe, name = "_next_run")]
fn next_run(
    schedule: &str,
    timezone: &str,
    anchor: TimestampWithTimeZone,
    not_before: TimestampWithTimeZone,
) -> Option<TimestampWithTimeZone> {
    let schedule = pg_schedule::parse_or_raise(schedule);
    let tz = pg_schedule::time_zone_or_raise(Some(timezone));
    let anchor = pg_schedule::instant_or_raise("start_at", anchor);
    let not_before = pg_schedule::instant_or_raise("not_before", not_before);
    schedule.next_run(anchor, not_before, tz).map(pg_schedule::to_pg)
}

/// An ERROR with a hint unless `command` splits into a program and its
/// arguments.
#[pg_extern(stable, parallel_safe, name = "_check_program")]
pub(crate) fn check_program(command: &str) {
    if let Err(why) = crate::executor::program::split(command) {
        pg_schedule::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            why,
            "Give the program and its arguments as words, quoted as in a shell: 'pg_dump -f \"/backups/my db.sql\" mydb'. No shell runs it; for pipes or redirection, use sh -c '...'.".into(),
        );
    }
}

/// What a schedule will do: its next `n` runs from `from`, for a task
/// created at `from` in `timezone` (default `mtask.timezone`).
#[pg_extern(stable, parallel_safe)]
fn next_runs(
    schedule: &str,
    n: default!(i32, 5),
    from: default!(TimestampWithTimeZone, "now()"),
    timezone: default!(Option<&str>, "NULL"),
) -> SetOfIterator<'static, TimestampWithTimeZone> {
    if !(0..=10_000).contains(&n) {
        pg_schedule::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("n must be between 0 and 10000, not {n}"),
            "Ask for fewer runs at a time, from a later start.".into(),
        );
    }
    let schedule = pg_schedule::parse_or_raise(schedule);
    let tz = pg_schedule::time_zone_or_raise(timezone);
    let anchor = pg_schedule::instant_or_raise("from", from);
    let first = schedule.next_run(anchor, anchor, tz);
    let runs = std::iter::successors(first, move |prev| schedule.following_run(anchor, *prev, *prev, tz));
    SetOfIterator::new(runs.take(n as usize).map(pg_schedule::to_pg))
}

/// Set while this transaction has asked to wake the pool at commit.
static WAKE_PENDING: AtomicBool = AtomicBool::new(false);

/// Wakes the pool's workers when this transaction commits, so that a task it
/// made due starts at once instead of at the next naptime. Called by the
/// tasks trigger; a no-op in a pool worker, which looks again after each run.
#[pg_extern(volatile, name = "_wake_at_commit")]
pub(crate) fn wake_at_commit() {
    if !PRELOADED.load(Ordering::Relaxed)
        || crate::worker::runner::IN_POOL.load(Ordering::Relaxed)
        || WAKE_PENDING.swap(true, Ordering::Relaxed)
    {
        return;
    }
    pgrx::register_xact_callback(PgXactCallbackEvent::Commit, || {
        WAKE_PENDING.store(false, Ordering::Relaxed);
        crate::shmem::wake_workers();
    });
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, || {
        WAKE_PENDING.store(false, Ordering::Relaxed);
    });
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
    let here = here.to_string_lossy();
    if let Some(list) = guc::databases().filter(|list| !list.iter().any(|d| *d == here)) {
        warn(
            &format!("mtask.databases does not include \"{here}\", so its tasks will not run"),
            &format!("Add it to mtask.databases (now '{}') and reload the configuration.", list.join(",")),
        );
    } else if !guc::enabled() {
        warn(
            "mtask.enabled is off: tasks will not run until it is turned on",
            "Set mtask.enabled = on and reload the configuration.",
        );
    }
}

fn warn(message: &str, hint: &str) {
    pg_schedule::report(
        pgrx::PgLogLevel::WARNING,
        PgSqlErrorCode::ERRCODE_WARNING,
        message.to_string(),
        hint.to_string(),
    );
}
