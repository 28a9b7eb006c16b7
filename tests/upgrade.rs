//! Upgrades: a database made by an older mtask, updated with ALTER EXTENSION
//! mtask UPDATE, keeps its tasks and ends up with the same schema as a new
//! installation.

mod common;

use common::Cluster;

/// Everything in schema mtask that an upgrade script could get wrong.
const CATALOG: &str = "
SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
    SELECT format('function %s(%s) %s %s %s %s', p.proname, pg_get_function_arguments(p.oid),
                  pg_get_function_result(p.oid), p.provolatile, p.proconfig, md5(p.prosrc))
    FROM pg_proc p WHERE p.pronamespace = 'mtask'::regnamespace
    UNION ALL
    SELECT format('column %s.%s %s %s %s %s %s', c.relname, a.attnum, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attacl)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'mtask'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s %s', conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace = 'mtask'::regnamespace
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'mtask'::regnamespace
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(t.oid))
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'mtask'::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT format('table %s %s %s', relname, relacl, relrowsecurity)
    FROM pg_class WHERE relnamespace = 'mtask'::regnamespace AND relkind = 'r'
    UNION ALL
    SELECT format('policy %s %s %s %s %s', polname, polrelid::regclass, polcmd,
                  pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid))
    FROM pg_policy
    UNION ALL
    SELECT format('dumped %s %s', extconfig::regclass[], extcondition) FROM pg_extension WHERE extname = 'mtask'
    UNION ALL
    SELECT format('extension in %s', extnamespace::regnamespace) FROM pg_extension WHERE extname = 'mtask'
    UNION ALL
    SELECT format('member %s', pg_describe_object(classid, objid, objsubid)) FROM pg_depend
    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'mtask')
    UNION ALL
    SELECT format('initial privileges %s %s', pg_describe_object(classoid, objoid, objsubid), initprivs)
    FROM pg_init_privs WHERE privtype = 'e'
    UNION ALL
    SELECT format('comment %s %s', objoid::regclass, md5(description))
    FROM pg_description WHERE classoid = 'pg_class'::regclass
      AND objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'mtask'::regnamespace)
) s(x)";

/// Creates `from` from its archived install script, with a task of each
/// kind, then updates it and checks the tasks and the catalog.
fn update_from(from: &str) {
    let c = Cluster::start("");
    c.sql("CREATE DATABASE fresh");
    c.sql_in("fresh", "CREATE EXTENSION mtask");

    // The scheduler runs in `postgres`; it waits, with one WARNING, while the
    // database holds an older schema than the library.
    c.sql(&format!("CREATE EXTENSION mtask VERSION '{from}'"));
    c.sql("CREATE TABLE hits (n int)");
    c.sql(&format!("SELECT mtask.schedule('old', '@daily', 'SELECT 1', remark => 'from {from}')"));
    c.sql("SELECT mtask.schedule_at('soon', now(), 'INSERT INTO hits VALUES (1)')");
    let warning = format!("mtask {from} is installed in this database");
    c.wait_for_log(&warning);
    let warned = || c.log().matches(&warning).count();
    assert_eq!(warned(), 1, "log:\n{}", c.log());
    assert_eq!(c.sql("SELECT count(*) FROM hits"), "0");

    c.sql("ALTER EXTENSION mtask UPDATE");
    assert_eq!(c.sql("SELECT extversion FROM pg_extension WHERE extname = 'mtask'"), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        c.sql("SELECT name, remark, missed, end_at IS NULL, max_runs IS NULL FROM mtask.tasks WHERE name = 'old'"),
        format!("old|from {from}|once|t|t")
    );
    // The task made under the old version runs once the schema matches.
    c.wait_for("SELECT count(*) FROM hits", "1");
    assert_eq!(c.sql("SELECT status FROM mtask.tasks WHERE name = 'soon'"), "done");
    assert_eq!(warned(), 1);

    assert_eq!(c.sql(CATALOG), c.sql_in("fresh", CATALOG));
}

#[test]
#[cfg_attr(feature = "pg14", ignore = "mtask 0.3.0 and older need PostgreSQL 15 or later (security_invoker)")]
fn update_from_0_1_0_keeps_tasks_and_matches_a_new_installation() {
    update_from("0.1.0");
}

#[test]
#[cfg_attr(feature = "pg14", ignore = "mtask 0.3.0 and older need PostgreSQL 15 or later (security_invoker)")]
fn update_from_0_2_0_keeps_tasks_and_matches_a_new_installation() {
    update_from("0.2.0");
}

#[test]
#[cfg_attr(feature = "pg14", ignore = "mtask 0.3.0 and older need PostgreSQL 15 or later (security_invoker)")]
fn update_from_0_3_0_keeps_tasks_and_matches_a_new_installation() {
    update_from("0.3.0");
}

/// Since 0.4.0 a listener names its handler in text, which pg_upgrade can
/// carry (it refuses a regprocedure column); the update converts 0.3.0's.
#[test]
#[cfg_attr(feature = "pg14", ignore = "mtask 0.3.0 and older need PostgreSQL 15 or later (security_invoker)")]
fn update_from_0_3_0_names_the_handlers_of_its_listeners_in_text() {
    let c = Cluster::start("");
    c.sql("CREATE EXTENSION mtask VERSION '0.3.0'");
    c.sql(
        "CREATE TABLE got (payload jsonb);
         CREATE FUNCTION on_paid(payload jsonb) RETURNS void LANGUAGE sql AS 'INSERT INTO got VALUES (payload)';
         SELECT mtask.listen('paid', 'on_paid(jsonb)')",
    );
    c.sql("ALTER EXTENSION mtask UPDATE");
    assert_eq!(c.sql("SELECT handler, takes_event FROM mtask.listeners"), "public.on_paid(jsonb)|f");
    c.sql("SELECT mtask.emit('paid', '{\"n\": 1}')");
    c.wait_for("SELECT payload FROM got", r#"{"n": 1}"#);
}
