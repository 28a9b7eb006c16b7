# Sourced by the demo and the benchmark: a throwaway cluster of the
# PostgreSQL that $PG_CONFIG names (default Debian's 15) in its own
# directory, reached only through its own socket there. Postgres refuses
# to run as root, so as root the server runs as `postgres`.

PG_BIN=$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir)

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# cluster_start DIR PORT EXTRA_CONF: a fresh cluster, replacing any old one.
cluster_start() {
    local dir=$1 port=$2 extra=$3
    cluster_stop "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" != 0 ] || chown postgres:postgres "$dir"
    as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -N --no-instructions >/dev/null
    cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'mtask'
$extra
CONF
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" ${PG_CTL_OPTS:-} -w start >/dev/null
}

cluster_stop() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
}

# cluster_psql DIR PORT [psql args...]
cluster_psql() {
    local dir=$1 port=$2
    shift 2
    "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "$@"
}
