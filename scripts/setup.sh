#!/usr/bin/env bash
# Installs what building and testing mtask against PostgreSQL $PG (14 to 18,
# default 15) needs, and only what is missing: clang for bindgen, psycopg2
# (the tests run the example in examples/), the server (scripts/pg.sh: for
# 15 Debian's server and headers, and pg_cron 1.4.2, which tests/pg_cron.rs
# moves jobs from; for the others a build from PyPI and the Debian
# libraries it links to), cargo-pgrx, its `cargo pgrx init` for that
# server, and any Debian packages named in $EXTRA_PACKAGES. $PG_CONFIG, if set, names the server instead; setup then
# installs no server of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.0
PG_CONFIG=${PG_CONFIG:-$(scripts/pg.sh pg_config "${PG:-15}")}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

packages=(libclang-dev clang python3-psycopg2)
case "$PG_CONFIG" in
/usr/lib/postgresql/15/bin/pg_config) packages+=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron) ;;
# What PyPI's builds link to (see `ldd`), all in Debian 12.
"$(scripts/pg.sh home)"/*) packages+=(libicu72 libxml2 libssl3 liblz4-1 libzstd1 libgssapi-krb5-2 libreadline8 libpq5) ;;
esac
missing=()
for pkg in "${packages[@]}" ${EXTRA_PACKAGES:-}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x "$PG_CONFIG" ]; then
    [ "$PG_CONFIG" = "$(scripts/pg.sh pg_config "${PG:-15}")" ] || { echo "setup: no $PG_CONFIG" >&2; exit 1; }
    scripts/pg.sh install "${PG:-15}" >/dev/null
fi
major=$(scripts/pg.sh major "$PG_CONFIG")
if [ -n "${PG:-}" ] && [ "$major" != "$PG" ]; then
    echo "setup: PG=$PG, but $PG_CONFIG is PostgreSQL $major" >&2
    exit 1
fi

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    echo "setup: building cargo-pgrx $PGRX_VERSION (several minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# cargo pgrx init adds the version to those it knows and keeps the others.
# It is run only when needed: every change of its config.toml makes cargo
# build pgrx's bindings again.
if ! grep -qs "^pg$major = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init "--pg$major" "$PG_CONFIG"
fi
