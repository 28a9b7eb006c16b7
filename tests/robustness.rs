//! Robustness: no task, no ordinary role and no row can wedge, stop or
//! bypass the scheduler. Each test makes one attack, mostly as `mallory`,
//! an ordinary role with USAGE on schema mtask, while a superuser's canary
//! task runs every second on a pool of one worker (so that a wedged worker
//! would stop everything), and asserts that the attack hurt only itself and
//! that the canary kept running.

mod common;

use common::{Cluster, assert_error};

/// A cluster with mtask on one worker, roles `mallory` and `victim`
/// (ordinary, with USAGE on mtask), victim's private table `secret`, a
/// table `hits` that everyone may write, and the canary.
fn arena(extra: &str) -> Cluster {
    let c = Cluster::with_mtask(&format!("mtask.max_workers = 1\n{extra}"));
    c.sql(
        "CREATE TABLE hits (who text DEFAULT current_user, what text, at timestamptz DEFAULT clock_timestamp());
         GRANT SELECT, INSERT ON hits TO PUBLIC;
         CREATE TABLE canary (at timestamptz DEFAULT clock_timestamp());
         CREATE ROLE mallory LOGIN; CREATE ROLE victim LOGIN;
         GRANT USAGE ON SCHEMA mtask TO mallory, victim;
         CREATE TABLE secret (s text); INSERT INTO secret VALUES ('the secret');
         ALTER TABLE secret OWNER TO victim;
         SELECT mtask.schedule('canary', '1 second', 'INSERT INTO canary DEFAULT VALUES')",
    );
    canary_runs_on(&c);
    c
}

fn as_role(role: &str, sql: &str) -> String {
    format!("SET ROLE {role}; {sql}")
}

/// Waits until the canary has run three more times: the pool is not wedged.
fn canary_runs_on(c: &Cluster) {
    let seen: i64 = c.sql("SELECT count(*) FROM canary").parse().unwrap();
    c.wait_for(&format!("SELECT count(*) >= {} FROM canary", seen + 3), "t");
}

/// The finished runs of a task, as `status:sqlstate` in order.
fn runs_of(c: &Cluster, name: &str) -> String {
    c.sql(&format!(
        "SELECT coalesce(string_agg(r.status || ':' || coalesce(r.sqlstate, ''), ',' ORDER BY r.id), '')
         FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = '{name}' AND r.status <> 'running'"
    ))
}

/// Item 1. A non-transactional task that opens, leaves open or aborts a
/// transaction block has that block ended at the end of its run.
#[test]
fn a_transaction_block_a_task_leaves_open_is_ended_and_the_worker_goes_on() {
    let c = arena("");
    for (name, command) in [
        ("open", "BEGIN; SELECT 1"),
        ("aborted", "BEGIN; SELECT 1/0; COMMIT"),
        ("uncommitted", "BEGIN; INSERT INTO hits (what) VALUES ('uncommitted')"),
    ] {
        c.sql(&as_role(
            "mallory",
            &format!("SELECT mtask.schedule_at('{name}', now(), $c${command}$c$, transactional => false)"),
        ));
    }
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE owner = 'mallory'::regrole AND status = 'failed'", "3");
    assert_eq!(runs_of(&c, "open"), "failed:25000");
    assert_eq!(runs_of(&c, "aborted"), "failed:22012");
    assert_eq!(runs_of(&c, "uncommitted"), "failed:25000");
    let message =
        c.sql("SELECT message FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'open'");
    assert!(message.contains("transaction block") && message.contains("rolled back"), "{message}");
    // What the open block did is rolled back, and no session is left in it.
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE what = 'uncommitted'"), "0");
    assert_eq!(
        c.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker' AND state LIKE 'idle in transaction%'"),
        "0"
    );
    // A task of mallory's can be paused and unscheduled again.
    c.sql(&as_role("mallory", "SELECT mtask.schedule('later', '1 hour', 'SELECT 1'); SELECT mtask.pause('later')"));
    canary_runs_on(&c);
}

