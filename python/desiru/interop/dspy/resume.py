"""Resume a tracked dspy run: ``dspy.Evaluate`` answers from the journal what it already scored.

dspy's callbacks can watch an evaluation but not skip it, so ``track(..., resume=True)``
wraps ``dspy.Evaluate.__call__`` once (idempotent, for the process). The wrapper does
nothing unless a resuming tracker is among the active callbacks (``dspy.configure``,
``dspy.context`` or the Evaluate's own ``callbacks``); then, when the journal holds a
trial of the same program (content hash), metric name and evaluation set (content
hash) with its per-example scores, it returns that score without running the program
or calling the metric. The predictions of a recalled evaluation are empty
``dspy.Prediction()`` objects (the journal keeps scores, not outputs).
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any

from desiru.interop.dspy.scores import MINIBATCH_SCORE, traced, unpack_examples

_MARK = "__desiru_resume__"
_lock = threading.Lock()


def install() -> None:
    """Wrap ``dspy.Evaluate.__call__`` so resuming trackers can answer evaluations (once per process)."""
    from dspy.evaluate.evaluate import Evaluate

    with _lock:
        if getattr(Evaluate.__call__, _MARK, False):
            return
        original = Evaluate.__call__
        signature = inspect.signature(original)

        @functools.wraps(original)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            trackers = _resuming(self)
            if trackers:
                bound = signature.bind(self, *args, **kwargs)
                program = bound.arguments.get("program")
                metric = bound.arguments.get("metric") or self.metric
                devset = bound.arguments.get("devset") or self.devset
                meta = bound.arguments.get("callback_metadata") or {}
                if program is not None and metric is not None and devset:
                    for tracker in trackers:
                        trial = tracker.recall(program, metric, list(devset), dict(meta))
                        if trial is not None:
                            return _result(trial, list(devset), traced(program))
            return original(self, *args, **kwargs)

        setattr(__call__, _MARK, True)
        Evaluate.__call__ = __call__


def _resuming(evaluate: Any) -> list[Any]:
    """The resuming trackers (desiru.interop.dspy.track.Tracker, known by its ``recall``) among the callbacks."""
    import dspy

    callbacks = [*dspy.settings.get("callbacks", []), *(getattr(evaluate, "callbacks", None) or [])]
    return [c for c in callbacks if getattr(c, "resume", False) is True and callable(getattr(c, "recall", None))]


def _result(trial: Any, devset: list[Any], with_trace: bool) -> Any:
    """The EvaluationResult dspy would have returned, from the trial's recorded scores.

    A traced program (``bootstrap_trace_data``) returns (prediction, trace) pairs: an empty trace here.
    """
    import dspy
    from dspy.evaluate.evaluate import EvaluationResult

    scores = unpack_examples(trial.params.get("examples")) or []
    score = trial.score if trial.score is not None else trial.metrics[MINIBATCH_SCORE]
    return EvaluationResult(score=score,
                            results=[(ex, (dspy.Prediction(), []) if with_trace else dspy.Prediction(), s)
                                     for ex, s in zip(devset, scores, strict=True)])


__all__ = ["install"]
