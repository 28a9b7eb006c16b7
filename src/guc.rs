//! mtask's settings. Everything the worker reads at run time goes through here.

use mtask_core::lifecycle::Catchup;
use mtask_core::retention::LogRuns;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;
use std::time::Duration;

pub static DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TIMEZONE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"UTC"));
pub static MISSED_GRACE_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
pub static MAX_CATCHUP: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(4);
pub static WORKER_IDLE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static DEFAULT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static LOG_RUNS: GucSetting<LogRunsSetting> = GucSetting::<LogRunsSetting>::new(LogRunsSetting::All);
pub static HISTORY_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);
pub static HISTORY_MAX_PER_TASK: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static DELIVER_LATE_S: GucSetting<i32> = GucSetting::<i32>::new(24 * 3600);
pub static PROGRAM_OUTPUT_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024);
pub static LOG_FAILURES: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static LOG_STATEMENT: GucSetting<bool> = GucSetting::<bool>::new(false);

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogRunsSetting {
    #[name = c"all"]
    All,
    #[name = c"failures"]
    Failures,
    #[name = c"none"]
    None,
}

pub fn init() {
    GucRegistry::define_string_guc(
        c"mtask.databases",
        c"The databases in which mtask runs tasks, comma-separated; empty: every database where it is installed.",
        c"The launcher starts workers in each of these that has the extension, and in no other.",
        &DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mtask.naptime",
        c"Longest time an idle worker sleeps between looks at the task table.",
        c"Workers wake at the earliest next_run_at and when a due task commits; this bounds the rest, e.g. a task whose row another transaction held locked.",
        &NAPTIME_MS,
        10,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"mtask.enabled",
        c"Whether mtask's scheduler runs due tasks.",
        c"When off, the scheduler keeps running but starts no task; due tasks wait.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"mtask.timezone",
        c"Time zone of tasks scheduled without one.",
        c"An IANA name; cron fields are read as wall-clock time in the task's time zone.",
        &TIMEZONE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mtask.missed_grace",
        c"How late a run may start before a task with missed = 'skip' passes it over.",
        c"A slot that the scheduler reaches later than this, after downtime or a pause, counts as missed.",
        &MISSED_GRACE_MS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
                c"mtask.max_workers",
        c"How many tasks run at the same time, in all databases together.",
        c"Each runs in a worker, a background worker started where tasks are due: max_worker_processes must leave room for them and the launcher.",
        &MAX_WORKERS,
        1,
        crate::shmem::MAX_WORKERS as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mtask.worker_idle_timeout",
        c"How long a worker stays in its database with nothing due before it exits.",
        c"The launcher starts a worker again when a task there comes due.",
        &WORKER_IDLE_TIMEOUT_MS,
        0,
        86_400_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"mtask.default_timeout",
        c"How long a run of a task without a timeout of its own may take; 0 means no limit.",
        c"A run past its timeout is cancelled and recorded with status 'timeout'.",
        &DEFAULT_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_enum_guc(
        c"mtask.log_runs",
        c"Which runs are recorded in mtask.runs: all, failures or none.",
        c"A task's own log_runs overrides it. The task's last_* columns say how its last run went either way.",
        &LOG_RUNS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mtask.history_max_age",
        c"How long the run history is kept; 0 keeps it for ever.",
        c"The scheduler deletes older runs in small batches. A task's own history_max_age overrides it.",
        &HISTORY_MAX_AGE_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"mtask.history_max_per_task",
        c"How many runs of each task the history keeps; 0 keeps all.",
        c"The scheduler deletes a task's older runs past this in small batches. A task's own history_max_per_task overrides it.",
        &HISTORY_MAX_PER_TASK,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mtask.deliver_late",
        c"How old an event that found no listener may be and still go to a listener that comes later; 0: never.",
        c"mtask.listen() delivers such events to the new listener; older ones stay unhandled until purged.",
        &DELIVER_LATE_S,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"mtask.program_output_limit",
        c"How much of a program task's stdout, and of its stderr, a run record keeps.",
        c"The rest is read and dropped, and the record says how many bytes were not kept.",
        &PROGRAM_OUTPUT_LIMIT,
        0,
        1024 * 1024 * 1024,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_bool_guc(
        c"mtask.log_failures",
        c"Whether each failed, timed-out or crashed run is logged.",
        c"One LOG line per run, with the database, the task's id and name, the attempt, the SQLSTATE and the message.",
        &LOG_FAILURES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"mtask.log_statement",
        c"Whether the start of each run is logged, with its command.",
        c"As pg_cron's cron.log_statement.",
        &LOG_STATEMENT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"mtask.max_catchup",
        c"Most missed runs that a task with missed = 'all' catches up on.",
        c"When more slots were missed, only the latest this many run; the older ones are recorded as skipped.",
        &MAX_CATCHUP,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// The databases `mtask.databases` names, or None when it names none (all).
pub fn databases() -> Option<Vec<String>> {
    let text = DATABASES.get()?.to_string_lossy().into_owned();
    let names: Vec<String> = text.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    (!names.is_empty()).then_some(names)
}

pub fn naptime() -> Duration {
    Duration::from_millis(NAPTIME_MS.get().max(1) as u64)
}

pub fn catchup() -> Catchup {
    Catchup {
        grace: chrono::Duration::milliseconds(MISSED_GRACE_MS.get().into()),
        max_catchup: MAX_CATCHUP.get().max(1) as u32,
    }
}

pub fn default_timeout_ms() -> i32 {
    DEFAULT_TIMEOUT_MS.get()
}

pub fn log_runs() -> LogRuns {
    match LOG_RUNS.get() {
        LogRunsSetting::All => LogRuns::All,
        LogRunsSetting::Failures => LogRuns::Failures,
        LogRunsSetting::None => LogRuns::None,
    }
}

/// The history limits: (max age in seconds, max runs per task), 0 for none.
pub fn history_limits() -> (i32, i32) {
    (HISTORY_MAX_AGE_S.get(), HISTORY_MAX_PER_TASK.get())
}

pub fn program_output_limit() -> usize {
    PROGRAM_OUTPUT_LIMIT.get().max(0) as usize
}

pub fn max_workers() -> usize {
    MAX_WORKERS.get().clamp(1, crate::shmem::MAX_WORKERS as i32) as usize
}

pub fn worker_idle_timeout() -> Duration {
    Duration::from_millis(WORKER_IDLE_TIMEOUT_MS.get().max(0) as u64)
}

pub fn enabled() -> bool {
    ENABLED.get()
}

pub fn timezone() -> String {
    TIMEZONE.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_else(|| "UTC".into())
}

pub fn log_failures() -> bool {
    LOG_FAILURES.get()
}

pub fn log_statement() -> bool {
    LOG_STATEMENT.get()
}
