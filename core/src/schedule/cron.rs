//! Cron expressions: 5 fields (`min hour dom mon dow`) or 6 (seconds first),
//! the `@` macros, and pg_cron's `$` for the last day of the month.
//!
//! `croner` finds the wall-clock times that match, searching the naive local
//! calendar; which instants those times run at, across DST changes, is decided
//! here, by Vixie cron's rule. croner is fronted by our own field check because
//! a DBA needs "hour 24 is out of range 0-23", not "number out of bounds", and
//! because croner also takes a 7th (year) field we do not offer.

use super::ScheduleError;
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    cron: Cron,
    /// Vixie's rule: a job whose minute or hour field starts with `*` is a
    /// wildcard job and follows real time through a DST change (times in a
    /// gap do not happen, times in an overlap happen twice). Any other job is
    /// a fixed-time job: it runs at the first instant the clock shows its time
    /// or a later one, so once in an overlap and once, right after it, for
    /// times in a gap.
    follows_real_time: bool,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronSchedule {}

const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Field = Field { name: "second", min: 0, max: 59, names: &[] };
const FIVE: [Field; 5] = [
    Field { name: "minute", min: 0, max: 59, names: &[] },
    Field { name: "hour", min: 0, max: 23, names: &[] },
    Field { name: "day of month", min: 1, max: 31, names: &[] },
    Field { name: "month", min: 1, max: 12, names: MONTHS },
    Field { name: "day of week", min: 0, max: 7, names: DAYS },
];

/// Whether `text`, which is no interval, is meant as cron: a macro, or
/// fields most of which are made of cron's characters and names, three or
/// more of them or one with a `*`. "* * * *" is cron with a field missing and
/// "0-1& * * * *" cron with a bad minute; "1 hour 30 minuts" is a mistyped
/// interval, and so is "SELECT * FROM t".
pub fn looks_like_cron(text: &str) -> bool {
    let text = text.trim();
    if text.starts_with('@') {
        return true;
    }
    let fields: Vec<String> = text.split_whitespace().map(str::to_ascii_uppercase).collect();
    let cronish = fields
        .iter()
        .filter(|f| {
            let bare = MONTHS.iter().chain(DAYS).fold(f.to_string(), |f, name| f.replace(name, ""));
            bare.chars().all(|c| c.is_ascii_digit() || "*,-/?LW#$".contains(c))
        })
        .count();
    2 * cronish > fields.len() && (fields.len() >= 3 || text.contains('*'))
}

fn bad(field: &Field, part: &str) -> ScheduleError {
    ScheduleError::BadCronField { field: field.name, part: part.to_string() }
}

fn number(field: &Field, token: &str) -> Result<u32, ScheduleError> {
    if let Some(i) = field.names.iter().position(|n| *n == token) {
        return Ok(i as u32 + field.min);
    }
    let n: u32 = token.parse().map_err(|_| bad(field, token))?;
    if n < field.min || n > field.max {
        return Err(ScheduleError::CronOutOfRange { field: field.name, value: n, min: field.min, max: field.max });
    }
    Ok(n)
}

