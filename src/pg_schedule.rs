//! The Postgres side of schedules: reads interval literals with Postgres' own
//! parser, moves instants between `timestamptz` and chrono, and turns schedule
//! errors into ERRORs with hints.

use crate::guc;
use crate::report::raise;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mtask_core::schedule::{self, Schedule, ScheduleError, Span};
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;
use std::ffi::CString;

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

pub fn to_chrono(ts: TimestampWithTimeZone) -> Option<DateTime<Utc>> {
    if ts.is_infinity() || ts.is_neg_infinity() {
        return None;
    }
    let pg_micros: i64 = ts.into();
    DateTime::from_timestamp_micros(pg_micros.checked_add(PG_EPOCH_OFFSET_MICROS)?)
}

/// `t` as a timestamptz; None if it is outside what one holds.
pub fn to_pg(t: DateTime<Utc>) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(t.timestamp_micros().checked_sub(PG_EPOCH_OFFSET_MICROS)?).ok()
}

/// Postgres' `interval_in`. A parse error is caught without a subtransaction:
/// interval input holds no locks, buffers or other resources that would need
/// one to be released, only palloc'd memory.
fn read_interval(literal: &str) -> Option<Span> {
    let c = CString::new(literal).ok()?;
    PgTryBuilder::new(|| unsafe {
        pgrx::direct_function_call::<Interval>(
            pg_sys::interval_in,
            &[
                Some(pg_sys::Datum::from(c.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        )
    })
    .catch_others(|_| None)
    .execute()
    .map(|iv| Span::new(iv.months(), iv.days(), iv.micros()))
}

fn raise_schedule_error(e: ScheduleError) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.message(), e.hint())
}

pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
    Schedule::parse(text, read_interval)
}

pub fn parse_or_raise(text: &str) -> Schedule {
    parse(text).unwrap_or_else(|e| raise_schedule_error(e))
}

/// A time zone by name; `None` means the `mtask.timezone` setting.
pub fn time_zone_or_raise(name: Option<&str>) -> Tz {
    let name = name.map_or_else(guc::timezone, str::to_string);
    schedule::time_zone(&name).unwrap_or_else(|e| raise_schedule_error(e))
}

pub fn instant_or_raise(what: &str, ts: TimestampWithTimeZone) -> DateTime<Utc> {
    to_chrono(ts).unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{what} must be a finite timestamp"),
            "Use a real point in time, not infinity.",
        )
    })
}
