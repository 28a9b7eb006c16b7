//! CALL mtask.run(task): runs a task now, in the caller's session, as the
//! scheduler would run it: as its owner, under its timeout, its run
//! recorded and its task moved on as after a run by hand (its schedule
//! where it was), and an error recorded and raised to the caller.
//!
//! - A transactional task runs in a subtransaction of the caller's
//!   transaction, and its record is written in that transaction: they
//!   commit together, as in the pool. Called outside a transaction block,
//!   a failed run's record is committed before the error is raised;
//!   inside one, the error rolls it back with the rest of the caller's
//!   work.
//! - A non-transactional task called outside a transaction block is
//!   committed as 'running' first, runs statement by statement
//!   (`executor::in_procedure`), and is recorded in a transaction of its
//!   own; inside a transaction block it runs as a transactional one does.
//! - A task that runs in another database runs there, in a worker started
//!   for it, as it would from the pool (`executor::elsewhere`).
//!
//! The run is on the run board while it lasts, so mtask.running shows it;
//! its bookkeeping is written as the bootstrap superuser, since users may
//! not write a task's counters or its runs.

use crate::executor::{self, What, in_procedure, subxact};
use crate::report::raise;
use crate::roles::as_mtask;
use crate::worker::claim::{self, Task};
use crate::worker::finish::{self, Claimed, Verdict};
use crate::worker::record;
use crate::{pg_schedule, process, shmem};
use mtask_core::states::Status;
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_run_by_id_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_run_by_name_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// `mtask.run(task_id bigint)`.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn run_by_id_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let id = unsafe { pgrx::pg_getarg::<i64>(fcinfo, 0) }.unwrap_or_else(|| not_null());
    // Raises as for any task one may not see.
    Spi::get_one_with_args::<String>("SELECT mtask._task_status($1)", &[id.into()]).unwrap_or_else(|e| error!("{e}"));
    run(id, unsafe { non_atomic(fcinfo) });
    pg_sys::Datum::from(0)
}

/// `mtask.run(task_name text)`: one of the caller's own tasks.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn run_by_name_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let name = unsafe { pgrx::pg_getarg::<&str>(fcinfo, 0) }.unwrap_or_else(|| not_null());
    let id = Spi::get_one_with_args::<i64>("SELECT mtask._task_id($1)", &[name.into()])
        .unwrap_or_else(|e| error!("{e}"))
        .unwrap_or_else(|| not_null());
    run(id, unsafe { non_atomic(fcinfo) });
    pg_sys::Datum::from(0)
}

fn not_null() -> ! {
    raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "the task must not be NULL", "Name a task, or give its id.")
}

/// Whether the CALL may commit: made outside a transaction block.
unsafe fn non_atomic(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    unsafe {
        let context = (*fcinfo).context;
        !context.is_null()
            && (*context).type_ == pg_sys::NodeTag::T_CallContext
            && !(*context.cast::<pg_sys::CallContext>()).atomic
            && !pg_sys::IsTransactionBlock()
    }
}

fn run(id: i64, non_atomic: bool) {
    // Outside a transaction block the call may commit: the record of a
    // failed run, and a non-transactional task's statements.
    if non_atomic {
        unsafe { pg_sys::SPI_connect_ext(pg_sys::SPI_OPT_NONATOMIC as i32) };
    }
    let claimed = as_mtask(|client| {
        let row = claim::by_id(client, id).unwrap_or_else(|e| error!("{e}")).unwrap_or_else(|| not_null());
        let mut task = Task::from_row(&row).unwrap_or_else(|why| {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("task {id} cannot run: {why}"),
                "Correct it first.",
            )
        });
        if task.status == Status::Running {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("task {id} is running"),
                "A task never runs twice at once; call it again when its run has ended.",
            );
        }
        if let Some((failure, remedy)) = task.refusal() {
            raise(failure.code.unwrap_or(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE), failure.message, remedy);
        }
        task.manual = Some((task.status, row.next_run_at.and_then(pg_schedule::to_chrono)));
        let started = finish::now();
        let slot = pg_schedule::to_chrono(started).expect("now is finite");
        let run_id = (task.outside && non_atomic).then(|| {
            let (run_id, xmin) = record::start_run(client, task.id, slot, task.timing.attempt, started)
                .unwrap_or_else(|e| error!("{e}"));
            task.xmin = xmin;
            run_id
        });
        Claimed { task, slot, started, run_id }
    });
    let place = process::is_preloaded().then(|| shmem::session_running(finish::on_board(&claimed))).flatten();
    finish::log_start(&claimed.task);
    let command = claimed.task.command();
    if claimed.run_id.is_some() {
        commit();
    }
    let outcome = match (&command.what, claimed.run_id.is_some()) {
        _ if command.elsewhere.is_some() => executor::run_outside(&command),
        (What::Program { command: program, stdin }, _) => executor::program::run(program, *stdin, command.timeout_ms),
        (What::Sql(sql), true) => in_procedure::run(sql, command.owner, command.timeout_ms),
        (What::Sql(sql), false) => as_mtask(|client| subxact::run(client, sql, command.owner, command.timeout_ms)),
    };
    let failure = outcome.failure.clone();
    let verdict = Verdict::Ran { succeeded: failure.is_none() };
    as_mtask(|client| finish::finish(client, &claimed, outcome, verdict));
    if let Some(place) = place {
        shmem::session_run_ended(place);
    }
    if non_atomic {
        if failure.is_some() {
            commit();
        }
        unsafe { pg_sys::SPI_finish() };
    }
    if let Some(failure) = failure {
        let mut report = ErrorReport::new(
            failure.code.unwrap_or(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR),
            format!("task {id} failed: {}", failure.message),
            "mtask",
        );
        if let Some(detail) = failure.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = failure.hint {
            report = report.set_hint(hint);
        }
        report.report(pgrx::PgLogLevel::ERROR);
    }
}

/// Commits what the call has done so far, and goes on in a new transaction.
fn commit() {
    unsafe {
        pg_sys::SPI_commit();
        pg_sys::SPI_start_transaction();
    }
}
