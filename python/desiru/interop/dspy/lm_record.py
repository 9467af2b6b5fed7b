"""LM responses kept in the journal, so a resumed dspy run replays them instead of calling the LM again.

``track(journal, record_lm=True)`` turns it on. dspy's LM callbacks can watch a call but
not answer it, so this wraps ``dspy.BaseLM.__call__`` and ``acall`` once per process
(idempotent, as resume.py wraps ``dspy.Evaluate``); the wrapper does nothing unless a
recording tracker is among the active callbacks (``dspy.configure``, ``dspy.context`` or the
LM's own ``callbacks``). Then each request is keyed by a hash of what changes the answer
(the model, the prompt or messages, the LM's settings such as temperature, n or rollout_id;
never the API key or endpoint), and:

- an answer recorded before under that key (and the tracker resumes) is returned from the
  journal: the LM is not called, neither its callbacks nor its history see the call;
- otherwise the LM is called and its answer appended as an ``LMResponseRecorded`` event,
  sealed like every record of an encrypted journal. Only the hash of the request is kept.

Only JSON values are stored (never a pickle): a request or an answer that is not plain JSON
(an lm15 ``Request``, logprob objects, a streaming call) goes to the LM and is not recorded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import warnings
from typing import TYPE_CHECKING, Any

from desiru.errors import DesiruError
from desiru.journal.events import LMResponseRecorded
from desiru.journal.warning import JournalWarning

if TYPE_CHECKING:
    from desiru.journal.journal import Journal

_MARK = "__desiru_lm_record__"
_install_lock = threading.Lock()
#: LM settings that never change the answer: left out of a request's key
IGNORED_KWARGS = frozenset({"api_key", "api_base", "base_url", "api_version", "num_retries", "timeout",
                            "request_timeout", "headers", "extra_headers", "cache", "callbacks"})
_MAX_DEPTH = 64


class Unrecordable(Exception):
    """A request or an answer that is not plain JSON: it goes to the LM and is not recorded."""


def _canon(value: Any) -> Any:
    """JSON for the values of a request json.dumps cannot write itself: a pydantic model (or its class)."""
    if isinstance(value, type) and callable(getattr(value, "model_json_schema", None)):
        return {"$model": f"{value.__module__}.{value.__qualname__}", "schema": value.model_json_schema()}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise Unrecordable(type(value).__qualname__)


def request_key(lm: Any, prompt: Any, messages: Any, kwargs: dict[str, Any]) -> str:
    """A stable hash of one LM request: model, model type, prompt or messages, the settings that matter."""
    settings = {**(getattr(lm, "kwargs", None) or {}), **kwargs}
    doc = {"model": str(getattr(lm, "model", "")), "model_type": getattr(lm, "model_type", None),
           "prompt": prompt, "messages": messages,
           "kwargs": {k: v for k, v in settings.items() if k not in IGNORED_KWARGS}}
    try:
        text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_canon)
    except (TypeError, ValueError, RecursionError) as exc:  # circular or exotic values
        raise Unrecordable(str(exc)) from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is made of JSON values only (str keys), so it stores and replays exactly."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if depth >= _MAX_DEPTH:
        return False
    if type(value) is list:
        return all(plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and plain(v, depth + 1) for k, v in value.items())
    return False


class LMRecords:
    """The LM answers a journal holds, by request key (the seq of the event; answers are read on a hit).

    Built on first use from the journal's events, and kept up to date as it grows, so answers
    recorded by any earlier run of the journal are found.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._seqs: dict[str, int] = {}
        self._scanned = 0  # events up to this seq are indexed
        self._lock = threading.Lock()

    def _catch_up(self) -> None:
        head = self.journal.head
        if head <= self._scanned:
            return
        for ev in self.journal.events(start=self._scanned + 1, stop=head + 1):
            if ev.type == LMResponseRecorded.type and isinstance(ev.payload.get("key"), str):
                self._seqs.setdefault(ev.payload["key"], ev.seq)
        self._scanned = head

    def __len__(self) -> int:
        with self._lock:
            self._catch_up()
            return len(self._seqs)

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, outputs) when the journal holds an answer to ``key``, else (False, None)."""
        with self._lock:
            if key not in self._seqs:
                self._catch_up()
            seq = self._seqs.get(key)
        if seq is None:
            return False, None
        for ev in self.journal.events(start=seq, stop=seq + 1):
            if ev.type == LMResponseRecorded.type and ev.payload.get("key") == key:
                return True, ev.payload["outputs"]
        return False, None

    def put(self, key: str, model: str, outputs: Any) -> bool:
        """Append the answer to ``key`` unless the journal already holds one; True when appended."""
        with self._lock:
            self._catch_up()
            if key in self._seqs:
                return False
            ev = self.journal.append(LMResponseRecorded(payload={"key": key, "model": model, "outputs": outputs}))
            self._seqs[key] = ev.seq
            self._scanned = max(self._scanned, ev.seq)  # what others appended before it is read on a miss
            return True


def _recorders(lm: Any) -> list[Any]:
    """The recording trackers among the active callbacks (dspy's settings, then the LM's own)."""
    import dspy

    from desiru.interop.dspy.track import Tracker

    callbacks = [*dspy.settings.get("callbacks", []), *(getattr(lm, "callbacks", None) or [])]
    return [c for c in callbacks if isinstance(c, Tracker) and c.lm_records is not None]


def _request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(prompt, messages, other kwargs) of a ``BaseLM.__call__(prompt=None, *, messages=None, **kwargs)``."""
    rest = dict(kwargs)
    prompt = args[0] if args else rest.pop("prompt", None)
    messages = rest.pop("messages", None)
    if len(args) > 1 or "request" in rest or not plain(prompt) or not plain(messages):
        raise Unrecordable("not a plain prompt or messages call")
    import dspy

    if dspy.settings.get("send_stream") is not None:
        raise Unrecordable("a streaming call")
    return prompt, messages, rest


