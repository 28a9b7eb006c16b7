//! A calendar span, the shape of a PostgreSQL `interval`: months, days and
//! microseconds are kept apart because a month and a day have no fixed length.

use chrono::{DateTime, Duration, LocalResult, Months, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;

impl Span {
    pub fn new(months: i32, days: i32, micros: i64) -> Self {
        Span { months, days, micros }
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.days == 0 && self.micros == 0
    }

    /// Mixed signs (`1 day -1 hour`) are not counted as positive: whether such a
    /// span moves forward depends on the month and the DST rules it lands in.
    pub fn is_positive(&self) -> bool {
        self.months >= 0 && self.days >= 0 && self.micros >= 0 && !self.is_zero()
    }

    /// `start + k × self`, applied as PostgreSQL's `timestamptz + interval`
    /// with its TimeZone set to `tz`: months first (clamping the day to the
    /// month's end), then days, each on the wall clock and read back as
    /// PostgreSQL reads a wall time, then time as elapsed time. So `1 day`
    /// keeps 03:00 at 03:00 across DST, and `1 hour` is an hour. Computing
    /// from the anchor every time, instead of adding one step to the last
    /// slot, keeps a monthly task anchored on the 31st from drifting.
    pub fn add_times(&self, start: DateTime<Utc>, k: i64, tz: Tz) -> Option<DateTime<Utc>> {
        let months = i64::from(self.months).checked_mul(k)?;
        let days = i64::from(self.days).checked_mul(k)?;
        let micros = self.micros.checked_mul(k)?;
        let mut t = start;
        if months != 0 {
            let local = wall(t, tz)?.checked_add_months(Months::new(u32::try_from(months).ok()?))?;
            t = read_wall(tz, local)?;
        }
        if days != 0 {
            t = read_wall(tz, wall(t, tz)?.checked_add_signed(Duration::try_days(days)?)?)?;
        }
        t.checked_add_signed(Duration::microseconds(micros))
    }

    /// The first slot `anchor + k × self`, k ≥ 0, that is at or after `t`.
    pub fn first_slot_at_or_after(&self, anchor: DateTime<Utc>, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.add_times(anchor, self.first_index_at_or_after(anchor, t, tz)?, tz)
    }

    /// The earliest of the `count` latest slots in `[due, now]`, or `due`
    /// when there are no more than `count` of them.
    pub fn earliest_of_latest(
        &self,
        anchor: DateTime<Utc>,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        count: u32,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let first = self.first_index_at_or_after(anchor, due, tz)?;
        let after_now = now.checked_add_signed(Duration::microseconds(1))?;
        let latest = self.first_index_at_or_after(anchor, after_now, tz)? - 1;
        if latest - first < i64::from(count) {
            return Some(due);
        }
        self.add_times(anchor, latest - i64::from(count) + 1, tz)
    }

    /// The least k ≥ 0 with `anchor + k × self` at or after `t`. Exponential
    /// then binary search: O(log k) even after years of downtime.
    fn first_index_at_or_after(&self, anchor: DateTime<Utc>, t: DateTime<Utc>, tz: Tz) -> Option<i64> {
        debug_assert!(self.is_positive());
        if anchor >= t {
            return Some(0);
        }
        // Invariant: slot(lo) < t and slot(hi) >= t, or hi overflowed.
        let mut lo: i64 = 0;
        let mut hi: i64 = 1;
        loop {
            match self.add_times(anchor, hi, tz) {
                Some(s) if s >= t => break,
                Some(_) => {
                    lo = hi;
                    hi = hi.checked_mul(2)?;
                }
                None => break,
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.add_times(anchor, mid, tz) {
                Some(s) if s < t => lo = mid,
                _ => hi = mid,
            }
        }
        self.add_times(anchor, hi, tz).filter(|s| *s >= t).map(|_| hi)
    }
}

fn wall(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    t.naive_utc().checked_add_offset(tz.offset_from_utc_datetime(&t.naive_utc()).fix())
}

/// A wall-clock time as an instant, as PostgreSQL reads one (datetime.c's
/// DetermineTimeZoneOffset): in a fall-back overlap, the later instant; in a
/// spring-forward gap, the time read with the UTC offset in force a day
/// earlier, the one before the gap, so that 02:30 becomes 03:30.
fn read_wall(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.max(b).with_timezone(&Utc)),
        LocalResult::None => {
            let day_before = local.checked_sub_signed(Duration::days(1))?;
            let offset = tz.offset_from_utc_datetime(&day_before).fix();
            Some(local.checked_sub_offset(offset)?.and_utc())
        }
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") }
}

/// A canonical text that PostgreSQL's interval input reads back to the same
/// span, whatever the session's `IntervalStyle`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return write!(f, "0 seconds");
        }
        let mut parts = Vec::new();
        let (years, months) = (self.months / 12, self.months % 12);
        for (n, unit) in [(years, "year"), (months, "month"), (self.days, "day")] {
            if n != 0 {
                parts.push(plural(n.into(), unit));
            }
        }
        let hours = self.micros / MICROS_PER_HOUR;
        let minutes = self.micros % MICROS_PER_HOUR / MICROS_PER_MINUTE;
        let micros = self.micros % MICROS_PER_MINUTE;
        for (n, unit) in [(hours, "hour"), (minutes, "minute")] {
            if n != 0 {
                parts.push(plural(n, unit));
            }
        }
        if micros % MICROS_PER_SECOND != 0 {
            let secs = format!("{:.6}", micros as f64 / MICROS_PER_SECOND as f64);
            parts.push(format!("{} seconds", secs.trim_end_matches('0')));
        } else if micros != 0 {
            parts.push(plural(micros / MICROS_PER_SECOND, "second"));
        }
        write!(f, "{}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn positivity() {
        assert!(Span::new(0, 0, 1).is_positive());
        assert!(Span::new(1, 0, 0).is_positive());
        assert!(!Span::new(0, 0, 0).is_positive());
        assert!(!Span::new(0, 0, -5).is_positive());
        assert!(!Span::new(0, 1, -3_600_000_000).is_positive());
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(Span::new(0, 0, 10 * MICROS_PER_SECOND).to_string(), "10 seconds");
        assert_eq!(Span::new(0, 0, MICROS_PER_SECOND).to_string(), "1 second");
        assert_eq!(Span::new(14, 3, 0).to_string(), "1 year 2 months 3 days");
        assert_eq!(
            Span::new(0, 1, 2 * MICROS_PER_HOUR + 30 * MICROS_PER_MINUTE).to_string(),
            "1 day 2 hours 30 minutes"
        );
        assert_eq!(Span::new(0, 0, 1_500_000).to_string(), "1.5 seconds");
        assert_eq!(Span::new(0, 0, 250).to_string(), "0.00025 seconds");
        assert_eq!(Span::new(0, 0, 25 * MICROS_PER_HOUR).to_string(), "25 hours");
    }

    #[test]
    fn months_do_not_drift() {
        let monthly = Span::new(1, 0, 0);
        let jan31 = at(2024, 1, 31, 3, 0, 0);
        assert_eq!(monthly.add_times(jan31, 1, Tz::UTC), Some(at(2024, 2, 29, 3, 0, 0)));
        assert_eq!(monthly.add_times(jan31, 2, Tz::UTC), Some(at(2024, 3, 31, 3, 0, 0)));
        assert_eq!(monthly.add_times(jan31, 13, Tz::UTC), Some(at(2025, 2, 28, 3, 0, 0)));
    }

    #[test]
    fn first_slot_is_anchor_when_in_future_or_now() {
        let s = Span::new(0, 0, 10 * MICROS_PER_SECOND);
        let a = at(2026, 1, 1, 0, 0, 0);
        assert_eq!(s.first_slot_at_or_after(a, a, Tz::UTC), Some(a));
        assert_eq!(s.first_slot_at_or_after(a, at(2025, 1, 1, 0, 0, 0), Tz::UTC), Some(a));
    }

    #[test]
    fn first_slot_skips_missed_slots() {
        let s = Span::new(0, 0, 10 * MICROS_PER_SECOND);
        let a = at(2026, 1, 1, 0, 0, 0);
        assert_eq!(s.first_slot_at_or_after(a, at(2026, 1, 1, 0, 0, 1), Tz::UTC), Some(at(2026, 1, 1, 0, 0, 10)));
        assert_eq!(s.first_slot_at_or_after(a, at(2026, 1, 1, 0, 0, 10), Tz::UTC), Some(at(2026, 1, 1, 0, 0, 10)));
        // A year of downtime is a handful of steps, not three million.
        assert_eq!(s.first_slot_at_or_after(a, at(2027, 1, 1, 0, 0, 5), Tz::UTC), Some(at(2027, 1, 1, 0, 0, 10)));
    }

    #[test]
    fn first_slot_with_months_and_days() {
        let s = Span::new(1, 1, MICROS_PER_HOUR);
        let a = at(2026, 1, 31, 0, 0, 0);
        // slots: Jan 31 00:00, Mar 1 01:00 (Feb 28 + 1 day + 1 h), Apr 2 02:00 ...
        assert_eq!(s.first_slot_at_or_after(a, at(2026, 2, 1, 0, 0, 0), Tz::UTC), Some(at(2026, 3, 1, 1, 0, 0)));
        assert_eq!(s.first_slot_at_or_after(a, at(2026, 3, 1, 1, 0, 1), Tz::UTC), Some(at(2026, 4, 2, 2, 0, 0)));
    }

    #[test]
    fn days_keep_wall_time_across_dst_and_hours_are_elapsed() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-03-07 03:00 EST is 08:00 UTC; DST starts 2026-03-08 02:00.
        let start = at(2026, 3, 7, 8, 0, 0);
        assert_eq!(Span::new(0, 1, 0).add_times(start, 1, ny), Some(at(2026, 3, 8, 7, 0, 0)));
        assert_eq!(Span::new(0, 0, 24 * MICROS_PER_HOUR).add_times(start, 1, ny), Some(at(2026, 3, 8, 8, 0, 0)));
    }

    /// The expectations are PostgreSQL 15's own `timestamptz + k * interval`
    /// with TimeZone set to the zone.
    #[test]
    fn wall_times_in_a_gap_or_an_overlap_read_as_postgresql_reads_them() {
        let zone = |name: &str| -> Tz { name.parse().unwrap() };
        let day = Span::new(0, 1, 0);
        for (span, tz, start, k, want) in [
            // 02:30 does not exist on 8 March: read with EST, it is 03:30 EDT.
            (day, "America/New_York", at(2026, 3, 7, 7, 30, 0), 1, at(2026, 3, 8, 7, 30, 0)),
            (day, "America/New_York", at(2026, 3, 7, 7, 30, 0), 2, at(2026, 3, 9, 6, 30, 0)),
            // 01:30 happens twice on 1 November: the later, EST.
            (day, "America/New_York", at(2026, 10, 31, 5, 30, 0), 1, at(2026, 11, 1, 6, 30, 0)),
            // Months, then days, each read back: 8 March 02:30 is 03:30, and a
            // day later 03:30 again.
            (Span::new(1, 1, 0), "America/New_York", at(2026, 2, 8, 7, 30, 0), 1, at(2026, 3, 9, 7, 30, 0)),
            // Time is added last, as elapsed time.
            (Span::new(0, 1, 3_600_000_000), "America/New_York", at(2026, 3, 7, 7, 30, 0), 1, at(2026, 3, 8, 8, 30, 0)),
            (Span::new(0, 7, 0), "America/New_York", at(2026, 3, 1, 7, 30, 0), 1, at(2026, 3, 8, 7, 30, 0)),
            (day, "Europe/Stockholm", at(2026, 3, 28, 1, 30, 0), 1, at(2026, 3, 29, 1, 30, 0)),
            (day, "Europe/Stockholm", at(2026, 10, 24, 0, 30, 0), 1, at(2026, 10, 25, 1, 30, 0)),
            (day, "Australia/Sydney", at(2026, 10, 2, 16, 30, 0), 1, at(2026, 10, 3, 16, 30, 0)),
            (day, "Australia/Sydney", at(2026, 4, 3, 15, 30, 0), 1, at(2026, 4, 4, 16, 30, 0)),
            // Lord Howe moves by 30 minutes: 02:15 becomes 02:45.
            (day, "Australia/Lord_Howe", at(2026, 10, 2, 15, 45, 0), 1, at(2026, 10, 3, 15, 45, 0)),
            (day, "Australia/Lord_Howe", at(2026, 4, 3, 14, 45, 0), 1, at(2026, 4, 4, 15, 15, 0)),
            // Santiago changes at midnight: 00:30 becomes 01:30, and 23:30 on
            // 4 April is the later of two.
            (day, "America/Santiago", at(2026, 9, 5, 4, 30, 0), 1, at(2026, 9, 6, 4, 30, 0)),
            (day, "America/Santiago", at(2026, 4, 4, 2, 30, 0), 1, at(2026, 4, 5, 3, 30, 0)),
        ] {
            assert_eq!(span.add_times(start, k, zone(tz)), Some(want), "{start} + {k} × {span} in {tz}");
        }
    }

    #[test]
    fn earliest_of_latest_counts_back_from_now() {
        let s = Span::new(0, 0, 10 * MICROS_PER_SECOND);
        let a = at(2026, 1, 1, 0, 0, 0);
        let now = at(2026, 1, 1, 0, 1, 5); // slots 0:00 .. 1:00 have passed: 7 of them
        assert_eq!(s.earliest_of_latest(a, a, now, 1, Tz::UTC), Some(at(2026, 1, 1, 0, 1, 0)));
        assert_eq!(s.earliest_of_latest(a, a, now, 3, Tz::UTC), Some(at(2026, 1, 1, 0, 0, 40)));
        assert_eq!(s.earliest_of_latest(a, a, now, 7, Tz::UTC), Some(a));
        assert_eq!(s.earliest_of_latest(a, a, now, 100, Tz::UTC), Some(a));
        // On a slot exactly, that slot is the latest.
        let on = at(2026, 1, 1, 0, 1, 0);
        assert_eq!(s.earliest_of_latest(a, a, on, 2, Tz::UTC), Some(at(2026, 1, 1, 0, 0, 50)));
        // Nothing missed: the due slot itself.
        let due = at(2026, 1, 1, 0, 1, 0);
        assert_eq!(s.earliest_of_latest(a, due, now, 1, Tz::UTC), Some(due));
    }

    #[test]
    fn first_slot_overflow_is_none() {
        let s = Span::new(1200, 0, 0);
        let a = at(2026, 1, 1, 0, 0, 0);
        assert_eq!(s.first_slot_at_or_after(a, DateTime::<Utc>::MAX_UTC, Tz::UTC), None);
    }
}
