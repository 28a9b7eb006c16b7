#!/usr/bin/env bash
# mtask against pg_cron 1.4.2 on one throwaway PG15 cluster that preloads both.
# Prints a table and writes bench/results/<date>-<commit>.json. QUICK=1 runs
# smaller sizes; SCENARIOS="held memory" runs only those named (default: all).
# It reports; it never fails on a slow machine.
# What each scenario measures is written up in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=cluster.sh
source scripts/cluster.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    BURSTS="1000"; THROUGHPUT=20000; HELD=5000; FUTURE=100000; IMMEDIATE=200; IDLE_SECONDS=10; MEMORY_RUNS=500000
else
    BURSTS="1000 10000"; THROUGHPUT=100000; HELD=20000; FUTURE=1000000; IMMEDIATE=1000; IDLE_SECONDS=60; MEMORY_RUNS=5000000
fi
SCENARIOS=${SCENARIOS:-burst immediate throughput held idle scale memory}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

DIR=${BENCH_DIR:-/tmp/mtask-bench}
PORT=${BENCH_PORT:-55433}
cluster_start "$DIR" "$PORT" "shared_preload_libraries = 'mtask,pg_cron'
cron.database_name = 'postgres'
cron.host = '$DIR'
track_commit_timestamp = on
shared_buffers = 512MB
max_worker_processes = 16
max_connections = 100
synchronous_commit = on
mtask.max_workers = 2"
trap 'cluster_stop "$DIR"' EXIT

sql() { cluster_psql "$DIR" "$PORT" -qAt -c "$1"; }
now() { date +%s.%N; }
log() { echo "bench: $*" >&2; }

sql "CREATE EXTENSION mtask; CREATE EXTENSION pg_cron;
     CREATE TABLE hits (who text, n int, at timestamptz DEFAULT clock_timestamp());
     -- Lateness of each start after its due instant, in milliseconds.
     CREATE FUNCTION lateness(w text, due timestamptz) RETURNS json LANGUAGE sql AS \$\$
         SELECT json_build_object(
             'n', count(*),
             'p50_ms', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 2),
             'p95_ms', round((percentile_cont(0.95) WITHIN GROUP (ORDER BY ms))::numeric, 2),
             'p99_ms', round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 2),
             'max_ms', round(max(ms)::numeric, 2),
             'drain_s', round(extract(epoch FROM max(at) - due)::numeric, 3),
             'per_s', round((count(*) / greatest(extract(epoch FROM max(at) - due), 0.001))::numeric, 0))
         FROM (SELECT at, extract(epoch FROM at - due) * 1000 AS ms FROM hits WHERE who = w) l
     \$\$;"
sql "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mtask worker'" >/dev/null

wait_count() { # wait_count SQL N [SECONDS]: until SQL returns at least N, or SECONDS pass
    local start=$SECONDS
    while [ "$(sql "$1")" -lt "$2" ]; do
        if [ -n "${3:-}" ] && [ $((SECONDS - start)) -ge "$3" ]; then return; fi
        sleep 0.05
    done
}
wait_true() { # wait_true SQL: until SQL returns true
    while [ "$(sql "$1")" != t ]; do sleep 0.05; done
}

# The next whole minute at least 20 s away, so that scheduling N jobs ends
# before it comes.
next_minute() {
    sql "SELECT date_trunc('minute', now() + interval '20 seconds') + interval '1 minute'"
}

