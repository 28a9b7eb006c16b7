//! mtask's ProcessUtility hook: what mtask does around other commands.
//! Installed in every backend that loads mtask.
//!
//! - Role commands carry tasks along with their owner (`roles.rs`).
//! - CREATE EXTENSION mtask asks the launcher, once it commits, to look
//!   again at which databases have mtask, so the new database's workers
//!   start at once rather than at the launcher's next look.
//! - DROP DATABASE first has the launcher take that database's workers
//!   away, since Postgres refuses to drop a database with sessions in it
//!   (and WITH (FORCE) may not terminate superuser sessions for a
//!   non-superuser owner). If the drop fails, the workers come back.

use crate::{roles, shmem};
use pgrx::prelude::*;
use pgrx::{PgXactCallbackEvent, pg_sys};

static mut PREVIOUS_HOOK: pg_sys::ProcessUtility_hook_type = None;

pub fn init() {
    unsafe {
        PREVIOUS_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

#[pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        let tag = (*stmt).type_;
        if tag == pg_sys::NodeTag::T_DropRoleStmt {
            roles::before_drop_role(stmt.cast());
        }
        let run = || match PREVIOUS_HOOK {
            Some(hook) => hook(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => pg_sys::standard_ProcessUtility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        };
        let dropped = dropped_database(stmt, tag);
        match dropped {
            // Postgres waits up to 5 s for other sessions to leave; ours do.
            Some(database) if shmem::drop_begins(database) => {
                PgTryBuilder::new(run)
                    .catch_others(|e| {
                        shmem::drop_ends(database);
                        e.rethrow()
                    })
                    .execute();
                // Once it is gone, tasks elsewhere that name it are paused.
                pgrx::register_xact_callback(PgXactCallbackEvent::Commit, shmem::ask_launcher_to_look_again);
            }
            _ => run(),
        }
        match tag {
            pg_sys::NodeTag::T_ReassignOwnedStmt => roles::after_reassign_owned(stmt.cast()),
            pg_sys::NodeTag::T_DropOwnedStmt => roles::after_drop_owned(stmt.cast()),
            // Only the postmaster's children share mtask's memory.
            pg_sys::NodeTag::T_CreateExtensionStmt if creates_mtask(stmt.cast()) && crate::process::is_preloaded() => {
                pgrx::register_xact_callback(PgXactCallbackEvent::Commit, || {
                    shmem::databases::forget_known(pg_sys::MyDatabaseId);
                    shmem::ask_launcher_to_look_again();
                });
            }
            _ => {}
        }
    }
}

/// The database a DROP DATABASE drops, if it exists and mtask runs here.
unsafe fn dropped_database(stmt: *mut pg_sys::Node, tag: pg_sys::NodeTag) -> Option<pg_sys::Oid> {
    if tag != pg_sys::NodeTag::T_DropdbStmt || !crate::process::is_preloaded() {
        return None;
    }
    let oid = unsafe { pg_sys::get_database_oid((*stmt.cast::<pg_sys::DropdbStmt>()).dbname, true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

unsafe fn creates_mtask(stmt: *mut pg_sys::CreateExtensionStmt) -> bool {
    unsafe { std::ffi::CStr::from_ptr((*stmt).extname).to_bytes() == b"mtask" }
}