/// Checks one field's comma-separated parts: `*`, `a`, `a-b`, any of those
/// `/step`, `?` for `*` in the day fields, and the day specials `L`, `LW`,
/// `nW` (day of month) and `nL`, `n#k`, `n#L` (day of week). Returns the field
/// as stored, with `a/n` written as `a-max/n` (the meaning Quartz, robfig/cron
/// and croniter give it), and the field in numbers only, as croner reads it:
/// `SUN` ending a range is 7, `#L` is `L`, and a `*` inside a list is the
/// field's whole range, so that croner does not take the field for a bare `*`,
/// whose day-field rule differs. Names and letters are read in any case and
/// stored in upper case.
fn check_field(field: &Field, text: &str) -> Result<(String, String), ScheduleError> {
    let day_of_month = field.name == "day of month";
    let day_of_week = field.name == "day of week";
    let listed = text.contains(',');
    let (mut stored, mut numeric) = (Vec::new(), Vec::new());
    for written in text.split(',') {
        // A bad number is a bad part: `invalid minute "0-1&"`, not "1&",
        // shown as it was written.
        let shown = if written.is_empty() { text } else { written };
        let part = written.to_ascii_uppercase();
        let part = part.as_str();
        let num = |token: &str| match number(field, token) {
            Err(ScheduleError::BadCronField { .. }) => Err(bad(field, shown)),
            other => other,
        };
        let (base, step) = match part.split_once('/') {
            Some((b, s)) => (b, Some(s)),
            None => (part, None),
        };
        if let Some(step) = step {
            let n: u32 = step.parse().map_err(|_| bad(field, shown))?;
            if n == 0 || n > field.max.max(1) {
                return Err(bad(field, shown));
            }
        }
        let suffix = step.map(|n| format!("/{n}")).unwrap_or_default();
        let mut stored_part = part.to_string();
        let numeric_part = match base {
            "*" => format!("*{suffix}"),
            "?" if day_of_month || day_of_week => format!("*{suffix}"),
            _ if step.is_some() && !base.contains('-') => {
                let a = num(base)?;
                stored_part = format!("{base}-{}{suffix}", field.max);
                format!("{a}-{}{suffix}", field.max)
            }
            _ if base.contains('-') => {
                let (a, b) = base.split_once('-').unwrap_or_default();
                let a = num(a)?;
                // SUN is 0 or 7; ending a range it is 7, as in `SAT-SUN`.
                let b = if day_of_week && b == "SUN" && a > 0 { 7 } else { num(b)? };
                if a > b {
                    return Err(bad(field, shown));
                }
                format!("{a}-{b}{suffix}")
            }
            _ if step.is_some() => return Err(bad(field, shown)),
            "L" | "LW" if day_of_month => base.to_string(),
            _ if day_of_month && base.len() > 1 && base.ends_with('W') => format!("{}W", num(&base[..base.len() - 1])?),
            _ if day_of_week && base.contains('#') => {
                let (weekday, nth) = base.split_once('#').unwrap_or_default();
                let weekday = num(weekday)?;
                match nth {
                    "L" => format!("{weekday}L"),
                    "1" | "2" | "3" | "4" | "5" => format!("{weekday}#{nth}"),
                    _ => return Err(bad(field, shown)),
                }
            }
            _ if day_of_week && base.len() > 1 && base.ends_with('L') => format!("{}L", num(&base[..base.len() - 1])?),
            _ => num(base)?.to_string(),
        };
        let numeric_part =
            if listed && numeric_part == "*" { format!("{}-{}", field.min, field.max) } else { numeric_part };
        stored.push(stored_part);
        numeric.push(numeric_part);
    }
    Ok((stored.join(","), numeric.join(",")))
}

