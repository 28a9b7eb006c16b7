//! The schedule forms pg_cron accepts, for mtask_cron's API: five cron
//! fields or a macro (`@reboot` and its `@restart` included), or an interval
//! of 1 to 59 seconds, "N second" or "N seconds" in any case. They become
//! mtask schedules; the cron fields mean the same in both.

use super::ScheduleError;
use super::cron::CronSchedule;

/// The mtask schedule that pg_cron's `text` means, or why pg_cron would
/// refuse it.
pub fn to_mtask(text: &str) -> Result<String, ScheduleError> {
    let refused = || ScheduleError::NotPgCron(text.to_string());
    let trimmed = text.trim();
    if ["@restart", "@reboot"].iter().any(|m| trimmed.eq_ignore_ascii_case(m)) {
        return Ok("@reboot".into());
    }
    if let Some(seconds) = seconds(trimmed) {
        return match seconds {
            1..=59 => Ok(format!("{seconds} seconds")),
            _ => Err(refused()),
        };
    }
    // pg_cron has no seconds field: six fields would mean seconds here.
    // What mtask's cron refuses, pg_cron refuses too, in its own words.
    match trimmed.split_whitespace().count() {
        1 if trimmed.starts_with('@') => CronSchedule::parse(trimmed).map(|_| trimmed.to_string()),
        5 => CronSchedule::parse(trimmed).map(|_| trimmed.to_string()),
        _ => return Err(refused()),
    }
    .map_err(|_| refused())
}

/// N in "N second" or "N seconds" (pg_cron allows no space before the unit).
fn seconds(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let unit = lower[digits..].trim();
    if digits == 0 || !matches!(unit, "second" | "seconds") {
        return None;
    }
    // Too many digits is no number pg_cron reads: out of range.
    Some(lower[..digits].parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_one_to_fifty_nine() {
        assert_eq!(to_mtask("5 seconds"), Ok("5 seconds".into()));
        assert_eq!(to_mtask(" 1 SECOND "), Ok("1 seconds".into()));
        assert_eq!(to_mtask("59seconds"), Ok("59 seconds".into()));
        for refused in ["60 seconds", "0 seconds", "10000000000 seconds", "50 seconds c", "5 secs", "-5 seconds"] {
            assert_eq!(to_mtask(refused), Err(ScheduleError::NotPgCron(refused.into())), "{refused}");
        }
    }

    #[test]
    fn cron_has_five_fields_and_macros_pass() {
        assert_eq!(to_mtask(" 0 3 * * * "), Ok("0 3 * * *".into()));
        assert_eq!(to_mtask("0 0 $ * *"), Ok("0 0 $ * *".into()));
        assert_eq!(to_mtask("@daily"), Ok("@daily".into()));
        assert_eq!(to_mtask("@restart"), Ok("@reboot".into()));
        assert_eq!(to_mtask("@reboot"), Ok("@reboot".into()));
        // tests/pg_cron.rs has the whole list of pg_cron's regression test.
        for refused in ["*/5 * * * * *", "* * * *", "", "@restar", "* * * 13 *", "0 11 $foo * *"] {
            assert_eq!(to_mtask(refused), Err(ScheduleError::NotPgCron(refused.into())), "{refused}");
        }
    }
}
