//! mtask's functional core: what a schedule means and when it runs next
//! (`schedule`), what the scheduler does with a due task and what becomes of
//! it after a run (`lifecycle`, `retry`), which runs are recorded
//! (`retention`), which due tasks a worker claims next (`candidates`), how
//! it waits to wake on time (`wake`), and the names of every state in SQL
//! (`states`). Plain Rust:
//! nothing here calls Postgres, so `cargo test -p mtask-core` needs no server.
//! The pgrx shell in `src/` calls into it; see docs/DESIGN.md.

#[macro_use]
mod sql_enum;

pub mod candidates;
pub mod lifecycle;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod states;
pub mod wake;