/// Item 2. Values that cannot be computed are refused when written; a row that
/// still cannot be handled is set aside, and nobody else's task stops.
#[test]
fn a_row_that_cannot_be_handled_is_set_aside_and_stops_no_other_task() {
    let c = arena("");
    for (sql, needle) in [
        ("SELECT mtask.schedule_at('w', now(), 'SELECT 1', retry_delay => '1000000 years')", "retry_delay"),
        ("SELECT mtask.schedule('w', '1 hour', 'SELECT 1', timeout => '30 days')", "timeout"),
        ("SELECT mtask.schedule('w', '1 hour', 'SELECT 1', history_max_age => '10000 years')", "history_max_age"),
    ] {
        assert_error(c.try_sql(&as_role("mallory", sql)), "22023", &[needle, "HINT:"]);
    }
    c.sql(&as_role("mallory", "SELECT mtask.schedule('m', '1 hour', 'SELECT 1')"));
    assert_error(
        c.try_sql(&as_role("mallory", "SELECT mtask.alter('m', retry_max_delay => '300000 years')")),
        "22023",
        &["retry_max_delay", "HINT:"],
    );
    assert_error(
        c.try_sql(&as_role("mallory", "UPDATE mtask.tasks SET next_run_at = '-infinity' WHERE name = 'm'")),
        "22023",
        &["finite", "HINT:"],
    );
    // Rows that get past the checks (a superuser with the triggers off):
    // each is set aside with the reason, and the others run on.
    c.sql(
        "SET session_replication_role = replica;
         UPDATE mtask.tasks SET next_run_at = '-infinity' WHERE name = 'm';
         INSERT INTO mtask.tasks (name, owner, kind, schedule, timezone, command, start_at, next_run_at, retry_delay)
         VALUES ('huge', 'mallory', 'once', NULL, 'UTC', 'SELECT 1/0', now(), now(), '1000000 years'),
                ('zone', 'mallory', 'recurring', 'every 1 hour', 'Mars/Olympus', 'SELECT 1', now(), now(), '1 s')",
    );
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name IN ('m', 'huge', 'zone') AND status = 'paused'", "3");
    for (name, why) in [("m", "next_run_at"), ("huge", "retry_delay"), ("zone", "Mars/Olympus")] {
        let reason = c.sql(&format!("SELECT pause_reason FROM mtask.tasks WHERE name = '{name}'"));
        assert!(reason.contains(why), "{name}: {reason}");
        assert!(
            c.log().contains(&format!("task {}", c.sql(&format!("SELECT id FROM mtask.tasks WHERE name = '{name}'"))))
        );
    }
    c.sql(&as_role("victim", "SELECT mtask.schedule_at('after', now(), $$INSERT INTO hits (what) VALUES ('after')$$)"));
    c.wait_for("SELECT count(*) FROM hits WHERE what = 'after'", "1");
    canary_runs_on(&c);
}

/// Item 3. One task's history limit cannot break the purge for everyone.
#[test]
fn one_tasks_history_limit_cannot_break_the_purge() {
    let c = arena("");
    c.sql(
        "SET session_replication_role = replica;
         INSERT INTO mtask.tasks (name, owner, kind, schedule, timezone, command, start_at, next_run_at, history_max_age)
         VALUES ('forever', 'mallory', 'recurring', 'every 1 second', 'UTC', 'SELECT 1', now(), now(), '10000 years')",
    );
    c.sql("SELECT mtask.schedule('kept', '0.2 seconds', 'SELECT 1', history_max_per_task => 3)");
    c.wait_for("SELECT run_count >= 10 FROM mtask.tasks WHERE name = 'kept'", "t");
    // The purge runs and trims 'kept' to its limit, 'forever' or not.
    c.wait_for(
        "SELECT count(*) <= 4 FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'kept'",
        "t",
    );
    assert!(!c.log().contains("could not purge"), "{}", c.log());
    canary_runs_on(&c);
}

