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
    // DST by Vixie's rule: a list in the hour makes a fixed-time job, whose
    // times in the spring-forward gap run once, at its end.
    assert_eq!(
        c.sql("SELECT string_agg(r::text, ',') FROM mtask.next_runs('0,30 2 * * *', 2, '2026-03-08 05:00+00', 'America/New_York') r"),
        "2026-03-08 07:00:00+00,2026-03-09 06:00:00+00"
    );
    // At or after holds on the instant a gap moved a run to.
    assert_eq!(
        c.sql(
            "SELECT min(r)::text FROM mtask.next_runs('0 30 2 * * *', 1, '2025-03-30 01:00+00', 'Europe/Stockholm') r"
        ),
        "2025-03-30 01:00:00+00"
    );
    // Intervals add as PostgreSQL adds them, in a gap too.
    assert_eq!(
        c.sql(
            "SET TimeZone = 'America/New_York';
             SELECT max(r) = '2026-03-07 02:30'::timestamptz + interval '1 day'
             FROM mtask.next_runs('every 1 day', 2, '2026-03-07 02:30', 'America/New_York') r"
        ),
        "t"
    );
    // n#L, SUN ending a range, `*` in a list.
    for schedule in ["0 0 * * FRI#L", "0 0 * * SAT-SUN", "*,5 * * * *", "0 0 ? * MON"] {
        assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.next_runs('{schedule}', 3)")), "3", "{schedule}");
    }
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
        c.sql(
            "SELECT to_char(next_run_at AT TIME ZONE 'Asia/Kolkata', 'HH24:MI') FROM mtask.tasks WHERE name = 'paris'"
        ),
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
        (
            "SELECT mtask.schedule('a', '@daily', 'SELECT 1', timezone => 'Europe/Pariss')",
            &["unknown time zone \"Europe/Pariss\"", "pg_timezone_names"],
        ),
        ("SELECT * FROM mtask.next_runs('0 0 * * 9')", &["day of week 9 is out of range 0-7"]),
        // Text that looks like cron fails as cron; an interval takes only its
        // documented forms.
        (
            "SELECT mtask.schedule('a', '0-1& * * * *', 'SELECT 1')",
            &["invalid minute \"0-1&\" in cron schedule", "HINT:"],
        ),
        ("SELECT mtask.schedule('a', '? * * * *', 'SELECT 1')", &["invalid minute \"?\" in cron schedule"]),
        (
            "SELECT mtask.schedule('a', '50 seconds c', 'SELECT 1')",
            &["invalid schedule \"50 seconds c\": cannot read \"c\"", "HINT:"],
        ),
        ("SELECT * FROM mtask.next_runs('@daily', -1)", &["n must be between"]),
        (
            "SET mtask.timezone = 'Mars/Olympus'; SELECT mtask.schedule('a', '@daily', 'SELECT 1')",
            &["unknown time zone \"Mars/Olympus\""],
        ),
    ];
    for (sql, needles) in cases {
        assert_error(c.try_sql(sql), "22023", needles);
    }
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "0");
}

/// An hour of downtime, made without waiting an hour: with the scheduler
/// off, each task's next run is moved back to its first slot, 65 minutes ago,
/// so slots -65, -55, ... -5 minutes have all been missed. Then the server
/// stops and starts with the scheduler on.
#[test]
fn missed_policies_after_a_server_stop_and_start() {
    let c = Cluster::start("mtask.enabled = off\nmtask.max_catchup = 3\nmtask.missed_grace = '1s'");
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE TABLE hits (task text, at timestamptz DEFAULT clock_timestamp())");
    c.sql(
        "CREATE TABLE t0 AS SELECT date_trunc('minute', now()) - interval '65 minutes' AS start_at;
         SELECT mtask.schedule(p, 'every 10 minutes', format('INSERT INTO hits VALUES (%L)', p),
                               start_at => (SELECT start_at FROM t0), missed => p)
         FROM unnest(ARRAY['once', 'skip', 'all']) p;
         SELECT mtask.schedule_at('late-once', now() - interval '1 hour', 'INSERT INTO hits VALUES (''late-once'')');
         SELECT mtask.schedule_at('late-skip', now() - interval '1 hour', 'INSERT INTO hits VALUES (''late-skip'')',
                                  missed => 'skip');
         UPDATE mtask.tasks SET next_run_at = start_at WHERE kind = 'recurring'",
    );
    c.sql("ALTER SYSTEM SET mtask.enabled = on");
    c.restart();
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE next_run_at IS NULL OR next_run_at > now()", "5");

    // Minutes after start_at of each recorded slot, per task and status.
    let slots = |task: &str, status: &str| {
        c.sql(&format!(
            "SELECT coalesce(string_agg((extract(epoch FROM r.scheduled_for - t0.start_at) / 60)::int::text, ','
                                        ORDER BY r.scheduled_for), '')
             FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id, t0
             WHERE t.name = '{task}' AND r.status = '{status}'"
        ))
    };
    // once: one catch-up run for the latest slot; the others are recorded as skipped.
    assert_eq!(slots("once", "succeeded"), "60");
    assert_eq!(slots("once", "skipped"), "0");
    // skip: nothing runs.
    assert_eq!(slots("skip", "succeeded"), "");
    assert_eq!(slots("skip", "skipped"), "0");
    // all: the latest three (mtask.max_catchup), oldest first.
    assert_eq!(slots("all", "succeeded"), "40,50,60");
    assert_eq!(slots("all", "skipped"), "0");
    assert_eq!(c.sql("SELECT string_agg(task, ',' ORDER BY at) FROM hits WHERE task = 'all'"), "all,all,all");
    // Every recurring task then follows its schedule: next slot at +70.
    assert_eq!(
        c.sql(
            "SELECT string_agg(DISTINCT (extract(epoch FROM next_run_at - t0.start_at) / 60)::int::text, ',')
               FROM mtask.tasks, t0 WHERE kind = 'recurring'"
        ),
        "70"
    );
    // A late one-shot task runs, unless it may skip.
    assert_eq!(
        c.sql(
            "SELECT string_agg(name || ':' || status || ':' || run_count, ',' ORDER BY name)
               FROM mtask.tasks WHERE kind = 'once'"
        ),
        "late-once:done:1,late-skip:done:0"
    );
    assert_eq!(c.sql("SELECT string_agg(task, ',') FROM hits WHERE task LIKE 'late%'"), "late-once");
    assert!(
        c.sql("SELECT message FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'late-skip'")
            .contains("were missed")
    );
}

#[test]
fn fixed_delay_counts_from_the_end_of_each_run() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    let id = c.sql("SELECT mtask.schedule('delay', 'after 1 second', 'SELECT pg_sleep(0.3)')");
    assert_eq!(c.sql(&format!("SELECT schedule FROM mtask.tasks WHERE id = {id}")), "after 1 second");
    c.wait_for(&format!("SELECT run_count >= 3 FROM mtask.tasks WHERE id = {id}"), "t");
    // Each run starts at least a second after the one before it ended; at a
    // fixed rate they would start a second apart, 0.3 s sooner.
    let q = format!(
        "SELECT bool_and(gap >= interval '0.95 seconds'), count(*) >= 2 FROM (
             SELECT started_at - lag(finished_at) OVER (ORDER BY id) AS gap
             FROM mtask.runs WHERE task_id = {id}) g WHERE gap IS NOT NULL"
    );
    assert_eq!(c.sql(&q), "t|t");
}

#[test]
fn max_runs_and_end_at_end_a_task() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE TABLE hits (task text)");
    c.sql("SELECT mtask.schedule('three', 'every 0.1 seconds', 'INSERT INTO hits VALUES (''three'')', max_runs => 3)");
    c.sql(
        "SELECT mtask.schedule('window', 'every 0.1 seconds', 'INSERT INTO hits VALUES (''window'')',
                               end_at => now() + interval '1 second')",
    );
    c.wait_for("SELECT string_agg(status, ',' ORDER BY name) FROM mtask.tasks", "done,done");
    assert_eq!(c.sql("SELECT run_count, next_run_at IS NULL FROM mtask.tasks WHERE name = 'three'"), "3|t");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'three'"), "3");
    assert_eq!(
        c.sql("SELECT run_count > 0, bool_and(r.started_at <= t.end_at)
               FROM mtask.tasks t JOIN mtask.runs r ON r.task_id = t.id WHERE t.name = 'window' AND r.status <> 'skipped'
               GROUP BY t.run_count"),
        "t|t"
    );
    // A window that leaves no run is refused up front.
    assert_error(
        c.try_sql("SELECT mtask.schedule('never', '@daily', 'SELECT 1', end_at => now() - interval '1 day')"),
        "22023",
        &["ends at", "before it starts", "HINT:"],
    );
    assert_error(
        c.try_sql(
            "SELECT mtask.schedule('tiny', '0 3 * * *', 'SELECT 1', start_at => '2030-01-01 04:00+00',
                                         end_at => '2030-01-01 05:00+00')",
        ),
        "22023",
        &["would never run", "HINT:"],
    );
    assert_error(
        c.try_sql("SELECT mtask.schedule('neg', '@daily', 'SELECT 1', max_runs => -1)"),
        "22023",
        &["max_runs", "must be positive", "0 for no limit"],
    );
    assert_error(
        c.try_sql("SELECT mtask.schedule('bad', '@daily', 'SELECT 1', missed => 'twice')"),
        "22023",
        &["invalid missed-run policy \"twice\"", "'once'"],
    );
}

