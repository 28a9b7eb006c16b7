//! The CONTEXT of an error a task raised ("PL/pgSQL function f() line 3 at
//! RAISE", "SQL statement ..."), for its run record. Postgres builds it
//! from the error context callbacks while it raises the error; pgrx, which
//! turns the error into a Rust panic, copies the message, detail and hint
//! but not the context. So a run pushes a callback of its own below every
//! other: Postgres calls it last, when the context is complete, and it
//! keeps a copy.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::ffi::CStr;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

unsafe extern "C-unwind" fn keep(_: *mut std::ffi::c_void) {
    unsafe {
        // CopyErrorData must not copy into ErrorContext, where Postgres is.
        let keeper = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"mtask error context".as_ptr(),
            pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
            pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
            pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
        );
        let old = pg_sys::MemoryContextSwitchTo(keeper);
        let data = pg_sys::CopyErrorData();
        if (*data).elevel >= pg_sys::PGERROR as i32 && !(*data).context.is_null() {
            let context = CStr::from_ptr((*data).context).to_string_lossy().into_owned();
            LAST.set(Some(context));
        }
        pg_sys::MemoryContextSwitchTo(old);
        pg_sys::MemoryContextDelete(keeper);
    }
}

/// Keeps the context of an ERROR raised while it lives. Make it before the
/// run, and `finish` it after, whether the run failed or not.
pub struct Keeper(Box<pg_sys::ErrorContextCallback>);

impl Keeper {
    pub fn new() -> Keeper {
        LAST.set(None);
        let mut callback = Box::new(pg_sys::ErrorContextCallback {
            previous: unsafe { pg_sys::error_context_stack },
            callback: Some(keep),
            arg: std::ptr::null_mut(),
        });
        unsafe { pg_sys::error_context_stack = &raw mut *callback };
        Keeper(callback)
    }

    /// The context of the ERROR raised since `new`, if any.
    pub fn finish(self) -> Option<String> {
        drop(self);
        LAST.take()
    }
}

impl Drop for Keeper {
    /// Unlinks the callback wherever it is in the stack: an ERROR, or a
    /// transaction's end inside the run, may have left it below others, or
    /// restored the stack past it. It must not stay once its memory goes.
    fn drop(&mut self) {
        unsafe {
            let ours = &raw mut *self.0;
            let mut link = &raw mut pg_sys::error_context_stack;
            while !(*link).is_null() {
                if *link == ours {
                    *link = (*ours).previous;
                    break;
                }
                link = &raw mut (**link).previous;
            }
        }
    }
}