/// Item 4. Session state an extension keeps (dblink's connections) never
/// reaches another role's task.
#[test]
fn a_connection_a_task_leaves_open_never_reaches_another_roles_task() {
    let c = arena("");
    c.sql("CREATE EXTENSION dblink; GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC");
    let conninfo = c.conninfo();
    // The superuser's tasks leave a named connection, and an unnamed one
    // from a non-transactional task, both as postgres.
    c.sql(&format!(
        "SELECT mtask.schedule_at('opens', now(), $$SELECT dblink_connect('admin', '{conninfo}')$$, priority => 2);
         SELECT mtask.schedule_at('opens-unnamed', now(), $$SELECT dblink_connect('{conninfo}')$$,
                                  transactional => false, priority => 1)"
    ));
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name LIKE 'opens%' AND status = 'done'", "2");
    // mallory's next tasks find neither.
    c.sql(&as_role(
        "mallory",
        "SELECT mtask.schedule_at('named', now(),
             $$INSERT INTO hits (what) SELECT s FROM dblink('admin', 'SELECT s FROM secret') AS t(s text)$$);
         SELECT mtask.schedule_at('unnamed', now(),
             $$INSERT INTO hits (what) SELECT s FROM dblink('SELECT s FROM secret') AS t(s text)$$);
         SELECT mtask.schedule_at('listed', now(),
             $$INSERT INTO hits (what) SELECT coalesce(dblink_get_connections()::text, 'none')$$)",
    ));
    c.wait_for(
        "SELECT count(*) FROM mtask.tasks WHERE owner = 'mallory'::regrole AND status IN ('done', 'failed')",
        "3",
    );
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE what = 'the secret'"), "0");
    assert_eq!(c.sql("SELECT string_agg(what, ',') FROM hits WHERE who = 'mallory'"), "none");
    assert_eq!(
        c.sql("SELECT string_agg(status, ',' ORDER BY name) FROM mtask.tasks WHERE name IN ('named', 'unnamed')"),
        "failed,failed"
    );
    canary_runs_on(&c);
}

/// Item 5. A task that kills its own worker is recorded as crashed, and the
/// crash counts as a failure: for the backoff, for max_consecutive_failures.
#[test]
fn a_task_that_kills_its_own_worker_is_recorded_as_crashed_and_paused_in_the_end() {
    let c = arena("");
    c.sql(
        "SELECT mtask.schedule('suicide', '1 second', 'SELECT pg_terminate_backend(pg_backend_pid())',
                               max_consecutive_failures => 3, retry_delay => '0.1 seconds');
         SELECT mtask.schedule('suicide-top', '1 second', 'SELECT pg_terminate_backend(pg_backend_pid())',
                               transactional => false, max_consecutive_failures => 2, retry_delay => '0.1 seconds')",
    );
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name LIKE 'suicide%' AND status = 'paused'", "2");
    assert_eq!(runs_of(&c, "suicide"), "crashed:,crashed:,crashed:");
    assert_eq!(runs_of(&c, "suicide-top"), "crashed:,crashed:");
    assert_eq!(
        c.sql(
            "SELECT string_agg(concat_ws('|', name, last_status, consecutive_failures, failure_count,
                                         last_error LIKE '%stopped%', pause_reason), ',' ORDER BY name)
             FROM mtask.tasks WHERE name LIKE 'suicide%'"
        ),
        "suicide|crashed|3|3|t|paused after 3 failed runs in a row,suicide-top|crashed|2|2|t|paused after 2 failed runs in a row"
    );
    canary_runs_on(&c);
}

/// Item 6. Inside a task, the rules that hold for its owner's session hold.
#[test]
fn inside_its_task_a_role_has_no_more_rights_than_in_its_session() {
    let c = arena("");
    c.sql(&as_role(
        "mallory",
        "SELECT mtask.schedule('other', '1 hour', 'SELECT 1');
         SELECT mtask.schedule_at('stick', now(), $$UPDATE mtask.tasks SET status = 'running' WHERE name = 'other'$$)",
    ));
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'stick'", "failed");
    assert_eq!(runs_of(&c, "stick"), "failed:42501");
    assert_eq!(c.sql("SELECT status FROM mtask.tasks WHERE name = 'other'"), "scheduled");
    canary_runs_on(&c);
}

/// Item 7. No name another role takes can make an emit() fail.
#[test]
fn names_another_role_takes_cannot_make_emit_fail() {
    let c = arena("");
    c.sql(
        "CREATE FUNCTION public.note(payload jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO hits (what) VALUES (payload->>'order') $$;
         GRANT EXECUTE ON FUNCTION public.note(jsonb) TO PUBLIC",
    );
    let listener = c.sql(&as_role("mallory", "SELECT mtask.listen('order-paid', 'public.note(jsonb)')"));
    // Every name the next deliveries to her listener would get, taken.
    c.sql(&as_role(
        "mallory",
        &format!(
            "SELECT mtask.schedule_at(format('order-paid #%s for listener {listener}', n), now() + interval '1 day', 'SELECT 1')
             FROM generate_series(1, 20) n"
        ),
    ));
    c.sql("SELECT mtask.emit('order-paid', '{\"order\": \"42\"}')");
    c.wait_for("SELECT count(*) FROM hits WHERE what = '42'", "1");
    canary_runs_on(&c);
}

