//! Security: ordinary roles given USAGE on schema mtask each see and change
//! only the tasks of roles they are members of, tasks run with their owner's
//! rights and no more, and no task leaves anything behind for the next.
//! Every attempt here is made by a non-superuser (SET ROLE, which also turns
//! is_superuser off) and must be refused, or have no effect beyond the
//! attacker's own rights.

mod common;

use common::{Cluster, assert_error};

/// alice and bob are ordinary LOGIN roles with USAGE on mtask; `reports` is
/// a NOLOGIN group alice belongs to. alice has a task and a run.
fn with_users() -> Cluster {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    c.sql(
        "CREATE TABLE hits (who text DEFAULT current_user, what text);
         GRANT SELECT, INSERT ON hits TO PUBLIC;
         CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE reports NOLOGIN; CREATE ROLE stranger LOGIN;
         GRANT reports TO alice;
         GRANT USAGE ON SCHEMA mtask TO alice, bob;",
    );
    c.sql(
        "SET ROLE alice; SELECT mtask.schedule('alice-task', '1 hour', $$INSERT INTO hits (what) VALUES ('alice')$$)",
    );
    c.wait_for("SELECT count(*) FROM mtask.runs", "1");
    c
}

fn as_role(role: &str, sql: &str) -> String {
    format!("SET ROLE {role}; {sql}")
}

/// How a task's one run ended: its status, then its SQLSTATE if it failed.
fn run_result(c: &Cluster, id: &str) -> String {
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id} AND status <> 'running'"), "1");
    c.sql(&format!("SELECT status || coalesce(' ' || sqlstate, '') FROM mtask.runs WHERE task_id = {id}"))
}

/// Schedules `command` as `role` to run now, in a transaction or not, and
/// waits until it has run.
fn run_as(c: &Cluster, role: &str, name: &str, command: &str, transactional: bool) -> String {
    let schedule =
        format!("SELECT mtask.schedule_at('{name}', now(), $cmd${command}$cmd$, transactional => {transactional})");
    run_result(c, &c.sql(&as_role(role, &schedule)))
}

fn alice_task_id(c: &Cluster) -> String {
    c.sql("SELECT id FROM mtask.tasks WHERE name = 'alice-task'")
}

#[test]
fn another_roles_tasks_and_runs_are_out_of_reach() {
    let c = with_users();
    let id = alice_task_id(&c);

    // Bob sees none of alice's tasks or runs; alice sees hers.
    assert_eq!(c.sql(&as_role("bob", "SELECT count(*) FROM mtask.tasks")), "0");
    assert_eq!(c.sql(&as_role("bob", "SELECT count(*) FROM mtask.runs")), "0");
    assert_eq!(c.sql(&as_role("alice", "SELECT count(*) FROM mtask.runs")), "1");

    // The API answers as if the task did not exist.
    for call in [
        format!("SELECT mtask.alter({id}, command => 'SELECT 1')"),
        format!("SELECT mtask.pause({id})"),
        format!("SELECT mtask.unschedule({id})"),
    ] {
        assert_error(c.try_sql(&as_role("bob", &call)), "42704", &["does not exist", "HINT:"]);
    }
    // A name means the caller's own task, so naming hers finds nothing.
    assert_error(c.try_sql(&as_role("bob", "SELECT mtask.pause('alice-task')")), "42704", &["does not exist"]);

    // Plain DML reaches no row of hers.
    assert_eq!(
        c.sql(&as_role("bob", &format!("UPDATE mtask.tasks SET command = 'SELECT 666' WHERE id = {id} RETURNING id"))),
        ""
    );
    assert_eq!(c.sql(&as_role("bob", &format!("DELETE FROM mtask.tasks WHERE id = {id} RETURNING id"))), "");

    // Bob cannot write the run history, his own or hers.
    assert_error(
        c.try_sql(&as_role(
            "bob",
            &format!("INSERT INTO mtask.runs (task_id, started_at, status) VALUES ({id}, now(), 'succeeded')"),
        )),
        "42501",
        &["permission denied"],
    );
    assert_error(c.try_sql(&as_role("bob", "DELETE FROM mtask.runs")), "42501", &["permission denied"]);

    // A role without USAGE on the schema reaches nothing at all.
    assert_error(
        c.try_sql(&as_role("stranger", "SELECT mtask.schedule_at('x', now(), 'SELECT 1')")),
        "42501",
        &["permission denied for schema mtask"],
    );

    assert_eq!(
        c.sql(&format!("SELECT status, command FROM mtask.tasks WHERE id = {id}")),
        "scheduled|INSERT INTO hits (what) VALUES ('alice')"
    );
}

