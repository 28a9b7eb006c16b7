//! Runs a task's command as its owner, and says how it went. What to run is
//! a `Command`; where it runs is the caller's choice:
//! - `run_in_transaction` runs it inside the caller's transaction, in a
//!   subtransaction of its own (`subxact.rs`), so that a failure rolls back
//!   only the command and the caller records it and commits: effects and
//!   record commit together;
//! - `run_outside` runs it with no transaction around it: SQL statement by
//!   statement, each committed on its own, as psql would (`top_level.rs`),
//!   a program (`program.rs`), or a command in another database
//!   (`elsewhere.rs`).

mod command_plans;
mod context;
pub mod elsewhere;
pub mod in_procedure;
pub mod program;
pub mod session;
pub mod statements;
pub mod subxact;
mod timer;
pub mod top_level;

use crate::report::Failure;
use mtask_core::states::RunStatus;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use std::ffi::CStr;

/// What a task runs, as its owner, within its timeout.
pub struct Command<'a> {
    pub what: What<'a>,
    pub owner: pg_sys::Oid,
    /// None or 0: no timeout.
    pub timeout_ms: Option<i32>,
    /// The database it runs in, when not this one.
    pub elsewhere: Option<elsewhere::Elsewhere<'a>>,
}

pub enum What<'a> {
    Sql(std::borrow::Cow<'a, str>),
    /// An executable and its arguments, with what to write on its stdin.
    Program {
        command: &'a str,
        stdin: Option<&'a str>,
    },
}

impl<'a> What<'a> {
    /// A notify task's SQL: `pg_notify(channel, payload)`, with both quoted
    /// by Postgres' own quote_literal, so that no channel or payload can
    /// break out.
    pub fn notify(channel: &str, payload: &str) -> What<'a> {
        let quote = |text: &str| {
            // Text cannot hold a zero byte; cut there, as Postgres' own input would refuse it.
            let text = std::ffi::CString::new(text.split('\0').next().unwrap_or("")).expect("no zero byte");
            let quoted = unsafe { CStr::from_ptr(pg_sys::quote_literal_cstr(text.as_ptr())) };
            quoted.to_string_lossy().into_owned()
        };
        What::Sql(format!("SELECT pg_catalog.pg_notify({}, {})", quote(channel), quote(payload)).into())
    }

    /// The text pg_stat_activity shows while it runs.
    pub fn text(&self) -> &str {
        match self {
            What::Sql(sql) => sql,
            What::Program { command, .. } => command,
        }
    }
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RunStatus,
    /// Why it failed; None when it succeeded.
    pub failure: Option<Failure>,
    /// Rows processed by its last statement.
    pub rows: Option<i64>,
    /// What a program's process left.
    pub program: Option<ProgramOutput>,
}

#[derive(Debug, Clone)]
pub struct ProgramOutput {
    /// None when it was killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn succeeded(rows: Option<i64>) -> Self {
        Outcome { status: RunStatus::Succeeded, failure: None, rows, program: None }
    }

    pub fn failed(failure: Failure) -> Self {
        Outcome { status: RunStatus::Failed, failure: Some(failure), rows: None, program: None }
    }
}

/// The settings may have changed (a reload): kept plans of commands, whose
/// literals were read under the old ones, go.
pub fn forget_command_plans() {
    command_plans::forget();
}

/// Runs `command` in a subtransaction of the caller's transaction.
pub fn run_in_transaction(client: &mut SpiClient<'_>, command: &Command) -> Outcome {
    report_activity(Some(command.what.text()));
    let outcome = match &command.what {
        What::Sql(sql) => subxact::run(client, sql, command.owner, command.timeout_ms),
        What::Program { .. } => unreachable!("a program task is never transactional"),
    };
    // The worker's session is every task's: nothing one leaves may stay.
    session::clean();
    report_activity(None);
    outcome
}

/// Runs `command` outside any transaction; call it outside one.
pub fn run_outside(command: &Command) -> Outcome {
    report_activity(Some(command.what.text()));
    let outcome = match (&command.what, &command.elsewhere) {
        (_, Some(place)) => elsewhere::run(place, command),
        (What::Sql(sql), None) => top_level::run(sql, command.owner, command.timeout_ms),
        (What::Program { command: program, stdin }, None) => program::run(program, *stdin, command.timeout_ms),
    };
    report_activity(None);
    outcome
}

/// What pg_stat_activity shows of the worker: the running command, or idle.
fn report_activity(command: Option<&str>) {
    let state = if command.is_some() { pg_sys::BackendState::STATE_RUNNING } else { pg_sys::BackendState::STATE_IDLE };
    let text = command.and_then(|c| std::ffi::CString::new(c).ok());
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())) };
}
