# The two commands a fresh Debian 12 machine with Rust needs: `make demo` and
# `make test`. Both install what is missing first and may be run again.

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup install test unit integration lint demo bench bench-quick release-script freeze clean

setup:
	PG_CONFIG=$(PG_CONFIG) scripts/setup.sh

install: setup
	scripts/install.sh $(PG_CONFIG)

# The functional core's tests: plain Rust, no PostgreSQL needed.
unit:
	cargo test -p mtask-core

integration: install
	cargo test -p mtask --test '*'

# rustfmt and clippy, as CI runs them. Clippy builds the shell, which needs
# pgrx's bindings, so it sets up what building needs first.
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

test: lint install
	cargo test --workspace

demo: install
	PG_CONFIG=$(PG_CONFIG) scripts/demo.sh

# Benchmarks against pg_cron 1.4.2 on one throwaway cluster; see BENCHMARKS.md.
bench:
	EXTRA_PACKAGES=postgresql-15-cron PG_CONFIG=$(PG_CONFIG) scripts/setup.sh
	scripts/install.sh $(PG_CONFIG) --release
	PG_CONFIG=$(PG_CONFIG) scripts/bench.sh

bench-quick:
	EXTRA_PACKAGES=postgresql-15-cron PG_CONFIG=$(PG_CONFIG) scripts/setup.sh
	scripts/install.sh $(PG_CONFIG) --release
	QUICK=1 PG_CONFIG=$(PG_CONFIG) scripts/bench.sh

# The install script of an older commit, for the update tests:
# make release-script REF=<commit>. See docs/DESIGN.md.
release-script: setup
	PG_CONFIG=$(PG_CONFIG) scripts/sql.sh release $(REF)

# At a release: archive this version's install and update scripts.
freeze: setup
	PG_CONFIG=$(PG_CONFIG) scripts/sql.sh freeze

clean:
	cargo clean