/// A task's runs go with it, though its owner may not delete runs: by a
/// trigger of the extension's, which a foreign key's cascade was until
/// 0.4.0. Neither it nor its function reaches any other task's runs.
#[test]
fn a_tasks_runs_go_with_it_and_no_others_do() {
    let c = with_users();
    let id = alice_task_id(&c);
    let bob = c.sql(&as_role("bob", "SELECT mtask.schedule_at('bob-task', now(), 'SELECT 1')"));
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {bob}"), "1");

    // Bob's DELETE sees none of her tasks, so it takes none of her runs.
    assert_eq!(c.sql(&as_role("bob", "DELETE FROM mtask.tasks RETURNING id")), bob);
    assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {bob}")), "0");
    assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {id}")), "1");
    // The trigger's function runs only as a trigger.
    assert_error(c.try_sql(&as_role("bob", "SELECT mtask.tasks_delete_runs()")), "0A000", &["trigger"]);

    c.sql(&as_role("alice", "SELECT mtask.unschedule('alice-task')"));
    assert_eq!(c.sql("SELECT count(*) FROM mtask.runs"), "0");

    // TRUNCATE, which the key refused, takes the history with the tasks.
    let t = c.sql("SELECT mtask.schedule_at('t', now(), 'SELECT 1')");
    c.wait_for(&format!("SELECT count(*) FROM mtask.runs WHERE task_id = {t}"), "1");
    c.sql("TRUNCATE mtask.tasks");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.runs"), "0");
}

#[test]
fn owners_cannot_be_forged_or_changed() {
    let c = with_users();
    let id = alice_task_id(&c);

    // Scheduling as a superuser, or as a role bob is not a member of.
    for owner in ["postgres", "alice"] {
        assert_error(
            c.try_sql(&as_role(
                "bob",
                &format!("INSERT INTO mtask.tasks (name, owner, command) VALUES ('f', '{owner}', 'SELECT 1')"),
            )),
            "42501",
            &["permission denied to make", "HINT:"],
        );
    }
    // Giving her own task away to a role she is not a member of.
    for owner in ["postgres", "bob"] {
        assert_error(
            c.try_sql(&as_role("alice", &format!("UPDATE mtask.tasks SET owner = '{owner}' WHERE id = {id}"))),
            "42501",
            &["permission denied to make"],
        );
    }
    // The scheduler's bookkeeping is not the user's to write.
    assert_error(
        c.try_sql(&as_role(
            "alice",
            &format!("UPDATE mtask.tasks SET run_count = 0, last_status = NULL WHERE id = {id}"),
        )),
        "42501",
        &["permission denied for table tasks"],
    );
    assert_error(
        c.try_sql(&as_role("alice", "INSERT INTO mtask.tasks (name, command, run_count) VALUES ('f', 'SELECT 1', 99)")),
        "42501",
        &["permission denied for table tasks"],
    );
    // Nor the statuses only the scheduler sets.
    for status in ["running", "done", "failed"] {
        assert_error(
            c.try_sql(&as_role("alice", &format!("UPDATE mtask.tasks SET status = '{status}' WHERE id = {id}"))),
            "42501",
            &["cannot be set from 'scheduled'", "HINT:"],
        );
    }
    assert_eq!(
        c.sql(&format!("SELECT owner, status, run_count FROM mtask.tasks WHERE id = {id}")),
        "alice|scheduled|1"
    );

    // What members may do: pause and resume by UPDATE, and give a task to a
    // NOLOGIN group they belong to, which then runs it as itself.
    c.sql(&as_role("alice", &format!("UPDATE mtask.tasks SET status = 'paused' WHERE id = {id}")));
    c.sql(&as_role("alice", &format!("UPDATE mtask.tasks SET status = 'scheduled' WHERE id = {id}")));
    c.sql(&as_role(
        "alice",
        "INSERT INTO mtask.tasks (name, owner, command) VALUES ('group', 'reports', $$INSERT INTO hits (what) VALUES ('group')$$)",
    ));
    c.wait_for("SELECT who FROM hits WHERE what = 'group'", "reports");
    assert_eq!(c.sql(&as_role("alice", "SELECT count(*) FROM mtask.tasks")), "2");
    assert_eq!(c.sql(&as_role("bob", "SELECT count(*) FROM mtask.tasks")), "0");
}

