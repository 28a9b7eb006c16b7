//! SQL functions implemented in Rust. Their SQL declarations are in
//! `sql/native.sql` (`sql = false` here), so that an update declares them
//! exactly as a new installation does. The user-facing API is SQL in
//! `sql/api.sql`; it and the tasks triggers call these helpers, so that
//! plain DML on `mtask.tasks` gets the same checks.

use crate::report::{raise, warn};
use crate::shmem::{self, databases};
use crate::{guc, pg_schedule, process};
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, PgXactCallbackEvent};
use std::sync::atomic::{AtomicI64, Ordering};

/// The canonical form of a schedule text, or an ERROR with a hint.
#[pg_extern(sql = false)]
fn normalize_schedule(schedule: Option<&str>) -> String {
    pg_schedule::parse_or_raise(schedule.unwrap_or("")).to_string()
}

/// The canonical name of a time zone; NULL means `mtask.timezone`.
#[pg_extern(sql = false)]
fn normalize_timezone(timezone: Option<&str>) -> String {
    pg_schedule::time_zone_or_raise(timezone).name().to_string()
}

/// The first run of `schedule` in `timezone`, anchored at `anchor`, at or
/// after `not_before`.
#[pg_extern(sql = false)]
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
    schedule.next_run(anchor, not_before, tz).and_then(pg_schedule::to_pg)
}

/// An ERROR with a hint unless `command` splits into a program and its
/// arguments.
#[pg_extern(sql = false)]
fn check_program(command: &str) {
    if let Err(why) = crate::executor::program::split(command) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            why,
            "Give the program and its arguments as words, quoted as in a shell: 'pg_dump -f \"/backups/my db.sql\" mydb'. No shell runs it; for pipes or redirection, use sh -c '...'.",
        );
    }
}

/// How many statements a task's SQL holds: an ERROR, with a hint, if it
/// does not parse. Parsing alone looks no name up, so a command may name
/// tables that do not exist yet.
#[pg_extern(sql = false)]
fn check_sql(command: &str) -> i32 {
    let Ok(text) = std::ffi::CString::new(command) else {
        raise(PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, "a command cannot contain a zero byte", "Remove it.")
    };
    let statements = PgTryBuilder::new(|| unsafe {
        pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::raw_parser(
            text.as_ptr(),
            pg_sys::RawParseMode::RAW_PARSE_DEFAULT,
        ))
        .len()
    })
    .catch_others(|err| {
        let failure = crate::report::Failure::caught(&err);
        raise(
            failure.code.unwrap_or(PgSqlErrorCode::ERRCODE_SYNTAX_ERROR),
            format!("{failure} in the task's command"),
            "mtask parses a task's SQL when it is scheduled; correct it, or run it by hand first to see what it does.",
        )
    })
    .execute();
    statements as i32
}

/// Whether a statement of `command` cannot run in a transaction block, so
/// that a task of it runs top-level unless it says otherwise.
#[pg_extern(sql = false)]
fn needs_top_level(command: &str) -> bool {
    crate::executor::statements::need_top_level(command)
}

/// The command tag psql would print for `command`: its last statement's,
/// with the rows it processed where psql shows them.
#[pg_extern(sql = false)]
fn command_tag(command: Option<&str>, rows: Option<i64>) -> Option<String> {
    crate::executor::statements::completion_tag(command?, rows.unwrap_or(0))
}

/// The mtask schedule that a pg_cron schedule text means, or pg_cron's ERROR.
#[pg_extern(sql = false)]
fn pg_cron_schedule(schedule: &str) -> String {
    mtask_core::schedule::pg_cron::to_mtask(schedule)
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.message(), e.hint()))
}

/// Whether the rows being written are a restore: a COPY into mtask's tables
/// by a superuser, which is what pg_dump's data sections are, whether psql
/// or pg_restore plays them. The triggers then take the rows as they were
/// dumped: every status, counter and next_run_at, which they would refuse
/// or derive again from a user. It needs no hook, so that a restore into a
/// server that does not preload mtask works too.
#[pg_extern(sql = false)]
fn restoring() -> bool {
    unsafe {
        let portal = pg_sys::ActivePortal;
        pg_sys::superuser() && !portal.is_null() && (*portal).commandTag == pg_sys::CommandTag::CMDTAG_COPY
    }
}

/// Whether the current user is a superuser: inside a task, its owner, not
/// the worker's session.
#[pg_extern(sql = false)]
fn is_superuser() -> bool {
    unsafe { pg_sys::superuser() }
}

/// What a schedule will do: its next `n` runs from `from`, for a task
/// created at `from` in `timezone` (default `mtask.timezone`).
#[pg_extern(sql = false)]
fn next_runs(
    schedule: Option<&str>,
    n: Option<i32>,
    from: Option<TimestampWithTimeZone>,
    timezone: Option<&str>,
) -> SetOfIterator<'static, TimestampWithTimeZone> {
    let given = |what: &str| {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be NULL"),
            "mtask.next_runs(schedule, n, from, timezone): only timezone may be left NULL (for mtask.timezone).",
        )
    };
    let (Some(schedule), Some(n), Some(from)) = (schedule, n, from) else {
        given(if schedule.is_none() {
            "the schedule"
        } else if n.is_none() {
            "n"
        } else {
            "from"
        })
    };
    if !(0..=10_000).contains(&n) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("n must be between 0 and 10000, not {n}"),
            "Ask for fewer runs at a time, from a later start.",
        );
    }
    let schedule = pg_schedule::parse_or_raise(schedule);
    let tz = pg_schedule::time_zone_or_raise(timezone);
    let anchor = pg_schedule::instant_or_raise("from", from);
    let first = schedule.next_run(anchor, anchor, tz);
    let runs = std::iter::successors(first, move |prev| schedule.following_run(anchor, *prev, *prev, tz));
    SetOfIterator::new(runs.take(n as usize).map_while(pg_schedule::to_pg))
}