impl CronSchedule {
    pub fn parse(text: &str) -> Result<CronSchedule, ScheduleError> {
        let trimmed = text.trim();
        let (name, expr) = if trimmed.starts_with('@') {
            let lower = trimmed.to_ascii_lowercase();
            let (name, expr) = MACROS
                .iter()
                .find(|(m, _)| *m == lower)
                .ok_or_else(|| ScheduleError::UnknownMacro(trimmed.to_string()))?;
            (Some(*name), expr.to_string())
        } else {
            (None, trimmed.to_string())
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let with_seconds = match fields.len() {
            5 => false,
            6 => true,
            n => return Err(ScheduleError::CronFieldCount(n)),
        };
        let specs = std::iter::once(&SECOND).filter(|_| with_seconds).chain(FIVE.iter());
        let (mut stored, mut numeric) = (Vec::with_capacity(fields.len()), Vec::with_capacity(fields.len()));
        for (spec, field) in specs.zip(&fields) {
            // pg_cron writes the last day of the month as `$`.
            let field = if spec.name == "day of month" { field.replace('$', "L") } else { field.to_string() };
            let (as_stored, in_numbers) = check_field(spec, &field)?;
            stored.push(as_stored);
            numeric.push(in_numbers);
        }
        let normal = name.map_or_else(|| stored.join(" "), str::to_string);
        // Vixie: when day of month and day of week are both restricted, a day
        // matching either runs; a field that starts with `*` or `?` (even
        // `*/2`) counts as unrestricted, and then both must match.
        let (dom, dow) = (fields[fields.len() - 3], fields[fields.len() - 1]);
        let either_starred = dom.starts_with(['*', '?']) || dow.starts_with(['*', '?']);
        let (minute, hour) = (fields[fields.len() - 5], fields[fields.len() - 4]);
        let follows_real_time = minute.starts_with('*') || hour.starts_with('*');
        // Every field has passed our own check, so croner failing is our bug;
        // its message would mean nothing to the user.
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .dom_and_dow(either_starred)
            .build()
            .parse(&numeric.join(" "))
            .map_err(|_| ScheduleError::Unparsable(trimmed.to_string()))?;
        let schedule = CronSchedule { text: normal, cron, follows_real_time };
        // `0 0 31 2 *` is well-formed but never comes.
        let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        if schedule.next_at_or_after(epoch, Tz::UTC).is_none() {
            return Err(ScheduleError::NeverMatches(trimmed.to_string()));
        }
        Ok(schedule)
    }

    /// The first run at or after `t`, reading the fields as wall time in `tz`.
    pub fn next_at_or_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // A fixed-time job still owes the runs of a gap that ends at `t`: its
        // search starts just after the last wall time shown before `t`.
        let start = if self.follows_real_time {
            wall(t, tz)?
        } else {
            wall(t.checked_sub_signed(MICROSECOND)?, tz)?.checked_add_signed(MICROSECOND)?
        };
        let found = self.search(start, t, Toward::Later, tz);
        if !self.follows_real_time {
            return found;
        }
        match tz.from_local_datetime(&start) {
            // On the earlier pass over a repeated hour, the later pass is still
            // ahead, and it begins at wall times before `start`.
            LocalResult::Ambiguous(a, b) if t < a.max(b) => {
                let twin = self.search(start - (b - a).abs(), t, Toward::Later, tz);
                [found, twin].into_iter().flatten().min()
            }
            _ => found,
        }
    }