#[test]
fn a_task_cannot_climb_out_of_its_owners_rights() {
    let c = with_users();
    let id = alice_task_id(&c);
    let cases = [
        // Become someone else, change the server, run a program, read
        // secrets, make itself superuser. Each in a transaction and out of one.
        ("set-role", "SET ROLE postgres"),
        ("set-session", "SET SESSION AUTHORIZATION postgres"),
        ("alter-system", "ALTER SYSTEM SET work_mem = '1MB'"),
        ("copy-program", "COPY (SELECT 1) TO PROGRAM 'touch /tmp/mtask-escaped'"),
        ("authid", "SELECT rolpassword FROM pg_authid"),
        ("grant-self", "ALTER ROLE bob SUPERUSER"),
        // Give its own task to a superuser.
        ("own-row", "UPDATE mtask.tasks SET owner = 'postgres' WHERE name LIKE 'own-row%'"),
        // Forge history.
        (
            "forge-run",
            "INSERT INTO mtask.runs (task_id, started_at, status) SELECT id, now(), 'succeeded' FROM mtask.tasks",
        ),
    ];
    for (name, command) in cases {
        // ALTER SYSTEM refuses a transaction before it checks privileges.
        let in_transaction = name != "alter-system";
        assert_eq!(run_as(&c, "bob", name, command, in_transaction), "failed 42501", "{command}");
        assert_eq!(run_as(&c, "bob", &format!("{name}-top"), command, false), "failed 42501", "{command}");
    }
    // Change another role's task: row-level security hides it from the task too.
    let command = "UPDATE mtask.tasks SET command = 'SELECT 666' WHERE name = 'alice-task'";
    assert_eq!(run_as(&c, "bob", "other-rows", command, true), "succeeded");
    assert_eq!(
        c.sql(&format!("SELECT command FROM mtask.tasks WHERE id = {id}")),
        "INSERT INTO hits (what) VALUES ('alice')"
    );
    assert!(!std::path::Path::new("/tmp/mtask-escaped").exists());
    assert_eq!(c.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'bob'"), "f");
    // A task may unschedule itself: it is gone, with its history.
    c.sql(&as_role("bob", "SELECT mtask.schedule_at('self', now(), $$SELECT mtask.unschedule('self')$$)"));
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name = 'self'", "0");
}

#[test]
fn a_task_leaves_nothing_behind_for_the_next() {
    // One worker, so that each pair runs in one session, the first task
    // (alice's) right before the second (bob's): due together, and
    // priority puts alice's first.
    let c = Cluster::start("mtask.max_workers = 1");
    c.sql("CREATE EXTENSION mtask");
    c.sql(
        "CREATE TABLE hits (who text DEFAULT current_user, what text); GRANT SELECT, INSERT ON hits TO PUBLIC;
         CREATE TABLE alice_secret (s text); INSERT INTO alice_secret VALUES ('s3cret');
         CREATE ROLE alice; CREATE ROLE bob; GRANT SELECT ON alice_secret TO alice;
         GRANT USAGE ON SCHEMA mtask TO alice, bob",
    );
    let show_settings =
        "INSERT INTO hits (what) VALUES (current_setting('work_mem') || ' ' || current_setting('search_path'))";
    // (what alice's task leaves, whether it runs in a transaction, what bob's
    // task tries, how bob's run ends, what hits then holds)
    let pairs = [
        // Settings, in and out of a transaction.
        (
            "SET work_mem = '1234kB'; SET search_path = nowhere",
            true,
            show_settings,
            "succeeded",
            "bob:4MB \"$user\", public",
        ),
        (
            "SET work_mem = '1234kB'; SET search_path = nowhere",
            false,
            show_settings,
            "succeeded",
            "bob:4MB \"$user\", public",
        ),
        // A temporary table that would take the next task's rows.
        (
            "CREATE TEMP TABLE hits (who text, what text)",
            true,
            "INSERT INTO hits (what) VALUES ('real')",
            "succeeded",
            "bob:real",
        ),
        // An open cursor over alice's secret; a prepared statement that reads it.
        ("DECLARE c CURSOR WITH HOLD FOR SELECT s FROM alice_secret", true, "FETCH c", "failed 34000", ""),
        ("PREPARE p AS SELECT s FROM alice_secret", true, "EXECUTE p", "failed 26000", ""),
        // A session advisory lock, which would otherwise be held for ever.
        (
            "SELECT pg_advisory_lock(42)",
            true,
            "INSERT INTO hits (what) VALUES (pg_try_advisory_xact_lock(42)::text)",
            "succeeded",
            "bob:true",
        ),
    ];
    for (i, (first, transactional, second, run, hits)) in pairs.iter().enumerate() {
        c.sql("TRUNCATE hits");
        let at = c.sql("SELECT now() + interval '1 second'");
        c.sql(&as_role(
            "alice",
            &format!("SELECT mtask.schedule_at('first{i}', '{at}', $c${first}$c$, transactional => {transactional}, priority => 1)"),
        ));
        let id = c.sql(&as_role("bob", &format!("SELECT mtask.schedule_at('second{i}', '{at}', $c${second}$c$)")));
        assert_eq!(run_result(&c, &id), *run, "{second} after {first}");
        assert_eq!(
            c.sql(&format!("SELECT last_status FROM mtask.tasks WHERE name = 'first{i}'")),
            "succeeded",
            "{first}"
        );
        assert_eq!(c.sql("SELECT coalesce(string_agg(who || ':' || what, ','), '') FROM hits"), *hits, "after {first}");
    }
}

#[test]
fn shadowing_names_through_search_path_reaches_no_superuser() {
    let c = with_users();
    // A DBA whose search_path puts a schema others can write before
    // pg_catalog, and bob planting look-alikes of what mtask calls.
    c.sql(
        "CREATE TABLE hijack (who text, what text); GRANT INSERT ON hijack TO PUBLIC;
         GRANT CREATE ON SCHEMA public TO bob;
         ALTER ROLE postgres SET search_path = public, pg_catalog;
         ALTER DATABASE postgres SET search_path = public, pg_catalog",
    );
    c.sql(&as_role(
        "bob",
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.hijack VALUES (current_user, 'now'); RETURN pg_catalog.now(); END $$;
         CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.hijack VALUES (current_user, 'clock'); RETURN pg_catalog.clock_timestamp(); END $$;
         CREATE FUNCTION public.btrim(text) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.hijack VALUES (current_user, 'btrim'); RETURN pg_catalog.btrim($1); END $$;
         CREATE FUNCTION public.int8eq_spy(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO public.hijack VALUES (current_user, '='); RETURN pg_catalog.int8eq($1, $2); END $$;
         CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.int8eq_spy)",
    ));
    // The trap is live: a superuser session with that path falls into it.
    c.sql("SELECT now()");
    assert_eq!(c.sql("SELECT string_agg(who || ' ' || what, ',') FROM hijack"), "postgres now");
    c.sql("TRUNCATE hijack");

    // Restarted, so that the workers start with the DBA's search_path too.
    c.restart();
    c.sql(
        "SELECT mtask.schedule('dba', '1 hour', 'SELECT 1', start_at => pg_catalog.now());
         SELECT mtask.schedule_at('dba-once', pg_catalog.now(), 'SELECT 1', remark => ' x ');
         SELECT mtask.alter('dba', max_runs => 5, end_at => 'infinity');
         SELECT mtask.pause('dba'); SELECT mtask.resume('dba');
         SELECT mtask.schedule_at('dba-top', pg_catalog.now(), 'SELECT 1', transactional => false)",
    );
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE name LIKE 'dba-%' AND status = 'done'", "2");
    c.wait_for("SELECT run_count FROM mtask.tasks WHERE name = 'dba'", "1");
    c.sql("SELECT mtask.unschedule('dba')");
    assert_eq!(
        c.sql("SELECT count(*) FROM hijack h JOIN pg_roles r ON r.rolname = h.who WHERE r.rolsuper"),
        "0",
        "{}",
        c.sql("SELECT string_agg(who || ' ' || what, ',') FROM hijack")
    );

    // Every function of the extension written in SQL pins its search_path,
    // SECURITY DEFINER or not.
    assert_eq!(
        c.sql(
            "SELECT coalesce(string_agg(p.proname, ','), 'none') FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
             WHERE p.pronamespace = 'mtask'::regnamespace AND l.lanname IN ('sql', 'plpgsql')
               AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)"
        ),
        "none"
    );
}

