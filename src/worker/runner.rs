//! A runner (backend type "mtask runner"): started by a worker, or by CALL
//! mtask.run, to run one command in another database (see
//! `executor/elsewhere.rs`). It connects there, runs the command as the task's
//! owner, as a pool worker would run it here, hands the outcome back, and
//! exits.

use super::transaction;
use crate::executor::{self, Command, Outcome, What, elsewhere, session};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn mtask_runner_main(arg: pg_sys::Datum) {
    super::set_up_signals();
    let Some((request, segment)) = elsewhere::request(arg.value() as pg_sys::dsm_handle) else {
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(request.database), None);
    session::pin_worker_search_path();
    session::note_baseline();
    let command = Command {
        what: What::Sql(request.command.as_str().into()),
        owner: request.owner,
        timeout_ms: request.timeout_ms,
        elsewhere: None,
    };
    let outcome = if request.transactional {
        // A failure to commit (a deferred constraint, say) is the run's.
        transaction::run(|| Spi::connect_mut(|client| executor::run_in_transaction(client, &command)))
            .unwrap_or_else(Outcome::failed)
    } else {
        executor::run_outside(&command)
    };
    elsewhere::answer(segment, &outcome);
}