    /// The last run at or before `t`, by the same rule.
    fn last_at_or_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start = wall(t, tz)?;
        let found = self.search(start, t, Toward::Earlier, tz);
        match tz.from_local_datetime(&start) {
            // On the later pass over a repeated hour, the runs of the earlier
            // pass at wall times after `start` are behind too.
            LocalResult::Ambiguous(a, b) if t >= a.max(b) => {
                let twin = self.search(start + (b - a).abs(), t, Toward::Earlier, tz);
                found.max(twin)
            }
            _ => found,
        }
    }

    /// Walks the matching wall times from `from` toward `toward` and returns
    /// the first run on the right side of `bound`. Wall time and real time
    /// run in the same order except over a repeated hour, which callers
    /// search twice.
    fn search(&self, from: NaiveDateTime, bound: DateTime<Utc>, toward: Toward, tz: Tz) -> Option<DateTime<Utc>> {
        let mut local = self.matching(from, toward, true)?;
        loop {
            let (runs, resume) = self.runs_at(local, toward, tz)?;
            let mut runs = runs.into_iter().flatten();
            let hit = match toward {
                Toward::Later => runs.find(|run| *run >= bound),
                Toward::Earlier => runs.rev().find(|run| *run <= bound),
            };
            if hit.is_some() {
                return hit;
            }
            local = self.matching(resume, toward, false)?;
        }
    }

    /// The next (or previous) matching wall time from `from`. croner searches
    /// whole seconds of a calendar without time zones here, from the second
    /// `from` falls in; forward, that second is already past unless `from`
    /// is on it exactly.
    fn matching(&self, from: NaiveDateTime, toward: Toward, inclusive: bool) -> Option<NaiveDateTime> {
        match toward {
            Toward::Later => self.cron.find_next_occurrence(&from, inclusive && from.nanosecond() == 0),
            Toward::Earlier => self.cron.find_previous_occurrence(&from, inclusive),
        }
        .ok()
    }

    /// The instants at which the matching wall time `local` runs, earliest
    /// first, and where the search goes on from: past the whole of a gap.
    fn runs_at(
        &self,
        local: NaiveDateTime,
        toward: Toward,
        tz: Tz,
    ) -> Option<([Option<DateTime<Utc>>; 2], NaiveDateTime)> {
        let utc = |t: DateTime<Tz>| t.with_timezone(&Utc);
        Some(match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => ([Some(utc(t)), None], local),
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = (utc(a.min(b)), utc(a.max(b)));
                ([Some(first), Some(second).filter(|_| self.follows_real_time)], local)
            }
            LocalResult::None => {
                let end = gap_end(tz, local)?;
                let resume = match toward {
                    Toward::Later => wall(end, tz)? - ONE_SECOND,
                    Toward::Earlier => wall(end - ONE_SECOND, tz)? + ONE_SECOND,
                };
                ([Some(end).filter(|_| !self.follows_real_time), None], resume)
            }
        })
    }

    /// The earliest of the `count` latest runs in `[due, now]`, or `due` when
    /// there are no more than `count` of them. Walks back from `now`, so its
    /// cost is `count` searches however long the gap.
    pub fn earliest_of_latest(&self, due: DateTime<Utc>, now: DateTime<Utc>, count: u32, tz: Tz) -> DateTime<Utc> {
        let mut cursor = now;
        let mut earliest = due;
        for _ in 0..count {
            match self.last_at_or_before(cursor, tz) {
                Some(found) if found > due => {
                    earliest = found;
                    let Some(before) = found.checked_sub_signed(MICROSECOND) else { return due };
                    cursor = before;
                }
                _ => return due,
            }
        }
        earliest
    }
}

#[derive(Debug, Clone, Copy)]
enum Toward {
    Later,
    Earlier,
}

const MICROSECOND: Duration = Duration::microseconds(1);
const ONE_SECOND: Duration = Duration::seconds(1);

/// The wall time in `tz` at `t`.
fn wall(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    t.naive_utc().checked_add_offset(tz.offset_from_utc_datetime(&t.naive_utc()).fix())
}

/// For a wall time in a spring-forward gap, the instant the gap ends: the
/// first whose wall time is later. Transitions fall on whole seconds, and no
/// UTC offset reaches a day, so a bisection over the day either side finds it.
fn gap_end(tz: Tz, inside: NaiveDateTime) -> Option<DateTime<Utc>> {
    let shows_later =
        |secs: i64| DateTime::from_timestamp(secs, 0).and_then(|t| wall(t, tz)).is_some_and(|w| w > inside);
    let mut before = inside.and_utc().timestamp() - 86_400;
    let mut after = before + 2 * 86_400;
    while after - before > 1 {
        let mid = before + (after - before) / 2;
        if shows_later(mid) {
            after = mid;
        } else {
            before = mid;
        }
    }
    DateTime::from_timestamp(after, 0)
}

#[cfg(test)]
impl CronSchedule {
    /// Whether `t`, as wall time in `tz`, matches every field; a check that
    /// shares none of the search code in `next_at_or_after`.
    pub fn matches(&self, t: DateTime<Utc>, tz: Tz) -> bool {
        wall(t, tz).is_some_and(|local| self.cron.is_time_matching(&local).unwrap_or(false))
    }
}

impl std::fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
