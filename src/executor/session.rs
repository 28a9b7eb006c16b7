//! What a task finds in its worker's session and what it may not leave there.
//! A pool worker runs the tasks of many roles, one after another, in one
//! backend: each must start from a clean session, as if freshly connected,
//! whatever the one before it did.

use pgrx::pg_sys;

/// The worker's own SQL runs as a superuser, so it resolves names in
/// pg_catalog only: nothing a user creates can stand in for an operator or
/// a function it calls.
pub const WORKER_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// What tasks resolve names in: PostgreSQL's default, the same for every
/// task whatever role or database settings say, so that a task means the same
/// thing wherever it runs. A command that needs another sets it first.
const TASK_SEARCH_PATH: &std::ffi::CStr = c"\"$user\", public";

/// Pins the worker's own search_path. Call once, after connecting.
pub fn pin_worker_search_path() {
    // As an override it is also the value RESET ALL returns to, which is
    // how a non-transactional task's settings are undone.
    set_search_path_as(
        WORKER_SEARCH_PATH,
        pg_sys::GucContext::PGC_SUSET,
        pg_sys::GucSource::PGC_S_OVERRIDE,
        pg_sys::GucAction::GUC_ACTION_SET,
    );
}

/// Gives the task its search_path. `save`: undone with the caller's GUC nest
/// level; otherwise it stays until `reset_settings`.
pub fn enter_task(save: bool) {
    let action = if save { pg_sys::GucAction::GUC_ACTION_SAVE } else { pg_sys::GucAction::GUC_ACTION_SET };
    set_search_path(TASK_SEARCH_PATH, action);
}

/// The session's search_path now.
pub fn search_path() -> std::ffi::CString {
    let value = unsafe { pg_sys::GetConfigOption(c"search_path".as_ptr(), false, false) };
    unsafe { std::ffi::CStr::from_ptr(value) }.to_owned()
}

/// Sets search_path for the session (`GUC_ACTION_SET`) or until the current
/// GUC nest level ends (`GUC_ACTION_SAVE`).
pub fn set_search_path(path: &std::ffi::CStr, action: pg_sys::GucAction::Type) {
    set_search_path_as(path, pg_sys::GucContext::PGC_USERSET, pg_sys::GucSource::PGC_S_SESSION, action);
}

fn set_search_path_as(
    path: &std::ffi::CStr,
    context: pg_sys::GucContext::Type,
    source: pg_sys::GucSource::Type,
    action: pg_sys::GucAction::Type,
) {
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            path.as_ptr(),
            context,
            source,
            action,
            true,
            pg_sys::PGERROR as i32,
            false,
        );
    }
}

/// Undoes every setting a task made with SET or set_config, for a task whose
/// statements committed one by one, so no nest level could hold them.
/// Must run in a transaction.
pub fn reset_settings() {
    unsafe { pg_sys::ResetAllOptions() };
}

// Not in pgrx's bindings; both are what DISCARD ALL calls.
unsafe extern "C-unwind" {
    fn Async_UnlistenAll();
    fn ResetSequenceCaches();
}

/// Drops the session state a task can leave behind that outlives its
/// transaction, or would reach the next task of a shared transaction, as
/// DISCARD ALL does: prepared statements, open cursors (a next task could
/// FETCH from them), session advisory locks, temporary objects (which
/// would otherwise shadow the next task's tables of the same name), LISTENs
/// and the sequences' currval. Must run in a transaction; transaction-level
/// advisory locks are kept until its commit. Each is cheap when the task
/// made none.
pub fn clean() {
    unsafe {
        pg_sys::DropAllPreparedStatements();
        // Skips the active portal, if any; the worker itself holds no cursor.
        pg_sys::PortalHashTableDeleteAll();
        pg_sys::LockReleaseSession(USER_LOCKMETHOD);
        pg_sys::ResetTempTableNamespace();
        Async_UnlistenAll();
        ResetSequenceCaches();
    }
}

/// How many shared objects this process has mapped.
fn loaded_objects() -> usize {
    unsafe extern "C" fn count(_: *mut libc::dl_phdr_info, _: libc::size_t, n: *mut libc::c_void) -> libc::c_int {
        unsafe { *n.cast::<usize>() += 1 };
        0
    }
    let mut n = 0usize;
    unsafe { libc::dl_iterate_phdr(Some(count), (&raw mut n).cast()) };
    n
}

thread_local! {
    /// What the session held before its first task: the objects mapped once
    /// PL/pgSQL is loaded, and the owner of the last task.
    static BASELINE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    static LAST_OWNER: std::cell::Cell<pg_sys::Oid> = const { std::cell::Cell::new(pg_sys::InvalidOid) };
}

/// Notes what a fresh worker's session holds. Call once, after connecting.
pub fn note_baseline() {
    unsafe { pg_sys::load_file(c"plpgsql".as_ptr(), false) };
    BASELINE.set(loaded_objects());
}

/// Whether this session may run a task of `owner`. What an extension keeps
/// in its own memory (dblink's open connections, a PL's global variables)
/// outlives every reset above and is the previous task's owner's; a
/// session into which a task has loaded a library since it started runs no
/// task of another role.
pub fn may_run_as(owner: pg_sys::Oid) -> bool {
    let last = LAST_OWNER.get();
    last == pg_sys::InvalidOid || last == owner || loaded_objects() <= BASELINE.get()
}

/// Notes that a task of `owner` runs in this session.
pub fn runs_as(owner: pg_sys::Oid) {
    LAST_OWNER.set(owner);
}

/// The lock method of advisory locks (lock.h).
const USER_LOCKMETHOD: pg_sys::LOCKMETHODID = 2;
