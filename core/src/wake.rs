//! How a worker waits for an instant so that it wakes at it, not after.
//!
//! Linux lets the timed wait of an ordinary process end late by a thousandth
//! of its length, at most 100 ms (`select_estimate_accuracy`, applied to the
//! `epoll_wait` under a latch), and a latch counts whole milliseconds. A
//! worker that slept 4 s toward a burst's instant started its first task
//! 5–10 ms after it. So a long wait stops short of the instant by more than
//! the kernel may add, and the last fraction of a millisecond is slept on a
//! timer of its own, whose lateness is the timer slack (50 µs by default).

use std::time::Duration;

/// The next wait, with `left` to go before the instant.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Wait on the latch this long (whole milliseconds), then look again.
    Latch(Duration),
    /// Sleep this long, under a millisecond, without the latch; then it is time.
    Sleep(Duration),
    /// It is time.
    Done,
}

/// Twice what the kernel may add (and no less than twice the default timer
/// slack), so that a latch's wait ends before the instant.
const ALLOWANCE_DIVISOR: u32 = 500;
const MIN_ALLOWANCE: Duration = Duration::from_micros(100);
const MAX_ALLOWANCE: Duration = Duration::from_millis(200);

pub fn next_wait(left: Duration) -> Wait {
    if left.is_zero() {
        return Wait::Done;
    }
    let allowance = (left / ALLOWANCE_DIVISOR).clamp(MIN_ALLOWANCE, MAX_ALLOWANCE);
    let latch_ms = left.saturating_sub(allowance).as_millis();
    if latch_ms == 0 {
        return Wait::Sleep(left);
    }
    Wait::Latch(Duration::from_millis(latch_ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILLISECOND: Duration = Duration::from_millis(1);

    /// Follows `next_wait` from `length` before the instant, with a kernel
    /// that ends each latch wait as late as Linux may and each sleep after
    /// `slack`. Returns how late it woke (never early) and how many waits
    /// it took.
    fn wake(length: Duration, slack: Duration) -> (Duration, usize) {
        let mut at = Duration::ZERO;
        for waits in 1.. {
            match next_wait(length.saturating_sub(at)) {
                Wait::Latch(d) => {
                    assert!(d >= MILLISECOND && d.subsec_nanos() % 1_000_000 == 0, "{d:?}");
                    at += d + (d / 1000).clamp(slack, Duration::from_millis(100));
                    assert!(at <= length, "a latch wait of {d:?} overshot {length:?}");
                }
                Wait::Sleep(d) => {
                    assert!(d < MILLISECOND * 2, "{d:?}");
                    at += d + slack;
                }
                Wait::Done => return (at - length, waits),
            }
        }
        unreachable!()
    }

    #[test]
    fn a_long_wait_wakes_within_the_timer_slack_of_its_instant() {
        let slack = Duration::from_micros(50);
        for length in [
            Duration::from_micros(300),
            Duration::from_micros(1500),
            Duration::from_millis(50),
            Duration::from_millis(999),
            Duration::from_secs(4),
            Duration::from_secs(10),
            Duration::from_secs(600),
            Duration::from_secs(86_400),
        ] {
            let (late, waits) = wake(length, slack);
            assert!(late <= slack, "{length:?}: {late:?} late");
            assert!(waits <= 5, "{length:?}: {waits} waits");
        }
    }

    #[test]
    fn the_first_wait_of_a_long_one_stops_short_by_more_than_the_kernel_adds() {
        let Wait::Latch(first) = next_wait(Duration::from_secs(10)) else { panic!("a latch wait") };
        assert!(first + first / 1000 < Duration::from_secs(10), "{first:?}");
        assert!(first >= Duration::from_millis(9_970), "{first:?}");
    }

    #[test]
    fn under_a_millisecond_is_slept_and_nothing_left_is_done() {
        assert_eq!(next_wait(Duration::from_micros(400)), Wait::Sleep(Duration::from_micros(400)));
        assert_eq!(next_wait(Duration::ZERO), Wait::Done);
        assert_eq!(next_wait(Duration::from_micros(1_400)), Wait::Latch(MILLISECOND));
    }
}
