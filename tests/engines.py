"""Which byte engines a test can compare: the pure-Python twin always, Rust when it is built."""

from __future__ import annotations

import os
from types import ModuleType


def implementations(pure: ModuleType, native_attr: str) -> list[ModuleType]:
    """``[pure]``, plus ``desiru._native`` when importable, not disabled and providing ``native_attr``."""
    impls: list[ModuleType] = [pure]
    if os.environ.get("DESIRU_PURE_PYTHON", "") in ("", "0"):
        try:
            from desiru import _native
        except ImportError:
            return impls
        if hasattr(_native, native_attr):
            impls.append(_native)
    return impls