class _Call:
    """One LM call as the wrapper sees it: the tracker that answers or records it, and its key."""

    __slots__ = ("key", "tracker")

    def __init__(self, tracker: Any, key: str) -> None:
        self.tracker, self.key = tracker, key


def _begin(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[_Call | None, bool, Any]:
    """(the call to record or None, True when answered, the answer) before the LM is called."""
    trackers = _recorders(lm)
    if not trackers:
        return None, False, None
    tracker = trackers[0]
    try:
        prompt, messages, rest = _request(args, kwargs)
        call = _Call(tracker, request_key(lm, prompt, messages, rest))
    except Unrecordable:
        tracker.count("lm_unrecorded")
        return None, False, None
    if tracker.resume:
        found, outputs = _guarded(tracker, lambda: tracker.lm_records.get(call.key), (False, None))
        if found:
            tracker.count("lm_replayed")
            return None, True, outputs
    tracker.count("lm_calls")
    return call, False, None


def _end(lm: Any, call: _Call | None, outputs: Any) -> Any:
    """Record ``outputs`` of a call ``_begin`` let through; returns them unchanged."""
    if call is None:
        return outputs
    tracker = call.tracker
    if not plain(outputs):
        tracker.count("lm_unrecorded")
        return outputs
    if _guarded(tracker, lambda: tracker.lm_records.put(call.key, str(getattr(lm, "model", "")), outputs), False):
        tracker.count("lm_recorded")
    return outputs


def _guarded(tracker: Any, fn: Any, default: Any) -> Any:
    """``fn()``; a journal error is kept and warned about, and the LM call goes on without the journal."""
    try:
        return fn()
    except DesiruError as exc:
        tracker.errors.append(exc)
        warnings.warn(f"desiru tracker (run {tracker.run!r}) could not use recorded LM answers: {exc}",
                      JournalWarning, stacklevel=3)
        return default


def install() -> None:
    """Wrap ``dspy.BaseLM.__call__`` and ``acall`` so recording trackers see every LM call (once per process)."""
    from dspy.clients.base_lm import BaseLM

    with _install_lock:
        if getattr(BaseLM.__call__, _MARK, False):
            return
        original, original_async = BaseLM.__call__, BaseLM.acall

        @functools.wraps(original)
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            call, answered, outputs = _begin(self, args, kwargs)
            if answered:
                return outputs
            return _end(self, call, original(self, *args, **kwargs))

        @functools.wraps(original_async)
        async def acall(self: Any, *args: Any, **kwargs: Any) -> Any:
            call, answered, outputs = _begin(self, args, kwargs)
            if answered:
                return outputs
            return _end(self, call, await original_async(self, *args, **kwargs))

        setattr(__call__, _MARK, True)
        setattr(acall, _MARK, True)
        BaseLM.__call__ = __call__
        BaseLM.acall = acall


__all__ = ["IGNORED_KWARGS", "LMRecords", "install", "plain", "request_key"]
