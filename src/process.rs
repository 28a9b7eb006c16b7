//! What this process is: whether the postmaster preloaded mtask (only then
//! does it share mtask's memory, and have a scheduler), and whether it is a
//! pool worker. Set once at start; read by every layer, so it lives below
//! them all.

use std::sync::atomic::{AtomicBool, Ordering};

static PRELOADED: AtomicBool = AtomicBool::new(false);
static POOL_WORKER: AtomicBool = AtomicBool::new(false);

/// Called in the postmaster when it preloads mtask; every backend inherits it.
pub fn preloaded() {
    PRELOADED.store(true, Ordering::Relaxed);
}

/// Whether mtask was preloaded, so that its shared memory and scheduler exist.
pub fn is_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Called by a pool worker as it starts.
pub fn pool_worker() {
    POOL_WORKER.store(true, Ordering::Relaxed);
}

/// Whether this is a pool worker, whose own commits need not wake the pool:
/// it looks for the next due task straight after each run.
pub fn is_pool_worker() -> bool {
    POOL_WORKER.load(Ordering::Relaxed)
}
