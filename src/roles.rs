//! Tasks follow their owner role through DROP ROLE, REASSIGN OWNED and DROP
//! OWNED, as the role's tables do. A task's owner is a `regrole` value, which
//! Postgres does not track as a dependency, so mtask's utility hook
//! (`utility.rs`) calls these:
//!
//! - `DROP ROLE` of a role that owns tasks in this database is refused, with
//!   the two ways out in the hint;
//! - `REASSIGN OWNED BY old TO new` gives old's tasks in this database to new;
//! - `DROP OWNED BY r` removes r's tasks (and their runs) in this database.
//!
//! Like those commands, the hook sees only the database it runs in. A task
//! left in another database by a role dropped elsewhere is paused by the
//! scheduler there, with the reason, rather than run as nobody.

use crate::executor::session;
use crate::report::raise;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, pg_sys};

/// Before DROP ROLE: refuses it if a role owns tasks here.
pub unsafe fn before_drop_role(stmt: *mut pg_sys::DropRoleStmt) {
    unsafe { refuse_if_owning_tasks((*stmt).roles) };
}

/// After REASSIGN OWNED, which has checked the user's right to it.
pub unsafe fn after_reassign_owned(stmt: *mut pg_sys::ReassignOwnedStmt) {
    unsafe {
        let to = pg_sys::get_rolespec_oid((*stmt).newrole, false);
        in_tasks("UPDATE mtask.tasks SET owner = $2 WHERE owner::oid = ANY ($1)", (*stmt).roles, Some(to));
    }
}

/// After DROP OWNED, which has checked the user's right to it.
pub unsafe fn after_drop_owned(stmt: *mut pg_sys::DropOwnedStmt) {
    unsafe { in_tasks("DELETE FROM mtask.tasks WHERE owner::oid = ANY ($1)", (*stmt).roles, None) };
}

/// The OIDs of a statement's list of roles, leaving out those that do not
/// exist (DROP ROLE IF EXISTS).
unsafe fn role_oids(roles: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    let n = if roles.is_null() { 0 } else { unsafe { (*roles).length as usize } };
    (0..n)
        .map(|i| unsafe {
            let spec = (*(*roles).elements.add(i)).ptr_value.cast::<pg_sys::RoleSpec>();
            pg_sys::get_rolespec_oid(spec, true)
        })
        .filter(|oid| *oid != pg_sys::InvalidOid)
        .collect()
}

fn mtask_installed() -> bool {
    unsafe { pg_sys::get_extension_oid(c"mtask".as_ptr(), true) != pg_sys::InvalidOid }
}

/// Runs `f` as the bootstrap superuser with search_path pinned to
/// pg_catalog: every task must be seen whatever row-level security shows
/// the user, and nothing the user created may stand in for what `f` calls.
pub fn as_mtask<R>(f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>) -> R) -> R {
    unsafe {
        let (mut uid, mut sec) = (pg_sys::InvalidOid, 0);
        pg_sys::GetUserIdAndSecContext(&mut uid, &mut sec);
        pg_sys::SetUserIdAndSecContext(
            pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
            sec | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        let level = pg_sys::NewGUCNestLevel();
        session::set_search_path(session::WORKER_SEARCH_PATH, pg_sys::GucAction::GUC_ACTION_SAVE);
        // An ERROR aborts the transaction, which restores both.
        let result = Spi::connect_mut(f);
        pg_sys::AtEOXact_GUC(true, level);
        pg_sys::SetUserIdAndSecContext(uid, sec);
        result
    }
}

unsafe fn refuse_if_owning_tasks(roles: *mut pg_sys::List) {
    let roles = unsafe { role_oids(roles) };
    if roles.is_empty() || !mtask_installed() {
        return;
    }
    let owning: Option<(String, i64)> = as_mtask(|client| {
        let args = [DatumWithOid::from(roles)];
        let table = client
            .select(
                "SELECT owner::text, count(*) FROM mtask.tasks WHERE owner::oid = ANY ($1)
                 GROUP BY owner ORDER BY owner::text LIMIT 1",
                None,
                &args,
            )
            .unwrap_or_else(|e| error!("{e}"));
        if table.is_empty() {
            return None;
        }
        let row = table.first();
        Some((row.get(1).ok().flatten().unwrap_or_default(), row.get(2).ok().flatten().unwrap_or_default()))
    });
    let Some((role, count)) = owning else { return };
    let database = unsafe { std::ffi::CStr::from_ptr(pg_sys::get_database_name(pg_sys::MyDatabaseId)) };
    raise(
        PgSqlErrorCode::ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
        format!(
            "role {role} cannot be dropped because it owns {count} mtask task{} in database \"{}\"",
            if count == 1 { "" } else { "s" },
            database.to_string_lossy()
        ),
        format!(
            "Give them to another role with REASSIGN OWNED BY {role} TO <role>, or remove them with \
             DROP OWNED BY {role} (which also drops everything else it owns here), or mtask.unschedule() them."
        ),
    );
}

/// Runs `sql` on the tasks of `roles`, with `$2` the new owner if given.
unsafe fn in_tasks(sql: &str, roles: *mut pg_sys::List, new_owner: Option<pg_sys::Oid>) {
    let roles = unsafe { role_oids(roles) };
    if roles.is_empty() || !mtask_installed() {
        return;
    }
    as_mtask(|client| {
        let mut args = vec![DatumWithOid::from(roles)];
        if let Some(owner) = new_owner {
            args.push(DatumWithOid::from(owner));
        }
        client.update(sql, None, &args).unwrap_or_else(|e| error!("{e}"));
    });
}

/// Whether `role` still exists: a task whose owner was dropped in another
/// database's session, where the hook could not see its tasks, must not run.
pub fn role_exists(role: pg_sys::Oid) -> bool {
    unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::AUTHOID as i32,
            pg_sys::Datum::from(role),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        )
    }
}

/// Whether `role` may connect to `database`, as a session of its own would
/// have to: a task runs as its owner, so an owner that lost CONNECT gets no
/// task run there.
pub fn may_connect(role: pg_sys::Oid, database: pg_sys::Oid) -> bool {
    const ACL_CONNECT: pg_sys::AclMode = 1 << 11;
    crate::compat::database_acl_ok(database, role, ACL_CONNECT)
}
