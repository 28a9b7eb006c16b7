//! Where PostgreSQL's C API differs between the versions mtask builds for
//! (the features `pg14` to `pg18`): each difference once, behind its cfg,
//! so that the rest of the shell reads the same for every version. The
//! list is in docs/DESIGN.md, "PostgreSQL versions".

use pgrx::pg_sys;

/// The calling process's index in `ProcGlobal->allProcs`: a field of its
/// PGPROC until 16, a global since 17.
pub fn my_procno() -> i32 {
    #[cfg(any(feature = "pg14", feature = "pg15", feature = "pg16"))]
    unsafe {
        (*pg_sys::MyProc).pgprocno
    }
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    unsafe {
        pg_sys::MyProcNumber
    }
}

/// Whether `role` has `mode` on `database`: 16 replaced the per-kind ACL
/// checks with one for every kind of object.
pub fn database_acl_ok(database: pg_sys::Oid, role: pg_sys::Oid, mode: pg_sys::AclMode) -> bool {
    #[cfg(any(feature = "pg14", feature = "pg15"))]
    let result = unsafe { pg_sys::pg_database_aclcheck(database, role, mode) };
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    let result = unsafe { pg_sys::object_aclcheck(pg_sys::DatabaseRelationId, database, role, mode) };
    result == pg_sys::AclResult::ACLCHECK_OK
}

/// Analyses and rewrites a statement that has no parameters: 15 renamed
/// the function when it added one for variable parameters.
///
/// # Safety
/// As `pg_analyze_and_rewrite`: in a transaction, `raw` a parsed statement
/// of `text`.
pub unsafe fn analyze_and_rewrite(raw: *mut pg_sys::RawStmt, text: *const std::ffi::c_char) -> *mut pg_sys::List {
    #[cfg(feature = "pg14")]
    unsafe {
        pg_sys::pg_analyze_and_rewrite(raw, text, std::ptr::null_mut(), 0, std::ptr::null_mut())
    }
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::pg_analyze_and_rewrite_fixedparams(raw, text, std::ptr::null_mut(), 0, std::ptr::null_mut())
    }
}

/// Runs a portal to completion at top level, as exec_simple_query does: 18
/// dropped the `run_once` argument (which was always true there).
///
/// # Safety
/// As `PortalRun`: `portal` started, `dest` and `qc` valid.
pub unsafe fn portal_run(portal: pg_sys::Portal, dest: *mut pg_sys::DestReceiver, qc: *mut pg_sys::QueryCompletion) {
    #[cfg(not(feature = "pg18"))]
    unsafe {
        pg_sys::PortalRun(portal, i64::MAX, true, true, dest, dest, qc);
    }
    #[cfg(feature = "pg18")]
    unsafe {
        pg_sys::PortalRun(portal, i64::MAX, true, dest, dest, qc);
    }
}

/// Installs a signal handler the way the backend does: 18 made `pqsignal`
/// a macro for `pqsignal_be`.
pub fn set_signal_handler(signal: u32, handler: pg_sys::pqsigfunc) {
    #[cfg(not(feature = "pg18"))]
    unsafe {
        pg_sys::pqsignal(signal as i32, handler);
    }
    #[cfg(feature = "pg18")]
    unsafe {
        pg_sys::pqsignal_be(signal as i32, handler);
    }
}

/// A random number in [0, 1) from the process's PRNG, which every process
/// seeds anew when it starts: 15 brought `pg_prng`; before it Postgres
/// seeded libc's `random()`.
pub fn random_fraction() -> f64 {
    #[cfg(feature = "pg14")]
    unsafe {
        // The libc crate does not declare it.
        unsafe extern "C" {
            fn random() -> libc::c_long;
        }
        random() as f64 / (1u64 << 31) as f64
    }
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state)
    }
}

/// Hands this process's table and I/O statistics to the cumulative
/// statistics (pg_stat_user_tables, autovacuum's view of the tables), at
/// most once a second unless `force`: 15 made it return when to try again,
/// which the pool worker does not need.
pub fn report_stats(force: bool) {
    #[cfg(feature = "pg14")]
    unsafe {
        pg_sys::pgstat_report_stat(force)
    }
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::pgstat_report_stat(force);
    }
}

/// Fetches the row version at `tuple.t_self` if `snapshot` sees it, pinning
/// its buffer (which the caller releases) only then: 15 added `keep_buf`,
/// whose `false` is what 14's `heap_fetch` always did.
///
/// # Safety
/// As `heap_fetch`: `relation` open and locked, `tuple.t_self` set.
pub unsafe fn heap_fetch(
    relation: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    tuple: &mut pg_sys::HeapTupleData,
    buffer: &mut pg_sys::Buffer,
) -> bool {
    #[cfg(feature = "pg14")]
    unsafe {
        pg_sys::heap_fetch(relation, snapshot, tuple, buffer)
    }
    #[cfg(not(feature = "pg14"))]
    unsafe {
        pg_sys::heap_fetch(relation, snapshot, tuple, buffer, false)
    }
}
