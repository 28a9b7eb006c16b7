//! What a task's `schedule` text means and when it runs next. Plain Rust: the
//! Postgres shell hands in the parts only Postgres can read (an interval
//! literal) and gets back instants.

mod cron;
mod interval;
pub mod pg_cron;
mod span;

#[cfg(test)]
mod conformance_tests;

pub use cron::CronSchedule;
pub use span::Span;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fixed rate: slots are `start_at + k × span`, so runs never drift by
    /// their own execution time.
    Every(Span),
    /// Fixed delay: the next run comes `span` after the previous one ended.
    After(Span),
    /// Wall-clock times in the task's time zone.
    Cron(Box<CronSchedule>),
    /// Once each time the server starts (`@reboot`, as in cron): no time of
    /// its own, so the scheduler makes it due when the server has started.
    AtStart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    Missing,
    Unparsable(String),
    /// An interval with a word that fits none of the documented forms.
    BadInterval {
        text: String,
        word: String,
    },
    NotPositive(String),
    CronFieldCount(usize),
    CronOutOfRange {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    BadCronField {
        field: &'static str,
        part: String,
    },
    UnknownMacro(String),
    NeverMatches(String),
    UnknownTimeZone(String),
    /// A schedule pg_cron would refuse, given to mtask_cron.
    NotPgCron(String),
}

/// An IANA time zone name, as the tz database spells it.
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim().parse().map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))
}

impl ScheduleError {
    pub fn message(&self) -> String {
        match self {
            ScheduleError::Missing => "a recurring task needs a schedule".into(),
            ScheduleError::Unparsable(s) => format!("invalid schedule \"{s}\""),
            ScheduleError::BadInterval { text, word } if text == word => format!("invalid schedule \"{text}\""),
            ScheduleError::BadInterval { text, word } => format!("invalid schedule \"{text}\": cannot read \"{word}\""),
            ScheduleError::NotPositive(s) => format!("schedule interval \"{s}\" is not positive"),
            ScheduleError::CronFieldCount(n) => format!("a cron schedule has 5 or 6 fields, not {n}"),
            ScheduleError::CronOutOfRange { field, value, min, max } => {
                format!("{field} {value} is out of range {min}-{max}")
            }
            ScheduleError::BadCronField { field, part } => format!("invalid {field} \"{part}\" in cron schedule"),
            ScheduleError::UnknownMacro(s) => format!("unknown schedule macro \"{s}\""),
            ScheduleError::NeverMatches(s) => format!("cron schedule \"{s}\" never runs"),
            ScheduleError::UnknownTimeZone(s) => format!("unknown time zone \"{s}\""),
            // pg_cron's own words.
            ScheduleError::NotPgCron(s) => format!("invalid schedule: {s}"),
        }
    }

