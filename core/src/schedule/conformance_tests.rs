//! Table-driven conformance: expression, time zone, from (inclusive) → the
//! next instants. Two tables:
//! - `CASES` below: worked out by hand from the calendar (1 January 2026 is a
//!   Thursday) and the tz rules for 2026: US DST 8 March and 1 November, EU
//!   29 March and 25 October, Lord Howe (30-minute shift) 5 April and
//!   4 October, Kolkata none.
//! - `conformance.tsv`: computed by `scripts/cron_oracle.py`, a brute-force
//!   evaluator that shares nothing with the code under test (Python's
//!   zoneinfo, its own field matcher, a walk through real time). The oracle
//!   reproduces every hand-worked cron case in `CASES`, and a sample of its
//!   rows (the Lord Howe gap, L/W/# months) was checked by hand. Its later
//!   sections hold each item of the "Cron, exactly" issue in five zones with
//!   DST (New York, Stockholm, Sydney, Santiago, Lord Howe) and Kolkata as a
//!   control, then cases written from other projects' test suites (croner,
//!   croniter, robfig/cron), each under a comment naming its source and
//!   saying where mtask's rule gives another answer, then interval rows,
//!   which the oracle computes by PostgreSQL's rule and which were each
//!   checked against a PostgreSQL 15 server.
//!   `scripts/cron_oracle.py --check core/src/schedule/conformance.tsv`
//!   re-checks it.
//!
//! Every row is also walked backwards, as catching up after downtime does,
//! and must give the same runs.

use super::cron::looks_like_cron;
use super::{Schedule, ScheduleError, Span, time_zone};
use chrono::{DateTime, Utc};

