-- Last of the topic files. A function of an earlier version that this
-- version no longer declares (an API function whose parameters changed, a
-- helper that went) would otherwise stay behind an update. The topic files
-- re-create each function they declare with CREATE OR REPLACE, which writes
-- its pg_proc row anew, in this transaction and after the first of them,
-- mtask._normalize_schedule (sql/native.sql), so any function in schema
-- mtask written before that (by an older version, or by an older update
-- script of the same ALTER EXTENSION UPDATE, which runs them all in one
-- transaction) is a leftover, and goes. In a new installation there is none.
DO $$
DECLARE
    first_topic bigint := (SELECT cmin::text::bigint FROM pg_catalog.pg_proc
                           WHERE oid = 'mtask._normalize_schedule(text)'::regprocedure);
    leftover regprocedure;
BEGIN
    FOR leftover IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'mtask'::regnamespace
          AND (p.xmin <> pg_catalog.pg_current_xact_id()::xid OR p.cmin::text::bigint < first_topic)
    LOOP
        EXECUTE pg_catalog.format('DROP ROUTINE %s', leftover);
    END LOOP;
END
$$;
