# desiru task runner: `make help` lists the targets.
PY ?= python3
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install demo build test test-rust test-python test-pure lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## install desiru (builds the Rust extension) with test and dspy extras, editable
	$(PY) -m pip install -q --upgrade "maturin>=1.5,<2.0"
	$(PY) -m pip install -q -e ".[test,bench,dspy]"

demo: install  ## install, then run the demo: a journaled optimization run, replayed and saved
	desiru demo

build:  ## rebuild the Rust extension in place after changing rust/
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .

lint:  ## rustfmt, clippy and ruff
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(PY) -m ruff check python tests benchmarks
	$(PY) -m mypy.stubtest desiru._native --ignore-missing-stub

test-rust:  ## cargo test
	cargo test -q

test-python:  ## pytest on the Rust engine
	$(PY) -m pytest

test-pure:  ## pytest on the pure-Python engine (msgpack package)
	DESIRU_PURE_PYTHON=1 $(PY) -m pytest

test: lint test-rust test-python test-pure  ## the whole test suite (what CI runs)

bench:  ## all benchmarks; writes docs/benchmarks.md
	$(PY) benchmarks/run_all.py
