//! mtask's shared memory, set up only when mtask is preloaded. One concern
//! a file:
//! - `pool.rs`: the pool's slots (each one's database, worker, and whether
//!   it is idle), the launcher, the pool's generation, databases being
//!   dropped;
//! - `databases.rs`: per database, what the launcher needs to start workers
//!   where work is due: whether mtask is installed, its earliest due task,
//!   its runs;
//! - `board.rs`: the run board, each worker's run in progress;
//! - `claims.rs`: the tasks each worker's open transaction has claimed.

mod board;
mod claims;
pub mod databases;
mod pool;

pub use board::*;
pub use claims::*;
pub use pool::*;

pub fn init() {
    pool::init();
    databases::init();
    board::init();
    claims::init();
}
