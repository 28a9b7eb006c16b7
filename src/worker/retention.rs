//! The history purge: runs older than `history_max_age` and past the latest
//! `history_max_per_task` of each task go, and events whose deliveries have
//! all ended go with theirs, in short rounds between tasks. Which runs are
//! recorded at all is `mtask_core::retention::LogRuns`, applied where a run
//! is recorded (`record.rs`).
//!
//! The first worker of each database purges: one purger is enough.
//! A round deletes only finished runs, which nothing else locks, and reads
//! the tasks without locking them, so it delays no task.

use super::{maintenance, plans, transaction};
use crate::guc;
use crate::shmem::databases;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgBuiltInOids as Type;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};
use std::time::{Duration, Instant};

/// How soon the next round comes: soon while rounds find work, else after a
/// pause, so that an idle scheduler wakes for it rarely.
const AGAIN: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(300);

/// How many tasks one round examines, how many of those with runs it
/// purges, and the most runs it deletes: enough that a sweep over a million
/// tasks that have not run takes a hundred cheap rounds, few enough that a
/// round is a short transaction.
const EXAMINE: i64 = 10_000;
const TASKS: i64 = 50;
const ROWS: i64 = 10_000;

/// One round from the task after `$1` (by id): of the next EXAMINE tasks,
/// the first TASKS that have run have their runs past history_max_per_task
/// and older than history_max_age deleted, never a 'running' one. Each
/// task's runs are read through runs_task_id_idx, newest first for the
/// count and oldest first for the age, so the cost is bounded by the
/// history kept, not by the table. Returns where the next round starts
/// (NULL: the sweep is over) and how many runs went.
const PURGE_RUNS: &str = "
    WITH examined AS (
        SELECT id, run_count, history_max_per_task, history_max_age
        FROM mtask.tasks WHERE id > $1 ORDER BY id LIMIT $6
    ), picked AS (
        SELECT id, coalesce(history_max_per_task, $2) AS keep,
               -- Bounded, so that now() - max_age is a timestamp whatever
               -- a row holds; the tasks trigger refuses more than 100 years.
               least(coalesce(history_max_age, make_interval(secs => $3)), interval '1000 years') AS max_age
        FROM examined WHERE run_count > 0 ORDER BY id LIMIT $4
    ), doomed AS (
        SELECT r.id FROM picked p CROSS JOIN LATERAL (
            SELECT id FROM mtask.runs
            WHERE task_id = p.id AND status <> 'running' AND p.keep > 0
            ORDER BY id DESC OFFSET p.keep) r
        UNION
        SELECT r.id FROM picked p CROSS JOIN LATERAL (
            SELECT id FROM mtask.runs
            WHERE task_id = p.id AND status <> 'running' AND p.max_age > interval '0'
              AND started_at < now() - p.max_age
            ORDER BY id) r
        LIMIT $5
    ), gone AS (
        DELETE FROM mtask.runs WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT CASE WHEN (SELECT count(*) FROM picked) = $4 THEN (SELECT max(id) FROM picked)
                WHEN (SELECT count(*) FROM examined) = $6 THEN (SELECT max(id) FROM examined) END,
           (SELECT count(*) FROM gone)";

/// Events older than mtask.history_max_age whose deliveries have all
/// ended (or that found no listener) go, and their deliveries and those
/// deliveries' runs with them, oldest first, a batch at a time.
const PURGE_EVENTS: &str = "
    WITH doomed AS (
        SELECT e.id FROM mtask.events e
        WHERE $1 > 0 AND e.run_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM mtask.tasks t
                          WHERE t.event_id = e.id AND t.status IN ('scheduled', 'running', 'paused'))
        ORDER BY e.id LIMIT $2
    ), gone AS (
        DELETE FROM mtask.events WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT count(*) FROM gone";

/// What a round did.
struct Purged {
    /// Where the next round starts; None when this one ended a sweep over
    /// all tasks, so the next starts again from the first.
    next: Option<i64>,
    deleted: i64,
}

fn purge(client: &mut SpiClient<'_>, after: i64, max_per_task: i32, max_age_s: i32) -> SpiResult<Purged> {
    let args: [DatumWithOid; 6] =
        [after.into(), max_per_task.into(), max_age_s.into(), TASKS.into(), ROWS.into(), EXAMINE.into()];
    let types = [Type::INT8OID, Type::INT4OID, Type::INT4OID, Type::INT8OID, Type::INT8OID, Type::INT8OID];
    let rows = plans::execute(client, PURGE_RUNS, &types, Some(1), &args)?;
    let row = rows.first().ok_or(pgrx::spi::SpiError::InvalidPosition)?;
    let (next, runs): (Option<i64>, Option<i64>) = (row.get(1)?, row.get(2)?);
    let args: [DatumWithOid; 2] = [max_age_s.into(), ROWS.into()];
    let events: Option<i64> =
        plans::first(&plans::execute(client, PURGE_EVENTS, &[Type::INT4OID, Type::INT8OID], Some(1), &args)?)?;
    Ok(Purged { next, deleted: runs.unwrap_or(0) + events.unwrap_or(0) })
}

/// The purger's state between rounds.
pub struct Purger {
    /// Where the next round starts: a task id.
    cursor: i64,
    next_round: Instant,
    /// Runs deleted in the current sweep over all tasks.
    this_sweep: usize,
    /// databases::runs() when it last looked.
    runs_seen: u64,
}

impl Purger {
    pub fn new() -> Purger {
        Purger { cursor: 0, next_round: Instant::now(), this_sweep: 0, runs_seen: 0 }
    }

    /// Runs a round if one is due, as its own transaction, `ready` telling
    /// whether the schema is this library's. Returns how long until the
    /// next one is due.
    pub fn tick(
        &mut self,
        database: pg_sys::Oid,
        vacuum: &mut maintenance::Vacuum,
        ready: impl FnOnce() -> bool,
    ) -> Duration {
        // New runs, by any worker here, may have pushed a history past its limit.
        let runs = databases::runs(database);
        if runs != self.runs_seen {
            self.next_round = self.next_round.min(Instant::now() + AGAIN);
            self.runs_seen = runs;
        }
        if Instant::now() >= self.next_round {
            self.round(vacuum, ready);
        }
        self.next_round.saturating_duration_since(Instant::now())
    }

    fn round(&mut self, vacuum: &mut maintenance::Vacuum, ready: impl FnOnce() -> bool) {
        let (max_age_s, max_per_task) = guc::history_limits();
        let cursor = self.cursor;
        let result = transaction::run(|| {
            if !ready() {
                return None;
            }
            Some(Spi::connect_mut(|client| purge(client, cursor, max_per_task, max_age_s)))
        });
        let busy = match result {
            Ok(Some(Ok(purged))) => {
                self.cursor = purged.next.unwrap_or(0);
                let deleted = purged.deleted.max(0) as usize;
                vacuum.purged(deleted);
                self.this_sweep += deleted;
                // Rounds follow each other while a sweep over all tasks
                // lasts, and the next sweep follows at once if this one found
                // work.
                let sweep_over = purged.next.is_none();
                let busy = !sweep_over || self.this_sweep > 0;
                if sweep_over {
                    self.this_sweep = 0;
                }
                busy
            }
            Ok(None) => false,
            Ok(Some(Err(e))) => {
                warning!("mtask: could not purge the run history: {e}");
                false
            }
            Err(why) => {
                warning!("mtask: could not purge the run history: {why}");
                false
            }
        };
        self.next_round = Instant::now() + if busy { AGAIN } else { IDLE };
    }
}
