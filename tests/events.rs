//! Events: mtask.emit() hands a named event and its JSON payload to every
//! listener of that name; events nobody listens to wait as 'unhandled'.
//! Also the hand-offs to the outside: notify tasks (with the example mail
//! consumer in examples/) and a payload on a program's stdin.

mod common;

use common::{Cluster, assert_error};
use std::time::{Duration, Instant};

fn with_handlers() -> Cluster {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    c.sql(
        "CREATE TABLE got (handler text, who text DEFAULT current_user, event text, payload jsonb,
                           at timestamptz DEFAULT clock_timestamp());
         GRANT INSERT, SELECT ON got TO PUBLIC;
         CREATE FUNCTION on_one(payload jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO got (handler, payload) VALUES ('one', payload) $$;
         CREATE FUNCTION on_two(event text, payload jsonb) RETURNS void LANGUAGE sql
             AS $$ INSERT INTO got (handler, event, payload) VALUES ('two', event, payload) $$;
         CREATE FUNCTION on_broken(payload jsonb) RETURNS void LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'cannot handle %', payload; END $$;",
    );
    c
}

#[test]
fn every_listener_gets_the_payload_and_a_failing_one_stops_no_other() {
    let c = with_handlers();
    c.sql("SELECT mtask.listen('paid', 'on_one(jsonb)')");
    c.sql("SELECT mtask.listen('paid', 'on_two(text, jsonb)')");
    c.sql("SELECT mtask.listen('paid', 'on_broken(jsonb)', max_attempts => 2, retry_delay => '10 ms')");
    let id = c.sql(r#"SELECT mtask.emit('paid', '{"order": 42}')"#);
    c.wait_for(&format!("SELECT count(*) FROM mtask.deliveries WHERE event_id = {id} AND status <> 'scheduled'"), "3");
    assert_eq!(
        c.sql("SELECT string_agg(concat_ws(' ', handler, event, payload), ',' ORDER BY handler) FROM got"),
        r#"one {"order": 42},two paid {"order": 42}"#
    );
    // The broken one failed, was retried under its listener's policy, and
    // its failures are recorded against its delivery.
    assert_eq!(
        c.sql(&format!(
            "SELECT d.status, d.attempts, string_agg(r.attempt || ' ' || r.status, ',' ORDER BY r.id)
             FROM mtask.deliveries d JOIN mtask.listeners l ON l.id = d.listener_id
             JOIN mtask.runs r ON r.task_id = d.task_id
             WHERE d.event_id = {id} AND l.handler = 'public.on_broken(jsonb)'
             GROUP BY d.status, d.attempts"
        )),
        "failed|2|1 failed,2 failed"
    );
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.events WHERE id = {id}")), "queued");

    // A handler of the wrong shape is refused when it would listen.
    c.sql("CREATE FUNCTION wrong(n int) RETURNS void LANGUAGE sql AS 'SELECT 1'");
    c.sql("CREATE PROCEDURE proc(payload jsonb) LANGUAGE sql AS 'SELECT 1'");
    for handler in ["wrong(int)", "proc(jsonb)"] {
        assert_error(
            c.try_sql(&format!("SELECT mtask.listen('paid', '{handler}')")),
            "22023",
            &["must be a function of (payload jsonb) or (event text, payload jsonb)", "HINT:"],
        );
    }
    assert_error(c.try_sql("SELECT mtask.emit(' ', '{}')"), "22023", &["an event needs a name", "HINT:"]);

    // Unlistening takes the listener out of deliveries not yet made.
    let later = c.sql("SELECT mtask.emit('paid', '{}', now() + interval '1 hour')");
    assert_eq!(c.sql("SELECT mtask.unlisten('paid', 'on_two(text, jsonb)')"), "t");
    assert_eq!(c.sql("SELECT mtask.unlisten('paid', 'on_two(text, jsonb)')"), "f");
    assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.deliveries WHERE event_id = {later}")), "2");
    // A listener that comes before an event is due gets it too.
    c.sql("SELECT mtask.listen('paid', 'on_two(text, jsonb)')");
    assert_eq!(c.sql(&format!("SELECT count(*) FROM mtask.deliveries WHERE event_id = {later}")), "3");
}

#[test]
fn an_event_is_delivered_when_it_is_due() {
    let c = with_handlers();
    c.sql("SELECT mtask.listen('tick', 'on_one(jsonb)')");
    let at = c.sql("SELECT now() + interval '1 second'");
    c.sql(&format!("SELECT mtask.emit('tick', '{{}}', '{at}')"));
    c.wait_for("SELECT count(*) FROM got", "1");
    assert_eq!(c.sql(&format!("SELECT at >= '{at}' FROM got")), "t");
}

#[test]
fn an_event_without_a_listener_waits_as_unhandled() {
    let c = with_handlers();
    let id = c.sql(r#"SELECT mtask.emit('lonely', '{"n": 1}')"#);
    assert_eq!(
        c.sql(&format!(
            "SELECT status, message LIKE 'no listener for event \"lonely\"%' FROM mtask.events WHERE id = {id}"
        )),
        "unhandled|t"
    );
    // A listener that comes later gets it, within mtask.deliver_late.
    c.sql("SELECT mtask.listen('lonely', 'on_one(jsonb)')");
    c.wait_for("SELECT payload FROM got", r#"{"n": 1}"#);
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.events WHERE id = {id}")), "queued");

    // Not when it is older than that, nor when late delivery is off.
    c.sql("SELECT mtask.emit('stale', '{}', now() - interval '2 days')");
    c.sql("SELECT mtask.emit('off', '{}')");
    c.sql("SELECT mtask.listen('stale', 'on_one(jsonb)')");
    c.sql("SET mtask.deliver_late = 0; SELECT mtask.listen('off', 'on_one(jsonb)')");
    assert_eq!(
        c.sql("SELECT string_agg(event || ' ' || status, ',' ORDER BY id) FROM mtask.events WHERE event IN ('stale', 'off')"),
        "stale unhandled,off unhandled"
    );
    assert_eq!(c.sql("SELECT count(*) FROM mtask.deliveries WHERE event IN ('stale', 'off')"), "0");
}

#[test]
fn events_and_listeners_follow_the_ownership_rules() {
    let c = with_handlers();
    c.sql("CREATE ROLE alice; CREATE ROLE bob; GRANT USAGE ON SCHEMA mtask TO alice, bob");
    c.sql("SET ROLE alice; SELECT mtask.listen('x', 'on_one(jsonb)')");
    // bob's event does not reach alice's listener: it would run alice's code
    // on bob's say. He sees neither her listener nor, later, her events.
    let bobs = c.sql("SET ROLE bob; SELECT mtask.emit('x', '{\"from\": \"bob\"}')");
    assert_eq!(c.sql(&format!("SELECT status FROM mtask.events WHERE id = {bobs}")), "unhandled");
    assert_eq!(c.sql("SET ROLE bob; SELECT count(*) FROM mtask.listeners"), "0");
    assert_eq!(c.sql("SET ROLE bob; SELECT mtask.unlisten('x', 'on_one(jsonb)')"), "f");
    assert_error(
        c.try_sql(
            "SET ROLE bob; INSERT INTO mtask.listeners (event, handler, owner) VALUES ('x', 'public.on_one(jsonb)', 'alice')",
        ),
        "42501",
        &["row-level security"],
    );
    // A plain INSERT names the handler with its schema.
    assert_error(
        c.try_sql("INSERT INTO mtask.listeners (event, handler) VALUES ('x', 'on_one(jsonb)')"),
        "42883",
        &["handler on_one(jsonb) does not exist", "HINT:"],
    );
    // alice's event reaches it, and the handler runs as alice.
    c.sql("SET ROLE alice; SELECT mtask.emit('x', '{\"from\": \"alice\"}')");
    c.wait_for("SELECT who || ' ' || payload FROM got", r#"alice {"from": "alice"}"#);
    assert_eq!(c.sql("SET ROLE bob; SELECT count(*) FROM mtask.events"), "1");
    assert_eq!(c.sql("SET ROLE bob; SELECT count(*) FROM mtask.deliveries"), "0");
    assert_eq!(c.sql("SET ROLE alice; SELECT count(*) FROM mtask.deliveries"), "1");
    // A superuser's event reaches every listener.
    c.sql("SELECT mtask.emit('x', '{\"from\": \"dba\"}')");
    c.wait_for("SELECT count(*) FROM got", "2");
}

#[test]
fn handled_events_go_with_the_history() {
    let c = Cluster::start("mtask.history_max_age = '1d'");
    c.sql("CREATE EXTENSION mtask");
    c.sql("CREATE FUNCTION noop(payload jsonb) RETURNS void LANGUAGE sql AS 'SELECT 1'");
    c.sql("SELECT mtask.listen('old', 'noop(jsonb)')");
    // Due two days ago, so delivered at once; then older than the history.
    c.sql("SELECT mtask.emit('old', '{}', now() - interval '2 days')");
    c.sql("SELECT mtask.emit('nobody', '{}', now() - interval '2 days')");
    let fresh = c.sql("SELECT mtask.emit('old', '{}')");
    c.wait_for("SELECT string_agg(id::text, ',') FROM mtask.events", &fresh);
    c.wait_for("SELECT count(*) FROM mtask.tasks WHERE event_id IS NOT NULL", "1");
}

#[test]
fn notify_tasks_hand_off_to_the_example_mail_consumer() {
    // The consumer the README shows is the one tested here.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mail_consumer.py")).unwrap();
    let shown = readme.split("```python\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
    assert!(example.ends_with(shown), "README's consumer differs from examples/mail_consumer.py");

    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    let outbox = std::env::temp_dir().join(format!("mtask-outbox-{}", std::process::id()));
    let _ = std::fs::remove_file(&outbox);
    let mut consumer = std::process::Command::new("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mail_consumer.py"))
        .arg(c.conninfo())
        .env("MAIL_OUTBOX", &outbox)
        .spawn()
        .expect("python3 runs the example consumer");
    c.wait_for("SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN mtask_mail'", "1");
    let mail = r#"{"to": "ann@example.com", "subject": "It's done", "body": "Report \\ ready; 'quoted'"}"#;
    c.sql(&format!(
        "SELECT mtask.schedule_at('mail', now(), 'mtask_mail', command_type => 'notify', payload => $p${mail}$p$)"
    ));
    let start = Instant::now();
    let sent = loop {
        let text = std::fs::read_to_string(&outbox).unwrap_or_default();
        if text.contains("Report") || start.elapsed() > Duration::from_secs(60) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = consumer.kill();
    let _ = consumer.wait();
    let _ = std::fs::remove_file(&outbox);
    assert!(sent.contains("To: ann@example.com"), "{sent}");
    assert!(sent.contains("Subject: It's done"), "{sent}");
    assert!(sent.contains(r"Report \ ready; 'quoted'"), "{sent}");
    // A channel name too long for pg_notify is an error when scheduled.
    assert_error(
        c.try_sql(&format!("SELECT mtask.schedule_at('x', now(), '{}', command_type => 'notify')", "c".repeat(64))),
        "42622",
        &["longer than 63 bytes", "HINT:"],
    );
}

#[test]
fn a_program_reads_the_payload_on_stdin() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask");
    let id = c
        .sql(r#"SELECT mtask.schedule_at('cat', now(), 'cat', command_type => 'program', payload => '{"a": [1, 2]}')"#);
    c.wait_for(
        &format!("SELECT stdout FROM mtask.runs WHERE task_id = {id} AND status = 'succeeded'"),
        r#"{"a": [1, 2]}"#,
    );
    // One that never reads it still ends.
    let id = c.sql(
        "SELECT mtask.schedule_at('deaf', now(), 'true', command_type => 'program', payload => to_jsonb(repeat('x', 1000000)))",
    );
    c.wait_for(&format!("SELECT status FROM mtask.runs WHERE task_id = {id}"), "succeeded");
}
