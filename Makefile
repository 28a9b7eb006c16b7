# The two commands a fresh Debian 12 machine with Rust needs: `make demo` and
# `make test`. Both install what is missing first and may be run again.
#
# PG=N (14 to 18, default 15) is the PostgreSQL they build for, install into
# and test against; scripts/pg.sh installs it if it is missing. PG_CONFIG
# names another installation (your own), whose version then sets PG.

VERSIONS := 14 15 16 17 18
pg_config_of = $(shell scripts/pg.sh pg_config $(1))

ifdef PG_CONFIG
PG ?= $(shell scripts/pg.sh major $(PG_CONFIG))
else
PG ?= 15
PG_CONFIG := $(call pg_config_of,$(PG))
endif
# The tests and scripts read both.
export PG PG_CONFIG
export PATH := $(HOME)/.cargo/bin:$(PATH)
# The shell crate's build for PG (its default feature is pg15).
FEATURES := --no-default-features --features mtask/pg$(PG)

.PHONY: setup install test unit integration lint demo package test-all test-versions bench bench-quick \
	release-script freeze clean

setup:
	scripts/setup.sh

install: setup
	scripts/install.sh $(PG_CONFIG)

# The functional core's tests: plain Rust, no PostgreSQL needed.
unit:
	cargo test -p mtask-core

integration: install
	cargo test $(FEATURES) -p mtask --test '*'

# rustfmt and clippy, as CI runs them. Clippy builds the shell, which needs
# pgrx's bindings, so it sets up what building needs first.
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets $(FEATURES) -- -D warnings

# Every test binary runs even when one fails, so that one run (CI's, which
# takes long) shows every failure.
test: lint install
	cargo test --workspace --no-fail-fast $(FEATURES)

# Every version in turn, then the tests across versions. Setting them all up
# first means cargo pgrx init changes nothing once building has begun (each
# change makes cargo build pgrx's bindings again).
test-all:
	for v in $(VERSIONS); do $(MAKE) setup PG=$$v PG_CONFIG=$$(scripts/pg.sh pg_config $$v) || exit 1; done
	for v in $(VERSIONS); do $(MAKE) test PG=$$v PG_CONFIG=$$(scripts/pg.sh pg_config $$v) || exit 1; done
	$(MAKE) test-versions

# The tests that need two versions with mtask (tests/backup.rs): pg_upgrade
# from 15 to 17, and a dump of 15 restored into 18. Elsewhere they are
# ignored, which cargo test reports. Their 15 is PyPI's build of upstream
# PostgreSQL, as 17 and 18 are, not Debian's: Debian's 15.20 gives every
# column a `pg_attver` option that upstream's 17 and 18 refuse, so that
# pg_upgrade and pg_restore from it into them fail for any table, mtask's
# or not (see README, "Upgrading PostgreSQL").
UPSTREAM15 = $(shell scripts/pg.sh home)/15/bin/pg_config
test-versions:
	PG15_CONFIG=$(UPSTREAM15) $(MAKE) install PG=15 PG_CONFIG=$(UPSTREAM15)
	for v in 17 18; do $(MAKE) install PG=$$v PG_CONFIG=$$(scripts/pg.sh pg_config $$v) || exit 1; done
	PG15_CONFIG=$(UPSTREAM15) PG17_CONFIG=$(call pg_config_of,17) PG18_CONFIG=$(call pg_config_of,18) \
		cargo test $(FEATURES) --test backup -- --ignored

demo: install
	scripts/demo.sh

# An archive of mtask built for PG, to install into a PostgreSQL of that
# version, and for Debian's PostgreSQL a .deb too: see scripts/package.sh.
package: setup
	scripts/package.sh $(PG_CONFIG)

# Benchmarks against pg_cron 1.4.2 on one throwaway cluster; see BENCHMARKS.md.
# They need Debian's pg_cron package for PG, which exists for 15 only.
bench:
	EXTRA_PACKAGES=postgresql-$(PG)-cron scripts/setup.sh
	scripts/install.sh $(PG_CONFIG) --release
	scripts/bench.sh

bench-quick:
	EXTRA_PACKAGES=postgresql-$(PG)-cron scripts/setup.sh
	scripts/install.sh $(PG_CONFIG) --release
	QUICK=1 scripts/bench.sh

# The install script of an older commit, for the update tests:
# make release-script REF=<commit>. See docs/DESIGN.md.
release-script: setup
	scripts/sql.sh release $(REF)

# At a release: archive this version's install and update scripts.
freeze: setup
	scripts/sql.sh freeze

clean:
	cargo clean