    pub fn hint(&self) -> String {
        match self {
            ScheduleError::Missing => {
                "Give an interval such as '10 seconds', or use mtask.schedule_at for a one-shot task.".into()
            }
            ScheduleError::Unparsable(_) | ScheduleError::BadInterval { .. } => {
                "A schedule is a cron expression such as '0 3 * * *' (6 fields put seconds first), a macro \
                 such as '@daily', or an interval, optionally after 'every' or 'after': numbers with units \
                 (microseconds, milliseconds, seconds, minutes, hours, days, weeks, months, years, or us, ms, \
                 s, m, h, d, w, mon, y), each optionally signed, and HH:MM[:SS] for hours, minutes and \
                 seconds, such as '90 seconds' or '1 day 02:00:00'; or ISO 8601 such as 'PT1H30M'."
                    .into()
            }
            ScheduleError::NotPositive(_) => "The interval must be greater than zero, with no negative part.".into(),
            ScheduleError::CronFieldCount(_) => {
                "Write minute hour day-of-month month day-of-week, optionally with seconds first.".into()
            }
            ScheduleError::CronOutOfRange { .. } | ScheduleError::BadCronField { .. } => {
                "Each field takes *, numbers, ranges a-b, steps /n and lists a,b; day of month also L, LW, nW, \
                 $ and ?; day of week also nL, n#k, n#L and ?; months JAN-DEC, days SUN-SAT."
                    .into()
            }
            ScheduleError::UnknownMacro(_) => {
                "Macros are @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly and @reboot.".into()
            }
            ScheduleError::NeverMatches(_) => "No date matches every field, e.g. 30 February.".into(),
            ScheduleError::UnknownTimeZone(_) => {
                "Use an IANA name such as 'Europe/Paris'; SELECT name FROM pg_timezone_names lists them.".into()
            }
            ScheduleError::NotPgCron(_) => {
                "Use cron format (e.g. 5 4 * * *), or interval format '[1-59] seconds'; mtask.schedule takes more."
                    .into()
            }
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Whether an interval schedule counts from the slots or from the end of the
/// previous run, and the interval literal after its `every` or `after`.
/// Without a prefix, an interval is fixed-rate.
pub fn interval_literal(text: &str) -> Result<(bool, &str), ScheduleError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ScheduleError::Missing);
    }
    let (head, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
    let fixed_delay = head.eq_ignore_ascii_case("after");
    if !fixed_delay && !head.eq_ignore_ascii_case("every") {
        return Ok((false, trimmed));
    }
    match rest.trim_start() {
        "" => Err(ScheduleError::Unparsable(text.to_string())),
        literal => Ok((fixed_delay, literal)),
    }
}

impl Schedule {
    /// Parses a schedule text: an interval if it has one of the documented
    /// forms, else cron if it looks like cron, so that a mistyped cron
    /// expression fails as cron, naming its field. `read_interval` is
    /// Postgres' own interval input, which reads the value of a well-formed
    /// interval.
    pub fn parse(text: &str, read_interval: impl FnOnce(&str) -> Option<Span>) -> Result<Schedule, ScheduleError> {
        if text.trim().eq_ignore_ascii_case("@reboot") {
            return Ok(Schedule::AtStart);
        }
        let (fixed_delay, literal) = interval_literal(text)?;
        if let Err(word) = interval::check_form(literal) {
            let prefixed = literal.len() != text.trim().len();
            if !prefixed && cron::looks_like_cron(literal) {
                return CronSchedule::parse(literal).map(|c| Schedule::Cron(Box::new(c)));
            }
            return Err(ScheduleError::BadInterval { text: text.trim().to_string(), word });
        }
        let span = read_interval(literal).ok_or_else(|| ScheduleError::Unparsable(text.trim().to_string()))?;
        if !span.is_positive() {
            return Err(ScheduleError::NotPositive(text.trim().to_string()));
        }
        Ok(if fixed_delay { Schedule::After(span) } else { Schedule::Every(span) })
    }

    pub fn is_fixed_delay(&self) -> bool {
        matches!(self, Schedule::After(_))
    }

    /// Whether it runs when the server starts rather than at times.
    pub fn is_at_start(&self) -> bool {
        matches!(self, Schedule::AtStart)
    }

    /// The next run at or after `not_before`, for a task whose interval slots
    /// are anchored at `anchor` and whose wall clock is `tz`. `None` when no
    /// such instant can be represented.
    pub fn next_run(&self, anchor: DateTime<Utc>, not_before: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(span) => span.first_slot_at_or_after(anchor, not_before, tz),
            Schedule::After(_) => Some(not_before.max(anchor)),
            Schedule::Cron(cron) => cron.next_at_or_after(not_before.max(anchor), tz),
            Schedule::AtStart => None,
        }
    }