#[test]
fn dropping_a_role_that_owns_tasks() {
    let c = with_users();
    c.sql(&as_role("bob", "SELECT mtask.schedule('bob-task', '1 hour', 'SELECT 1')"));
    assert_error(
        c.try_sql("DROP ROLE bob"),
        "2BP01",
        &["role bob cannot be dropped because it owns 1 mtask task in database \"postgres\"", "REASSIGN OWNED BY bob"],
    );
    // REASSIGN OWNED carries the tasks along; DROP OWNED removes them.
    c.sql("REASSIGN OWNED BY bob TO alice");
    assert_eq!(c.sql("SELECT owner FROM mtask.tasks WHERE name = 'bob-task'"), "alice");
    // The usual pair: DROP OWNED then removes only bob's grants.
    c.sql("DROP OWNED BY bob; DROP ROLE bob");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks WHERE name = 'bob-task'"), "1");
    assert_error(c.try_sql("DROP ROLE alice"), "2BP01", &["owns 2 mtask tasks"]);
    c.sql("DROP OWNED BY alice; DROP ROLE alice");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.tasks"), "0");
    assert_eq!(c.sql("SELECT count(*) FROM mtask.runs"), "0");

    // A role dropped from another database, where mtask cannot see its tasks:
    // the scheduler pauses them rather than run them as nobody.
    c.sql("CREATE ROLE carol");
    c.sql("CREATE DATABASE elsewhere");
    c.sql("SELECT mtask.schedule('orphan', '1 hour', 'SELECT 1', start_at => now() + interval '1 hour')");
    c.sql("UPDATE mtask.tasks SET owner = 'carol' WHERE name = 'orphan'");
    c.sql_in("elsewhere", "DROP ROLE carol");
    c.sql("UPDATE mtask.tasks SET next_run_at = now() WHERE name = 'orphan'");
    c.wait_for("SELECT status FROM mtask.tasks WHERE name = 'orphan'", "paused");
    assert_eq!(
        c.sql(
            "SELECT r.status, r.sqlstate, t.pause_reason LIKE '%no longer exists; give the task an existing owner%'
               FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id WHERE t.name = 'orphan'"
        ),
        "failed|42704|t"
    );
}
