//! Commands run the way users expect: a statement that cannot run in a
//! transaction block runs top-level without being asked, as does a CALL of
//! a procedure that commits; everything else keeps the exactly-once
//! transaction; `transactional` forces either. And `@reboot` tasks run once
//! per server start.

mod common;

use common::Cluster;

/// How each run of task `name` ran: "status:top_level", in order.
fn runs_of(c: &Cluster, name: &str) -> String {
    c.sql(&format!(
        "SELECT string_agg(r.status || ':' || r.top_level, ',' ORDER BY r.id)
         FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = '{name}'"
    ))
}

#[test]
fn statements_that_need_it_run_top_level_and_the_rest_in_a_transaction() {
    let c = Cluster::with_hits("");
    c.sql(
        "CREATE PROCEDURE commits() LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO hits VALUES ('before'); COMMIT; INSERT INTO hits VALUES ('after'); END $$;
         CREATE PROCEDURE stays() LANGUAGE plpgsql AS $$ BEGIN INSERT INTO hits VALUES ('stays'); END $$",
    );
    for (name, command) in [
        ("vacuum", "VACUUM hits"),
        ("index", "CREATE INDEX CONCURRENTLY hits_at ON hits (at)"),
        ("several", "SELECT 1; VACUUM (ANALYZE) hits"),
        ("commits", "CALL commits()"),
        ("stays", "CALL stays()"),
        ("insert", "INSERT INTO hits VALUES ('insert')"),
        ("analyze", "ANALYZE hits"),
    ] {
        c.sql(&format!("SELECT mtask.schedule_at('{name}', now(), $q${command}$q$)"));
    }
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status = 'done'", "7");
    for (name, how) in [
        ("vacuum", "succeeded:true"),
        ("index", "succeeded:true"),
        ("several", "succeeded:true"),
        // Tried in a transaction, found to commit: run top-level at once.
        ("commits", "succeeded:true"),
        ("stays", "succeeded:false"),
        ("insert", "succeeded:false"),
        ("analyze", "succeeded:false"),
    ] {
        assert_eq!(runs_of(&c, name), how, "{name}");
    }
    // The procedure's work is there once, both halves.
    assert_eq!(
        c.sql("SELECT string_agg(task, ',' ORDER BY task) FROM hits WHERE task IN ('before', 'after')"),
        "after,before"
    );
    // The task remembers: its next run goes top-level straight away.
    assert_eq!(c.sql("SELECT top_level FROM mtask.tasks WHERE name = 'commits'"), "t");
    // Parsing decides, not the text: a VACUUM in a string stays transactional.
    c.sql("SELECT mtask.schedule_at('quoted', now(), $$SELECT 'VACUUM'$$)");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'quoted'", "done");
    assert_eq!(runs_of(&c, "quoted"), "succeeded:false");
}

#[test]
fn transactional_forces_either_way() {
    let c = Cluster::with_hits("");
    c.sql(
        "CREATE PROCEDURE commits() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
         SELECT mtask.schedule_at('vacuum', now(), 'VACUUM hits', transactional => true);
         SELECT mtask.schedule_at('call', now(), 'CALL commits()', transactional => true);
         SELECT mtask.schedule_at('insert', now(), $$INSERT INTO hits VALUES ('x')$$, transactional => false)",
    );
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE status IN ('done', 'failed')", "3");
    assert_eq!(runs_of(&c, "insert"), "succeeded:true");
    // Forced into a transaction, they fail, and say how to run them.
    assert_eq!(
        c.sql(
            "SELECT string_agg(r.sqlstate || ':' || (r.message LIKE '%transactional => false%'), ',' ORDER BY t.name)
               FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name IN ('call', 'vacuum')"
        ),
        "2D000:true,25001:true"
    );
    // Back to deciding by the command: NULL.
    c.sql("UPDATE mtask.tasks SET transactional = NULL WHERE name = 'vacuum'");
    assert_eq!(c.sql("SELECT top_level FROM mtask.tasks WHERE name = 'vacuum'"), "t");
}