    /// The first slot strictly after `slot`. A fixed-delay schedule has no
    /// slots of its own: its next run is `span` after `slot`.
    pub fn slot_after(&self, anchor: DateTime<Utc>, slot: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::After(span) => span.add_times(slot, 1, tz),
            _ => self.next_run(anchor, slot.checked_add_signed(Duration::microseconds(1))?, tz),
        }
    }

    /// Of the slots in `[due, now]`, the earliest of the `count` latest ones;
    /// `due` when there are no more than `count`. This is where catching up
    /// after downtime starts. A fixed-delay task has one pending run, `due`.
    pub fn earliest_of_latest(
        &self,
        anchor: DateTime<Utc>,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
        count: u32,
        tz: Tz,
    ) -> DateTime<Utc> {
        // The usual case, a task on time, costs one forward search.
        if self.slot_after(anchor, due, tz).is_none_or(|next| next > now) {
            return due;
        }
        match self {
            Schedule::After(_) | Schedule::AtStart => due,
            Schedule::Every(span) => span.earliest_of_latest(anchor, due, now, count, tz).unwrap_or(due),
            Schedule::Cron(cron) => cron.earliest_of_latest(due, now, count, tz),
        }
    }

    /// The run after the one scheduled for `scheduled` that has just finished
    /// at `now`. Slots missed while the task ran, or while nothing ran, are
    /// skipped rather than run in a burst.
    pub fn following_run(
        &self,
        anchor: DateTime<Utc>,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::After(span) => span.add_times(now.max(scheduled), 1, tz),
            _ => {
                let after_scheduled = scheduled.checked_add_signed(Duration::microseconds(1))?;
                self.next_run(anchor, now.max(after_scheduled), tz)
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(span) => write!(f, "every {span}"),
            Schedule::After(span) => write!(f, "after {span}"),
            Schedule::Cron(cron) => write!(f, "{cron}"),
            Schedule::AtStart => f.write_str("@reboot"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Stands in for Postgres' interval input: whole seconds only.
    fn seconds(literal: &str) -> Option<Span> {
        let n: i64 = literal.strip_suffix(" seconds")?.trim().parse().ok()?;
        Some(Span::new(0, 0, n * 1_000_000))
    }

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(s.into())
    }

    #[test]
    fn every_prefix_is_optional_and_case_blind() {
        assert_eq!(interval_literal("every 5 minutes"), Ok((false, "5 minutes")));
        assert_eq!(interval_literal("  EVERY   5 minutes "), Ok((false, "5 minutes")));
        assert_eq!(interval_literal("5 minutes"), Ok((false, "5 minutes")));
        assert_eq!(interval_literal("everyday"), Ok((false, "everyday")));
        assert_eq!(interval_literal("After 5 minutes"), Ok((true, "5 minutes")));
        assert_eq!(interval_literal("afterwards"), Ok((false, "afterwards")));
    }

    #[test]
    fn empty_and_bare_prefix_are_errors() {
        assert_eq!(interval_literal("   "), Err(ScheduleError::Missing));
        assert_eq!(interval_literal("every "), Err(ScheduleError::Unparsable("every ".into())));
        assert_eq!(interval_literal("Every"), Err(ScheduleError::Unparsable("Every".into())));
        assert_eq!(interval_literal("after"), Err(ScheduleError::Unparsable("after".into())));
    }

    #[test]
    fn parse_normalises() {
        let s = Schedule::parse("every 10 seconds", seconds).unwrap();
        assert_eq!(s.to_string(), "every 10 seconds");
        let s = Schedule::parse("90 seconds", seconds).unwrap();
        assert_eq!(s.to_string(), "every 1 minute 30 seconds");
        let s = Schedule::parse("after 90 seconds", seconds).unwrap();
        assert_eq!(s.to_string(), "after 1 minute 30 seconds");
        assert!(s.is_fixed_delay());
    }

    #[test]
    fn parse_rejects_zero_negative_and_garbage() {
        assert_eq!(Schedule::parse("0 seconds", seconds), Err(ScheduleError::NotPositive("0 seconds".into())));
        assert_eq!(Schedule::parse("-5 seconds", seconds), Err(ScheduleError::NotPositive("-5 seconds".into())));
        let garbage = |text: &str, word: &str| Err(ScheduleError::BadInterval { text: text.into(), word: word.into() });
        assert_eq!(Schedule::parse("soon", seconds), garbage("soon", "soon"));
        assert_eq!(Schedule::parse("every banana", seconds), garbage("every banana", "banana"));
        assert_eq!(Schedule::parse("50 seconds c", seconds), garbage("50 seconds c", "c"));
        assert_eq!(Schedule::parse("1 hour 30 minuts", seconds), garbage("1 hour 30 minuts", "minuts"));
        assert_eq!(Schedule::parse("every */5 * * * *", seconds), garbage("every */5 * * * *", "*/5"));
        // Well formed, but Postgres cannot read it.
        assert_eq!(Schedule::parse("1 day 1 day", seconds), Err(ScheduleError::Unparsable("1 day 1 day".into())));
        assert_eq!(Schedule::parse("", seconds), Err(ScheduleError::Missing));
    }

    #[test]
    fn errors_have_messages_and_hints() {
        for e in [
            ScheduleError::Missing,
            ScheduleError::Unparsable("x".into()),
            ScheduleError::BadInterval { text: "5 x".into(), word: "x".into() },
            ScheduleError::NotPositive("0 s".into()),
            ScheduleError::CronFieldCount(7),
            ScheduleError::CronOutOfRange { field: "hour", value: 24, min: 0, max: 23 },
            ScheduleError::BadCronField { field: "minute", part: "x".into() },
            ScheduleError::UnknownMacro("@often".into()),
            ScheduleError::NeverMatches("0 0 31 2 *".into()),
            ScheduleError::UnknownTimeZone("Europe/Pariss".into()),
            ScheduleError::NotPgCron("60 seconds".into()),
        ] {
            assert!(!e.message().is_empty());
            assert!(e.hint().ends_with('.'));
        }
    }

    #[test]
    fn following_run_keeps_the_rate_and_skips_missed_slots() {
        let s = Schedule::Every(Span::new(0, 0, 10_000_000));
        // On time: the next slot, not "finish time + 10 s".
        assert_eq!(s.following_run(at(0), at(10), at(13), Tz::UTC), Some(at(20)));
        // Finished exactly on the slot it was scheduled for: the one after.
        assert_eq!(s.following_run(at(0), at(10), at(10), Tz::UTC), Some(at(20)));
        // A run that overran two slots, or a long stop: no burst.
        assert_eq!(s.following_run(at(0), at(10), at(35), Tz::UTC), Some(at(40)));
        // The same for cron: every 10 seconds.
        let c = Schedule::parse("*/10 * * * * *", seconds).unwrap();
        assert_eq!(c.following_run(at(0), at(10), at(10), Tz::UTC), Some(at(20)));
        assert_eq!(c.following_run(at(0), at(10), at(35), Tz::UTC), Some(at(40)));
    }

    #[test]
    fn at_start_has_no_time_of_its_own() {
        for text in ["@reboot", " @REBOOT "] {
            assert_eq!(Schedule::parse(text, seconds), Ok(Schedule::AtStart));
        }
        let s = Schedule::AtStart;
        assert_eq!(s.to_string(), "@reboot");
        assert!(s.is_at_start());
        assert_eq!(s.next_run(at(0), at(5), Tz::UTC), None);
        assert_eq!(s.following_run(at(0), at(5), at(6), Tz::UTC), None);
        assert_eq!(s.earliest_of_latest(at(0), at(5), at(100), 3, Tz::UTC), at(5));
    }

    #[test]
    fn fixed_delay_counts_from_the_end_of_the_run() {
        let s = Schedule::parse("after 10 seconds", seconds).unwrap();
        // The first run is at start_at, or at once if that has passed.
        assert_eq!(s.next_run(at(5), at(0), Tz::UTC), Some(at(5)));
        assert_eq!(s.next_run(at(0), at(7), Tz::UTC), Some(at(7)));
        // Scheduled for 10, ran until 13: next at 23, not 20.
        assert_eq!(s.following_run(at(0), at(10), at(13), Tz::UTC), Some(at(23)));
        // No slots to catch up on: one pending run.
        assert_eq!(s.earliest_of_latest(at(0), at(10), at(100), 5, Tz::UTC), at(10));
    }

    #[test]
    fn catching_up_starts_at_the_latest_slots() {
        let every = Schedule::Every(Span::new(0, 0, 10_000_000));
        let cron = Schedule::parse("*/10 * * * * *", seconds).unwrap();
        for s in [&every, &cron] {
            // Due at 10, now 65: slots 10..60 are six; the latest two start at 50.
            assert_eq!(s.earliest_of_latest(at(0), at(10), at(65), 2, Tz::UTC), at(50), "{s}");
            assert_eq!(s.earliest_of_latest(at(0), at(10), at(65), 1, Tz::UTC), at(60), "{s}");
            assert_eq!(s.earliest_of_latest(at(0), at(10), at(65), 6, Tz::UTC), at(10), "{s}");
            assert_eq!(s.earliest_of_latest(at(0), at(10), at(65), 60, Tz::UTC), at(10), "{s}");
            // On time: nothing to catch up.
            assert_eq!(s.earliest_of_latest(at(0), at(10), at(12), 1, Tz::UTC), at(10), "{s}");
            assert_eq!(s.slot_after(at(0), at(10), Tz::UTC), Some(at(20)), "{s}");
        }
    }
}
