#!/usr/bin/env bash
# mtask's SQL scripts, assembled from the files in sql/ (see docs/DESIGN.md,
# "Schema and SQL").
#
#   scripts/sql.sh topics              the topic files, in install order
#   scripts/sql.sh update FROM TO      the update script FROM -> TO, on stdout
#   scripts/sql.sh install-updates DIR every update script into DIR: the
#                                      released ones as they were released,
#                                      the current ones assembled
#   scripts/sql.sh release REF         writes sql/released/mtask--V.sql, the
#                                      install script of git REF (version V),
#                                      built from that commit
#   scripts/sql.sh freeze              at a release: archives this version's
#                                      install script and update script in
#                                      sql/released/
set -euo pipefail
cd "$(dirname "$0")/.."

# The topic files follow sql/tables.sql in src/lib.rs's extension_sql_file!
# list; that list is the one place their order is written.
topics() {
    grep -o 'extension_sql_file!("../sql/[a-z_]*\.sql"' src/lib.rs | sed 's|.*"\.\./\(sql/[a-z_]*\.sql\)"|\1|' |
        grep -v '^sql/tables\.sql$'
}

version() { sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1; }

update() {
    local from=$1 to=$2 file=sql/updates/$1--$2.sql
    [ -f "$file" ] || { echo "sql.sh: no $file" >&2; exit 1; }
    echo "-- mtask $from -> $to, assembled by scripts/sql.sh from $file and the topic files."
    echo "\\echo Use \"ALTER EXTENSION mtask UPDATE\" to load this file. \\quit"
    for f in "$file" $(topics); do
        echo
        echo "-- $f"
        cat "$f"
    done
}

pgrx_config() {
    local pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    echo "pg$("$pg_config" --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')"
}

case "${1:-}" in
topics) topics ;;
update) update "$2" "$3" ;;
install-updates)
    dir=$2
    install -m 644 sql/released/mtask--*--*.sql "$dir/"
    for f in sql/updates/*--*.sql; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .sql)
        update "${name%%--*}" "${name##*--}" > "$dir/mtask--$name.sql"
    done
    ;;
release)
    ref=$2
    v=$(git show "$ref:Cargo.toml" | sed -n 's/^version = "\(.*\)"/\1/p' | head -1)
    tree=$(mktemp -d)
    trap 'git worktree remove --force "$tree"' EXIT
    git worktree add --detach "$tree" "$ref" >/dev/null
    (cd "$tree" && CARGO_TARGET_DIR=${RELEASE_TARGET_DIR:-$PWD/target} cargo pgrx schema "$(pgrx_config)" -o "$OLDPWD/sql/released/mtask--$v.sql")
    echo "wrote sql/released/mtask--$v.sql"
    ;;
freeze)
    v=$(version)
    git diff --quiet HEAD -- sql src Cargo.toml || { echo "sql.sh: commit first, so the archive is of a commit" >&2; exit 1; }
    "$0" release HEAD
    for f in sql/updates/*--"$v".sql; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .sql)
        update "${name%%--*}" "$v" > "sql/released/mtask--$name.sql"
        git rm -q "$f"
        echo "wrote sql/released/mtask--$name.sql"
    done
    ;;
*)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac
