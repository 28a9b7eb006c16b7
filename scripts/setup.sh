#!/usr/bin/env bash
# Installs what building and testing mtask needs, and only what is missing:
# Debian's PostgreSQL 15 server and headers, clang for bindgen, psycopg2 (the
# tests run the example in examples/), cargo-pgrx, and any Debian packages
# named in $EXTRA_PACKAGES (the benchmark's pg_cron).
set -euo pipefail

PGRX_VERSION=0.18.0
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

missing=()
for pkg in postgresql-15 postgresql-server-dev-15 libclang-dev clang python3-psycopg2 ${EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    echo "setup: building cargo-pgrx $PGRX_VERSION (several minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 "$PG_CONFIG"
fi
