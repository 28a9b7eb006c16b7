//! What a task's `schedule` text means and when it runs next. Plain Rust: the
//! Postgres shell hands in the parts only Postgres can read (an interval
//! literal) and gets back instants.

mod span;

pub use span::Span;

use chrono::{DateTime, Duration, Utc};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fixed rate: slots are `start_at + k × span`, so runs never drift by
    /// their own execution time.
    Every(Span),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    Missing,
    Unparsable(String),
    NotPositive(String),
}

impl ScheduleError {
    pub fn message(&self) -> String {
        match self {
            ScheduleError::Missing => "a recurring task needs a schedule".into(),
            ScheduleError::Unparsable(s) => format!("invalid schedule \"{s}\""),
            ScheduleError::NotPositive(s) => format!("schedule interval \"{s}\" is not positive"),
        }
    }

    pub fn hint(&self) -> String {
        match self {
            ScheduleError::Missing => {
                "Give an interval such as '10 seconds', or use mtask.schedule_at for a one-shot task."
                    .into()
            }
            ScheduleError::Unparsable(_) => {
                "A schedule is a PostgreSQL interval such as '30 seconds', '1 hour' or 'every 5 minutes'."
                    .into()
            }
            ScheduleError::NotPositive(_) => {
                "The interval must be greater than zero, with no negative part.".into()
            }
        }
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The interval literal inside a schedule text: the text without its optional
/// `every` prefix.
pub fn interval_literal(text: &str) -> Result<&str, ScheduleError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ScheduleError::Missing);
    }
    let (head, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
    if !head.eq_ignore_ascii_case("every") {
        return Ok(trimmed);
    }
    match rest.trim_start() {
        "" => Err(ScheduleError::Unparsable(text.to_string())),
        literal => Ok(literal),
    }
}

impl Schedule {
    /// Parses a schedule text. `read_interval` is Postgres' own interval input,
    /// so that every literal Postgres accepts is accepted here too.
    pub fn parse(
        text: &str,
        read_interval: impl FnOnce(&str) -> Option<Span>,
    ) -> Result<Schedule, ScheduleError> {
        let literal = interval_literal(text)?;
        let span =
            read_interval(literal).ok_or_else(|| ScheduleError::Unparsable(text.to_string()))?;
        if !span.is_positive() {
            return Err(ScheduleError::NotPositive(text.trim().to_string()));
        }
        Ok(Schedule::Every(span))
    }

    /// The next run at or after `not_before`, for a task whose slots are
    /// anchored at `anchor`. `None` when no such instant can be represented.
    pub fn next_run(&self, anchor: DateTime<Utc>, not_before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(span) => span.first_slot_at_or_after(anchor, not_before),
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
    ) -> Option<DateTime<Utc>> {
        let after_scheduled = scheduled.checked_add_signed(Duration::microseconds(1))?;
        self.next_run(anchor, now.max(after_scheduled))
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(span) => write!(f, "every {span}"),
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
        assert_eq!(interval_literal("every 5 minutes"), Ok("5 minutes"));
        assert_eq!(interval_literal("  EVERY   5 minutes "), Ok("5 minutes"));
        assert_eq!(interval_literal("5 minutes"), Ok("5 minutes"));
        assert_eq!(interval_literal("everyday"), Ok("everyday"));
    }

    #[test]
    fn empty_and_bare_prefix_are_errors() {
        assert_eq!(interval_literal("   "), Err(ScheduleError::Missing));
        assert_eq!(interval_literal("every "), Err(ScheduleError::Unparsable("every ".into())));
        assert_eq!(interval_literal("Every"), Err(ScheduleError::Unparsable("Every".into())));
    }

    #[test]
    fn parse_normalises() {
        let s = Schedule::parse("every 10 seconds", seconds).unwrap();
        assert_eq!(s.to_string(), "every 10 seconds");
        let s = Schedule::parse("90 seconds", seconds).unwrap();
        assert_eq!(s.to_string(), "every 1 minute 30 seconds");
    }

    #[test]
    fn parse_rejects_zero_negative_and_garbage() {
        assert_eq!(
            Schedule::parse("0 seconds", seconds),
            Err(ScheduleError::NotPositive("0 seconds".into()))
        );
        assert_eq!(
            Schedule::parse("-5 seconds", seconds),
            Err(ScheduleError::NotPositive("-5 seconds".into()))
        );
        assert_eq!(
            Schedule::parse("soon", seconds),
            Err(ScheduleError::Unparsable("soon".into()))
        );
        assert_eq!(Schedule::parse("", seconds), Err(ScheduleError::Missing));
    }

    #[test]
    fn errors_have_messages_and_hints() {
        for e in [
            ScheduleError::Missing,
            ScheduleError::Unparsable("x".into()),
            ScheduleError::NotPositive("0 s".into()),
        ] {
            assert!(!e.message().is_empty());
            assert!(e.hint().ends_with('.'));
        }
    }

    #[test]
    fn following_run_keeps_the_rate_and_skips_missed_slots() {
        let s = Schedule::Every(Span::new(0, 0, 10_000_000));
        // On time: the next slot, not "finish time + 10 s".
        assert_eq!(s.following_run(at(0), at(10), at(13)), Some(at(20)));
        // Finished exactly on the slot it was scheduled for: the one after.
        assert_eq!(s.following_run(at(0), at(10), at(10)), Some(at(20)));
        // A run that overran two slots, or a long stop: no burst.
        assert_eq!(s.following_run(at(0), at(10), at(35)), Some(at(40)));
    }
}
