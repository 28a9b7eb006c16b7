# The two commands a fresh Debian 12 machine with Rust needs: `make demo` and
# `make test`. Both install what is missing first and may be run again.

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup install test unit integration demo bench bench-quick clean

setup:
	PG_CONFIG=$(PG_CONFIG) scripts/setup.sh

install: setup
	scripts/install.sh $(PG_CONFIG)

unit: setup
	cargo test --lib

integration: install
	cargo test --test '*'

test: install
	cargo test

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

clean:
	cargo clean
