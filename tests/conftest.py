"""Shared test setup: hypothesis profiles and a few program builders."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci" keeps the suite fast on 2 cores; HYPOTHESIS_PROFILE=slow digs deeper on demand
settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("slow", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
