# desiru task runner: `make help` lists the targets.
PY ?= python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install install-postgres demo build test test-rust test-python test-pure lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## install desiru (builds the Rust extension) with the test, bench, dspy, postgres and report extras, editable
	$(PY) -m pip install -q --upgrade "maturin>=1.5,<2.0"
	$(PY) -m pip install -q -e ".[test,bench,dspy,postgres,report]"

install-postgres:  ## find PostgreSQL's initdb and pg_ctl (the tests start a server of their own), or apt-get install it
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  [ -x "$$DESIRU_PG_BIN/initdb" ] || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	    else echo "the tests need PostgreSQL's server binaries: sudo apt-get install -y postgresql" \
	      "(or set DESIRU_PG_BIN to a directory holding initdb and pg_ctl)"; exit 1; fi; }

demo: install  ## install, then run the demo into demo-run/ (rerunnable: each run starts over)
	desiru demo demo-run --force

build:  ## rebuild the Rust extension in place after changing rust/
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .

lint:  ## rustfmt, clippy and ruff
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(PY) -m ruff check python tests benchmarks
	$(PY) -m mypy.stubtest desiru._native --ignore-missing-stub

test-rust:  ## cargo test
	cargo test -q

test-python: install-postgres  ## pytest on the Rust engine
	$(PY) -m pytest

test-pure: install-postgres  ## pytest on the pure-Python engine (msgpack package)
	DESIRU_PURE_PYTHON=1 $(PY) -m pytest

test: lint test-rust test-python test-pure  ## the whole test suite (what CI runs)

bench:  ## all benchmarks; writes docs/benchmarks.md
	$(PY) benchmarks/run_all.py