/// The earliest due time this transaction has made, to be said at commit;
/// NOTHING_DUE when it has made none.
static WAKE_DUE: AtomicI64 = AtomicI64::new(databases::NOTHING_DUE);

/// Says at commit that this transaction made a task due at `due`: the
/// database's workers wake, and the launcher too when none of them is idle
/// to take it, so that the task starts on time instead of at the next
/// naptime. Called by the tasks trigger; a no-op in a pool worker, which
/// looks again after each run.
#[pg_extern(sql = false)]
fn wake_due_at_commit(due: TimestampWithTimeZone) {
    if !process::is_preloaded() || process::is_pool_worker() {
        return;
    }
    let due = i64::from(due);
    if WAKE_DUE.fetch_min(due, Ordering::Relaxed) != databases::NOTHING_DUE {
        return;
    }
    pgrx::register_xact_callback(PgXactCallbackEvent::Commit, || {
        let due = WAKE_DUE.swap(databases::NOTHING_DUE, Ordering::Relaxed);
        let database = unsafe { pg_sys::MyDatabaseId };
        match databases::lower_due(database, due) {
            // Not known to the launcher yet: a database created since it looked.
            None => shmem::ask_launcher_to_look_again(),
            Some(sooner) if sooner && !shmem::has_idle_worker(database) => shmem::wake_launcher(),
            Some(_) => {}
        }
        shmem::wake_workers(database);
    });
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, || {
        WAKE_DUE.store(databases::NOTHING_DUE, Ordering::Relaxed);
    });
}

/// The wake-up of mtask 0.3.0 and older, whose trigger does not say when
/// the task is due: as if it were due now. Their install scripts name it,
/// and a database runs them until ALTER EXTENSION mtask UPDATE.
#[pg_extern(sql = false)]
fn wake_at_commit() {
    wake_due_at_commit(pgrx::datetime::now());
}

/// Warns when tasks created in this session would not run.
#[pg_extern(sql = false)]
fn check_scheduler() {
    let code = PgSqlErrorCode::ERRCODE_WARNING;
    if !process::is_preloaded() {
        warn(
            code,
            "mtask's scheduler is not running",
            "Add mtask to shared_preload_libraries in postgresql.conf and restart PostgreSQL.",
        );
        return;
    }
    let here = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) };
    let here = here.to_string_lossy();
    if let Some(list) = guc::databases().filter(|list| !list.iter().any(|d| *d == here)) {
        warn(
            code,
            format!("mtask.databases does not include \"{here}\", so its tasks will not run"),
            format!("Add it to mtask.databases (now '{}') and reload the configuration.", list.join(",")),
        );
    } else if !guc::enabled() {
        warn(
            code,
            "mtask.enabled is off: tasks will not run until it is turned on",
            "Set mtask.enabled = on and reload the configuration.",
        );
    } else if databases::get(unsafe { pg_sys::MyDatabaseId }).is_some_and(|d| d.short_of_processes) {
        warn(
            code,
            format!("no mtask worker could start for database \"{here}\": max_worker_processes is used up"),
            "Its tasks wait until a background worker process is free. Raise max_worker_processes (the server log \
             says to what) and restart PostgreSQL.",
        );
    }
}

/// The runs in progress in this database now, from the run board: each
/// worker's, and those of CALL mtask.run in users' sessions. Only those of
/// tasks the caller may see: the board knows no owners, so it asks
/// mtask.tasks, whose row-level security decides.
#[pg_extern(sql = false)]
// pgrx reads the row type from this signature, so it cannot be an alias.
#[allow(clippy::type_complexity)]
fn running() -> TableIterator<
    'static,
    (
        name!(task_id, i64),
        name!(pid, i32),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(attempt, i32),
        name!(scheduled_for, Option<TimestampWithTimeZone>),
    ),
> {
    let mut runs =
        if process::is_preloaded() { crate::shmem::runs_in(unsafe { pg_sys::MyDatabaseId }) } else { Vec::new() };
    let ids: Vec<i64> = runs.iter().map(|r| r.task_id).collect();
    let visible: Vec<i64> = Spi::get_one_with_args::<Vec<i64>>(
        "SELECT coalesce(array_agg(id), '{}') FROM mtask.tasks WHERE id = ANY ($1)",
        &[ids.into()],
    )
    .unwrap_or_else(|e| error!("{e}"))
    .unwrap_or_default();
    runs.retain(|r| visible.contains(&r.task_id));
    let at = |micros: i64| TimestampWithTimeZone::try_from(micros).ok();
    TableIterator::new(
        runs.into_iter().map(move |r| (r.task_id, r.process(), at(r.started_at), r.attempt, at(r.scheduled_for))),
    )
}
