//! The plans of tasks' commands, kept by each worker: a recurring task, or
//! many one-shot tasks of the same command, pay for parsing and planning
//! once rather than on every run.
//!
//! Only a command of one query is kept (`statements::is_one_query`): a
//! script must be analysed statement by statement as it runs, since one may
//! create what the next uses. A plan is kept per command text and owner,
//! and only from its second run, so that commands run once (a notify task's
//! payload, say) fill nothing. Postgres' plan cache checks a kept plan
//! before each run, as it does a prepared statement's: a change to a table,
//! a function or the search_path makes it plan again, and privileges are
//! checked at every run.
//!
//! A prepared statement does not see a table, function, type or operator
//! created since it was planned that its names would now find first (one
//! earlier in the search_path). A task's command, which reads as if typed
//! afresh at each run, must: so every kept plan goes when any catalog that
//! names are looked up in changes (cheaper to watch than to work out whose
//! names moved), and when the configuration is reloaded (a literal time is
//! read in the TimeZone of its planning). A command with a literal whose
//! meaning is the moment it is read ('now', 'today') is never kept.
//!
//! Pool workers only: a user's session (CALL mtask.run) changes its
//! settings at will between runs, and a kept plan may be running there
//! when a nested run would drop it.

use super::statements;
use crate::worker::plans;
use pgrx::pg_sys;
use pgrx::spi::{SpiClient, SpiResult};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Plans kept at most; the least recently used goes first.
const KEPT: usize = 64;
/// Commands remembered as seen once, at most; then forgotten together.
const SEEN: usize = 4096;

type Key = (String, pg_sys::Oid);

