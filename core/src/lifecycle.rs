//! What the scheduler does with a due task, and what becomes of the task after
//! a run: the missed-run policy, the `end_at` window and `max_runs`. Plain Rust.

use crate::retry::RetryPolicy;
use crate::schedule::Schedule;
use crate::states::{Status, Trigger};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

sql_enum! {
    /// What happens to slots that passed while the server was down, the task
    /// was paused or the scheduler was busy.
    pub enum Missed {
        /// One catch-up run for the latest missed slot, then the schedule.
        Once = "once",
        /// No catch-up: a slot more than the grace late is passed over.
        Skip = "skip",
        /// Every missed slot, oldest first, but no more than `max_catchup`.
        All = "all",
    }
}

sql_enum! {
    /// What happens to a slot that comes while the task's previous run is
    /// still going. Either way the task never runs concurrently with itself.
    pub enum Overlap {
        /// The slot is passed over; the next run is the first slot after the
        /// run ends.
        Skip = "skip",
        /// One run, for the latest slot that came during the run, starts
        /// right after it ends.
        Queue = "queue",
    }
}

/// The settings that bound catching up.
#[derive(Debug, Clone, Copy)]
pub struct Catchup {
    /// How late a slot may start before `missed = 'skip'` passes it over.
    pub grace: Duration,
    /// How many missed slots `missed = 'all'` runs at the most.
    pub max_catchup: u32,
}

/// A task as far as its timing goes.
#[derive(Debug, Clone)]
pub struct Timing {
    /// `None` for a one-shot task.
    pub schedule: Option<Schedule>,
    /// `start_at`: where interval slots are counted from.
    pub anchor: DateTime<Utc>,
    pub tz: Tz,
    pub missed: Missed,
    pub overlap: Overlap,
    pub end_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i64>,
    /// Runs so far, not counting the one being decided on.
    pub runs: i64,
    pub retry: RetryPolicy,
    /// The attempt number of the coming run (1 unless it is a retry).
    pub attempt: i32,
    /// The slot a retry is for; `None` unless the coming run is a retry.
    pub retry_slot: Option<DateTime<Utc>>,
    /// Failed runs in a row so far.
    pub failures: i32,
}

/// The task's state once a run has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub status: Status,
    pub next: Option<DateTime<Utc>>,
    /// The attempt number of the next run, and the slot it retries.
    pub attempt: i32,
    pub retry_slot: Option<DateTime<Utc>>,
    pub failures: i32,
}

/// Slots from `from` up to, not including, `until` that were passed over,
/// because they were missed or because `end_at` had passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub past_end: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run now, for `slot`.
    Run { slot: DateTime<Utc>, skipped: Option<Skipped> },
    /// Run nothing now: the task moves on to `status` and `next`.
    Pass { skipped: Skipped, status: Status, next: Option<DateTime<Utc>> },
}

impl Timing {
    /// What to do with the task, due since `due`, that the scheduler has
    /// claimed at `now`.
    pub fn before_run(&self, due: DateTime<Utc>, now: DateTime<Utc>, catchup: Catchup) -> Decision {
        let skipped_until_now = Skipped { from: due, until: now, past_end: false };
        if self.end_at.is_some_and(|end| now > end) {
            let skipped = Skipped { past_end: true, ..skipped_until_now };
            return Decision::Pass { skipped, status: Status::Done, next: None };
        }
        // A retry is for the slot that failed, whatever has passed since.
        if let Some(slot) = self.retry_slot {
            return Decision::Run { slot, skipped: None };
        }
        let slot = match &self.schedule {
            None => due,
            Some(s) => {
                let count = if self.missed == Missed::All { catchup.max_catchup.max(1) } else { 1 };
                s.earliest_of_latest(self.anchor, due, now, count, self.tz)
            }
        };
        if self.missed == Missed::Skip && now - slot > catchup.grace {
            let following = self.schedule.as_ref().and_then(|s| s.following_run(self.anchor, slot, now, self.tz));
            let (status, next) = self.settle(following, self.runs);
            return Decision::Pass { skipped: skipped_until_now, status, next };
        }
        let skipped = (slot > due).then_some(Skipped { from: due, until: slot, past_end: false });
        Decision::Run { slot, skipped }
    }