/// Stands in for Postgres' interval input for the literals used here: whole
/// numbers of months, weeks, days, hours, minutes and seconds.
fn interval(literal: &str) -> Option<Span> {
    let words: Vec<&str> = literal.split_whitespace().collect();
    let mut span = Span::new(0, 0, 0);
    for pair in words.chunks(2) {
        let [number, unit] = pair else { return None };
        let n: i32 = number.parse().ok()?;
        match unit.trim_end_matches('s') {
            "month" => span.months += n,
            "week" => span.days += 7 * n,
            "day" => span.days += n,
            "hour" => span.micros += i64::from(n) * 3_600_000_000,
            "minute" => span.micros += i64::from(n) * 60_000_000,
            "second" => span.micros += i64::from(n) * 1_000_000,
            _ => return None,
        }
    }
    Some(span)
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

fn runs(expr: &str, tz: &str, from: &str, n: usize) -> Vec<DateTime<Utc>> {
    let schedule = Schedule::parse(expr, interval).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let tz = time_zone(tz).unwrap();
    let from = instant(from);
    std::iter::successors(schedule.next_run(from, from, tz), |prev| schedule.following_run(from, *prev, *prev, tz))
        .take(n)
        .collect()
}

/// The earliest of the `count` latest runs between the first and the last
/// of `runs`, for every count: `runs` read backwards.
fn backwards(expr: &str, tz: &str, from: &str, runs: &[DateTime<Utc>]) -> Vec<DateTime<Utc>> {
    let schedule = Schedule::parse(expr, interval).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let tz = time_zone(tz).unwrap();
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else { return Vec::new() };
    let mut found: Vec<_> = (1..=runs.len() as u32)
        .map(|count| schedule.earliest_of_latest(instant(from), *first, *last, count, tz))
        .collect();
    found.reverse();
    found
}

const CASES: &[(&str, &str, &str, &[&str])] = &[
    // Plain fields, lists, ranges, steps.
    (
        "0 3 * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z", "2026-01-03T03:00:00Z"],
    ),
    (
        "*/15 * * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"],
    ),
    (
        "5-10/5 * * * *",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z", "2026-01-01T01:05:00Z"],
    ),
    (
        "0 0,12 1,15 * *",
        "UTC",
        "2026-01-01T06:00:00Z",
        &["2026-01-01T12:00:00Z", "2026-01-15T00:00:00Z", "2026-01-15T12:00:00Z", "2026-02-01T00:00:00Z"],
    ),
    ("0 12 * * MON-FRI", "UTC", "2026-01-02T13:00:00Z", &["2026-01-05T12:00:00Z", "2026-01-06T12:00:00Z"]),
    (
        "0 0 * 2 *",
        "UTC",
        "2026-02-27T00:00:00Z",
        &["2026-02-27T00:00:00Z", "2026-02-28T00:00:00Z", "2027-02-01T00:00:00Z"],
    ),
    ("0 0 1 jan *", "UTC", "2026-06-01T00:00:00Z", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    // Sunday is 0 and 7.
    ("0 0 * * 0", "UTC", "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("0 0 * * SUN", "UTC", "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    // Leap years and 29 February.
    ("0 0 29 2 *", "UTC", "2025-01-01T00:00:00Z", &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
    ("0 0 29 2 *", "UTC", "2024-01-01T00:00:00Z", &["2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"]),
    // Last day of the month: L and pg_cron's $.
    (
        "0 0 L * *",
        "UTC",
        "2024-01-15T00:00:00Z",
        &["2024-01-31T00:00:00Z", "2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z"],
    ),
    (
        "0 0 L * *",
        "UTC",
        "2026-02-01T00:00:00Z",
        &["2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"],
    ),
    (
        "0 0 $ * *",
        "UTC",
        "2026-02-01T00:00:00Z",
        &["2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z", "2026-04-30T00:00:00Z"],
    ),
    (
        "0 0 L * *",
        "UTC",
        "2026-11-15T00:00:00Z",
        &["2026-11-30T00:00:00Z", "2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z"],
    ),
    // Last weekday of the month: nL.
    (
        "0 0 * * 5L",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z", "2026-03-27T00:00:00Z"],
    ),
    (
        "0 0 * * 1L",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-26T00:00:00Z", "2026-02-23T00:00:00Z", "2026-03-30T00:00:00Z"],
    ),
    // Nth weekday: n#k.
    (
        "0 0 * * 1#2",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-12T00:00:00Z", "2026-02-09T00:00:00Z", "2026-03-09T00:00:00Z"],
    ),
    (
        "0 0 * * FRI#1",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-02T00:00:00Z", "2026-02-06T00:00:00Z", "2026-03-06T00:00:00Z"],
    ),
    ("0 0 * * 0#5", "UTC", "2026-01-01T00:00:00Z", &["2026-03-29T00:00:00Z", "2026-05-31T00:00:00Z"]),
    // The last such weekday of the month, as OCPS 1.3 writes it: n#L.
    (
        "0 0 * * FRI#L",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z", "2026-03-27T00:00:00Z"],
    ),
    ("0 0 * * 5#L", "UTC", "2026-01-01T00:00:00Z", &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]),
    (
        "0 0 * * SUN#L",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-25T00:00:00Z", "2026-02-22T00:00:00Z", "2026-03-29T00:00:00Z"],
    ),
    ("0 0 * * 0#L,1#1", "UTC", "2026-01-01T00:00:00Z", &["2026-01-05T00:00:00Z", "2026-01-25T00:00:00Z"]),
    // Names work where numbers do: FRIL is 5L.
    ("0 0 * * FRIL", "UTC", "2026-01-01T00:00:00Z", &["2026-01-30T00:00:00Z", "2026-02-27T00:00:00Z"]),
    // SUN ending a range is 7.
    (
        "0 0 * * SAT-SUN",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-10T00:00:00Z"],
    ),
    (
        "0 0 * * 5-SUN",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z"],
    ),
    (
        "0 0 * * MON-SUN/2",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z", "2026-01-05T00:00:00Z", "2026-01-07T00:00:00Z"],
    ),
    ("0 0 * * SUN-SUN", "UTC", "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    // `*` inside a list (OCPS 1.0) is the whole range; the field starts with
    // `*` only when the `*` comes first, for the day rule as for DST.
    ("*,5 * * * *", "UTC", "2026-01-01T00:00:00Z", &["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"]),
    ("* * * * *,0", "UTC", "2026-01-01T00:00:00Z", &["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"]),
    ("0 0 5,* * MON", "UTC", "2026-01-01T00:00:00Z", &["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]),
    ("0 0 *,5 * MON", "UTC", "2026-01-01T00:00:00Z", &["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
    // `?` is `*` in the day fields.
    ("0 0 ? * FRI", "UTC", "2026-01-01T00:00:00Z", &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"]),
    ("0 0 1 * ?", "UTC", "2026-01-15T00:00:00Z", &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
    // Nearest weekday: W, never across the month boundary.
    (
        "0 0 1W * *",
        "UTC",
        "2026-02-01T00:00:00Z",
        &["2026-02-02T00:00:00Z", "2026-03-02T00:00:00Z", "2026-04-01T00:00:00Z"],
    ),
    ("0 0 15W * *", "UTC", "2026-08-01T00:00:00Z", &["2026-08-14T00:00:00Z", "2026-09-15T00:00:00Z"]),
    ("0 0 15W * *", "UTC", "2026-11-01T00:00:00Z", &["2026-11-16T00:00:00Z", "2026-12-15T00:00:00Z"]),
    ("0 0 31W * *", "UTC", "2026-05-01T00:00:00Z", &["2026-05-29T00:00:00Z"]),
    // Vixie: day of month OR day of week when both are restricted.
    (
        "0 0 13 * FRI",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z"],
    ),
    (
        "0 0 29 2 1",
        "UTC",
        "2027-02-15T00:00:00Z",
        &["2027-02-15T00:00:00Z", "2027-02-22T00:00:00Z", "2028-02-07T00:00:00Z"],
    ),
    // A field that starts with * is unrestricted: no OR.
    ("0 0 */1 * MON", "UTC", "2026-01-01T00:00:00Z", &["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
    (
        "0 0 */2 * MON",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z", "2026-02-09T00:00:00Z"],
    ),
    (
        "0 0 1 * */2",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z"],
    ),
    // Macros.
    ("@yearly", "UTC", "2026-06-01T00:00:00Z", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("@annually", "UTC", "2026-06-01T00:00:00Z", &["2027-01-01T00:00:00Z"]),
    ("@monthly", "UTC", "2026-01-15T00:00:00Z", &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
    ("@weekly", "UTC", "2026-01-01T00:00:00Z", &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("@daily", "UTC", "2026-01-01T00:00:01Z", &["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"]),
    ("@midnight", "UTC", "2026-01-01T00:00:01Z", &["2026-01-02T00:00:00Z"]),
    ("@hourly", "UTC", "2026-01-01T00:30:00Z", &["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]),
    // Seconds first in 6 fields.
    (
        "*/20 * * * * *",
        "UTC",
        "2026-01-01T00:00:05Z",
        &["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"],
    ),
    ("30 0 0 * * *", "UTC", "2026-01-01T00:00:00Z", &["2026-01-01T00:00:30Z", "2026-01-02T00:00:30Z"]),
    ("0 0 0 L 2 *", "UTC", "2028-01-01T00:00:00Z", &["2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"]),
    // Year ends.
    ("59 23 31 12 *", "UTC", "2026-12-31T23:59:30Z", &["2027-12-31T23:59:00Z"]),
    ("0 0 1 1 *", "UTC", "2026-12-31T23:59:59Z", &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
    ("*/30 * * * * *", "UTC", "2026-12-31T23:59:45Z", &["2027-01-01T00:00:00Z", "2027-01-01T00:00:30Z"]),
    // DST, America/New_York: a fixed time in the spring gap runs once, just
    // after it; a fixed time in the fall overlap runs once.
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        &["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "30 1 * * *",
        "America/New_York",
        "2026-10-31T00:00:00Z",
        &["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    (
        "0 9 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        &["2026-03-07T09:00:00-05:00", "2026-03-08T09:00:00-04:00"],
    ),
    // Vixie's rule: a job is a wildcard job only when its minute or hour
    // field starts with `*`; lists and ranges make fixed-time jobs, whose
    // times in a gap run once right after it and whose times in an overlap
    // run once.
    (
        "0 2,14 * * *",
        "America/New_York",
        "2026-03-08T05:00:00Z",
        &["2026-03-08T03:00:00-04:00", "2026-03-08T14:00:00-04:00", "2026-03-09T02:00:00-04:00"],
    ),
    (
        "0,30 2 * * *",
        "America/New_York",
        "2026-03-08T05:00:00Z",
        &["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "30 1-3 * * *",
        "America/New_York",
        "2026-03-08T05:00:00Z",
        &[
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00",
            "2026-03-09T01:30:00-04:00",
        ],
    ),
    (
        "30 1,13 * * *",
        "America/New_York",
        "2026-11-01T04:00:00Z",
        &["2026-11-01T01:30:00-04:00", "2026-11-01T13:30:00-05:00", "2026-11-02T01:30:00-05:00"],
    ),
    // At or after holds at the end of a gap: 02:30 moved to 03:00 CEST, which
    // is `from` itself.
    (
        "0 30 2 * * *",
        "Europe/Stockholm",
        "2025-03-30T01:00:00Z",
        &["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"],
    ),
    // Wildcard hours follow real time through the overlap.
    (
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T04:50:00Z",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    ),
    // Europe/Paris.
    (
        "30 2 * * *",
        "Europe/Paris",
        "2026-03-28T00:00:00Z",
        &["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    (
        "30 2 * * *",
        "Europe/Paris",
        "2026-10-24T00:00:00Z",
        &["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    ("0 0 * * *", "Europe/Paris", "2026-12-31T22:00:00Z", &["2026-12-31T23:00:00Z", "2027-01-01T23:00:00Z"]),
    // Australia/Lord_Howe moves by 30 minutes.
    (
        "0 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T00:00:00Z",
        &["2026-10-04T02:30:00+11:00", "2026-10-05T02:00:00+11:00"],
    ),
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T00:00:00Z",
        &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    ),
    // Asia/Kolkata has no DST and a half-hour offset.
    ("0 9 * * *", "Asia/Kolkata", "2026-03-08T00:00:00Z", &["2026-03-08T09:00:00+05:30", "2026-03-09T09:00:00+05:30"]),
    (
        "30 23 * * *",
        "Asia/Kolkata",
        "2026-11-01T00:00:00Z",
        &["2026-11-01T23:30:00+05:30", "2026-11-02T23:30:00+05:30"],
    ),
    // Intervals: days keep the wall time across DST, hours are elapsed time.
    (
        "every 1 day",
        "America/New_York",
        "2026-03-07T08:00:00Z",
        &["2026-03-07T03:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T03:00:00-04:00"],
    ),
    // A day from 02:30 the day before the gap is 03:30, as in PostgreSQL,
    // which reads a wall time in a gap with the offset before it; one in an
    // overlap is its later occurrence.
    (
        "every 1 day",
        "America/New_York",
        "2026-03-07T07:30:00Z",
        &["2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "every 1 day",
        "Europe/Stockholm",
        "2026-10-24T00:30:00Z",
        &["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"],
    ),
    (
        "every 1 hour",
        "America/New_York",
        "2026-11-01T05:00:00Z",
        &["2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"],
    ),
];

/// The generated part of the table: see the header of `conformance.tsv`.
const GENERATED: &str = include_str!("conformance.tsv");

#[test]
fn conformance_table_from_the_oracle() {
    let mut differ = Vec::new();
    let mut cases = 0;
    for line in GENERATED.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [expr, tz, from, expected] = cols[..] else { panic!("bad line: {line}") };
        let want: Vec<_> = expected.split(',').map(instant).collect();
        let got = runs(expr, tz, from, want.len());
        if got != want {
            differ.push(format!("{expr} in {tz} from {from}\n  want {want:?}\n  got  {got:?}"));
        }
        let back = backwards(expr, tz, from, &want);
        if back != want {
            differ.push(format!("{expr} in {tz} from {from}, backwards\n  want {want:?}\n  got  {back:?}"));
        }
        cases += 1;
    }
    assert!(differ.is_empty(), "{} of {cases} cases differ:\n{}", differ.len(), differ.join("\n"));
    assert!(cases + CASES.len() >= 550, "the table has {} cases", cases + CASES.len());
}

#[test]
fn conformance_table() {
    for (expr, tz, from, expected) in CASES {
        let got = runs(expr, tz, from, expected.len());
        let want: Vec<_> = expected.iter().map(|s| instant(s)).collect();
        assert_eq!(got, want, "{expr} in {tz} from {from}");
        assert_eq!(backwards(expr, tz, from, &want), want, "{expr} in {tz} from {from}, backwards");
    }
}

/// Catching up walks back from `now`, which may be anywhere, and must count
/// the same runs as the forward search.
#[test]
fn walking_back_follows_the_same_rule() {
    let cases: &[(&str, &str, &str, &str, u32, &str)] = &[
        // From the later pass over the repeated hour, the fixed-time run of
        // the earlier pass, at a later wall time, is the latest.
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T05:30:00Z",
            "2026-11-01T01:10:00-05:00",
            1,
            "2026-11-01T01:30:00-04:00",
        ),
        (
            "45 * * * *",
            "America/New_York",
            "2026-11-01T04:45:00Z",
            "2026-11-01T01:44:00-05:00",
            1,
            "2026-11-01T01:45:00-04:00",
        ),
        (
            "45 * * * *",
            "America/New_York",
            "2026-11-01T04:45:00Z",
            "2026-11-01T01:45:00-05:00",
            2,
            "2026-11-01T01:45:00-04:00",
        ),
        (
            "45 * * * *",
            "America/New_York",
            "2026-11-01T04:45:00Z",
            "2026-11-01T01:44:00-05:00",
            2,
            "2026-11-01T04:45:00Z",
        ),
        // A fixed time in a gap runs when the gap ends, not before.
        (
            "30 2 * * *",
            "Europe/Stockholm",
            "2025-03-29T01:30:00Z",
            "2025-03-30T03:00:00+02:00",
            1,
            "2025-03-30T03:00:00+02:00",
        ),
        (
            "30 2 * * *",
            "Europe/Stockholm",
            "2025-03-29T01:30:00Z",
            "2025-03-30T01:59:59+01:00",
            1,
            "2025-03-29T01:30:00Z",
        ),
        // A wildcard job's times in the gap never happen.
        (
            "*/30 * * * *",
            "Europe/Stockholm",
            "2025-03-30T00:00:00Z",
            "2025-03-30T03:00:00+02:00",
            2,
            "2025-03-30T01:30:00+01:00",
        ),
    ];
    for (expr, tz, due, now, count, want) in cases {
        let schedule = Schedule::parse(expr, interval).unwrap();
        let got = schedule.earliest_of_latest(instant(due), instant(due), instant(now), *count, time_zone(tz).unwrap());
        assert_eq!(got, instant(want), "{expr} in {tz}, due {due}, now {now}, count {count}");
    }
}

#[test]
fn invalid_expressions_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("* * 0 * *", "day of month 0 is out of range 1-31"),
        ("* * 32 * *", "day of month 32 is out of range 1-31"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * * 8", "day of week 8 is out of range 0-7"),
        ("60 * * * * *", "second 60 is out of range 0-59"),
        ("* * * * * * *", "a cron schedule has 5 or 6 fields, not 7"),
        ("*/0 * * * *", "invalid minute \"*/0\" in cron schedule"),
        ("5-1 * * * *", "invalid minute \"5-1\" in cron schedule"),
        ("-1 * * * *", "invalid minute \"-1\" in cron schedule"),
        ("0 0 * * 1#6", "invalid day of week \"1#6\" in cron schedule"),
        ("0 0 1-2W * *", "invalid day of month \"1-2W\" in cron schedule"),
        ("0 0 * * 1#0", "invalid day of week \"1#0\" in cron schedule"),
        ("0 0 * * 5-0", "invalid day of week \"5-0\" in cron schedule"),
        ("0 0 * * FRI-MON", "invalid day of week \"FRI-MON\" in cron schedule"),
        ("0 0 * * L", "invalid day of week \"L\" in cron schedule"),
        ("0 0 * * #2", "invalid day of week \"#2\" in cron schedule"),
        ("? * * * *", "invalid minute \"?\" in cron schedule"),
        ("0 ?/2 * * *", "invalid hour \"?/2\" in cron schedule"),
        ("1,,2 * * * *", "invalid minute \"1,,2\" in cron schedule"),
        ("0 0 L/2 * *", "invalid day of month \"L/2\" in cron schedule"),
        ("0 0 * JAN-FOO *", "invalid month \"JAN-FOO\" in cron schedule"),
        ("@often", "unknown schedule macro \"@often\""),
        // Text that looks like cron fails as cron, never as some interval.
        ("0-1& * * * *", "invalid minute \"0-1&\" in cron schedule"),
        ("1-1_0 * * * *", "invalid minute \"1-1_0\" in cron schedule"),
        ("*/5,x * * * *", "invalid minute \"x\" in cron schedule"),
        ("0 3 * * * junk", "invalid day of week \"junk\" in cron schedule"),
        ("0 3 1 JNA *", "invalid month \"JNA\" in cron schedule"),
        ("5 4 3 2", "a cron schedule has 5 or 6 fields, not 4"),
        // And an interval takes only its documented forms.
        ("50 seconds c", "invalid schedule \"50 seconds c\": cannot read \"c\""),
        ("every banana", "invalid schedule \"every banana\": cannot read \"banana\""),
        ("1 hour 30 minuts", "invalid schedule \"1 hour 30 minuts\": cannot read \"minuts\""),
        ("SELECT * FROM t", "invalid schedule \"SELECT * FROM t\": cannot read \"SELECT\""),
        ("5", "invalid schedule \"5\""),
        ("0 0 31 2 *", "cron schedule \"0 0 31 2 *\" never runs"),
        ("0 0 30 2 *", "cron schedule \"0 0 30 2 *\" never runs"),
    ];
    for (expr, message) in cases {
        match Schedule::parse(expr, interval) {
            Ok(s) => panic!("{expr} parsed as {s}"),
            Err(e) => assert_eq!(e.message(), *message, "{expr}"),
        }
    }
    assert_eq!(time_zone("Europe/Pariss"), Err(ScheduleError::UnknownTimeZone("Europe/Pariss".into())));
    assert!(time_zone("Europe/Paris").is_ok());
}

#[test]
fn cron_is_stored_normalised() {
    for (input, stored) in [
        ("0 3 * * mon-fri", "0 3 * * MON-FRI"),
        ("  0   0  $  *  * ", "0 0 L * *"),
        ("@Daily", "@daily"),
        ("0 0 2/5 * *", "0 0 2-31/5 * *"),
        ("*/10,5/20 * * * *", "*/10,5-59/20 * * * *"),
        ("0 0 * * sat-sun", "0 0 * * SAT-SUN"),
        ("0 0 * * fri#l", "0 0 * * FRI#L"),
        ("*,5 * * * *", "*,5 * * * *"),
        ("0 0 ? * MON", "0 0 ? * MON"),
    ] {
        assert_eq!(Schedule::parse(input, interval).unwrap().to_string(), stored);
    }
}

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[test]
fn parser_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let atoms = [
        "*",
        "?",
        "L",
        "W",
        "#",
        "$",
        "/",
        "-",
        ",",
        " ",
        "0",
        "1",
        "5",
        "7",
        "12",
        "31",
        "59",
        "60",
        "99",
        "MON",
        "JAN",
        "@",
        "@daily",
        "every",
        "x",
        "\u{e9}",
        "\t",
        "LW",
        "5L",
        "1#2",
        "#L",
        "SUN",
        "SAT-SUN",
        "-1",
        "4294967296",
    ];
    for _ in 0..20_000 {
        let len = (rng.next() % 12) as usize;
        let text: String = (0..len).map(|_| rng.pick(&atoms)).collect();
        // What our field check accepts, croner must too: its errors never
        // reach the user.
        if let Err(e) = Schedule::parse(&text, |_| None) {
            assert!(!(looks_like_cron(&text) && matches!(e, ScheduleError::Unparsable(_))), "{text:?}: {e}");
        }
    }
}

#[test]
fn runs_are_increasing_and_match_the_expression() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let second = ["0", "*/15", "30"];
    let minute = ["*", "0", "*/5", "15,45", "0-10/5"];
    let hour = ["*", "3", "0-6", "*/6", "22-23"];
    let dom = ["*", "1", "L", "15W", "13", "1-7"];
    let month = ["*", "2", "JAN-MAR", "*/3"];
    let dow = ["*", "1-5", "SUN", "5L", "1#1", "0,6"];
    let zones = ["UTC", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata"];
    let mut checked = 0;
    for i in 0..400 {
        let fields = [rng.pick(&minute), rng.pick(&hour), rng.pick(&dom), rng.pick(&month), rng.pick(&dow)];
        let expr = if i % 3 == 0 { format!("{} {}", rng.pick(&second), fields.join(" ")) } else { fields.join(" ") };
        let Ok(Schedule::Cron(cron)) = Schedule::parse(&expr, interval) else {
            panic!("{expr} did not parse as cron");
        };
        let tz = time_zone(rng.pick(&zones)).unwrap();
        let from = instant("2026-01-01T00:00:00Z") + chrono::Duration::hours((rng.next() % (24 * 365)) as i64);
        let schedule = Schedule::Cron(cron.clone());
        let mut prev: Option<DateTime<Utc>> = None;
        let mut t = schedule.next_run(from, from, tz);
        let first = t;
        for _ in 0..8 {
            let Some(run) = t else { break };
            assert!(run >= from, "{expr}: {run} before {from}");
            if let Some(p) = prev {
                assert!(run > p, "{expr} in {tz}: {run} not after {p}");
            }
            // The one allowed exception: a fixed time in a spring-forward gap
            // runs at the first instant after it, which may not match.
            let after_gap = {
                use chrono::Offset;
                let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
                offset(run - chrono::Duration::seconds(1)) != offset(run)
            };
            assert!(cron.matches(run, tz) || after_gap, "{expr} in {tz}: {run} does not match");
            // Walking back from anywhere between two runs finds the earlier.
            if let (Some(first), Some(p)) = (first, prev) {
                let gap = (run - p).num_microseconds().unwrap_or(1) as u64;
                let between = p + chrono::Duration::microseconds((rng.next() % gap) as i64);
                let back = schedule.earliest_of_latest(from, first, between, 1, tz);
                assert_eq!(back, p, "{expr} in {tz}: back from {between}");
            }
            checked += 1;
            prev = Some(run);
            t = schedule.following_run(from, run, run, tz);
        }
    }
    assert!(checked > 1000, "only {checked} runs checked");
}