/// Item 8. What a user or the task itself changes during a run is kept.
#[test]
fn changes_made_during_a_run_are_kept_or_refused() {
    let c = arena("mtask.max_workers = 2");
    // A schedule given while a non-transactional one-shot task runs.
    c.sql(&as_role("mallory", "SELECT mtask.schedule_at('slow', now(), 'SELECT pg_sleep(2)', transactional => false)"));
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'slow'", "running");
    c.sql(&as_role("mallory", "SELECT mtask.alter('slow', schedule => '1 hour')"));
    // Pausing it while it runs is refused, with what to do instead.
    assert_error(c.try_sql(&as_role("mallory", "SELECT mtask.pause('slow')")), "55000", &["running", "HINT:"]);
    c.wait_for("SELECT last_status FROM mtask.tasks WHERE name = 'slow'", "succeeded");
    assert_eq!(
        c.sql("SELECT status, kind, next_run_at > now() + interval '50 minutes' FROM mtask.tasks WHERE name = 'slow'"),
        "scheduled|recurring|t"
    );
    // A task that pauses itself stays paused.
    c.sql(&as_role("mallory", "SELECT mtask.schedule('self', '1 second', $$SELECT mtask.pause('self')$$)"));
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'self'", "paused");
    canary_runs_on(&c);
    assert_eq!(c.sql("SELECT run_count, status FROM mtask.tasks WHERE name = 'self'"), "1|paused");
}

/// Item 9. A role without CONNECT on the database gets no task run there.
#[test]
fn a_role_without_connect_gets_no_task_run() {
    let c = arena("");
    c.sql(&as_role(
        "mallory",
        "SELECT mtask.schedule('tick', '1 second', $$INSERT INTO hits (what) VALUES ('tick')$$)",
    ));
    c.wait_for("SELECT count(*) > 0 FROM hits WHERE what = 'tick'", "t");
    c.sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; GRANT CONNECT ON DATABASE postgres TO victim");
    assert_error(
        c.try_sql(&as_role("mallory", "SELECT mtask.schedule_at('new', now(), 'SELECT 1')")),
        "42501",
        &["CONNECT", "HINT:"],
    );
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'tick'", "paused");
    let reason = c.sql("SELECT pause_reason FROM mtask.tasks WHERE name = 'tick'");
    assert!(reason.contains("CONNECT"), "{reason}");
    // victim, who may connect, still gets hers run.
    c.sql(&as_role("victim", "SELECT mtask.schedule_at('mine', now(), $$INSERT INTO hits (what) VALUES ('mine')$$)"));
    c.wait_for("SELECT count(*) FROM hits WHERE what = 'mine'", "1");
    canary_runs_on(&c);
}

