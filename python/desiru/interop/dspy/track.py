"""Record a dspy optimization run in a journal: every evaluated candidate a commit with its score.

    dspy.configure(callbacks=[desiru.interop.dspy.track(journal, run="mipro-1")])
    # or, for one compile:
    with desiru.interop.dspy.track(journal, run="mipro-1"):
        optimizer.compile(program, trainset=trainset, valset=valset)

The tracker is a dspy callback. When an optimizer's ``compile`` starts it commits the
student (the run's root); each ``dspy.Evaluate`` call then becomes a commit of the
evaluated program, derived from the root (GEPA: from the candidate GEPA selected for
that iteration), with the score and, as params, the metric's name, the size and a
content hash of the evaluation set, the optimizer and its settings, MIPROv2's chosen
instruction and demo-set indices, and (``record_examples``) the per-example scores.
The compiled result is tagged ``f"{run}/best"`` (moved on every run). With
``resume=True`` (see ``resume``) an evaluation the journal already holds is not
run again; with ``record_lm=True`` (see ``lm_record``) the LM's answers are kept in the
journal too, and a resumed run replays them instead of calling the LM. See docs/dspy.md.

This module does not import dspy; ``track()`` does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from desiru.errors import DesiruError
from desiru.interop.dspy.scores import MINIBATCH_SCORE, example_score, pack_examples, traced, unpack_examples
from desiru.journal.runs import check_params
from desiru.journal.warning import JournalWarning

if TYPE_CHECKING:
    from desiru.interop.dspy.lm_record import LMRecords
    from desiru.journal.journal import Journal
    from desiru.journal.runs import Trial

logger = logging.getLogger(__name__)

#: params keys the tracker writes (a trial's ``params``)
RUN, ROLE, OPTIMIZER, SETTINGS, METRIC, EVAL_SET, EVAL, CHOICE, EXAMPLES = (
    "run", "role", "optimizer", "settings", "metric", "eval_set", "eval", "choice", "examples")
_MINIBATCH_KEYS = frozenset({"eval_minibatch"})


def track(journal: Journal, *, run: str = "dspy", resume: bool = False,
          record_examples: bool | None = None, record_lm: bool = False) -> Tracker:
    """A dspy callback that records every candidate a dspy optimizer evaluates into ``journal``.

    ``run`` names the run: its params carry it and its compiled result gets tag
    ``f"{run}/best"``, so two runs in one journal never move each other's tags.
    ``resume=True`` skips evaluations the journal already scored (same program, metric
    and evaluation set) and returns the recorded score. ``record_examples`` keeps the
    per-example scores (default: on when resuming, which needs them). ``record_lm=True``
    keeps every LM answer in the journal (sealed with it when it is encrypted), keyed by a
    hash of the request; with ``resume=True`` a request the journal answered before is
    answered from it, without calling the LM.
    """
    from desiru.interop.dspy.live import _require_dspy
    from desiru.journal.journal import Journal

    _require_dspy()
    if not isinstance(journal, Journal):
        raise DesiruError(f"track() needs a desiru Journal, got {type(journal).__qualname__}",
                          hint="open one with desiru.Journal.open('runs/x.journal')")
    if not isinstance(run, str) or not run or "/" in run:
        raise DesiruError(f"run must be a non-empty str without '/', got {run!r}", hint="e.g. run='mipro-1'")
    if not isinstance(record_lm, bool):
        raise DesiruError(f"record_lm must be True or False, got {record_lm!r}")
    tracker = Tracker(journal, run=run, resume=resume,
                      record_examples=resume if record_examples is None else bool(record_examples),
                      record_lm=record_lm)
    if record_lm:
        from desiru.interop.dspy import lm_record

        lm_record.install()
    if resume:
        from desiru.interop.dspy.resume import install

        install()
    return tracker


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def metric_name(metric: Any) -> str:
    """A stable name for a metric: module and qualified name of the function (or of its class).

    Wrappers are seen through: ``functools.wraps`` (``__wrapped__``) and closures that hold the
    user's metric in a variable named ``metric`` (dspy's ``bootstrap_trace_data`` wraps it so).
    """
    for _ in range(8):
        inner = getattr(metric, "__wrapped__", None)
        if inner is None:
            code, cells = getattr(metric, "__code__", None), getattr(metric, "__closure__", None) or ()
            names = code.co_freevars if code is not None else ()
            inner = next((c.cell_contents for n, c in zip(names, cells) if n == "metric"), None)
        if not callable(inner):
            break
        metric = inner
    target = metric if hasattr(metric, "__qualname__") else type(metric)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


class EvalSetHasher:
    """Content hashes of evaluation sets (sha256 of each example's fields and input keys), cached.

    An optimizer evaluates many candidates on the same list of examples; the cache keys on the
    identity of the examples and keeps them alive, so a reused id can never alias another set.
    """

    def __init__(self, size: int = 64) -> None:
        self._cache: OrderedDict[tuple[int, ...], tuple[list[Any], str]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __call__(self, devset: list[Any]) -> str:
        key = tuple(map(id, devset))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[1]
        h = hashlib.sha256()
        for example in devset:
            h.update(_example_bytes(example))
            h.update(b"\x00")
        digest = h.hexdigest()[:32]
        with self._lock:
            self._cache[key] = (list(devset), digest)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return digest


def _example_bytes(example: Any) -> bytes:
    fields = example.toDict() if hasattr(example, "toDict") else example
    keys = getattr(example, "_input_keys", None)
    doc = {"fields": fields, "inputs": sorted(map(str, keys)) if keys is not None else None}
    return json.dumps(doc, sort_keys=True, default=repr, ensure_ascii=False).encode("utf-8")


def optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """The optimizer's public settings that are plain values (metric, LMs and datasets are left out)."""
    out: dict[str, Any] = {}
    for name, value in sorted(vars(optimizer).items()):
        if name.startswith("_") or callable(value):
            continue
        try:
            checked = check_params({name: value})
        except DesiruError:
            continue
        if len(json.dumps(checked)) <= 4096:  # a setting, not a data set
            out.update(checked)
    return out


def _instructions(program: Any) -> tuple[tuple[str, str], ...]:
    """Predictor name -> instructions of a dspy module (what a GEPA candidate is made of)."""
    return tuple((name, p.signature.instructions) for name, p in program.named_predictors())


class _Evaluation:
    __slots__ = ("devset", "meta", "metric", "program")

    def __init__(self, program: Any, metric: Any, devset: list[Any], meta: dict[str, Any]) -> None:
        self.program, self.metric, self.devset, self.meta = program, metric, devset, meta


class _Run:
    """What one outermost compile call knows: its optimizer, its root commit, GEPA's candidates."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer
        self.name = _class_path(optimizer)
        self.settings = optimizer_settings(optimizer)
        self.root: int | None = None
        self.choices: dict[int, tuple[Any, dict[str, Any]]] = {}  # id(program) -> (program, MIPROv2 indices)
        self.by_instructions: dict[tuple[tuple[str, str], ...], int] = {}  # GEPA candidate -> its seq
        self.selected: tuple[tuple[str, str], ...] | None = None  # GEPA's parent of this iteration
        self.restore: list[Any] = []  # undo the instrumentation of the optimizer instance
        self.predictors: list[str] = []  # the student's predictor names, in order
        self.full_size = 0  # size of the set a full evaluation uses (valset, else trainset); 0: unknown


class _Callbacks:
    """Every dspy callback handler as a no-op (dspy looks handlers up by name)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return _noop
        raise AttributeError(name)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class Tracker(_Callbacks):
    """The dspy callback ``track()`` returns; also a context manager that adds itself to dspy's callbacks.

    ``stats`` counts what it did: ``evaluated`` (evaluations run and committed), ``resumed``
    (evaluations answered from the journal), ``metric_calls`` (per-example metric results it
    saw) and ``metric_calls_saved`` (those a resumed evaluation did not make); with
    ``record_lm`` also ``lm_calls`` (requests that went to the LM), ``lm_replayed`` (answered
    from the journal), ``lm_recorded`` (answers appended) and ``lm_unrecorded`` (calls that
    are not plain JSON, left alone). ``lm_records`` is the journal's index of answers. ``errors`` holds
    journal errors met inside dspy's callbacks (dspy logs and swallows exceptions from
    callbacks; the tracker also warns with a JournalWarning).
    """

    def __init__(self, journal: Journal, *, run: str, resume: bool, record_examples: bool,
                 record_lm: bool = False) -> None:
        self.journal = journal
        self.run = run
        self.resume = resume
        self.record_examples = record_examples
        self.best_tag = f"{run}/best"
        self.stats = {"evaluated": 0, "resumed": 0, "metric_calls": 0, "metric_calls_saved": 0}
        self.lm_records: LMRecords | None = None
        if record_lm:
            from desiru.interop.dspy.lm_record import LMRecords

            self.lm_records = LMRecords(journal)
            self.stats.update(lm_calls=0, lm_replayed=0, lm_recorded=0, lm_unrecorded=0)
        self.errors: list[BaseException] = []
        self.eval_set_hash = EvalSetHasher()
        self._lock = threading.RLock()
        self._pending: dict[str, _Evaluation] = {}
        self._compiles: dict[str, _Run | None] = {}
        self._run: _Run | None = None
        self._contexts: list[Any] = []

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to ``stats[name]`` (thread-safe)."""
        with self._lock:
            self.stats[name] = self.stats.get(name, 0) + n

    def __repr__(self) -> str:
        return f"<desiru dspy tracker run={self.run!r} resume={self.resume} {self.stats}>"

    # -- as a context manager ------------------------------------------------------------------
    def __enter__(self) -> Tracker:
        import dspy

        ctx = dspy.context(callbacks=[*dspy.settings.get("callbacks", []), self])
        ctx.__enter__()
        self._contexts.append(ctx)
        return self

    def __exit__(self, *exc: object) -> None:
        self._contexts.pop().__exit__(*exc)

    # -- compile: the run's root, its optimizer, and the tag of its result ----------------------
    def on_compile_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            if self._run is not None:  # a nested compile (BootstrapFewShot inside MIPROv2) belongs to the run
                self._compiles[call_id] = None
                return
            run = _Run(instance)
            self._run = run
            self._compiles[call_id] = run
        student = inputs.get("student")
        full = inputs.get("valset") or inputs.get("trainset")
        run.full_size = len(full) if isinstance(full, list) else 0
        self._guard(lambda: self._start(run, student))

    def _start(self, run: _Run, student: Any) -> None:
        from desiru.interop.dspy.live import is_dspy_module

        self._instrument(run)
        if not is_dspy_module(student):
            return
        params = {**self._base_params(run), ROLE: "student"}
        found = self._find(student, lambda t: t.params.get(RUN) == self.run and t.params.get(ROLE) == "student")
        run.root = found.seq if found is not None else self.journal.commit(student, params=params).seq
        run.predictors = [name for name, _ in student.named_predictors()]
        run.by_instructions.setdefault(_instructions(student), run.root)

    def on_compile_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        with self._lock:
            run = self._compiles.pop(call_id, None)
            if run is None:
                return
            self._run = None
        try:
            if exception is None and outputs is not None:
                self._guard(lambda: self._finish(run, outputs))
        finally:
            for undo in reversed(run.restore):
                undo()

    def _finish(self, run: _Run, outputs: Any) -> None:
        from desiru.interop.dspy.live import is_dspy_module

        if not is_dspy_module(outputs):
            return
        found = self._find(outputs, lambda t: t.params.get(RUN) == self.run and t.score is not None, best=True)
        if found is None:
            found = self._find(outputs, lambda t: t.params.get(RUN) == self.run)
        if found is not None:
            seq = found.seq
        else:
            params = {**self._base_params(run), ROLE: "compiled"}
            seq = self.journal.commit(outputs, parent=run.root, params=params).seq
        self.journal.tag(self.best_tag, seq, move=True)

    def _instrument(self, run: _Run) -> None:
        """Let the optimizer tell which choices make each candidate (MIPROv2) and its parents (GEPA)."""
        opt = run.optimizer
        select = getattr(opt, "_select_and_insert_instructions_and_demos", None)
        if callable(select):  # MIPROv2: the instruction and demo-set index per predictor
            def chosen(candidate_program: Any, *args: Any, **kwargs: Any) -> Any:
                result = select(candidate_program, *args, **kwargs)
                if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
                    with self._lock:
                        run.choices[id(candidate_program)] = (candidate_program, dict(result[1]))
                return result

            opt._select_and_insert_instructions_and_demos = chosen
            run.restore.append(lambda: opt.__dict__.pop("_select_and_insert_instructions_and_demos", None))
        kwargs = getattr(opt, "gepa_kwargs", None)
        if isinstance(kwargs, dict):  # GEPA: the candidate selected as the parent of each iteration
            opt.gepa_kwargs = {**kwargs, "callbacks": [*(kwargs.get("callbacks") or []), _GepaListener(self, run)]}
            run.restore.append(lambda: setattr(opt, "gepa_kwargs", kwargs))

    # -- evaluations: one commit each ------------------------------------------------------------
    def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        program = inputs.get("program")
        metric = inputs.get("metric") or getattr(instance, "metric", None)
        devset = inputs.get("devset") or getattr(instance, "devset", None)
        meta = inputs.get("callback_metadata") or {}
        if program is None or metric is None or not devset:
            return
        with self._lock:
            self._pending[call_id] = _Evaluation(program, metric, list(devset), dict(meta))

    def on_evaluate_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        with self._lock:
            ev = self._pending.pop(call_id, None)
        if ev is None or exception is not None or outputs is None or getattr(outputs, "score", None) is None:
            return
        self._guard(lambda: self._commit_evaluation(ev, outputs))

    def evaluation_params(self, ev: _Evaluation) -> dict[str, Any]:
        """The params that identify an evaluation: run, optimizer, metric, evaluation set, choices."""
        run = self._run
        params = self._base_params(run)
        params[METRIC] = metric_name(ev.metric)
        params[EVAL_SET] = {"size": len(ev.devset), "hash": self.eval_set_hash(ev.devset)}
        key = ev.meta.get("metric_key")
        if isinstance(key, str):
            params[EVAL] = key
        if run is not None:
            choice = run.choices.get(id(ev.program))
            if choice is not None and choice[0] is ev.program:
                params[CHOICE] = choice[1]
        return params

    def _commit_evaluation(self, ev: _Evaluation, outputs: Any) -> None:
        params = self.evaluation_params(ev)
        results = list(getattr(outputs, "results", None) or [])
        scores = [example_score(r[2]) if isinstance(r, tuple) and len(r) == 3 else None for r in results]
        if self.record_examples and len(scores) == len(ev.devset):
            params[EXAMPLES] = pack_examples(scores)
        score = float(outputs.score)
        run = self._run
        minibatch = self._is_minibatch(run, ev)
        commit = self.journal.commit(
            ev.program, parent=self._parent(run, ev.program),
            score=None if minibatch else score, metrics={MINIBATCH_SCORE: score} if minibatch else None,
            params=params)
        with self._lock:
            self.stats["evaluated"] += 1
            self.stats["metric_calls"] += len(ev.devset)
        self._remember(run, ev.program, commit.seq)

    @staticmethod
    def _is_minibatch(run: _Run | None, ev: _Evaluation) -> bool:
        """True for an evaluation on part of the data: dspy's metadata says so, or it is smaller than the run's set."""
        key = ev.meta.get("metric_key")
        if key in _MINIBATCH_KEYS or ev.meta.get("disable_logging") is True:
            return True
        if key == "eval_full":
            return False
        return run is not None and 0 < len(ev.devset) < run.full_size

    def _parent(self, run: _Run | None, program: Any) -> int | None:
        if run is None:
            return None
        if run.selected is not None:  # GEPA: the candidate this iteration mutates
            return run.by_instructions.get(run.selected, run.root)
        return run.root

    def _remember(self, run: _Run | None, program: Any, seq: int) -> None:
        if run is not None:
            with self._lock:
                run.by_instructions.setdefault(_instructions(program), seq)

    # -- resume ------------------------------------------------------------------------------------
    def recall(self, program: Any, metric: Any, devset: list[Any], meta: dict[str, Any]) -> Trial | None:
        """The trial that already scored ``program`` with ``metric`` on ``devset`` (None: evaluate it)."""
        if not self.resume:
            return None
        ev = _Evaluation(program, metric, list(devset), dict(meta))
        if traced(program) and self._is_minibatch(self._run, ev):
            return None  # its caller reflects on the traces of this run: run it
        want = self.evaluation_params(ev)
        found = self._find(program, lambda t: (
            t.params.get(METRIC) == want[METRIC] and t.params.get(EVAL_SET) == want[EVAL_SET]
            and (t.score is not None or MINIBATCH_SCORE in t.metrics)
            and unpack_examples(t.params.get(EXAMPLES)) is not None
            and len(unpack_examples(t.params.get(EXAMPLES)) or ()) == len(devset)))
        if found is not None:
            with self._lock:
                self.stats["resumed"] += 1
                self.stats["metric_calls_saved"] += len(devset)
            self._remember(self._run, program, found.seq)
        return found

    # -- helpers -------------------------------------------------------------------------------------
    def _base_params(self, run: _Run | None) -> dict[str, Any]:
        params: dict[str, Any] = {RUN: self.run}
        if run is not None:
            params[OPTIMIZER] = run.name
            params[SETTINGS] = run.settings
        return params

    def _find(self, program: Any, keep: Any, best: bool = False) -> Trial | None:
        """The newest trial (or with ``best`` the best-scored) of the same state that ``keep`` accepts."""
        matches = [t for t in self.journal.find(program) if keep(t)]
        if not matches:
            return None
        if best:
            return max(reversed(matches), key=lambda t: t.score if t.score is not None else float("-inf"))
        return matches[-1]

    def _guard(self, fn: Any) -> None:
        """Run ``fn``; a DesiruError is kept and warned about (dspy would only log it and carry on)."""
        try:
            fn()
        except DesiruError as exc:
            self.errors.append(exc)
            warnings.warn(f"desiru tracker (run {self.run!r}) could not record: {exc}", JournalWarning,
                          stacklevel=2)


class _GepaListener:
    """A GEPA engine callback: which candidate each iteration starts from (the parent of what it proposes)."""

    def __init__(self, tracker: Tracker, run: _Run) -> None:
        self.tracker, self.run = tracker, run

    def on_candidate_selected(self, event: Any) -> None:
        candidate = event.get("candidate") if isinstance(event, dict) else None
        if isinstance(candidate, dict):
            items = tuple((name, candidate[name]) for name in self.run.predictors if name in candidate)
            with self.tracker._lock:
                self.run.selected = items if len(items) == len(candidate) else None

    def on_iteration_end(self, event: Any) -> None:
        with self.tracker._lock:
            self.run.selected = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return _noop
        raise AttributeError(name)


__all__ = ["MINIBATCH_SCORE", "Tracker", "metric_name", "pack_examples", "traced", "track", "unpack_examples"]
