//! The forms an interval schedule may be written in: a documented subset of
//! what PostgreSQL's interval input reads. Postgres reads the value; this only
//! checks the form, because its reader takes almost anything (`50 seconds c`,
//! or a mistyped cron expression, as some interval) and a schedule that runs
//! at the wrong rate is worse than an error.
//!
//! ```text
//! interval := item (space item)* | iso
//! item     := [+|-] number [space] unit | [+|-] H:MM[:SS[.fraction]]
//! number   := digits [. [digits]] | . digits
//! iso      := P [n Y] [n M] [n W] [n D] [T [n H] [n M] [n S]], at least one n
//! ```

/// Units, singular and plural, and their abbreviations, case-blind.
const UNITS: &[&str] = &[
    "microsecond",
    "microseconds",
    "us",
    "usec",
    "usecs",
    "millisecond",
    "milliseconds",
    "ms",
    "msec",
    "msecs",
    "second",
    "seconds",
    "s",
    "sec",
    "secs",
    "minute",
    "minutes",
    "m",
    "min",
    "mins",
    "hour",
    "hours",
    "h",
    "hr",
    "hrs",
    "day",
    "days",
    "d",
    "week",
    "weeks",
    "w",
    "month",
    "months",
    "mon",
    "mons",
    "year",
    "years",
    "y",
    "yr",
    "yrs",
];

/// Checks that `literal` has one of the documented forms; the error is the
/// first word that does not fit.
pub fn check_form(literal: &str) -> Result<(), String> {
    if literal.starts_with('P') && iso_8601(literal) {
        return Ok(());
    }
    let mut words = literal.split_whitespace().peekable();
    if words.peek().is_none() {
        return Err(literal.to_string());
    }
    while let Some(word) = words.next() {
        let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
        if clock(unsigned) {
            continue;
        }
        let digits = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
        let (number_part, unit) = unsigned.split_at(digits);
        if !number(number_part) {
            return Err(word.to_string());
        }
        // The unit may be glued on (`10ms`) or the next word (`10 ms`).
        let (unit, shown) = match unit {
            "" => words.next().map(|unit| (unit, unit)).ok_or_else(|| word.to_string())?,
            glued => (glued, word),
        };
        if !UNITS.iter().any(|u| u.eq_ignore_ascii_case(unit)) {
            return Err(shown.to_string());
        }
    }
    Ok(())
}

/// `12`, `1.5`, `5.` or `.5`.
fn number(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    (!whole.is_empty() || !fraction.is_empty()) && digits(whole) && digits(fraction)
}

/// `H:MM`, `H:MM:SS` or `H:MM:SS.fraction`.
fn clock(text: &str) -> bool {
    let two_digits = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_digit());
    let mut parts = text.split(':');
    let hours = parts.next().unwrap_or_default();
    let Some(minutes) = parts.next() else { return false };
    let seconds_ok = match parts.next() {
        None => true,
        Some(seconds) => {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, "0"));
            two_digits(whole) && !fraction.is_empty() && fraction.chars().all(|c| c.is_ascii_digit())
        }
    };
    !hours.is_empty()
        && hours.chars().all(|c| c.is_ascii_digit())
        && two_digits(minutes)
        && seconds_ok
        && parts.next().is_none()
}

/// ISO 8601's designator form, as PostgreSQL reads it: upper case, each
/// designator at most once and in order, numbers possibly signed or with a
/// fraction.
fn iso_8601(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('P') else { return false };
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let date_count = designated(date, "YMWD");
    let time_count = time.map_or(Some(0), |time| designated(time, "HMS"));
    matches!((date_count, time_count), (Some(d), Some(t)) if d + t > 0)
}

/// How many `number designator` pairs `text` holds, with the designators
/// in the order of `order`; `None` if it holds anything else.
fn designated(mut text: &str, order: &str) -> Option<usize> {
    let mut count = 0;
    let mut allowed = order;
    while !text.is_empty() {
        let end = text.find(|c: char| c.is_ascii_uppercase())?;
        let (value, rest) = text.split_at(end);
        let designator = rest.chars().next()?;
        if !number(value.strip_prefix('-').unwrap_or(value)) {
            return None;
        }
        allowed = &allowed[allowed.find(designator)? + 1..];
        text = &rest[1..];
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_forms_pass() {
        for literal in [
            "1 hour",
            "0.1 seconds",
            "100 ms",
            "10ms",
            "90 seconds",
            "1 day 02:00:00",
            "1 day -1 hour",
            "-5 minutes",
            "+5 minutes",
            "0 seconds",
            ".5 seconds",
            "5. seconds",
            "1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds",
            "0.00025 seconds",
            "1 mon",
            "2 WEEKS",
            "1 h 30 m",
            "1:30",
            "100:00",
            "-02:00",
            "00:00:00.5",
            "P1Y2M3DT4H5M6S",
            "PT0.5S",
            "P1W",
            "P1W2D",
            "P-1D",
            "PT1H30M",
            "P1.5D",
        ] {
            assert_eq!(check_form(literal), Ok(()), "{literal}");
        }
    }

    #[test]
    fn anything_else_names_the_word_that_does_not_fit() {
        for (literal, word) in [
            ("50 seconds c", "c"),
            ("banana", "banana"),
            ("soon", "soon"),
            ("5", "5"),
            ("2 hours 30", "30"),
            ("5 minutes ago", "ago"),
            ("@ 5 minutes", "@"),
            ("1e3 seconds", "1e3"),
            ("1 decade", "decade"),
            ("0-1& * * * *", "0-1&"),
            ("1-1_0 * * * *", "1-1_0"),
            ("1:5", "1:5"),
            ("1:05:07:08", "1:05:07:08"),
            ("1..5 seconds", "1..5"),
            ("p1d", "p1d"),
            ("P", "P"),
            ("PT", "PT"),
            ("P1D2Y", "P1D2Y"),
            ("-P1D", "-P1D"),
            ("", ""),
        ] {
            assert_eq!(check_form(literal), Err(word.to_string()), "{literal}");
        }
    }
}
