-- mtask 0.3.0 -> 0.4.0: the DDL and data changes only, and the triggers that
-- went. The functions, triggers, views, grants, policies and comments of
-- 0.4.0 follow this file in the assembled update script, as they follow
-- sql/tables.sql in a new installation.

-- The rules on mtask.tasks are now checked by two triggers whose names say
-- their order (sql/triggers.sql).
DROP TRIGGER tasks_check ON mtask.tasks;
DROP TRIGGER tasks_check_limits ON mtask.tasks;
DROP TRIGGER tasks_check_command ON mtask.tasks;
DROP TRIGGER tasks_check_history ON mtask.tasks;
DROP TRIGGER tasks_check_status ON mtask.tasks;
DROP TRIGGER tasks_resume ON mtask.tasks;
-- Their functions go with the other leftovers, in sql/cleanup.sql.