# CPU seconds (user + system) used so far by each process of a backend
# type, as "pid seconds" lines.
cpu_by_pid() {
    local pid
    for pid in $(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = '$1'"); do
        awk -v p="$pid" -v hz="$(getconf CLK_TCK)" '{ print p, ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || true
    done
}

# The sum of the second column of "pid figure" lines.
sum_of_figures() { awk '{ t += $2 } END { print t + 0 }'; }

# Their sum.
cpu_of() { cpu_by_pid "$1" | sum_of_figures; }

# CPU used between two cpu_by_pid samples $1 and $2 by the processes alive
# at the second: the difference for those in both, all of it for those
# started since. (Summing each sample instead went negative when a worker
# left for idleness in between, taking its CPU with it.)
cpu_between() {
    awk 'NR == FNR { a[$1] = $2; next } { d += $2 - ($1 in a ? a[$1] : 0) } END { printf "%.4f", d + 0 }' \
        <(echo "$1") <(echo "$2")
}

# Anonymous (private) resident memory of each mtask worker, in kB, as
# "pid kB" lines.
rss_by_pid() {
    local pid
    for pid in $(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'mtask worker' ORDER BY pid"); do
        awk -v p="$pid" '/^RssAnon:/ { print p, $2 }' "/proc/$pid/status" 2>/dev/null || true
    done
}

# Their sum.
rss_anon_kb() { rss_by_pid | sum_of_figures; }

# Each worker's floor: its least RssAnon over five readings 0.2 s apart,
# the rss_by_pid reading $1 the first of them, for the workers in all five.
# A purge round holds a few MB while its statement runs (its hash and sort
# of up to 10,000 run ids, seen with pg_log_backend_memory_contexts) and
# gives them back when it ends; one reading that lands in it is not
# growth. A leak raises the floor.
rss_floor_by_pid() {
    local i
    {
        echo "$1"
        for i in 2 3 4 5; do
            sleep 0.2
            rss_by_pid
        done
    } | awk '{ if (!($1 in m) || $2 < m[$1]) m[$1] = $2; n[$1]++ } END { for (p in m) if (n[p] == 5) print p, m[p] }' | sort -n
}

# rss_by_pid's lines as a JSON object.
rss_json() { awk 'BEGIN { printf "{" } NF == 2 { printf "%s\"%s\": %s", (n++ ? ", " : ""), $1, $2 } END { printf "}" }' <<<"$1"; }

# Growth between two rss_by_pid samples of the workers in both: a worker
# that left and one that came in between would otherwise count as growth
# or shrinkage.
rss_growth_of_stayers() {
    awk 'NR == FNR { a[$1] = $2; next } $1 in a { d += $2 - a[$1] } END { print d + 0 }' <(echo "$1") <(echo "$2")
}

results=()
# Each figure is also logged as it comes, so an interrupted run keeps them.
add() { results+=("\"$1\": $2"); log "$1: $2"; }

# 1. Burst at a minute boundary, both systems.
if want burst; then
    for n in $BURSTS; do
        due=$(next_minute)
        log "burst of $n due at $due: scheduling"
        sql "SELECT mtask.schedule_at('m' || i, '$due', 'INSERT INTO hits (who, n) VALUES (''mtask-$n'', ' || i || ')')
             FROM generate_series(1, $n) i" >/dev/null
        wait_count "SELECT count(*) FROM hits WHERE who = 'mtask-$n'" "$n"
        add "burst_${n}_mtask" "$(sql "SELECT lateness('mtask-$n', '$due')")"
        sql "DELETE FROM mtask.tasks"

        due=$(next_minute)
        cron=$(sql "SELECT to_char('$due'::timestamptz AT TIME ZONE 'GMT', 'MI HH24 DD MM') || ' *'")
        sql "SELECT cron.schedule('c' || i, '$cron', 'INSERT INTO hits (who, n) VALUES (''cron-$n'', ' || i || ')')
             FROM generate_series(1, $n) i" >/dev/null
        log "burst of $n for pg_cron at $due"
        # Not forever: once, pg_cron 1.4.2 ran none of 10,000 jobs at their
        # minute, and the bench waited on. Its figures then say how many ran.
        wait_count "SELECT count(*) FROM hits WHERE who = 'cron-$n'" "$n" 600
        add "burst_${n}_pg_cron" "$(sql "SELECT lateness('cron-$n', '$due')")"
        sql "SELECT count(cron.unschedule(jobid)) FROM cron.job" >/dev/null
        sql "TRUNCATE cron.job_run_details"
    done
fi

# 2. Immediate tasks: commit of schedule_at(now()) to the task's start.
if want immediate; then
    log "immediate: $IMMEDIATE serial schedules"
    for i in $(seq 1 "$IMMEDIATE"); do
        echo "SELECT mtask.schedule_at('i$i', now(), 'INSERT INTO hits (who, n) VALUES (''immediate'', ' || txid_current() || ')');"
        echo "SELECT pg_sleep(0.01);"
    done | cluster_psql "$DIR" "$PORT" -qAt >/dev/null
    wait_count "SELECT count(*) FROM hits WHERE who = 'immediate'" "$IMMEDIATE"
    # Each task recorded the id of the transaction that scheduled it.
    add immediate "$(sql "SELECT json_build_object(
            'n', count(*),
            'p50_ms', round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 3),
            'p99_ms', round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 3))
        FROM (SELECT extract(epoch FROM at - pg_xact_commit_timestamp(n::text::xid)) * 1000 AS ms
              FROM hits WHERE who = 'immediate') l")"
    sql "DELETE FROM mtask.tasks"
fi

