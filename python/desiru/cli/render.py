"""Turning state-tree values and edits into short text for tables, and into JSON for machines."""

from __future__ import annotations

import json
import math
from typing import Any

from desiru.serialization import formats


def plural(n: int, word: str) -> str:
    """``"1 trial"``, ``"2 trials"``, ``"1,000 trials"``: a count with its noun agreeing."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def short(value: Any, width: int = 48) -> str:
    """A one-line rendering of a value, cut to ``width`` characters."""
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
    return text if len(text) <= width else text[: width - 1] + "…"


def params_text(params: dict[str, Any], width: int = 60) -> str:
    """``temperature=0.2 max_tokens=256`` for a table cell."""
    text = " ".join(f"{k}={short(v, 24)}" for k, v in params.items())
    return text if len(text) <= width else text[: width - 1] + "…"


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
