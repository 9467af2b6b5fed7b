"""Checks of the results a caller records with a commit: a score, metrics and params.

Each bad argument is a DesiruError naming it, raised before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from desiru.errors import DesiruError


def check_score(score: Any, name: str = "score") -> float | None:
    """``score`` as a finite float, or DesiruError naming the argument."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise DesiruError(f"{name} must be a number, got {type(score).__name__}", hint=f"pass {name}=0.84")
    value = float(score)
    if not math.isfinite(value):
        raise DesiruError(f"{name} must be finite, got {score!r}",
                          hint="record a failed evaluation with a low score, or leave it out")
    return value


def check_metrics(metrics: Any) -> dict[str, float]:
    """``metrics`` as a flat {str: finite float} dict, or DesiruError naming the bad entry."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise DesiruError(f"metrics must be a dict of str to numbers, got {type(metrics).__name__}",
                          hint='pass metrics={"em": 0.9, "cost_usd": 0.02}')
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            raise DesiruError(f"metrics keys must be non-empty str, got {k!r}")
        value = check_score(v, f"metrics[{k!r}]")
        assert value is not None or v is None
        if value is None:
            raise DesiruError(f"metrics[{k!r}] must be a number, got None")
        out[k] = value
    return out


def check_params(params: Any) -> dict[str, Any]:
    """``params`` as a dict of JSON-like values (str keys), or DesiruError naming the bad value."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise DesiruError(f"params must be a dict, got {type(params).__name__}",
                          hint='pass params={"instruction_idx": 3, "demo_set": 5}')

    def walk(v: Any, where: Any, depth: int) -> Any:
        # ``where`` names the value for a message: a str, or a callable that makes it (only on an error,
        # so checking a trial's params formats nothing)
        if depth >= 32:
            raise DesiruError(f"params nest deeper than 32 levels at {_named(where)}")
        if v is None or type(v) is str or type(v) is bool:
            return v
        if isinstance(v, (str, bool, int)):
            if isinstance(v, int) and not isinstance(v, bool) and not -(1 << 63) <= v < (1 << 64):
                raise DesiruError(f"{_named(where)} = {v} does not fit in 64 bits", hint="store it as a str")
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise DesiruError(f"{_named(where)} must be finite, got {v!r}")
            return v
        if isinstance(v, (list, tuple)):
            return [walk(x, _item(where, i), depth + 1) for i, x in enumerate(v)]
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise DesiruError(f"{_named(where)} has a key {k!r} that is not a str")
                out[k] = walk(x, _key(where, k), depth + 1)
            return out
        raise DesiruError(f"{_named(where)} cannot be stored: {type(v).__name__} is not a JSON-like value",
                          hint="params hold str, int, float, bool, None, lists and dicts of them")

    return walk(dict(params), "params", -1)  # type: ignore[no-any-return]


def _named(where: Any) -> str:
    """The name of a value for a message: ``where`` itself, or what the callable makes."""
    return where if isinstance(where, str) else where()


def _item(where: Any, i: int) -> Any:
    return lambda: f"{_named(where)}[{i}]"


def _key(where: Any, k: str) -> Any:
    return lambda: f"{_named(where)}[{k!r}]"


def results_payload(score: Any, metrics: Any, params: Any) -> dict[str, Any] | None:
    """The ResultsRecorded payload for these arguments (checked), or None when all are empty."""
    if score is None and metrics is None and params is None:
        return None
    s, m, p = check_score(score), check_metrics(metrics), check_params(params)
    if s is None and not m and not p:
        return None
    return {"score": s, "metrics": m, "params": p}



__all__ = ["check_metrics", "check_params", "check_score", "results_payload"]
