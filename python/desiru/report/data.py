"""What a run report shows, gathered from a journal: trials, the best and its lineage, the diff, the facts.

Everything here comes from the journal's run index (no program is replayed) except the
diff of the best against the first commit, which replays those two states. Large runs
are thinned here too (:func:`sample`), so the figures and the terminal plot share one rule:
the best, every step of the best-so-far line and the best's ancestry are always kept.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from desiru import _engine
from desiru.errors import DesiruError
from desiru.journal import Journal
from desiru.journal.runs import Trial
from desiru.state import copy_tree

#: above this many points a series is thinned (two per bin: its lowest and highest)
MAX_POINTS = 4000
#: rows of the top-trials table by default
TOP = 50


@dataclass(frozen=True)
class Facts:
    """The run at a glance."""

    path: str
    trials: int
    scored: int
    first_timestamp: float | None
    last_timestamp: float | None
    writers: dict[str, int]
    size: int
    encryption: dict[str, Any] | None
    head: int
    tags: dict[str, int]


@dataclass
class ModuleChange:
    """What changed in one module between the first commit and the best."""

    path: str
    instructions: tuple[str | None, str | None] | None = None
    demos_added: list[Any] = field(default_factory=list)
    demos_removed: list[Any] = field(default_factory=list)
    #: (key, old, new); a missing side is None with ``set``/``unset`` telling which
    parameters: list[tuple[str, Any, Any, str]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DiffSummary:
    """The best trial against the first commit, grouped by module."""

    base: int
    target: int
    edits: int
    modules: list[ModuleChange]
    note: str | None = None


@dataclass(frozen=True)
class RunData:
    """Everything the page, the figures and the terminal plot draw from."""

    trials: list[Trial]
    metrics: list[str]
    metric: str | None
    mode: str
    best: Trial | None
    best_line: list[int]
    top: list[Trial]
    depth: dict[int, int]
    diff: DiffSummary | None
    facts: Facts

    def values(self, metric: str | None) -> list[float | None]:
        """The score (``None``) or a metric of every trial, in trial order."""
        return [t.value(metric) for t in self.trials]


def metric_names(trials: list[Trial]) -> list[str]:
    """Every metric recorded, in the order first met."""
    names: dict[str, None] = {}
    for t in trials:
        names.update(dict.fromkeys(t.metrics))
    return list(names)


def depths(trials: list[Trial]) -> dict[int, int]:
    """Generation of each commit: 0 for a root, its parent's plus one otherwise (parents come first)."""
    out: dict[int, int] = {}
    for t in trials:
        out[t.seq] = out.get(t.parent, -1) + 1 if t.parent is not None else 0
    return out


def best_so_far(values: list[float | None], mode: str = "max") -> list[int]:
    """Indices where the best value so far improves (the steps of the best-so-far line)."""
    out: list[int] = []
    best = math.inf if mode == "min" else -math.inf
    for i, v in enumerate(values):
        if v is not None and (v > best if mode == "max" else v < best):
            best = v
            out.append(i)
    return out