    /// The task's state once the run for `slot` has ended at `ended`.
    /// `jitter`, in [0, 1), spreads a retry's delay.
    pub fn after_run(&self, slot: DateTime<Utc>, ended: DateTime<Utc>, succeeded: bool, jitter: f64) -> After {
        let failures = if succeeded { 0 } else { self.failures + 1 };
        let (status, next) = self.following(slot, ended, succeeded);
        let moving_on = After { status, next, attempt: 1, retry_slot: None, failures };
        if succeeded {
            return moving_on;
        }
        if self.retry.pauses_after(failures) && status == Status::Scheduled {
            return After { status: Status::Paused, ..moving_on };
        }
        let runs_left = self.max_runs.is_none_or(|max| self.runs + 1 < max);
        let retry_at = self
            .retry
            .delay_after(self.attempt, jitter)
            .and_then(|delay| ended.checked_add_signed(delay))
            .filter(|at| runs_left && self.end_at.is_none_or(|end| *at <= end));
        match retry_at {
            Some(at) => After {
                status: Status::Scheduled,
                next: Some(at),
                attempt: self.attempt + 1,
                retry_slot: Some(slot),
                failures,
            },
            None => moving_on,
        }
    }

    /// The task's state once its run for `slot` was cut short at `ended`
    /// because its worker died (the task killed it, a FATAL error, an
    /// administrator's pg_terminate_backend). The run is a failure, which
    /// counts towards `max_consecutive_failures`, but the slot's work did not
    /// end, so it runs again: after the retry backoff for its attempt,
    /// whatever `max_attempts` says, so that a task that keeps killing its
    /// worker is retried ever more slowly rather than in a tight loop.
    pub fn after_crash(&self, slot: DateTime<Utc>, ended: DateTime<Utc>, jitter: f64) -> After {
        let failures = self.failures + 1;
        if self.retry.pauses_after(failures) {
            // Resuming runs the slot that did not end.
            return After { status: Status::Paused, next: Some(slot), attempt: 1, retry_slot: None, failures };
        }
        let again = ended.checked_add_signed(self.retry.backoff(self.attempt, jitter));
        match again.filter(|at| self.end_at.is_none_or(|end| *at <= end)) {
            Some(at) => After {
                status: Status::Scheduled,
                next: Some(at),
                attempt: self.attempt + 1,
                retry_slot: Some(slot),
                failures,
            },
            None => After { status: Status::Done, next: None, attempt: 1, retry_slot: None, failures },
        }
    }

    /// Why a run for `slot` that starts at `started` runs. A run that starts
    /// more than `grace` after its slot is a late one, catching up.
    pub fn trigger(&self, slot: DateTime<Utc>, started: DateTime<Utc>, grace: Duration) -> Trigger {
        if self.retry_slot.is_some() {
            Trigger::Retry
        } else if started - slot > grace {
            Trigger::CatchUp
        } else {
            Trigger::Schedule
        }
    }

    /// The task's state after a run asked for by hand, out of schedule:
    /// where it was before (`status`, scheduled or paused, and `next`, its
    /// regular next run), the failure streak counted as for any run. A
    /// one-shot task's run by hand is its run: see `after_run`.
    pub fn after_manual(&self, status: Status, next: Option<DateTime<Utc>>, succeeded: bool) -> After {
        let failures = if succeeded { 0 } else { self.failures + 1 };
        let status =
            if status == Status::Scheduled && self.retry.pauses_after(failures) { Status::Paused } else { status };
        After { status, next, attempt: self.attempt, retry_slot: self.retry_slot, failures }
    }

    /// Status and next run once the slot is over, retries aside.
    fn following(&self, slot: DateTime<Utc>, ended: DateTime<Utc>, succeeded: bool) -> (Status, Option<DateTime<Utc>>) {
        let Some(schedule) = &self.schedule else {
            return (if succeeded { Status::Done } else { Status::Failed }, None);
        };
        // A recurring task's failure is recorded, not fatal: it keeps its slots.
        let next_slot = schedule.slot_after(self.anchor, slot, self.tz);
        let came_during_run = next_slot.filter(|next| *next <= ended && !schedule.is_fixed_delay());
        let following = match (self.missed, self.overlap, came_during_run) {
            // The next slot even if it has passed: that is the catching up.
            (Missed::All, _, _) if !schedule.is_fixed_delay() => next_slot,
            (_, Overlap::Queue, Some(first)) => {
                Some(schedule.earliest_of_latest(self.anchor, first, ended, 1, self.tz))
            }
            _ => schedule.following_run(self.anchor, slot, ended, self.tz),
        };
        self.settle(following, self.runs + 1)
    }