# Drains N already-due one-shot tasks, inserted while the workers are off,
# and prints the runs' count, drain time and rate.
drain() {
    sql "ALTER SYSTEM SET mtask.enabled = off"
    sql "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    sql "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 't' || i, 'INSERT INTO hits (who) VALUES (''tp'')', now() FROM generate_series(1, $1) i"
    sql "ALTER SYSTEM SET mtask.enabled = on"
    sql "SELECT pg_reload_conf()" >/dev/null
    # Not a count of the done tasks: on this 2-core machine, counting
    # 100,000 rows every 50 ms took a fifth of a core from the workers.
    wait_true "SELECT NOT EXISTS (SELECT FROM mtask.tasks WHERE status = 'scheduled')"
    sql "SELECT json_build_object('n', count(*), 'workers', count(DISTINCT pid),
        'drain_s', round(extract(epoch FROM max(finished_at) - min(started_at))::numeric, 3),
        'per_s', round((count(*) / extract(epoch FROM max(finished_at) - min(started_at)))::numeric, 0))
        FROM mtask.runs"
    sql "DELETE FROM mtask.tasks; DELETE FROM hits WHERE who = 'tp'"
}

set_synchronous_commit() {
    sql "ALTER SYSTEM SET synchronous_commit = $1"
    sql "SELECT pg_reload_conf()" >/dev/null
}

# 3. Throughput: already-due one-shot tasks, drained.
if want throughput; then
    for sc in on off; do
        log "throughput: $THROUGHPUT tasks, synchronous_commit = $sc"
        set_synchronous_commit "$sc"
        add "throughput_sync_$sc" "$(drain "$THROUGHPUT")"
    done
    set_synchronous_commit DEFAULT
fi

# 7. Under a held transaction: the same drain alone, and while another
# session sits idle in a transaction that holds back the xmin horizon, so
# that no dead row version can be pruned meanwhile.
if want held; then
    set_synchronous_commit off
    # Every table the drains before left dead rows in, not the tasks
    # alone: twice the alone drain ran at a fraction of the held one's
    # rate right after the 100,000-task drains, with autovacuum due on
    # runs and hits (a suspicion, which this rules out).
    sql "VACUUM mtask.tasks, mtask.runs, hits"
    log "held: $HELD tasks alone"
    alone=$(drain "$HELD")
    sql "VACUUM mtask.tasks, mtask.runs, hits"
    fifo="$DIR/hold.fifo"
    rm -f "$fifo"
    mkfifo "$fifo"
    cluster_psql "$DIR" "$PORT" -qAt <"$fifo" >/dev/null &
    exec 7>"$fifo"
    echo "BEGIN; SELECT txid_current();" >&7
    wait_count "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xid IS NOT NULL" 1
    log "held: $HELD tasks while a transaction is held open"
    held=$(drain "$HELD")
    dead=$(sql "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'mtask.tasks'::regclass")
    exec 7>&-
    wait
    rm -f "$fifo"
    add held "$(sql "SELECT jsonb_build_object('alone', '$alone'::jsonb, 'held', '$held'::jsonb,
        'held_over_alone', round(('$held'::jsonb ->> 'per_s')::numeric / ('$alone'::jsonb ->> 'per_s')::numeric, 3),
        'tasks_dead_tuples_after_held', $dead)")"
    set_synchronous_commit DEFAULT
fi

# 5. Idle cost: 10,000 tasks for tomorrow (pg_cron: jobs for 1 January).
if want idle; then
    log "idle: ${IDLE_SECONDS}s with 10,000 future tasks each"
    sql "SELECT count(mtask.schedule_at('f' || i, now() + interval '1 day', 'SELECT 1')) FROM generate_series(1, 10000) i" >/dev/null
    sql "SELECT count(cron.schedule('f' || i, '0 0 1 1 *', 'SELECT 1')) FROM generate_series(1, 10000) i" >/dev/null
    sleep 2
    mtask_cpu() { cpu_by_pid 'mtask worker'; cpu_by_pid 'mtask scheduler'; }
    m0=$(mtask_cpu); c0=$(cpu_by_pid 'pg_cron scheduler')
    sleep "$IDLE_SECONDS"
    m1=$(mtask_cpu); c1=$(cpu_by_pid 'pg_cron scheduler')
    add idle "$(awk -v m="$(cpu_between "$m0" "$m1")" -v c="$(cpu_between "$c0" "$c1")" -v s="$IDLE_SECONDS" 'BEGIN {
        printf "{\"seconds\": %d, \"mtask_cpu_s_per_min\": %.4f, \"pg_cron_cpu_s_per_min\": %.4f}", s, m * 60 / s, c * 60 / s }')"
    sql "SELECT count(cron.unschedule(jobid)) FROM cron.job" >/dev/null
fi

