#!/usr/bin/env bash
# Builds mtask and installs it into the PostgreSQL that $1 (pg_config) names.
# Extra arguments go to cargo pgrx install, e.g. --release.
set -euo pipefail
pg_config=$1
shift
sudo_flag=()
[ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
cargo pgrx install --pg-config "$pg_config" "${sudo_flag[@]}" "$@"
