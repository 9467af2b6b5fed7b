"""Shared test setup: hypothesis profiles and the session's PostgreSQL server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from pg_server import PgServer

# "ci" keeps the suite fast on 2 cores; HYPOTHESIS_PROFILE=slow digs deeper on demand
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("slow", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server of the test session's own (tests/pg_server.py); fails when none can start."""
    try:
        server = PgServer()
    except RuntimeError as exc:
        pytest.fail(f"cannot start PostgreSQL for the tests: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """The libpq URL (Unix socket) of the session's PostgreSQL server."""
    return pg_server.url


#: tests that need a real part CI installs: a skip there would hide a missing install
REAL_PARTS = ("pg_server", "pg_url")
REAL_MODULES = ("test_report_browser", "test_journal_postgres", "test_journal_postgres_writers")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """In CI (CI=true), a skipped PostgreSQL or browser test is a failure, not a skip."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    fixtures = getattr(item, "fixturenames", ())
    if any(f in fixtures for f in REAL_PARTS) or item.module.__name__ in REAL_MODULES:  # type: ignore[attr-defined]
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} was skipped in CI: {report.longrepr}; CI must install and run its real part"