/// Item 10. DROP EXTENSION takes schema mtask and its grants with it.
#[test]
fn drop_extension_takes_its_schema_with_it() {
    let c = arena("");
    c.sql("DROP EXTENSION mtask");
    assert_eq!(c.sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'mtask'"), "0");
    c.sql("DROP ROLE mallory");
    c.sql("CREATE EXTENSION mtask; GRANT USAGE ON SCHEMA mtask TO victim");
    c.sql(&as_role("victim", "SELECT mtask.schedule_at('back', now(), $$INSERT INTO hits (what) VALUES ('back')$$)"));
    c.wait_for("SELECT count(*) FROM hits WHERE what = 'back'", "1");
}

/// Item 11. Bad input gets a clear ERROR with a hint, and no Rust internals.
#[test]
fn bad_input_gets_a_clear_error_and_no_rust_internals() {
    let c = arena("");
    let cases: &[(&str, &str, &str)] = &[
        ("SELECT mtask.schedule_at('a', now(), 'SELECT 1', retry_delay => NULL)", "22004", "retry_delay"),
        ("SELECT mtask.schedule_at('a', now(), 'SELECT 1', priority => NULL)", "22004", "priority"),
        ("SELECT * FROM mtask.next_runs(NULL)", "22004", "schedule"),
        ("SELECT mtask.schedule_at(repeat('x', 3000), now(), 'SELECT 1')", "22023", "name"),
        ("SELECT mtask.schedule_at(E' \\t\\n', now(), 'SELECT 1')", "22023", "needs a name"),
        ("SELECT mtask.schedule_at('a', now(), ';')", "22023", "has no command"),
        ("SELECT mtask.schedule_at('a', now(), '-- nothing')", "22023", "has no command"),
        ("SELECT mtask.schedule_at('a', now(), E' ;\\n/* nor this */ ;')", "22023", "has no command"),
        ("SELECT mtask.schedule_at('a', now(), 'SELEC 1')", "42601", "syntax error"),
        ("SELECT mtask.emit(repeat('x', 3000))", "22023", "event"),
    ];
    for (sql, sqlstate, needle) in cases {
        let result = c.try_sql(&as_role("mallory", sql));
        assert_error(result, sqlstate, &[needle, "HINT:"]);
    }
    c.sql("CREATE FUNCTION public.h(payload jsonb) RETURNS void LANGUAGE sql AS 'SELECT 1'");
    c.sql(&as_role("mallory", "SELECT mtask.listen('e', 'public.h(jsonb)')"));
    assert_error(
        c.try_sql(&as_role("mallory", "SELECT mtask.listen('e', 'public.h(jsonb)')")),
        "23505",
        &["already listens", "HINT:"],
    );
    // A timeout below a millisecond is one millisecond, not none.
    c.sql(&as_role("mallory", "SELECT mtask.schedule_at('brief', now(), 'SELECT pg_sleep(5)', timeout => '0.4 ms')"));
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'brief'", "failed");
    assert_eq!(runs_of(&c, "brief"), "timeout:57014");
    canary_runs_on(&c);
}

/// Item 11, continued: with RUST_BACKTRACE set in the server's environment, no
/// backtrace reaches a client.
#[test]
fn no_backtrace_reaches_a_client() {
    let c = Cluster::start_with_env("shared_preload_libraries = 'mtask'", &[("RUST_BACKTRACE", "1")]);
    c.sql("CREATE EXTENSION mtask");
    for sql in [
        "SELECT mtask.schedule('a', 'every banana', 'SELECT 1')",
        "SELECT mtask.schedule('a', '0 24 * * *', 'SELECT 1')",
        "SELECT * FROM mtask.next_runs('1 day', 10, '294270-01-01', 'UTC')",
        "ALTER SYSTEM SET mtask.naptime = 1; SELECT 1",
    ] {
        let e = c.try_sql(sql).expect_err(sql);
        // psql's verbose LOCATION line names a source file, as it does for
        // Postgres' own C; a backtrace would come as DETAIL.
        let fields = ["HINT:", "CONTEXT:", "LOCATION:", "STATEMENT:"];
        let detail: Vec<&str> = e
            .text
            .lines()
            .skip_while(|l| !l.starts_with("DETAIL:"))
            .take_while(|l| !fields.iter().any(|f| l.starts_with(f)))
            .collect();
        assert!(
            !detail.join("\n").contains(".rs:") && !e.text.contains("pgrx") && !e.text.contains("panicked"),
            "{sql}:\n{}",
            e.text
        );
    }
}

/// Item 12. A program that leaves a child holding its stdout ends when it does.
#[test]
fn a_program_ends_when_it_exits_though_its_child_keeps_stdout_open() {
    let c = arena("");
    let pid_file = std::env::temp_dir().join(format!("mtask-robust-{}-child", std::process::id()));
    let _ = std::fs::remove_file(&pid_file);
    let id = c.sql(&format!(
        "SELECT mtask.schedule_at('daemon', now(), $p$sh -c 'sleep 600 & echo $! > {}; echo started'$p$,
                                  command_type => 'program')",
        pid_file.display()
    ));
    c.wait_for(&format!("SELECT status FROM mtask.runs WHERE task_id = {id}"), "succeeded");
    // The run ended while the child still runs: the read ended with the program.
    let child = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    assert!(std::path::Path::new(&format!("/proc/{child}")).exists(), "the child {child} is gone");
    assert_eq!(c.sql(&format!("SELECT stdout FROM mtask.runs WHERE task_id = {id}")), "started");
    let _ = std::process::Command::new("kill").arg(&child).status();
    canary_runs_on(&c);
}
