//! The due tasks a pool worker means to claim next, in due order, found by
//! one walk of the due index for several batches.
//!
//! The index keeps an entry for every version of a due row until vacuum
//! removes it, and while another session's transaction holds back the xmin
//! horizon none can be: each walk steps over every version the runs before
//! it left. Walking once for several batches, rather than once per task,
//! keeps that cost from growing with the square of the backlog.
//!
//! Candidates are hints: the worker claims each by id under its row lock,
//! and only if it is still due and free. A candidate is whatever the walk
//! read of the task (its row, unlocked), which the claim tells apart from
//! the row as it is now. Kept from one step to the next,
//! they can miss only a task due before them that appeared since the walk
//! (one that another worker let go, say); `MAX_AGE` bounds how long that
//! task waits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many due tasks one walk finds: four batches of 64.
pub const WALK: usize = 256;
/// How long found candidates stay good.
pub const MAX_AGE: Duration = Duration::from_millis(50);
/// The most candidates one statement claims. Tasks claimed ahead of their
/// turn wait behind the runs before them, where one of them may turn out
/// long; fewer would each pay more of a claim statement's setup.
pub const MAX_AHEAD: usize = 16;

/// How many of the next candidates, this one first, a step claims in one
/// statement: after `ran` runs in `elapsed`, as many as the rest of its
/// `budget` fits at that pace, and no more than `room` (what the batch may
/// still take) or `MAX_AHEAD`. A step's first task is claimed alone: the
/// step knows nothing yet of how long its tasks take, and the first may be
/// long, or one that runs outside the transaction.
pub fn claim_ahead(ran: usize, elapsed: Duration, budget: Duration, room: usize) -> usize {
    let most = room.clamp(1, MAX_AHEAD);
    if ran == 0 {
        return 1;
    }
    let pace = elapsed / ran as u32;
    let free = budget.saturating_sub(elapsed);
    let fits = if pace.is_zero() { most } else { (free.as_nanos() / pace.as_nanos()) as usize };
    fits.clamp(1, most)
}

pub struct Candidates<T> {
    ids: VecDeque<T>,
    found_at: Option<Instant>,
    /// The last walk found all it looked for: more may be due.
    full: bool,
    /// Where the last walk began in the due order.
    offset: usize,
    /// This step walked the index.
    walked: bool,
    /// This step claimed a candidate.
    took: bool,
}

impl<T> Default for Candidates<T> {
    fn default() -> Self {
        Candidates { ids: VecDeque::new(), found_at: None, full: false, offset: 0, walked: false, took: false }
    }
}

impl<T> Candidates<T> {
    /// At the start of a step (a transaction), at `now`.
    pub fn begin_step(&mut self, now: Instant) {
        self.walked = false;
        self.took = false;
        if self.found_at.is_some_and(|at| now.duration_since(at) > MAX_AGE) {
            self.forget();
        }
    }

    /// After a step that did not end with a batch of runs: what is due may
    /// have changed in ways the candidates do not show.
    pub fn forget(&mut self) {
        self.ids.clear();
        self.found_at = None;
    }

    /// The last candidate given was claimed (and ran, or was passed over).
    pub fn took(&mut self) {
        self.took = true;
    }

    /// The next `n` candidates after the one last given, as they are,
    /// without walking for more.
    pub fn upcoming(&self, n: usize) -> impl Iterator<Item = &T> {
        self.ids.iter().take(n)
    }

