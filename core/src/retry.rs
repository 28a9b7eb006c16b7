//! Retrying a failed run: how many attempts, how long between them, and when
//! a task that keeps failing is paused. Plain Rust.

use chrono::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs per slot, the first included: 1 means no retry.
    pub max_attempts: i32,
    /// The delay before the first retry; each further one doubles it.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
    /// Pause the task after this many failed runs in a row (retries count).
    pub max_consecutive_failures: Option<i32>,
}

impl RetryPolicy {
    /// The delay before the attempt after `attempt` (1-based) has failed, or
    /// `None` when that was the last. `jitter` in [0, 1) spreads the delay
    /// over its upper half ("equal jitter"), so that tasks failing together
    /// on a shared cause do not retry in lockstep, yet no retry comes sooner
    /// than half the backoff.
    pub fn delay_after(&self, attempt: i32, jitter: f64) -> Option<Duration> {
        (attempt < self.max_attempts).then(|| self.backoff(attempt, jitter))
    }

    /// The delay after the `attempt`-th run (1-based) of a slot failed,
    /// whether or not attempts are left: `base × 2^(attempt-1)`, capped,
    /// with equal jitter.
    pub fn backoff(&self, attempt: i32, jitter: f64) -> Duration {
        let doublings = u32::try_from(attempt - 1).unwrap_or(0).min(62);
        let base = self.base.num_microseconds().unwrap_or(i64::MAX).max(0);
        let cap = self.cap.num_microseconds().unwrap_or(i64::MAX).max(0);
        let backoff = base.saturating_mul(1i64 << doublings).min(cap);
        let half = backoff / 2;
        let spread = (half as f64 * jitter.clamp(0.0, 1.0)) as i64;
        Duration::microseconds(backoff - half + spread)
    }

    /// Whether `failures` failed runs in a row pause the task.
    pub fn pauses_after(&self, failures: i32) -> bool {
        self.max_consecutive_failures.is_some_and(|max| failures >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: i32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::seconds(10),
            cap: Duration::seconds(60),
            max_consecutive_failures: None,
        }
    }

    #[test]
    fn no_retry_by_default() {
        assert_eq!(policy(1).delay_after(1, 0.5), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy(10);
        // With the lowest jitter, half of 10, 20, 40, 60 (capped), 60 s.
        let lows: Vec<_> = (1..=5).map(|a| p.delay_after(a, 0.0).unwrap().num_seconds()).collect();
        assert_eq!(lows, [5, 10, 20, 30, 30]);
        // With the highest, the whole backoff.
        let highs: Vec<_> = (1..=5).map(|a| p.delay_after(a, 1.0).unwrap().num_seconds()).collect();
        assert_eq!(highs, [10, 20, 40, 60, 60]);
        assert_eq!(p.delay_after(10, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        let p = policy(100);
        for attempt in 1..100 {
            for j in [0.0, 0.25, 0.5, 0.999] {
                let d = p.delay_after(attempt, j).unwrap();
                assert!(d >= Duration::seconds(5) && d <= Duration::seconds(60), "{attempt} {j} {d}");
            }
        }
        // Huge attempt numbers neither overflow nor exceed the cap.
        assert_eq!(p.delay_after(99, 1.0), Some(Duration::seconds(60)));
    }

    #[test]
    fn pausing_is_optional() {
        assert!(!policy(1).pauses_after(1000));
        let p = RetryPolicy { max_consecutive_failures: Some(3), ..policy(1) };
        assert!(!p.pauses_after(2));
        assert!(p.pauses_after(3));
    }
}
