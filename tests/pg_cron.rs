//! The move from pg_cron: jobs made with pg_cron 1.4.2 are imported into
//! mtask, pg_cron makes way for mtask_cron, and pg_cron-style calls run
//! unchanged; and pg_cron's own regression statements (sql/pg_cron-test.sql
//! in its repository) as they behave under mtask_cron, each difference from
//! pg_cron's expected output noted (the README lists them).

mod common;

use common::{Cluster, SqlError, assert_error, pg_bin};
use std::process::Command;

/// Whether pg_cron is installed for the server under test: Debian packages
/// it for 15 only, and scripts/setup.sh installs it there.
fn pg_cron_installed() -> bool {
    let out = Command::new(pg_bin().join("pg_config")).arg("--pkglibdir").output().unwrap();
    let pkglibdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::path::Path::new(&pkglibdir).join("pg_cron.so").exists()
}

/// pg_cron's columns of a view or table, with their types.
const COLUMNS: &str = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
                       FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped";

fn columns(c: &Cluster, relation: &str) -> String {
    c.sql(&COLUMNS.replace("$1", &format!("'{relation}'")))
}

const JOBS: &str = "SELECT jobid, jobname, schedule, command, database, username, active FROM cron.job
                    WHERE jobid <> 6 ORDER BY jobid";