    /// The next candidate; None when this step has no more to claim.
    /// `walk(limit, offset)` gives `limit` due tasks in due order after
    /// the first `offset`.
    pub fn next(&mut self, now: Instant, walk: impl FnOnce(usize, usize) -> Vec<T>) -> Option<T> {
        if let Some(id) = self.ids.pop_front() {
            return Some(id);
        }
        // Once the step's transaction has claimed a task, a walk would
        // hand it over again: its row stays due until the batch is
        // recorded, and FOR UPDATE locks again a row its own transaction
        // holds. So would one after a walk that found all there was.
        if self.took || (self.walked && !self.full) {
            return None;
        }
        // Nothing this step's walk found was free: walk on past it.
        self.offset = if self.walked { self.offset + WALK } else { 0 };
        let found = walk(WALK, self.offset);
        self.walked = true;
        self.full = found.len() == WALK;
        self.found_at = Some(now);
        self.ids = found.into();
        self.ids.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` due tasks with ids 1..=n, and the walks asked of them.
    struct Due {
        n: i64,
        walks: Vec<(usize, usize)>,
    }

    impl Due {
        fn new(n: i64) -> Due {
            Due { n, walks: Vec::new() }
        }

        fn next(&mut self, c: &mut Candidates<i64>, now: Instant) -> Option<i64> {
            let n = self.n;
            let walks = &mut self.walks;
            c.next(now, |limit, offset| {
                walks.push((limit, offset));
                (1..=n).skip(offset).take(limit).collect()
            })
        }
    }

    #[test]
    fn one_walk_serves_several_batches_and_steps() {
        let t = Instant::now();
        let mut due = Due::new(1000);
        let mut c = Candidates::default();
        for step in 0..4 {
            c.begin_step(t);
            for k in 0..64 {
                assert_eq!(due.next(&mut c, t), Some(step * 64 + k + 1));
                c.took();
            }
        }
        assert_eq!(due.walks, vec![(WALK, 0)]);
        // The fifth step walks again, from the start.
        c.begin_step(t);
        assert_eq!(due.next(&mut c, t), Some(1));
        assert_eq!(due.walks, vec![(WALK, 0), (WALK, 0)]);
    }

    #[test]
    fn a_step_that_claimed_a_task_never_walks_again() {
        let t = Instant::now();
        let mut c = Candidates::default();
        c.begin_step(t);
        let mut due = Due::new(WALK as i64 + 10);
        assert_eq!(due.next(&mut c, t), Some(1));
        c.took();
        // The others were another worker's.
        for id in 2..=WALK as i64 {
            assert_eq!(due.next(&mut c, t), Some(id));
        }
        // Task 1 is still due in this transaction's eyes: no walk may find
        // it, though the walk found as many as it looked for.
        assert_eq!(c.next(t, |_, _| panic!("walked after a claim")), None);
    }

    #[test]
    fn when_every_candidate_is_another_workers_the_walk_goes_on_past_them() {
        let t = Instant::now();
        let mut due = Due::new(600);
        let mut c = Candidates::default();
        c.begin_step(t);
        // None of the first 512 is free.
        let passed: Vec<i64> = (0..512).map_while(|_| due.next(&mut c, t)).collect();
        assert_eq!(passed, (1..=512).collect::<Vec<_>>());
        assert_eq!(due.next(&mut c, t), Some(513));
        assert_eq!(due.walks, vec![(WALK, 0), (WALK, WALK), (WALK, 2 * WALK)]);
        // The last walk found fewer than it looked for: nothing is left.
        while due.next(&mut c, t).is_some() {}
        assert_eq!(due.walks.len(), 3);
    }

    #[test]
    fn a_walk_that_finds_nothing_ends_the_step() {
        let t = Instant::now();
        let mut due = Due::new(0);
        let mut c = Candidates::default();
        c.begin_step(t);
        assert_eq!(due.next(&mut c, t), None);
        assert_eq!(due.next(&mut c, t), None);
        assert_eq!(due.walks, vec![(WALK, 0)]);
    }

    #[test]
    fn candidates_kept_from_an_earlier_step_are_walked_anew_once_gone() {
        let t = Instant::now();
        let mut c = Candidates::default();
        c.begin_step(t);
        let mut due = Due::new(3);
        assert_eq!(due.next(&mut c, t), Some(1));
        c.took();
        // The next step gets the rest; when another worker had them, it
        // walks from the start once.
        c.begin_step(t);
        assert_eq!(due.next(&mut c, t), Some(2));
        assert_eq!(due.next(&mut c, t), Some(3));
        assert_eq!(due.next(&mut c, t), Some(1));
        assert_eq!(due.walks, vec![(WALK, 0), (WALK, 0)]);
    }

    #[test]
    fn upcoming_candidates_are_looked_at_not_taken() {
        let t = Instant::now();
        let mut due = Due::new(5);
        let mut c = Candidates::default();
        c.begin_step(t);
        assert_eq!(due.next(&mut c, t), Some(1));
        assert_eq!(c.upcoming(3).copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(c.upcoming(10).count(), 4);
        assert_eq!(due.next(&mut c, t), Some(2));
        assert_eq!(due.walks.len(), 1);
    }

    #[test]
    fn a_steps_first_task_is_claimed_alone() {
        assert_eq!(claim_ahead(0, Duration::ZERO, Duration::from_millis(5), 64), 1);
    }

    #[test]
    fn quick_runs_claim_as_many_as_the_rest_of_the_budget_fits() {
        let ms = Duration::from_millis;
        // 0.1 ms a run so far, 4 ms left: 40 fit, at most MAX_AHEAD.
        assert_eq!(claim_ahead(10, ms(1), ms(5), 64), MAX_AHEAD);
        // 0.5 ms a run, 1 ms left: two.
        assert_eq!(claim_ahead(8, ms(4), ms(5), 64), 2);
        // No more than the batch has room for.
        assert_eq!(claim_ahead(10, ms(1), ms(5), 3), 3);
        // Runs too quick to time fill the room.
        assert_eq!(claim_ahead(4, Duration::ZERO, ms(5), 64), MAX_AHEAD);
    }

    #[test]
    fn slow_runs_or_a_spent_budget_claim_one_at_a_time() {
        let ms = Duration::from_millis;
        assert_eq!(claim_ahead(1, ms(3), ms(5), 64), 1);
        assert_eq!(claim_ahead(3, ms(6), ms(5), 64), 1);
        assert_eq!(claim_ahead(3, ms(1), ms(5), 0), 1);
    }

    #[test]
    fn old_or_forgotten_candidates_are_not_used() {
        let t = Instant::now();
        let mut due = Due::new(3);
        let mut c = Candidates::default();
        c.begin_step(t);
        assert_eq!(due.next(&mut c, t), Some(1));
        c.begin_step(t + MAX_AGE + Duration::from_millis(1));
        assert_eq!(due.next(&mut c, t), Some(1), "walked again");
        c.forget();
        c.begin_step(t);
        assert_eq!(due.next(&mut c, t), Some(1), "walked again");
        assert_eq!(due.walks.len(), 3);
    }
}
