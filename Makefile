# The two commands a fresh Debian 12 machine with Rust needs: `make demo` and
# `make test`. Both install what is missing first and may be run again.

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup install test unit integration demo clean

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

clean:
	cargo clean
