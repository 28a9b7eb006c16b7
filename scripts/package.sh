#!/usr/bin/env bash
# `make package`: mtask, built for release for the PostgreSQL that $1
# (pg_config) names, in an archive to install into any PostgreSQL of that
# major version:
#
#   target/package/mtask-V-pgN-linux-ARCH.tar.gz, holding mtask-V-pgN-linux-ARCH/
#     lib/mtask.so    goes into pg_config --pkglibdir
#     extension/*     goes into pg_config --sharedir/extension: the control
#                     file, this version's install script, the released ones
#                     and every update script, and mtask_cron's files
#     install.sh      copies them there (PG_CONFIG=... names the server)
#
# For a Debian PostgreSQL (its pg_config in /usr/lib/postgresql/N/bin) also
# target/package/postgresql-N-mtask_V_ARCH.deb, which installs the same files
# where that package keeps them.
set -euo pipefail
cd "$(dirname "$0")/.."
pg_config=$1
major=$(scripts/pg.sh major "$pg_config")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name=mtask-$version-pg$major-linux-$(uname -m)
out=target/package
stage=$out/stage-pg$major
rm -rf "$stage" "$out/$name" "$out/$name.tar.gz"
mkdir -p "$out"

# cargo pgrx package lays the files out under the absolute paths this
# pg_config gives.
cargo pgrx package --pg-config "$pg_config" --out-dir "$stage"
pkglibdir=$stage$("$pg_config" --pkglibdir)
extdir=$stage$("$pg_config" --sharedir)/extension
install -m 644 sql/released/mtask--*.sql sql/released/mtask--*.control mtask_cron/mtask_cron* "$extdir/"
scripts/sql.sh install-updates "$extdir"

mkdir -p "$out/$name/lib" "$out/$name/extension"
install -m 755 "$pkglibdir/mtask.so" "$out/$name/lib/"
install -m 644 "$extdir"/* "$out/$name/extension/"
cat > "$out/$name/install.sh" <<SCRIPT
#!/bin/sh
# Installs mtask $version, built for PostgreSQL $major, into the PostgreSQL
# whose pg_config \$PG_CONFIG names (default: the pg_config on PATH). Then
# add mtask to shared_preload_libraries, restart, and CREATE EXTENSION mtask.
set -eu
cd "\$(dirname "\$0")"
pg_config=\${PG_CONFIG:-pg_config}
major=\$("\$pg_config" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
if [ "\$major" != $major ]; then
    echo "install.sh: this mtask is built for PostgreSQL $major, and \$pg_config is PostgreSQL \$major" >&2
    exit 1
fi
install -m 755 lib/mtask.so "\$("\$pg_config" --pkglibdir)/"
install -m 644 extension/* "\$("\$pg_config" --sharedir)/extension/"
echo "mtask $version installed into \$("\$pg_config" --pkglibdir) and \$("\$pg_config" --sharedir)/extension"
SCRIPT
chmod 755 "$out/$name/install.sh"
tar -C "$out" -czf "$out/$name.tar.gz" --owner=0 --group=0 "$name"
rm -rf "$out/$name"
echo "wrote $out/$name.tar.gz"

if [[ "$pg_config" == /usr/lib/postgresql/$major/bin/pg_config ]]; then
    arch=$(dpkg --print-architecture)
    deb=$out/deb-pg$major
    rm -rf "$deb"
    mkdir -p "$deb/DEBIAN"
    cp -a "$stage/usr" "$deb/"
    cat > "$deb/DEBIAN/control" <<CONTROL
Package: postgresql-$major-mtask
Version: $version
Architecture: $arch
Maintainer: mtask <mtask@localhost>
Depends: postgresql-$major, libc6
Section: database
Priority: optional
Description: task scheduler that runs inside PostgreSQL $major
 mtask runs the due rows of its table mtask.tasks in background workers of
 the server, through SPI. Add mtask to shared_preload_libraries, restart,
 and CREATE EXTENSION mtask in each database whose tasks should run.
CONTROL
    dpkg-deb --root-owner-group --build "$deb" "$out/postgresql-$major-mtask_${version}_$arch.deb" >/dev/null
    rm -rf "$deb"
    echo "wrote $out/postgresql-$major-mtask_${version}_$arch.deb"
fi
rm -rf "$stage"