#[test]
fn alter_changes_any_option_by_name_or_id() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE TABLE hits (what text)");
    let id = c.sql("SELECT mtask.schedule('job', '@daily', 'INSERT INTO hits VALUES (''old'')')");

    // By name: the command, and a schedule that makes it due now.
    c.sql("SELECT mtask.alter('job', schedule => 'every 0.2 seconds', command => 'INSERT INTO hits VALUES (''new'')')");
    c.wait_for("SELECT count(*) > 0 FROM hits WHERE what = 'new'", "t");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE what = 'old'"), "0");

    // By id: everything else; the result is the task as it now is.
    let row = c.sql(&format!(
        "SELECT schedule, timezone, missed, max_runs, end_at, remark, to_char(next_run_at AT TIME ZONE 'Europe/Paris', 'HH24:MI')
         FROM mtask.alter({id}, schedule => '30 4 * * *', timezone => 'Europe/Paris', missed => 'skip',
                          max_runs => 10, end_at => '2999-01-01 00:00+00', remark => 'moved')"
    ));
    assert_eq!(row, "30 4 * * *|Europe/Paris|skip|10|2999-01-01 00:00:00+00|moved|04:30");
    // NULL leaves an option alone; infinity and 0 remove the limits.
    assert_eq!(
        c.sql(&format!("SELECT missed, max_runs IS NULL, end_at IS NULL FROM mtask.alter({id}, end_at => 'infinity', max_runs => 0)")),
        "skip|t|t"
    );
    // A one-shot task given a schedule becomes recurring.
    c.sql("SELECT mtask.schedule_at('one', now() + interval '1 day', 'SELECT 1')");
    assert_eq!(c.sql("SELECT kind, schedule FROM mtask.alter('one', schedule => '@hourly')"), "recurring|@hourly");
    // Moving a one-shot task's start_at moves its run.
    c.sql("SELECT mtask.schedule_at('two', now() + interval '1 day', 'SELECT 1')");
    assert_eq!(
        c.sql("SELECT next_run_at = '2030-01-01 00:00+00' FROM mtask.alter('two', start_at => '2030-01-01 00:00+00')"),
        "t"
    );
    // Bad input is refused with the same errors as schedule().
    assert_error(c.try_sql("SELECT mtask.alter('nope', remark => 'x')"), "42704", &["task \"nope\" does not exist"]);
    assert_error(c.try_sql("SELECT mtask.alter(999999, remark => 'x')"), "42704", &["task 999999 does not exist"]);
    assert_error(c.try_sql("SELECT mtask.alter('job', schedule => '0 25 * * *')"), "22023", &["hour 25"]);
    assert_error(c.try_sql("SELECT mtask.alter('job', missed => 'never')"), "22023", &["missed-run policy"]);
    assert_error(c.try_sql("SELECT mtask.alter('job', timezone => 'Nowhere/City')"), "22023", &["unknown time zone"]);
    assert_error(
        c.try_sql("SELECT mtask.alter('job', overlap => 'parallel')"),
        "22023",
        &["invalid overlap policy", "'queue'"],
    );
    assert_error(c.try_sql("SELECT mtask.alter('job', max_attempts => 0)"), "22023", &["max_attempts", "at least 1"]);
    assert_error(c.try_sql("SELECT mtask.alter('job', timeout => '-1 second')"), "22023", &["must not be negative"]);
    // A limit that is already reached ends the task.
    c.sql("SELECT mtask.alter('job', schedule => 'every 0.1 seconds')");
    c.wait_for("SELECT run_count >= 2 FROM mtask.tasks WHERE name = 'job'", "t");
    assert_eq!(c.sql("SELECT status FROM mtask.alter('job', max_runs => 1)"), "done");
}
