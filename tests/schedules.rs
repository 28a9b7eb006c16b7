//! Cron schedules, time zones and the next-run preview on a real server.

mod common;

use common::{Cluster, assert_error};

#[test]
fn six_field_cron_with_a_seconds_step_runs_on_its_instants() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE TABLE hits (at timestamptz DEFAULT clock_timestamp())");
    let id = c.sql("SELECT mtask.schedule('cron2s', '*/2 * * * * *', 'INSERT INTO hits DEFAULT VALUES')");
    c.wait_for(&format!("SELECT run_count >= 3 FROM mtask.tasks WHERE id = {id}"), "t");
    // Every run started in an even second, none twice in the same second, and
    // the next run is an even second too.
    let q = format!(
        "SELECT bool_and(extract(second FROM date_trunc('second', started_at))::int % 2 = 0),
                count(*) = count(DISTINCT date_trunc('second', started_at)),
                (SELECT extract(second FROM next_run_at)::numeric % 2 = 0 FROM mtask.tasks WHERE id = {id})
         FROM mtask.runs WHERE task_id = {id}"
    );
    assert_eq!(c.sql(&q), "t|t|t");
    assert_eq!(c.sql(&format!("SELECT schedule, timezone FROM mtask.tasks WHERE id = {id}")), "*/2 * * * * *|UTC");
}

#[test]
fn next_runs_previews_cron_intervals_and_time_zones() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    assert_eq!(
        c.sql("SELECT string_agg(r::text, ',') FROM mtask.next_runs('30 2 * * *', 3, '2026-03-07 00:00+00', 'America/New_York') r"),
        "2026-03-07 07:30:00+00,2026-03-08 07:00:00+00,2026-03-09 06:30:00+00"
    );
    assert_eq!(
        c.sql("SELECT string_agg(r::text, ',') FROM mtask.next_runs('every 90 minutes', 3, '2026-01-01 00:00+00') r"),
        "2026-01-01 00:00:00+00,2026-01-01 01:30:00+00,2026-01-01 03:00:00+00"
    );
    assert_eq!(
        c.sql("SET mtask.timezone = 'Asia/Kolkata'; SELECT min(r)::text FROM mtask.next_runs('0 9 * * *', 1, '2026-01-01 00:00+00') r"),
        "2026-01-01 03:30:00+00"
    );
    assert_eq!(c.sql("SELECT count(*) FROM mtask.next_runs('@hourly')"), "5");
}

#[test]
fn time_zone_is_stored_and_used() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    c.sql("SELECT mtask.schedule('paris', '0 3 * * *', 'SELECT 1', timezone => 'Europe/Paris')");
    assert_eq!(
        c.sql("SELECT timezone, to_char(next_run_at AT TIME ZONE 'Europe/Paris', 'HH24:MI') FROM mtask.tasks WHERE name = 'paris'"),
        "Europe/Paris|03:00"
    );
    // Changing the zone recomputes the next run.
    c.sql("UPDATE mtask.tasks SET timezone = 'Asia/Kolkata' WHERE name = 'paris'");
    assert_eq!(
        c.sql("SELECT to_char(next_run_at AT TIME ZONE 'Asia/Kolkata', 'HH24:MI') FROM mtask.tasks WHERE name = 'paris'"),
        "03:00"
    );
    c.sql("SET mtask.timezone = 'America/New_York'; SELECT mtask.schedule('ny', '@daily', 'SELECT 1')");
    assert_eq!(c.sql("SELECT timezone FROM mtask.tasks WHERE name = 'ny'"), "America/New_York");
}

#[test]
fn bad_cron_and_time_zones_are_errors_naming_the_problem() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    let cases: &[(&str, &[&str])] = &[
        ("SELECT mtask.schedule('a', '0 24 * * *', 'SELECT 1')", &["hour 24 is out of range 0-23", "HINT:"]),
        ("SELECT mtask.schedule('a', '* * * *', 'SELECT 1')", &["5 or 6 fields, not 4", "HINT:"]),
        ("SELECT mtask.schedule('a', '0 0 31 2 *', 'SELECT 1')", &["never runs", "HINT:"]),
        ("SELECT mtask.schedule('a', '@often', 'SELECT 1')", &["unknown schedule macro", "HINT:"]),
        ("SELECT mtask.schedule('a', '@daily', 'SELECT 1', timezone => 'Europe/Pariss')", &["unknown time zone \"Europe/Pariss\"", "pg_timezone_names"]),
        ("SELECT * FROM mtask.next_runs('0 0 * * 9')", &["day of week 9 is out of range 0-7"]),
        ("SELECT * FROM mtask.next_runs('@daily', -1)", &["n must be between"]),
        ("SET mtask.timezone = 'Mars/Olympus'; SELECT mtask.schedule('a', '@daily', 'SELECT 1')", &["unknown time zone \"Mars/Olympus\""]),
    ];
    for (sql, needles) in cases {
        assert_error(c.try_sql(sql), "22023", needles);
    }
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "0");
}
