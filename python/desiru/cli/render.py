"""Turning state-tree values and edits into short text for tables, and into JSON for machines."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from desiru.serialization import formats


def plural(n: int, word: str) -> str:
    """``"1 trial"``, ``"2 trials"``, ``"1,000 trials"``: a count with its noun agreeing."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


#: set by ``--full``: values are shown whole, never cut
_WHOLE: ContextVar[bool] = ContextVar("whole_values", default=False)


@contextmanager
def whole_values(on: bool = True) -> Iterator[None]:
    """Within the block, ``short`` and ``cut`` leave values whole (``--full``)."""
    token = _WHOLE.set(on)
    try:
        yield
    finally:
        _WHOLE.reset(token)


def cut(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (whole with ``--full`` or no width)."""
    if width is None or _WHOLE.get() or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def short(value: Any, width: int = 48) -> str:
    """A one-line rendering of a value, cut to ``width`` characters (whole within ``whole_values``)."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, float) and not math.isfinite(value):
        text = repr(value)
    elif isinstance(value, dict):
        inner = ", ".join(f"{k}: {short(v, width)}" for k, v in value.items())
        text = "{" + inner + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(short(v, width) for v in value) + "]"
    else:
        text = json.dumps(value)
    text = " ".join(text.split())
    return cut(text, width)


def params_text(params: dict[str, Any], width: int = 60) -> str:
    """``temperature=0.2 max_tokens=256`` for a table cell."""
    text = " ".join(f"{k}={short(v, 24)}" for k, v in params.items())
    return cut(text, width)


def to_json(value: Any) -> Any:
    """A state tree made JSON-safe the way desiru's json format tags bytes and non-finite floats."""
    return formats.to_portable(value, json_tags=True)


def dumps(value: Any) -> str:
    """Indented JSON text of a value that may hold bytes (tagged as in desiru's json files)."""
    return json.dumps(to_json(value), indent=2, ensure_ascii=False, allow_nan=False)


def human_size(n: int) -> str:
    """``12.3 kB`` style size (decimal units, as disk tools print them)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