    /// `next` within the task's window and run limit, or the end of the task.
    /// A task that runs at each server start waits for the next one, with
    /// no time to run at.
    fn settle(&self, next: Option<DateTime<Utc>>, runs: i64) -> (Status, Option<DateTime<Utc>>) {
        let within = |t: &DateTime<Utc>| self.end_at.is_none_or(|end| *t <= end);
        let runs_left = self.max_runs.is_none_or(|max| runs < max);
        match next.filter(within) {
            Some(t) if runs_left => (Status::Scheduled, Some(t)),
            None if runs_left && self.schedule.as_ref().is_some_and(Schedule::is_at_start) => (Status::Scheduled, None),
            _ => (Status::Done, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Span;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(s)
    }

    const CATCHUP: Catchup = Catchup { grace: Duration::seconds(5), max_catchup: 3 };

    /// Every 10 seconds from 0.
    fn every_ten(missed: Missed) -> Timing {
        Timing {
            schedule: Some(Schedule::Every(Span::new(0, 0, 10_000_000))),
            anchor: at(0),
            tz: Tz::UTC,
            missed,
            overlap: Overlap::Skip,
            end_at: None,
            max_runs: None,
            runs: 0,
            retry: RetryPolicy {
                max_attempts: 1,
                base: Duration::seconds(10),
                cap: Duration::seconds(60),
                max_consecutive_failures: None,
            },
            attempt: 1,
            retry_slot: None,
            failures: 0,
        }
    }

    /// Status and next run, for tests that look at nothing else.
    fn after(t: &Timing, slot: DateTime<Utc>, ended: DateTime<Utc>, ok: bool) -> (&'static str, Option<DateTime<Utc>>) {
        let a = t.after_run(slot, ended, ok, 0.5);
        (a.status.as_sql(), a.next)
    }

    fn one_shot(missed: Missed) -> Timing {
        Timing { schedule: None, ..every_ten(missed) }
    }

    #[test]
    fn a_task_run_at_server_start_waits_for_the_next_start() {
        let t = Timing { schedule: Some(Schedule::AtStart), ..every_ten(Missed::Skip) };
        // Made due at start, however late it then runs.
        assert_eq!(
            t.before_run(at(10), at(100), CATCHUP),
            Decision::Pass {
                skipped: Skipped { from: at(10), until: at(100), past_end: false },
                status: Status::Scheduled,
                next: None
            }
        );
        assert_eq!(t.before_run(at(10), at(11), CATCHUP), Decision::Run { slot: at(10), skipped: None });
        for ok in [true, false] {
            assert_eq!(after(&t, at(10), at(12), ok), ("scheduled", None));
        }
        // A limit still ends it; a failure streak pauses it.
        assert_eq!(after(&Timing { max_runs: Some(1), ..t.clone() }, at(10), at(12), true), ("done", None));
        let streak =
            Timing { failures: 2, retry: RetryPolicy { max_consecutive_failures: Some(3), ..t.retry }, ..t.clone() };
        assert_eq!(after(&streak, at(10), at(12), false), ("paused", None));
    }

    #[test]
    fn on_time_runs_under_every_policy() {
        for missed in [Missed::Once, Missed::Skip, Missed::All] {
            let t = every_ten(missed);
            assert_eq!(t.before_run(at(10), at(11), CATCHUP), Decision::Run { slot: at(10), skipped: None });
            assert_eq!(after(&t, at(10), at(12), true), ("scheduled", Some(at(20))));
        }
    }

    #[test]
    fn once_runs_the_latest_missed_slot_then_follows_the_schedule() {
        let t = every_ten(Missed::Once);
        // Down from 10 to 65: slots 10..60 missed; one run, for 60.
        let d = t.before_run(at(10), at(65), CATCHUP);
        assert_eq!(
            d,
            Decision::Run { slot: at(60), skipped: Some(Skipped { from: at(10), until: at(60), past_end: false }) }
        );
        assert_eq!(after(&t, at(60), at(66), true), ("scheduled", Some(at(70))));
        // A single missed slot, however late, still runs once.
        let t = Timing { schedule: Some(Schedule::parse("0 3 * * *", |_| None).unwrap()), ..t };
        let three = Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap();
        let d = t.before_run(three, three + Duration::hours(2), CATCHUP);
        assert_eq!(d, Decision::Run { slot: three, skipped: None });
    }

    #[test]
    fn skip_passes_over_late_slots_within_grace_it_runs() {
        let t = every_ten(Missed::Skip);
        // Now 65: the latest slot, 60, is 5 s late, within grace: it runs.
        let d = t.before_run(at(10), at(65), CATCHUP);
        assert_eq!(
            d,
            Decision::Run { slot: at(60), skipped: Some(Skipped { from: at(10), until: at(60), past_end: false }) }
        );
        // Now 67: 60 is 7 s late; nothing runs, the next slot is 70.
        let d = t.before_run(at(10), at(67), CATCHUP);
        assert_eq!(
            d,
            Decision::Pass {
                skipped: Skipped { from: at(10), until: at(67), past_end: false },
                status: Status::Scheduled,
                next: Some(at(70))
            }
        );
        // A late one-shot task is passed over and ends.
        let d = one_shot(Missed::Skip).before_run(at(10), at(30), CATCHUP);
        assert_eq!(
            d,
            Decision::Pass {
                skipped: Skipped { from: at(10), until: at(30), past_end: false },
                status: Status::Done,
                next: None
            }
        );
    }

    #[test]
    fn all_runs_missed_slots_oldest_first_up_to_max_catchup() {
        let t = every_ten(Missed::All);
        // Now 35: slots 10, 20, 30 are three, the maximum: all run, from 10.
        assert_eq!(t.before_run(at(10), at(35), CATCHUP), Decision::Run { slot: at(10), skipped: None });
        // The next slot is 20 though it has passed.
        assert_eq!(after(&t, at(10), at(36), true), ("scheduled", Some(at(20))));
        // Now 65: six missed, three run: 40, 50, 60; 10..30 are skipped.
        let d = t.before_run(at(10), at(65), CATCHUP);
        assert_eq!(
            d,
            Decision::Run { slot: at(40), skipped: Some(Skipped { from: at(10), until: at(40), past_end: false }) }
        );
    }

    #[test]
    fn one_shot_ends_done_or_failed_and_runs_late_unless_skip() {
        let t = one_shot(Missed::Once);
        assert_eq!(t.before_run(at(10), at(3600), CATCHUP), Decision::Run { slot: at(10), skipped: None });
        assert_eq!(after(&t, at(10), at(11), true), ("done", None));
        assert_eq!(after(&t, at(10), at(11), false), ("failed", None));
    }

    #[test]
    fn recurring_stays_scheduled_after_failure() {
        assert_eq!(after(&every_ten(Missed::Once), at(10), at(11), false), ("scheduled", Some(at(20))));
    }

    #[test]
    fn end_at_closes_the_window() {
        let t = Timing { end_at: Some(at(25)), ..every_ten(Missed::Once) };
        assert_eq!(after(&t, at(10), at(11), true), ("scheduled", Some(at(20))));
        // The slot at 30 is past the end.
        assert_eq!(after(&t, at(20), at(21), true), ("done", None));
        // Claimed after the end (the server was down): nothing runs.
        let d = t.before_run(at(20), at(26), CATCHUP);
        assert_eq!(
            d,
            Decision::Pass {
                skipped: Skipped { from: at(20), until: at(26), past_end: true },
                status: Status::Done,
                next: None
            }
        );
        // A slot exactly at the end runs.
        let t = Timing { end_at: Some(at(20)), ..t };
        assert_eq!(after(&t, at(10), at(11), true), ("scheduled", Some(at(20))));
    }

    #[test]
    fn max_runs_counts_runs_not_skips() {
        let t = Timing { max_runs: Some(3), runs: 1, ..every_ten(Missed::Skip) };
        assert_eq!(after(&t, at(10), at(11), true), ("scheduled", Some(at(20))));
        let t = Timing { runs: 2, ..t };
        assert_eq!(after(&t, at(20), at(21), false), ("done", None));
        // A pass does not use up a run.
        let d = Timing { runs: 2, ..t }.before_run(at(10), at(67), CATCHUP);
        assert!(matches!(d, Decision::Pass { status: Status::Scheduled, .. }), "{d:?}");
    }

    #[test]
    fn fixed_delay_follows_the_end_of_the_run() {
        let t = Timing { schedule: Some(Schedule::After(Span::new(0, 0, 10_000_000))), ..every_ten(Missed::All) };
        // One pending run, whatever the policy; the next counts from the end.
        assert_eq!(t.before_run(at(10), at(300), CATCHUP), Decision::Run { slot: at(10), skipped: None });
        assert_eq!(after(&t, at(10), at(14), true), ("scheduled", Some(at(24))));
        let t = Timing { missed: Missed::Once, ..t };
        assert_eq!(after(&t, at(10), at(14), true), ("scheduled", Some(at(24))));
    }

    #[test]
    fn a_failed_run_is_retried_for_its_slot_with_backoff() {
        let retry = RetryPolicy { max_attempts: 3, ..every_ten(Missed::Once).retry };
        let t = Timing { retry, ..every_ten(Missed::Once) };
        // Attempt 1 of slot 10 fails at 11: retry at 11 + 5..10 s (jitter 0 → 5 s).
        let a = t.after_run(at(10), at(11), false, 0.0);
        assert_eq!(
            a,
            After { status: Status::Scheduled, next: Some(at(16)), attempt: 2, retry_slot: Some(at(10)), failures: 1 }
        );
        // The retry runs for slot 10, even though slot 20 is due by then.
        let t2 = Timing { attempt: 2, retry_slot: Some(at(10)), failures: 1, runs: 1, ..t.clone() };
        assert_eq!(t2.before_run(at(16), at(25), CATCHUP), Decision::Run { slot: at(10), skipped: None });
        // Attempt 2 fails: the delay doubles.
        let a = t2.after_run(at(10), at(26), false, 1.0);
        assert_eq!((a.next, a.attempt, a.failures), (Some(at(46)), 3, 2));
        // Attempt 3 is the last: the task moves on to its next slot.
        let t3 = Timing { attempt: 3, failures: 2, runs: 2, ..t2.clone() };
        assert_eq!(
            t3.after_run(at(10), at(47), false, 0.5),
            After { status: Status::Scheduled, next: Some(at(50)), attempt: 1, retry_slot: None, failures: 3 }
        );
        // A success ends the retries and the failure streak.
        assert_eq!(
            t2.after_run(at(10), at(17), true, 0.5),
            After { status: Status::Scheduled, next: Some(at(20)), attempt: 1, retry_slot: None, failures: 0 }
        );
        // A one-shot task fails for good only when its attempts are used up.
        let once = Timing { schedule: None, ..t.clone() };
        assert_eq!(once.after_run(at(10), at(11), false, 0.0).status, Status::Scheduled);
        assert_eq!(Timing { attempt: 3, ..once }.after_run(at(10), at(11), false, 0.0).status, Status::Failed);
    }

    #[test]
    fn retries_respect_end_at_and_max_runs() {
        let retry = RetryPolicy { max_attempts: 3, ..every_ten(Missed::Once).retry };
        let t = Timing { retry, end_at: Some(at(14)), ..every_ten(Missed::Once) };
        assert_eq!(t.after_run(at(10), at(11), false, 0.0).status, Status::Done);
        let t = Timing { retry, max_runs: Some(1), ..every_ten(Missed::Once) };
        assert_eq!(t.after_run(at(10), at(11), false, 0.0).status, Status::Done);
    }

    #[test]
    fn too_many_failures_in_a_row_pause_the_task() {
        let retry = RetryPolicy { max_consecutive_failures: Some(2), ..every_ten(Missed::Once).retry };
        let t = Timing { retry, failures: 1, ..every_ten(Missed::Once) };
        let a = t.after_run(at(10), at(11), false, 0.5);
        assert_eq!((a.status, a.next, a.failures), (Status::Paused, Some(at(20)), 2));
        // A success in between resets the count.
        assert_eq!(t.after_run(at(10), at(11), true, 0.5).failures, 0);
    }

    #[test]
    fn a_slot_that_comes_during_a_run_is_skipped_or_queued() {
        // The run for slot 10 lasts until 35: slots 20 and 30 came meanwhile.
        let t = every_ten(Missed::Once);
        assert_eq!(after(&t, at(10), at(35), true), ("scheduled", Some(at(40))));
        let t = Timing { overlap: Overlap::Queue, ..t };
        assert_eq!(after(&t, at(10), at(35), true), ("scheduled", Some(at(30))));
        // Nothing came during a short run: the next slot either way.
        assert_eq!(after(&t, at(10), at(12), true), ("scheduled", Some(at(20))));
        assert_eq!(Overlap::from_sql("queue"), Some(Overlap::Queue));
        assert_eq!(Overlap::from_sql("parallel"), None);
    }

    #[test]
    fn missed_parses() {
        assert_eq!(Missed::from_sql("once"), Some(Missed::Once));
        assert_eq!(Missed::from_sql("skip"), Some(Missed::Skip));
        assert_eq!(Missed::from_sql("all"), Some(Missed::All));
        assert_eq!(Missed::from_sql("some"), None);
    }

    #[test]
    fn a_crashed_run_counts_as_a_failure_and_its_slot_runs_again_after_a_backoff() {
        let t = every_ten(Missed::Once);
        // Crashed at 12 while running slot 10: slot 10 again, 5 to 10 s later,
        // though max_attempts is 1.
        let a = t.after_crash(at(10), at(12), 0.0);
        assert_eq!(
            a,
            After { status: Status::Scheduled, next: Some(at(17)), attempt: 2, retry_slot: Some(at(10)), failures: 1 }
        );
        // The backoff grows with the attempts.
        let t2 = Timing { attempt: 3, failures: 2, ..t.clone() };
        assert_eq!(t2.after_crash(at(10), at(100), 1.0).next, Some(at(140)));
        // A one-shot task is run again too: its run did not end.
        let once = one_shot(Missed::Once);
        assert_eq!(once.after_crash(at(10), at(12), 0.0).status, Status::Scheduled);
        // The failure streak pauses it, with the slot still to run.
        let retry = RetryPolicy { max_consecutive_failures: Some(2), ..t.retry };
        let t3 = Timing { retry, failures: 1, ..t };
        assert_eq!(
            t3.after_crash(at(10), at(12), 0.0),
            After { status: Status::Paused, next: Some(at(10)), attempt: 1, retry_slot: None, failures: 2 }
        );
    }

    #[test]
    fn a_run_says_why_it_ran() {
        let t = every_ten(Missed::Once);
        assert_eq!(t.trigger(at(10), at(11), Duration::seconds(5)), Trigger::Schedule);
        assert_eq!(t.trigger(at(10), at(16), Duration::seconds(5)), Trigger::CatchUp);
        let retrying = Timing { retry_slot: Some(at(10)), attempt: 2, ..t };
        assert_eq!(retrying.trigger(at(10), at(100), Duration::seconds(5)), Trigger::Retry);
    }

    #[test]
    fn a_run_by_hand_leaves_the_schedule_where_it_was() {
        let t = Timing { attempt: 2, retry_slot: Some(at(10)), failures: 1, ..every_ten(Missed::Once) };
        // The regular run at 20, and the pending retry, stay.
        let a = t.after_manual(Status::Scheduled, Some(at(20)), true);
        assert_eq!(
            a,
            After { status: Status::Scheduled, next: Some(at(20)), attempt: 2, retry_slot: Some(at(10)), failures: 0 }
        );
        // A paused task stays paused; a failure counts in the streak.
        let a = t.after_manual(Status::Paused, Some(at(20)), false);
        assert_eq!((a.status, a.failures), (Status::Paused, 2));
        // A streak that reaches the limit pauses a scheduled task.
        let retry = RetryPolicy { max_consecutive_failures: Some(2), ..t.retry };
        let t = Timing { retry, ..t };
        assert_eq!(t.after_manual(Status::Scheduled, Some(at(20)), false).status, Status::Paused);
    }

    /// Clock jumps, as Vixie cron treats a fixed-time job: forward, the job
    /// whose time was jumped over runs once, at once; back, a job that has
    /// run does not run again when its time comes round a second time.
    #[test]
    fn clock_jumps_neither_repeat_nor_silently_skip_a_fixed_time_run() {
        let three = |day: i64| at(day * 86_400 + 3 * 3_600);
        let t = Timing { schedule: Some(Schedule::parse("0 3 * * *", |_| None).unwrap()), ..every_ten(Missed::Once) };
        // Forward from 02:55 to 03:10: the 03:00 run starts at 03:10, once.
        let after_jump = three(1) + Duration::minutes(10);
        assert_eq!(t.before_run(three(1), after_jump, CATCHUP), Decision::Run { slot: three(1), skipped: None });
        assert_eq!(after(&t, three(1), after_jump, true), ("scheduled", Some(three(2))));
        // Back from 03:10 to 02:50 while the 03:00 run was going: its next
        // run is still tomorrow's, which the clock has not reached twice.
        let ended_after_jump_back = three(1) - Duration::minutes(10);
        assert_eq!(after(&t, three(1), ended_after_jump_back, true), ("scheduled", Some(three(2))));
        // A forward jump of hours under missed = 'skip' passes the slot
        // over, and says so with a skipped run.
        let t = Timing { missed: Missed::Skip, ..t };
        let Decision::Pass { skipped, next, .. } = t.before_run(three(1), three(1) + Duration::hours(2), CATCHUP)
        else {
            panic!("a slot two hours late is missed under 'skip'");
        };
        assert_eq!((skipped.from, next), (three(1), Some(three(2))));
    }
}