def sample(values: list[float | None], keep: Iterable[int] = (), limit: int = MAX_POINTS) -> list[int]:
    """Indices of the points to draw: all of them up to ``limit``, else per bin the lowest and the
    highest, plus every index in ``keep`` (the best, the best-so-far steps, the lineage)."""
    present = [i for i, v in enumerate(values) if v is not None]
    if len(present) <= limit:
        return present
    bins = max(1, limit // 2)
    size = len(present) / bins
    chosen = set(keep)
    for b in range(bins):
        chunk = present[int(b * size): int((b + 1) * size)]
        if chunk:
            chosen.add(min(chunk, key=values.__getitem__))  # type: ignore[arg-type]
            chosen.add(max(chunk, key=values.__getitem__))  # type: ignore[arg-type]
    return sorted(i for i in chosen if values[i] is not None)


def short(value: Any, width: int = 120) -> str:
    """One line of text for a value in the page (JSON-like, cut to ``width``)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _node(state: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: Any = state
    for part in path.split(".") if path else []:
        node = next((c for c in node.get("modules") or [] if isinstance(c, dict) and c.get("name") == part), None)
        if node is None:
            return None
    return node if isinstance(node, dict) else None


def _fold(change: ModuleChange, edit: dict[str, Any], node: dict[str, Any] | None) -> None:
    """Add one edit to a module's change, reading old values from ``node`` (the state before it applies)."""
    op = edit.get("op")
    if op == "signature_set":
        old = (node or {}).get("signature") or {}
        new = edit.get("signature") or {}
        before = old.get("instructions") if isinstance(old, dict) else None
        after = new.get("instructions") if isinstance(new, dict) else None
        if before != after:
            first = change.instructions[0] if change.instructions else before
            change.instructions = (first, after)
        if isinstance(old, dict) and isinstance(new, dict) and \
                (old.get("inputs") != new.get("inputs") or old.get("outputs") != new.get("outputs")):
            change.other.append("signature fields changed")
    elif op == "demo_added":
        change.demos_added.append(edit.get("demo"))
    elif op == "demo_removed":
        demos = (node or {}).get("demos") or []
        index = edit.get("index")
        change.demos_removed.append(demos[index] if isinstance(index, int) and 0 <= index < len(demos)
                                    else f"demo #{index}")
    elif op == "demos_reordered":
        change.other.append("demos reordered")
    elif op == "parameter_set":
        params = (node or {}).get("parameters") or {}
        key = str(edit.get("key"))
        change.parameters.append((key, params.get(key), edit.get("value"), "changed" if key in params else "set"))
    elif op == "parameter_unset":
        params = (node or {}).get("parameters") or {}
        key = str(edit.get("key"))
        change.parameters.append((key, params.get(key), None, "unset"))
    elif op == "module_added":
        state = edit.get("state") or {}
        change.other.append(f"module added: {state.get('class')} with {len(state.get('demos') or [])} demos")
    elif op == "module_removed":
        change.other.append("module removed")
    elif op == "program_created":
        change.other.append(f"program replaced: class {(edit.get('state') or {}).get('class')}")
    else:
        value = {k: v for k, v in edit.items() if k not in ("op", "path")}
        change.other.append(f"{str(op).replace('_', ' ')}: {short(value, 160)}")


def diff_summary(journal: Journal, base: Trial, target: Trial, note: str | None = None) -> DiffSummary:
    """The edits from ``base`` to ``target`` (the library's structural diff), grouped by module."""
    before = journal.replay_state(seq=base.seq)
    after = journal.replay_state(seq=target.seq)
    edits = list(_engine.diff_states(before, after))
    work = copy_tree(before)
    by_path: dict[str, ModuleChange] = {}
    for edit in edits:
        path = str(edit.get("path", ""))
        change = by_path.setdefault(path, ModuleChange(path or "(program)"))
        _fold(change, edit, _node(work, path))
        work = _engine.apply_edits(work, [edit])
    return DiffSummary(base.seq, target.seq, len(edits), list(by_path.values()), note)


def _diff(journal: Journal, trials: list[Trial], best: Trial | None) -> DiffSummary | None:
    if best is None or not trials:
        return None
    replayable = [t for t in trials if t.replayable]
    if not best.replayable or not replayable:
        return DiffSummary(trials[0].seq, best.seq, 0, [],
                           "compaction dropped the state of these commits, so they cannot be compared")
    base = replayable[0]
    note = None if base is trials[0] else (f"compaction dropped the first commit's state; "
                                           f"compared with the first kept commit, seq {base.seq}")
    return diff_summary(journal, base, best, note)


def gather(journal: Journal, *, metric: str | None = None, mode: str = "max", top: int = TOP) -> RunData:
    """Read what the report shows from an open journal."""
    if mode not in ("max", "min"):
        raise DesiruError(f"mode must be 'max' or 'min', got {mode!r}")
    trials = journal.trials()
    metrics = metric_names(trials)
    if metric is not None and metric not in metrics:
        raise DesiruError(f"no trial of this run has a metric {metric!r}", path=journal.path,
                          hint=f"known metrics: {', '.join(metrics) or '(none)'}")
    best = journal.best(metric=metric, mode=mode)
    line = [t.seq for t in journal.lineage(best.seq)] if best is not None else []
    stamps = [t.timestamp for t in trials if t.timestamp]
    facts = Facts(
        path=journal.path, trials=len(trials), scored=sum(t.score is not None for t in trials),
        first_timestamp=min(stamps, default=None), last_timestamp=max(stamps, default=None),
        writers=dict(Counter(t.writer or "(unnamed)" for t in trials).most_common()),
        size=journal.size(), encryption=journal.encryption, head=journal.head, tags=journal.tags(),
    )
    return RunData(trials=trials, metrics=metrics, metric=metric, mode=mode, best=best, best_line=line,
                   top=journal.best(k=top, metric=metric, mode=mode), depth=depths(trials),
                   diff=_diff(journal, trials, best), facts=facts)


__all__ = ["DiffSummary", "Facts", "ModuleChange", "RunData", "best_so_far", "depths", "diff_summary", "gather",
           "metric_names", "sample"]
