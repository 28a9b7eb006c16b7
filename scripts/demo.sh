#!/usr/bin/env bash
# `make demo`: a throwaway cluster with mtask preloaded, three real tasks
# (recurring, one-shot, failing), their runs, then the cluster stops.
set -euo pipefail
source "$(dirname "$0")/cluster.sh"

DIR=${MTASK_DEMO_DIR:-/tmp/mtask-demo}
PORT=${MTASK_DEMO_PORT:-54329}
psql_demo() { cluster_psql "$DIR" "$PORT" "$@"; }

echo "== starting a $("$PG_BIN/postgres" --version | sed 's/.*) //; s/^/PostgreSQL /') cluster in $DIR with shared_preload_libraries = 'mtask'"
cluster_start "$DIR" "$PORT" ""
trap 'cluster_stop "$DIR"' EXIT

psql_demo -q <<'SQL'
CREATE EXTENSION mtask;
CREATE TABLE demo_log (at timestamptz DEFAULT clock_timestamp(), msg text);
\echo == scheduling a recurring task, a one-shot task and a task that fails
SELECT mtask.schedule('heartbeat', 'every 2 seconds',
                      $$INSERT INTO demo_log (msg) VALUES ('heartbeat')$$,
                      remark => 'recurring, every 2 seconds') AS heartbeat_id;
SELECT mtask.schedule_at('welcome', now() + interval '3 seconds',
                         $$INSERT INTO demo_log (msg) VALUES ('one-shot task ran')$$,
                         remark => 'one-shot, 3 seconds from now') AS welcome_id;
SELECT mtask.schedule('broken', '3 seconds', 'SELECT 1/0',
                      remark => 'fails on purpose: its errors are recorded') AS broken_id;
SQL

echo "== waiting for them to run (up to 60 s)"
ready="SELECT (SELECT run_count >= 3 FROM mtask.tasks WHERE name = 'heartbeat')
          AND (SELECT status = 'done' FROM mtask.tasks WHERE name = 'welcome')
          AND (SELECT failure_count >= 2 FROM mtask.tasks WHERE name = 'broken')"
for _ in $(seq 600); do
    [ "$(psql_demo -Atc "$ready")" = t ] && break
    sleep 0.1
done
[ "$(psql_demo -Atc "$ready")" = t ] || { echo "demo: tasks did not run in time" >&2; tail -20 "$DIR/server.log" >&2; exit 1; }

psql_demo <<'SQL'
\echo == mtask.tasks
SELECT id, name, kind, schedule, status, run_count, failure_count,
       last_status, last_error, to_char(next_run_at, 'HH24:MI:SS.MS') AS next_run, remark
FROM mtask.tasks ORDER BY id;
\echo == mtask.runs
SELECT r.id, t.name, to_char(r.started_at, 'HH24:MI:SS.MS') AS started,
       round(extract(epoch FROM r.finished_at - r.started_at) * 1000, 2) AS ms,
       r.status, r.sqlstate, r.message, r.rows
FROM mtask.runs r JOIN mtask.tasks t ON t.id = r.task_id ORDER BY r.id;
\echo == what the tasks did
SELECT to_char(at, 'HH24:MI:SS.MS') AS at, msg FROM demo_log ORDER BY at;
SQL
echo "== stopping the cluster"
