//! What a command's statements need, read from their parse trees (no name
//! is looked up). Some statements cannot run inside a transaction block:
//! Postgres refuses them there (`PreventInTransactionBlock`), so a task of
//! one runs top-level, each statement committed on its own, unless it says
//! otherwise. The list follows PreventInTransactionBlock's callers. A CALL
//! may commit or not, which only running it tells (see `worker/step.rs`).

use pgrx::pg_sys::{self, NodeTag};
use pgrx::prelude::*;
use std::ffi::CStr;

/// Whether a statement of `command` cannot run in a transaction block.
/// False for a command that does not parse: running it says why.
pub fn need_top_level(command: &str) -> bool {
    parse(command).iter().any(|stmt| unsafe { needs_top_level(*stmt) })
}

/// Whether `command` is one CALL, which runs top-level if the procedure
/// turns out to commit or roll back.
pub fn is_one_call(command: &str) -> bool {
    matches!(parse(command).as_slice(), [stmt] if unsafe { (**stmt).type_ } == NodeTag::T_CallStmt)
}

/// Whether `command` is one query the planner plans (SELECT, INSERT,
/// UPDATE, DELETE), which can be planned once and run again and again: no
/// utility statement, and no SELECT INTO, which creates a table.
pub fn is_one_query(command: &str) -> bool {
    let [stmt] = parse(command)[..] else {
        return false;
    };
    unsafe {
        match (*stmt).type_ {
            NodeTag::T_SelectStmt => (*stmt.cast::<pg_sys::SelectStmt>()).intoClause.is_null(),
            NodeTag::T_InsertStmt | NodeTag::T_UpdateStmt | NodeTag::T_DeleteStmt => true,
            _ => false,
        }
    }
}

/// The tag psql would print for `command` when its last statement
/// processed `rows` rows, e.g. "INSERT 0 1", "SELECT 3", "VACUUM".
pub fn completion_tag(command: &str, rows: i64) -> Option<String> {
    let last = *parse(command).last()?;
    unsafe {
        let tag = pg_sys::CreateCommandTag(last);
        let name = CStr::from_ptr(pg_sys::GetCommandTagName(tag)).to_string_lossy();
        // As Postgres' BuildQueryCompletionString writes it: INSERT with
        // the OID that is always 0 now.
        Some(match (pg_sys::command_tag_display_rowcount(tag), tag == pg_sys::CommandTag::CMDTAG_INSERT) {
            (false, _) => name.into_owned(),
            (true, true) => format!("{name} 0 {rows}"),
            (true, false) => format!("{name} {rows}"),
        })
    }
}

/// The parse trees of `command`'s statements; none if it does not parse.
fn parse(command: &str) -> Vec<*mut pg_sys::Node> {
    let Ok(text) = std::ffi::CString::new(command) else {
        return Vec::new();
    };
    PgTryBuilder::new(|| unsafe {
        let list = pg_sys::raw_parser(text.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        pgrx::PgList::<pg_sys::RawStmt>::from_pg(list).iter_ptr().map(|raw| (*raw).stmt).collect()
    })
    .catch_others(|_| Vec::new())
    .execute()
}

unsafe fn needs_top_level(stmt: *mut pg_sys::Node) -> bool {
    unsafe {
        match (*stmt).type_ {
            NodeTag::T_VacuumStmt => (*stmt.cast::<pg_sys::VacuumStmt>()).is_vacuumcmd,
            NodeTag::T_IndexStmt => (*stmt.cast::<pg_sys::IndexStmt>()).concurrent,
            NodeTag::T_DropStmt => (*stmt.cast::<pg_sys::DropStmt>()).concurrent,
            NodeTag::T_ReindexStmt => {
                let reindex = &*stmt.cast::<pg_sys::ReindexStmt>();
                matches!(
                    reindex.kind,
                    pg_sys::ReindexObjectType::REINDEX_OBJECT_DATABASE
                        | pg_sys::ReindexObjectType::REINDEX_OBJECT_SYSTEM
                ) || has_option(reindex.params, c"concurrently")
            }
            NodeTag::T_ClusterStmt => (*stmt.cast::<pg_sys::ClusterStmt>()).relation.is_null(),
            NodeTag::T_AlterDatabaseStmt => {
                has_option((*stmt.cast::<pg_sys::AlterDatabaseStmt>()).options, c"tablespace")
            }
            NodeTag::T_TransactionStmt => matches!(
                (*stmt.cast::<pg_sys::TransactionStmt>()).kind,
                pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
                    | pg_sys::TransactionStmtKind::TRANS_STMT_ROLLBACK_PREPARED
            ),
            NodeTag::T_DiscardStmt => (*stmt.cast::<pg_sys::DiscardStmt>()).target == pg_sys::DiscardMode::DISCARD_ALL,
            NodeTag::T_CreatedbStmt
            | NodeTag::T_DropdbStmt
            | NodeTag::T_AlterSystemStmt
            | NodeTag::T_CreateTableSpaceStmt
            | NodeTag::T_DropTableSpaceStmt
            | NodeTag::T_CreateSubscriptionStmt
            | NodeTag::T_AlterSubscriptionStmt
            | NodeTag::T_DropSubscriptionStmt => true,
            _ => false,
        }
    }
}

/// Whether a list of DefElems names `option`.
unsafe fn has_option(options: *mut pg_sys::List, option: &CStr) -> bool {
    unsafe {
        pgrx::PgList::<pg_sys::DefElem>::from_pg(options)
            .iter_ptr()
            .any(|d| !(*d).defname.is_null() && CStr::from_ptr((*d).defname) == option)
    }
}