#[test]
fn jobs_made_with_pg_cron_move_to_mtask_and_pg_cron_calls_run_unchanged() {
    if !pg_cron_installed() {
        eprintln!("skipped: pg_cron is not installed for this PostgreSQL (Debian has it for 15 only)");
        return;
    }
    // pg_cron 1.4.2 runs its jobs over libpq, on localhost.
    // It logs "cron job N starting: ..." for each run.
    let c = Cluster::start_with(
        "shared_preload_libraries = 'pg_cron,mtask'\ncron.database_name = 'postgres'\nlisten_addresses = 'localhost'",
    );
    c.sql("CREATE DATABASE other");
    c.sql(
        r#"CREATE ROLE "CaseOwner" LOGIN;
           CREATE EXTENSION pg_cron;
           CREATE EXTENSION mtask;
           CREATE TABLE hits (what text, who text DEFAULT current_user);
           GRANT INSERT, SELECT ON hits TO "CaseOwner";
           GRANT USAGE ON SCHEMA mtask TO "CaseOwner";
           GRANT USAGE ON SCHEMA cron TO "CaseOwner""#,
    );
    // Jobs of every kind pg_cron has, made by pg_cron.
    c.sql(
        r#"SELECT cron.schedule('nightly', '0 3 * * *', 'VACUUM');
           SELECT cron.schedule('* * * * *', 'SELECT 1/0');
           SELECT cron.schedule_in_database('mixed case', '*/5 * * * *', $$INSERT INTO hits (what) VALUES ('case')$$,
                                            'postgres', 'CaseOwner');
           SELECT cron.schedule_in_database('elsewhere', '0 4 * * *', 'SELECT 3', 'other');
           SELECT cron.schedule('paused', '0 5 * * *', 'SELECT 4');
           SELECT cron.alter_job(5, active := false);
           SELECT cron.schedule('remote', '0 6 * * *', 'SELECT 5');
           UPDATE cron.job SET nodename = 'db2.example.com' WHERE jobid = 6;
           SELECT cron.schedule('at start', '@reboot', $$INSERT INTO hits (what) VALUES ('boot')$$)"#,
    );
    // A failed run as pg_cron records it, to compare with mtask_cron's.
    c.wait_for_within(
        "postgres",
        std::time::Duration::from_secs(90),
        "SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = 2 AND status = 'failed'",
        "t",
    );
    let pg_cron_failed = c.sql(
        "SELECT status, return_message, command, database, username, end_time >= start_time, job_pid > 0
         FROM cron.job_run_details WHERE jobid = 2 LIMIT 1",
    );
    let pg_cron_jobs = c.sql(JOBS);
    let pg_cron_columns = (columns(&c, "cron.job"), columns(&c, "cron.job_run_details"));

    // The move, in one transaction: pg_cron's jobs stop as mtask's begin.
    let log_before_move = c.log().len();
    assert!(c.log().contains("LOG:  cron job 2 starting: SELECT 1/0"), "pg_cron ran its jobs");
    let warnings = c.sql_stderr(
        "BEGIN;
         CREATE TABLE imported AS SELECT mtask.import_pg_cron() AS n;
         DROP EXTENSION pg_cron;
         CREATE EXTENSION mtask_cron;
         COMMIT",
    );
    assert_eq!(c.sql("SELECT n FROM imported"), "6");
    assert!(
        warnings.contains("pg_cron job 6 (remote) is not imported: it runs on another server, db2.example.com:"),
        "{warnings}"
    );
    // The same jobs, ids, names, schedules, owners and databases.
    assert_eq!(c.sql(JOBS), pg_cron_jobs);
    assert_eq!((columns(&c, "cron.job"), columns(&c, "cron.job_run_details")), pg_cron_columns);
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks WHERE name = '2' AND status = 'scheduled'"), "1");
    assert_eq!(
        c.sql("SELECT status, pause_reason IS NULL FROM mtask.tasks WHERE id = 5"),
        "paused|t",
        "an inactive job is a paused task"
    );
    // New jobs take ids after the imported ones.
    assert_eq!(c.sql("SELECT cron.schedule('tick', '5 seconds', $$INSERT INTO hits (what) VALUES ('tick')$$)"), "8");

    // The job of "CaseOwner" runs as that very role.
    c.sql("DELETE FROM hits WHERE what = 'case'; SELECT mtask.run_now(3)");
    c.wait_for("SELECT string_agg(DISTINCT who, ',') FROM hits WHERE what = 'case'", "CaseOwner");

    // pg_cron-style calls, unchanged.
    c.sql("SELECT cron.schedule('vacuum', '5 seconds', 'VACUUM hits')");
    c.sql("SELECT cron.schedule('broken', '5 seconds', 'SELECT 1/0')");
    for (job, status) in [("tick", "succeeded"), ("vacuum", "succeeded"), ("broken", "failed")] {
        c.wait_for(
            &format!(
                "SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                 WHERE j.jobname = '{job}' AND d.status = '{status}'"
            ),
            "t",
        );
    }
    assert_eq!(
        c.sql(
            "SELECT DISTINCT return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
             WHERE j.jobname IN ('tick', 'vacuum') ORDER BY 1"
        ),
        "INSERT 0 1\nVACUUM"
    );
    // A failed run reads as pg_cron's did.
    let failed = c.sql(
        "SELECT d.status, d.return_message, d.command, d.database, d.username, d.end_time >= d.start_time,
                d.job_pid > 0
         FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'broken' LIMIT 1",
    );
    assert_eq!(failed, pg_cron_failed);

    // Scheduling a name again changes that job.
    assert_eq!(c.sql("SELECT cron.schedule('tick', '6 seconds', $$INSERT INTO hits (what) VALUES ('tock')$$)"), "8");
    assert_eq!(
        c.sql("SELECT schedule, command FROM cron.job WHERE jobid = 8"),
        "6 seconds|INSERT INTO hits (what) VALUES ('tock')"
    );
    c.sql("SELECT cron.alter_job(8, schedule := '7 seconds', active := false)");
    assert_eq!(c.sql("SELECT schedule, active FROM cron.job WHERE jobid = 8"), "7 seconds|f");
    c.sql("SELECT cron.alter_job(job_id := 8, active := true)");
    assert_eq!(c.sql("SELECT active FROM cron.job WHERE jobid = 8"), "t");

    // Each role sees its own jobs, and cannot remove another's. Schema cron
    // is new: its grants are given again (README, "Moving from pg_cron").
    c.sql(r#"GRANT USAGE ON SCHEMA cron TO "CaseOwner""#);
    let as_owner = |sql: &str| c.try_sql(&format!("SET ROLE \"CaseOwner\"; {sql}"));
    assert_eq!(as_owner("SELECT string_agg(jobid::text, ',') FROM cron.job").unwrap(), "3");
    assert_error(as_owner("SELECT cron.unschedule(1)"), "42704", &["could not find valid entry for job 1"]);
    assert_error(
        as_owner("SELECT cron.alter_job(3, command := 'SELECT 6')"),
        "42501",
        &["permission denied for function alter_job"],
    );

    // pg_cron's clean-up job: the runs ended before it go.
    let before = c.sql("SELECT clock_timestamp()");
    let ended = format!("SELECT count(*) FROM cron.job_run_details WHERE end_time < '{before}'");
    assert_ne!(c.sql(&ended), "0");
    c.sql(&format!("DELETE FROM cron.job_run_details WHERE end_time < '{before}'"));
    assert_eq!(c.sql(&ended), "0");
    assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.runs WHERE finished_at < '{before}'")), "0");

    assert_eq!(c.sql("SELECT cron.unschedule('tick'), cron.unschedule(9)"), "t|t");
    assert_eq!(c.sql("SELECT count(*) FROM cron.job WHERE jobid IN (8, 9)"), "0");

    // The job that ran at pg_cron's start runs at each start of the server.
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE what = 'boot'"), "0");
    // pg_cron, still preloaded, ran nothing after it was dropped.
    let after_move = c.log()[log_before_move..].to_string();
    assert!(!after_move.contains("LOG:  cron job "), "{after_move}");
    c.restart();
    c.wait_for("SELECT count(*) FROM hits WHERE what = 'boot'", "1");
}

fn err(c: &Cluster, sql: &str) -> SqlError {
    c.try_sql(sql).expect_err(sql)
}

#[test]
fn pg_cron_regression_statements_behave_as_in_pg_cron() {
    let c = Cluster::with_mtask("");
    c.sql("CREATE EXTENSION mtask_cron");
    // The version statements of pg_cron's test (CREATE EXTENSION pg_cron
    // VERSION '1.0', ALTER ... UPDATE TO '1.3') have no counterpart:
    // mtask_cron has one version, with pg_cron 1.6's signatures.
    assert_eq!(c.sql("SELECT cron.schedule('test', '* * * * *', 'SELECT 1')"), "1");
    assert_eq!(c.sql("SELECT cron.unschedule('test')"), "t");
    assert_error(
        c.try_sql("SELECT cron.unschedule(job_name := 'no_such_job')"),
        "42704",
        &["could not find valid entry for job 'no_such_job'"],
    );
    assert_eq!(c.sql("SELECT cron.schedule('testjob', '* * * * *', 'SELECT 1')"), "2");
    assert_eq!(c.sql("SELECT cron.unschedule('testjob')"), "t");
    // pg_cron's ids start again at 1 after DROP/CREATE EXTENSION; mtask's
    // tasks, and so their ids, stay with mtask.
    assert_eq!(c.sql("SELECT cron.schedule('0 10 * * *', 'VACUUM')"), "3");
    assert_eq!(c.sql("SELECT cron.unschedule(3)"), "t");

    // Invalid input, in pg_cron's words: "invalid schedule: ..." with its
    // hint, to which mtask adds that mtask.schedule takes more.
    let long = "a".repeat(1000);
    for schedule in [
        long.as_str(),
        "* * * *",
        "5 secondc",
        "50 seconds c",
        "*/0 10 * * *",
        "-1 * * * *",
        "*/-1 10 * * *",
        "*/60 10 * * *",
        "* * * 13 *",
        "* * * 0 *",
        "*/5000000000 10 * * *",
        "-1 seconds",
        "0 seconds",
        "60 seconds",
        "10000000000 seconds",
        "@restar",
        "0 11 $foo * *",
    ] {
        let e = err(&c, &format!("SELECT cron.schedule('{schedule}', 'SELECT 1')"));
        assert_eq!(e.sqlstate, "22023", "{schedule}: {}", e.text);
        assert!(e.text.contains(&format!("invalid schedule: {schedule}")), "{schedule}: {}", e.text);
        assert!(e.text.contains("Use cron format (e.g. 5 4 * * *), or interval format '[1-59] seconds'"), "{}", e.text);
    }
    // @restart is mtask's @reboot, and shows so.
    assert_eq!(c.sql("SELECT cron.schedule('@restart', 'ALTER EXTENSION mtask UPDATE')"), "4");
    assert_eq!(c.sql("SELECT cron.schedule('myvacuum', '0 10 * * *', 'VACUUM')"), "5");
    let jobs = "SELECT jobid, jobname, schedule, command FROM cron.job ORDER BY jobid";
    assert_eq!(c.sql(jobs), "4||@reboot|ALTER EXTENSION mtask UPDATE\n5|myvacuum|0 10 * * *|VACUUM");
    assert_eq!(c.sql("SELECT cron.schedule('myvacuum', '0 11 * * *', 'VACUUM')"), "5");
    assert_eq!(c.sql("SELECT cron.schedule('myvacuum', '0 11 * * *', 'VACUUM FULL')"), "5");
    assert_eq!(c.sql(jobs), "4||@reboot|ALTER EXTENSION mtask UPDATE\n5|myvacuum|0 11 * * *|VACUUM FULL");
    assert_eq!(c.sql("SELECT cron.unschedule('myvacuum')"), "t");
    assert_eq!(c.sql(jobs), "4||@reboot|ALTER EXTENSION mtask UPDATE");

    // alter_job, first as superuser. pg_cron's test names job 2, which is
    // its @restart job; here that job is 4.
    assert_error(
        c.try_sql("SELECT cron.alter_job(4)"),
        "22023",
        &["no updates specified", "You must specify at least one job attribute to change when calling alter_job"],
    );
    assert_error(
        c.try_sql("SELECT cron.alter_job(job_id := 4, database := 'hopedoesnotexist')"),
        "3D000",
        &[r#"database "hopedoesnotexist" does not exist"#],
    );
    c.sql("CREATE DATABASE pgcron_dbno");
    c.sql("REVOKE CONNECT ON DATABASE pgcron_dbno FROM public");
    c.sql("CREATE USER pgcron_cront");
    c.sql("GRANT USAGE ON SCHEMA cron, mtask TO pgcron_cront");
    // mtask's words: pg_cron says "User pgcron_cront does not have CONNECT
    // privilege on pgcron_dbno".
    let no_connect = r#"permission denied: pgcron_cront may not connect to database "pgcron_dbno""#;
    assert_error(
        c.try_sql(
            "SELECT cron.schedule_in_database(job_name := 'can not connect', schedule := '0 11 * * *',
                 command := 'VACUUM', database := 'pgcron_dbno', username := 'pgcron_cront')",
        ),
        "42501",
        &[no_connect],
    );
    c.sql("CREATE DATABASE pgcron_dbyes");
    assert_error(
        c.try_sql(
            "SELECT cron.schedule_in_database(job_name := 'user does not exist', schedule := '0 11 * * *',
                 command := 'VACUUM', database := 'pgcron_dbyes', username := 'pgcron_useraqwxszedc')",
        ),
        "42704",
        &[r#"role "pgcron_useraqwxszedc" does not exist"#],
    );
    assert_error(
        c.try_sql("SELECT cron.alter_job(job_id := 4, database := 'pgcron_dbno', username := 'pgcron_cront')"),
        "42501",
        &[no_connect],
    );
    c.sql("GRANT EXECUTE ON FUNCTION cron.alter_job(bigint, text, text, text, text, boolean) TO public");

    // Then as an ordinary user.
    let as_cront = |sql: &str| c.try_sql(&format!("SET SESSION AUTHORIZATION pgcron_cront; {sql}"));
    // pg_cron's id here is 6. mtask's is 7: the call refused for want of
    // CONNECT took one, as in pg_cron, and mtask's ids went on across the
    // test's DROP EXTENSION (above), where pg_cron's started again.
    assert_eq!(as_cront("SELECT cron.schedule('My vacuum', '0 11 * * *', 'VACUUM')").unwrap(), "7");
    assert_error(
        as_cront(
            "SELECT cron.schedule_in_database(job_name := 'his vacuum', schedule := '0 11 * * *', command := 'VACUUM',
                 database := current_database(), username := 'anotheruser')",
        ),
        "42501",
        &["permission denied for function schedule_in_database"],
    );
    assert_error(
        as_cront("SELECT cron.alter_job(job_id := 7, username := 'anotheruser')"),
        "42501",
        &["must be superuser to alter username"],
    );
    assert_error(
        as_cront("SELECT cron.alter_job(job_id := 4, database := 'pgcron_dbyes')"),
        "42704",
        &["Job 4 does not exist or you don't own it"],
    );
    assert_eq!(as_cront("SELECT cron.alter_job(job_id := 7, database := 'pgcron_dbyes')").unwrap(), "");
    assert_eq!(as_cront("SELECT database FROM cron.job").unwrap(), "pgcron_dbyes");
    assert_error(as_cront("SELECT cron.alter_job(job_id := 7, database := 'pgcron_dbno')"), "42501", &[no_connect]);
    assert_eq!(as_cront("SELECT database FROM cron.job").unwrap(), "pgcron_dbyes");

    // Back as superuser.
    c.sql("SELECT cron.alter_job(job_id := 4, username := 'pgcron_cront')");
    assert_eq!(c.sql("SELECT username FROM cron.job WHERE jobid = 4"), "pgcron_cront");
    assert_eq!(
        c.sql(
            "SELECT cron.schedule_in_database(job_name := 'his vacuum', schedule := '0 11 * * *', command := 'VACUUM',
                 database := current_database(), username := 'pgcron_cront')"
        ),
        "8"
    );
    assert_eq!(c.sql("SELECT username FROM cron.job WHERE jobid = 8"), "pgcron_cront");
    // Role names are exact: "CaseOwner" is not caseowner.
    c.sql(r#"CREATE USER "CaseOwner"; CREATE USER caseowner; GRANT USAGE ON SCHEMA cron, mtask TO "CaseOwner", caseowner"#);
    assert_eq!(
        c.sql(
            "SELECT cron.schedule_in_database(job_name := 'mixed case owner', schedule := '0 11 * * *',
                 command := 'VACUUM', database := current_database(), username := 'CaseOwner')"
        ),
        "9"
    );
    assert_eq!(c.sql("SELECT username FROM cron.job WHERE jobid = 9"), "CaseOwner");
    // pg_cron says "permission denied for table job"; caseowner sees no job 9.
    assert_error(
        c.try_sql("SET SESSION AUTHORIZATION caseowner; SELECT cron.unschedule(9)"),
        "42704",
        &["could not find valid entry for job 9"],
    );

    // Valid intervals: 1 to 59 seconds, in any case and spacing. They show
    // as mtask keeps them, not as typed.
    c.sql("DELETE FROM mtask.tasks");
    for (schedule, id) in [("1 second", 10), (" 30 sEcOnDs ", 11), ("59 seconds", 12), ("17  seconds ", 13)] {
        assert_eq!(c.sql(&format!("SELECT cron.schedule('{schedule}', 'SELECT 1')")), id.to_string());
    }
    assert_eq!(
        c.sql(jobs),
        "10||1 second|SELECT 1\n11||30 seconds|SELECT 1\n12||59 seconds|SELECT 1\n13||17 seconds|SELECT 1"
    );
    // The last day of the month: pg_cron's $ is mtask's L.
    assert_eq!(c.sql("SELECT cron.schedule('last-day-of-month-job1', '0 11 $ * *', 'SELECT 1')"), "14");
    assert_eq!(c.sql("SELECT schedule FROM cron.job WHERE jobid = 14"), "0 11 L * *");
    assert_eq!(
        c.sql("SELECT mtask.next_runs('0 11 L * *', 2, '2027-02-01 00:00+00', 'UTC')::text"),
        "2027-02-28 11:00:00+00\n2027-03-31 11:00:00+00"
    );
    // Dropped with the extension, as pg_cron's: the schema goes, mtask's
    // tasks stay.
    c.sql("DROP EXTENSION mtask_cron");
    assert_eq!(c.sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'cron'"), "0");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "5");
}