#[derive(Default)]
struct Cache {
    /// The catalog callbacks that set `STALE` are registered.
    watching: bool,
    /// A kept plan, or None for a command that cannot be kept; and when it
    /// was last used.
    plans: HashMap<Key, (Option<pg_sys::SPIPlanPtr>, u64)>,
    /// Hashes of commands run once and not kept.
    seen: HashSet<u64>,
    clock: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// The catalogs the kept plans' names were looked up in have changed.
    static STALE: Cell<bool> = const { Cell::new(false) };
    /// A kept plan is running: none may be freed, and a run nested in it
    /// (a command that runs tasks) goes unplanned.
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `command` as the current user (the task's owner, `owner`), in the
/// current transaction; returns how many rows its last statement processed.
/// An ERROR in it is raised.
pub fn run(client: &mut SpiClient<'_>, command: &str, owner: pg_sys::Oid) -> SpiResult<i64> {
    let plan = if RUNNING.get() || !crate::process::is_pool_worker() { None } else { plan_for(command, owner) };
    match plan {
        Some(plan) => {
            /// Says no kept plan runs any more, however the run ends (an
            /// ERROR unwinds through it).
            struct Ran;
            impl Drop for Ran {
                fn drop(&mut self) {
                    RUNNING.set(false);
                }
            }
            RUNNING.set(true);
            let _ran = Ran;
            plans::run(plan, &[], None)?;
            Ok(unsafe { pg_sys::SPI_processed } as i64)
        }
        None => client.update(command, None, &[]).map(|t| t.len() as i64),
    }
}

/// Drops every kept plan at the next run: the configuration was reloaded.
pub fn forget() {
    STALE.set(true);
}

/// Whether `command` has a literal that means the moment it is read, which
/// a kept plan would read once: 'now', 'today', 'tomorrow', 'yesterday'
/// (as a timestamp or date), quoted or dollar-quoted. Judged on the text:
/// a word that a quote begins ('nowhere') only costs a plan, and now()
/// is no literal.
fn reads_the_clock(command: &str) -> bool {
    let text = command.to_ascii_lowercase();
    ["now", "today", "tomorrow", "yesterday"]
        .iter()
        .any(|word| text.match_indices(word).any(|(at, _)| text[..at].trim_end().ends_with(['\'', '$'])))
}

/// The kept plan of `command` for `owner`, planned now if this is its
/// second run; None if it is run unplanned.
fn plan_for(command: &str, owner: pg_sys::Oid) -> Option<pg_sys::SPIPlanPtr> {
    let key = (command.to_owned(), owner);
    let known = CACHE.with_borrow_mut(|cache| {
        cache.watch();
        if STALE.take() {
            for (plan, _) in std::mem::take(&mut cache.plans).into_values() {
                if let Some(plan) = plan {
                    unsafe { pg_sys::SPI_freeplan(plan) };
                }
            }
        }
        cache.clock += 1;
        let now = cache.clock;
        cache.plans.get_mut(&key).map(|(plan, used)| {
            *used = now;
            *plan
        })
    });
    if let Some(plan) = known {
        return plan;
    }
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let first_run = CACHE.with_borrow_mut(|cache| {
        if cache.seen.len() >= SEEN {
            cache.seen.clear();
        }
        cache.seen.insert(hasher.finish())
    });
    if first_run {
        return None;
    }
    // Planned under the caller's PG_TRY: an ERROR (a syntax error, a
    // missing table) is the run's, and keeps nothing.
    let plan = (statements::is_one_query(command) && !reads_the_clock(command))
        .then(|| CString::new(command).ok())
        .flatten()
        // As SPI_execute plans: parallel query allowed.
        .and_then(|text| plans::keep(&text, &[], pg_sys::CURSOR_OPT_PARALLEL_OK));
    CACHE.with_borrow_mut(|cache| {
        if cache.plans.len() >= KEPT {
            let oldest = cache.plans.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some((Some(old), _)) = oldest.and_then(|k| cache.plans.remove(&k)) {
                unsafe { pg_sys::SPI_freeplan(old) };
            }
        }
        let now = cache.clock;
        cache.plans.insert(key, (plan, now));
    });
    plan
}

impl Cache {
    fn watch(&mut self) {
        if std::mem::replace(&mut self.watching, true) {
            return;
        }
        use pg_sys::SysCacheIdentifier::{
            AUTHNAME, CASTSOURCETARGET, COLLNAMEENCNSP, ENUMTYPOIDNAME, NAMESPACENAME, OPERNAMENSP, PROCNAMEARGSNSP,
            RELNAMENSP, TSCONFIGNAMENSP, TYPENAMENSP,
        };
        // Tables, functions, types, operators; and what a literal can name
        // ('x'::regrole, ::regnamespace, ::regconfig, an enum's label), a
        // collation, a cast.
        for catalog in [
            RELNAMENSP,
            PROCNAMEARGSNSP,
            TYPENAMENSP,
            OPERNAMENSP,
            AUTHNAME,
            NAMESPACENAME,
            TSCONFIGNAMENSP,
            ENUMTYPOIDNAME,
            COLLNAMEENCNSP,
            CASTSOURCETARGET,
        ] {
            unsafe {
                pg_sys::CacheRegisterSyscacheCallback(catalog as i32, Some(names_changed), pg_sys::Datum::from(0))
            };
        }
    }
}

/// Called by Postgres as it takes in catalog changes, which may be while a
/// kept plan runs: it only marks the plans stale, for the next look.
unsafe extern "C-unwind" fn names_changed(_: pg_sys::Datum, _: i32, _: u32) {
    STALE.set(true);
}

#[cfg(test)]
mod tests {
    use super::reads_the_clock;

    #[test]
    fn literals_read_at_planning_are_told_from_calls() {
        for command in [
            "DELETE FROM s WHERE at < 'now'",
            "DELETE FROM s WHERE at < ' NOW '::timestamptz - interval '1 day'",
            "INSERT INTO d VALUES ('today'), (date 'tomorrow')",
            "SELECT $$yesterday$$::date",
            "SELECT E'now'::timestamp",
        ] {
            assert!(reads_the_clock(command), "{command}");
        }
        for command in [
            "DELETE FROM s WHERE at < now() - interval '1 day'",
            "INSERT INTO hits VALUES ('tp', current_date)",
            "SELECT 'it''s' || 'known'",
        ] {
            assert!(!reads_the_clock(command), "{command}");
        }
    }
}
