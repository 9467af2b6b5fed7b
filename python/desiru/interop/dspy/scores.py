"""What a tracked evaluation stores of its scores, shared by track.py (recording) and resume.py (answering).

Per-example scores are packed compactly ("0110" when all are 0 or 1); a score measured on a
minibatch is kept under ``metrics[MINIBATCH_SCORE]``, not as the trial's score.
"""

from __future__ import annotations

from typing import Any

#: metrics key of a score measured on a minibatch (kept out of ``score`` so best() ranks full evaluations)
MINIBATCH_SCORE = "minibatch_score"


def example_score(value: Any) -> float | None:
    """One metric result as a float: bools, numbers, and dspy.Prediction(score=...) (GEPA's feedback)."""
    if value is None:
        return None
    score = getattr(value, "score", value) if not isinstance(value, (int, float)) else value
    try:
        return float(score)
    except (TypeError, ValueError):
        return None


def pack_examples(scores: list[float | None]) -> Any:
    """Per-example scores, compactly: a "0110" string when all are 0 or 1, else a list of floats."""
    if all(s in (0.0, 1.0) for s in scores):
        return "".join("1" if s == 1.0 else "0" for s in scores)
    return [0.0 if s is None else s for s in scores]


def unpack_examples(packed: Any) -> list[float] | None:
    """The per-example scores ``pack_examples`` stored (None when absent or malformed)."""
    if isinstance(packed, str) and set(packed) <= {"0", "1"}:
        return [1.0 if c == "1" else 0.0 for c in packed]
    if isinstance(packed, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in packed):
        return [float(x) for x in packed]
    return None


def traced(program: Any) -> bool:
    """True for a program run with its ``forward`` patched on the instance to capture traces.

    That is dspy's ``bootstrap_trace_data`` (GEPA evaluates its candidates so). Its predictions
    are (prediction, trace) pairs; a resumed run answers only its full evaluations, never the
    minibatches GEPA reflects on (their traces are needed).
    """
    return "forward" in getattr(program, "__dict__", {})


__all__ = ["MINIBATCH_SCORE", "example_score", "pack_examples", "traced", "unpack_examples"]
