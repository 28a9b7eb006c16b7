#!/usr/bin/env bash
# Builds mtask and installs it into the PostgreSQL that $1 (pg_config) names.
# Extra arguments go to cargo pgrx install, e.g. --release.
set -euo pipefail
cd "$(dirname "$0")/.."
pg_config=$1
shift
sudo_flag=()
[ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
cargo pgrx install --pg-config "$pg_config" "${sudo_flag[@]}" "$@"
# The install scripts of released versions, so that an older version can be
# created and updated from, as the upgrade tests do, and every update script.
sharedir=$("$pg_config" --sharedir)/extension
install -m 644 sql/released/mtask--*.sql sql/released/mtask--*.control "$sharedir/"
# mtask_cron, pg_cron's API over mtask: SQL only.
install -m 644 mtask_cron/mtask_cron.control mtask_cron/mtask_cron--*.sql "$sharedir/"
scripts/sql.sh install-updates "$sharedir"