# 4. Scale: many future tasks, then 1,000 due at once.
if want scale; then
    log "scale: $FUTURE future tasks"
    sql "INSERT INTO mtask.tasks (name, command, start_at)
         SELECT 's' || i, 'SELECT 1', now() + interval '2 days' FROM generate_series(1, $FUTURE) i"
    sql "VACUUM ANALYZE mtask.tasks"
    due=$(sql "SELECT now() + interval '5 seconds'")
    w0=$(cpu_of 'mtask worker')
    sql "SELECT count(mtask.schedule_at('d' || i, '$due', 'INSERT INTO hits (who, n) VALUES (''scale'', ' || i || ')'))
         FROM generate_series(1, 1000) i" >/dev/null
    wait_count "SELECT count(*) FROM hits WHERE who = 'scale'" 1000
    w1=$(cpu_of 'mtask worker')
    # Worker CPU over the 1,000 due tasks, per task.
    per_task_ms=$(awk -v a="$w1" -v b="$w0" 'BEGIN { printf "%.3f", (a - b) * 1000 / 1000 }')
    add scale "$(sql "SELECT lateness('scale', '$due')::jsonb
        || jsonb_build_object('future_tasks', $FUTURE, 'worker_cpu_ms_per_task', $per_task_ms)")"
    sql "DELETE FROM mtask.tasks"
fi

# 6. Memory of the workers over many runs of 1,000 recurring tasks,
# sampled every tenth of the runs, worker by worker: warm-up shows early,
# a leak keeps growing. late_growth_kb is from four tenths to the end (the
# 2nd to the 5th million in a full run), of the sum over whatever workers
# run; late_growth_of_stayers_kb that of the workers there at both.
if want memory; then
    log "memory: $MEMORY_RUNS runs"
    # Memory does not depend on commit durability; this only makes it quicker.
    set_synchronous_commit off
    sql "VACUUM mtask.tasks"
    before=$(rss_anon_kb)
    sql "SELECT count(mtask.schedule('r' || i, 'every 0.1 seconds', 'SELECT 1')) FROM generate_series(1, 1000) i" >/dev/null
    samples=()
    for tenth in $(seq 1 10); do
        wait_count "SELECT coalesce(sum(run_count), 0) FROM mtask.tasks" $((MEMORY_RUNS * tenth / 10))
        reading=$(rss_by_pid)
        workers=$(rss_floor_by_pid "$reading")
        kb=$(sum_of_figures <<<"$workers")
        samples+=("[$(sql "SELECT sum(run_count) FROM mtask.tasks"), $kb, $(rss_json "$workers"), $(rss_json "$reading")]")
        log "memory: sample $tenth of 10: ${samples[-1]}"
        if [ "$tenth" = 4 ]; then
            at_four=$kb
            workers_at_four=$workers
        fi
    done
    sql "SELECT count(mtask.pause(id)) FROM mtask.tasks" >/dev/null
    add memory "{\"runs\": $(sql "SELECT sum(run_count) FROM mtask.tasks"), \"workers_rss_anon_kb_before\": $before,
        \"samples_runs_kb_floor_by_pid_reading_by_pid\": [$(IFS=,; echo "${samples[*]}")], \"workers_rss_anon_kb_after\": $kb,
        \"late_growth_kb\": $((kb - at_four)),
        \"late_growth_of_stayers_kb\": $(rss_growth_of_stayers "$workers_at_four" "$workers")}"
    set_synchronous_commit DEFAULT
fi

# Report.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
figures=$( IFS=,; echo "{${results[*]}}" )
# mtask / pg_cron wherever both ran.
ratios=$(sql "WITH f AS (SELECT '$figures'::jsonb AS j)
    SELECT jsonb_object_agg(k, v) FROM (
        SELECT 'burst_' || n || '_' || m AS k,
               round(((j -> ('burst_' || n || '_mtask') ->> m)::numeric
                      / nullif((j -> ('burst_' || n || '_pg_cron') ->> m)::numeric, 0)), 4) AS v
        FROM f, unnest(string_to_array('$BURSTS', ' ')) n, unnest(ARRAY['p50_ms', 'p99_ms', 'drain_s', 'per_s']) m
        UNION ALL
        SELECT 'idle_cpu', round((j -> 'idle' ->> 'mtask_cpu_s_per_min')::numeric
                                 / nullif((j -> 'idle' ->> 'pg_cron_cpu_s_per_min')::numeric, 0), 4)
        FROM f) r")
mkdir -p bench/results
out="bench/results/$stamp-$commit.json"
sql "SELECT jsonb_pretty(jsonb_build_object(
        'date', '$stamp', 'commit', '$commit', 'quick', $QUICK = 1,
        'machine', jsonb_build_object('cores', $(nproc),
                                      'memory_mb', $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo),
                                      'cpu', '$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)'),
        'postgresql', current_setting('server_version'), 'mtask_workers', 2,
        'ratio_mtask_over_pg_cron', '$ratios'::jsonb) || '$figures'::jsonb)" > "$out"
log "wrote $out"
# The table.
cluster_psql "$DIR" "$PORT" -q -P footer=off -c "
    SELECT key AS scenario, value AS figures
    FROM jsonb_each('$figures'::jsonb || jsonb_build_object('ratio_mtask_over_pg_cron', '$ratios'::jsonb))
    ORDER BY key"