#[test]
fn reboot_tasks_run_once_each_time_the_server_starts() {
    let c = Cluster::with_hits("");
    c.sql("SELECT mtask.schedule('boot', '@reboot', $$INSERT INTO hits VALUES ('boot')$$)");
    assert_eq!(c.sql("SELECT status, next_run_at IS NULL FROM mtask.tasks WHERE name = 'boot'"), "scheduled|t");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.next_runs('@reboot')"), "0");
    // Not when it is created: a task scheduled after it runs, and it does not.
    let ran_after = |c: &Cluster, marker: &str| {
        c.sql(&format!("SELECT mtask.schedule_at('{marker}', now(), $$INSERT INTO hits VALUES ('{marker}')$$)"));
        c.wait_for(&format!("SELECT count(*) FROM hits WHERE task = '{marker}'"), "1");
    };
    ran_after(&c, "created");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'boot'"), "0");

    // Each start runs it once, after which it waits for the next.
    for starts in 1..=2 {
        c.restart();
        c.wait_for("SELECT count(*) FROM hits WHERE task = 'boot'", &starts.to_string());
        c.wait_for(
            "SELECT status || ':' || (next_run_at IS NULL) FROM mtask.tasks WHERE name = 'boot'",
            "scheduled:true",
        );
    }
    // A launcher that crashes and comes back is no server start.
    let launcher = c.scheduler_pid();
    c.sql(&format!("SELECT pg_terminate_backend({launcher})"));
    c.wait_for(
        &format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask scheduler' AND pid <> {launcher}"),
        "1",
    );
    ran_after(&c, "relaunched");
    assert_eq!(c.sql("SELECT count(*) FROM hits WHERE task = 'boot'"), "2");
}

/// A command run again and again is planned once by a worker and its plan
/// kept (src/executor/command_plans.rs). Each run must still see what a
/// fresh plan would: a table of another shape, a privilege gone, a table
/// created since that its name now finds first.
#[test]
fn a_kept_plan_sees_what_changed_since_it_was_planned() {
    let c = Cluster::start("mtask.max_workers = 1");
    c.sql(
        "CREATE EXTENSION mtask;
         CREATE ROLE alice; GRANT USAGE ON SCHEMA mtask TO alice; CREATE SCHEMA alice AUTHORIZATION alice;
         CREATE TABLE t (v int); GRANT INSERT, SELECT ON t TO alice",
    );
    let run = |n: usize| -> String {
        let id = c.sql(&format!("SET ROLE alice; SELECT mtask.schedule_at('r{n}', now(), 'INSERT INTO t VALUES (1)')"));
        c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id}"), "1");
        c.sql(&format!("SELECT status || coalesce(' ' || sqlstate, '') FROM mtask.runs WHERE task_id = {id}"))
    };
    // Run often enough to be kept, and then from the kept plan.
    for n in 0..4 {
        assert_eq!(run(n), "succeeded");
    }
    c.sql("DROP TABLE t; CREATE TABLE t (v text, w int DEFAULT 7); GRANT INSERT ON t TO alice");
    assert_eq!(run(4), "succeeded");
    assert_eq!(c.sql("SELECT string_agg(v || ':' || w, ',') FROM t"), "1:7");
    c.sql("REVOKE INSERT ON t FROM alice");
    assert_eq!(run(5), "failed 42501");
    c.sql("GRANT INSERT ON t TO alice");
    for n in 6..9 {
        assert_eq!(run(n), "succeeded");
    }
    // alice.t comes before public.t in the task's search_path ("$user",
    // public), and nothing touches public.t: from now on the command's t
    // is alice's all the same.
    c.sql("SET ROLE alice; CREATE TABLE alice.t (v int)");
    assert_eq!(run(9), "succeeded");
    assert_eq!(run(10), "succeeded");
    assert_eq!(c.sql("SELECT count(*) FROM alice.t"), "2");
    assert_eq!(c.sql("SELECT count(*) FROM public.t"), "4");
}
