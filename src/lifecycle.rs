//! What becomes of a task after a run. Plain Rust.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Once,
    Recurring,
}

impl Kind {
    pub fn from_sql(s: &str) -> Option<Kind> {
        match s {
            "once" => Some(Kind::Once),
            "recurring" => Some(Kind::Recurring),
            _ => None,
        }
    }
}

/// The task's status and next run once a run has ended. `following` is the
/// recurring schedule's next slot, `None` when it has no more.
pub fn after_run(
    kind: Kind,
    succeeded: bool,
    following: Option<DateTime<Utc>>,
) -> (&'static str, Option<DateTime<Utc>>) {
    match (kind, following) {
        (Kind::Once, _) => (if succeeded { "done" } else { "failed" }, None),
        // A recurring task's failure is recorded, not fatal: it keeps its slots.
        (Kind::Recurring, Some(next)) => ("scheduled", Some(next)),
        (Kind::Recurring, None) => ("done", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn one_shot_ends_done_or_failed() {
        assert_eq!(after_run(Kind::Once, true, None), ("done", None));
        assert_eq!(after_run(Kind::Once, false, None), ("failed", None));
    }

    #[test]
    fn recurring_stays_scheduled_even_after_failure() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(after_run(Kind::Recurring, false, Some(t)), ("scheduled", Some(t)));
        assert_eq!(after_run(Kind::Recurring, true, Some(t)), ("scheduled", Some(t)));
        assert_eq!(after_run(Kind::Recurring, true, None), ("done", None));
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(Kind::from_sql("once"), Some(Kind::Once));
        assert_eq!(Kind::from_sql("recurring"), Some(Kind::Recurring));
        assert_eq!(Kind::from_sql("weekly"), None);
    }
}
