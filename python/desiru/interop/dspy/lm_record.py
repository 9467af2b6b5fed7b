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

Only JSON values are stored (never a pickle): an explicit ``dspy.lm15.Request`` and the
``Response`` it gets are kept in lm15's own dict form (``{"lm15.Response": ...}``, without
provider data); a request or an answer that is not plain JSON (logprob objects, a streaming
call) goes to the LM and is not recorded.
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
from desiru.state import copy_tree

if TYPE_CHECKING:
    from desiru.journal.journal import Journal

_MARK = "__desiru_lm_record__"
_install_lock = threading.Lock()
#: LM settings that never change the answer: left out of a request's key
IGNORED_KWARGS = frozenset({"api_key", "api_base", "base_url", "api_version", "num_retries", "timeout",
                            "request_timeout", "headers", "extra_headers", "cache", "callbacks"})
_MAX_DEPTH = 64
_SCALARS = frozenset({str, bool, int, float})
#: the outputs of an explicit lm15 Request call: {RESPONSE: the Response as lm15's dict form}
RESPONSE = "lm15.Response"


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


def request_key(lm: Any, prompt: Any, messages: Any, kwargs: dict[str, Any],
                request: dict[str, Any] | None = None) -> str:
    """A stable hash of one LM request: model, model type, prompt or messages (or an lm15 Request in its
    dict form), the settings that matter."""
    settings = {**(getattr(lm, "kwargs", None) or {}), **kwargs}
    doc = {"model": str(getattr(lm, "model", "")), "model_type": getattr(lm, "model_type", None),
           "prompt": prompt, "messages": messages,
           "kwargs": {k: v for k, v in settings.items() if k not in IGNORED_KWARGS}}
    if request is not None:
        doc["request"] = request
    try:
        text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_canon)
    except (TypeError, ValueError, RecursionError) as exc:  # circular or exotic values
        raise Unrecordable(str(exc)) from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def plain(value: Any, depth: int = 0) -> bool:
    """True when ``value`` is made of JSON values only (str keys), so it stores and replays exactly."""
    if value is None or type(value) in _SCALARS:  # exact types: subclasses (numpy floats, ...) are not JSON
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

    Built once, on first use, from the journal's events, then kept up to date as it grows (a
    miss reads only the events appended since), so answers recorded by any earlier run of the
    journal are found. ``Journal.compact()`` moves the answers it would drop to after the head:
    an index older than the log's start is built again (once) from what the log now holds.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._seqs: dict[str, int] = {}
        self._scanned = 0  # events up to this seq are indexed
        self._lock = threading.Lock()

    def _compacted(self, seq: int) -> bool:
        """Whether the log now starts after ``seq`` (asked only when a read failed: a store query)."""
        return seq < self.journal.store.first_seq()

    def _catch_up(self) -> None:
        head = self.journal.head
        if head <= self._scanned:
            return
        try:
            events = list(self._lm_events(self._scanned + 1, head + 1))
        except DesiruError:
            if not (self._scanned and self._compacted(self._scanned + 1)):
                raise
            self._seqs, self._scanned = {}, 0  # compacted since: the seqs it holds may be gone
            events = list(self._lm_events(1, head + 1))
        for seq, key in events:
            self._seqs.setdefault(key, seq)
        self._scanned = head

    def _lm_events(self, start: int, stop: int) -> Any:
        for ev in self.journal.events(start=start, stop=stop):
            if ev.type == LMResponseRecorded.type and isinstance(ev.payload.get("key"), str):
                yield ev.seq, ev.payload["key"]

    def _read(self, key: str, seq: int) -> tuple[bool, Any]:
        try:
            for ev in self.journal.events(start=seq, stop=seq + 1):
                if ev.type == LMResponseRecorded.type and ev.payload.get("key") == key:
                    return True, copy_tree(ev.payload["outputs"])  # the caller's own
        except DesiruError:
            if not self._compacted(seq):
                raise
        return False, None

    def get(self, key: str) -> tuple[bool, Any]:
        """(True, outputs) when the journal holds an answer to ``key``, else (False, None)."""
        with self._lock:
            if key not in self._seqs:
                self._catch_up()
            seq = self._seqs.get(key)
        if seq is None:
            return False, None
        found = self._read(key, seq)
        if found[0] or not self._compacted(seq):
            return found
        with self._lock:  # compacted away under the index: the answer was moved past the head
            self._seqs, self._scanned = {}, 0
            self._catch_up()
            seq = self._seqs.get(key)
        return (False, None) if seq is None else self._read(key, seq)

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
    """The recording trackers among the active callbacks (dspy's settings, then the LM's own): the
    callbacks holding an ``LMRecords`` (desiru.interop.dspy.track.Tracker with record_lm=True)."""
    import dspy

    callbacks = [*dspy.settings.get("callbacks", []), *(getattr(lm, "callbacks", None) or [])]
    return [c for c in callbacks if isinstance(getattr(c, "lm_records", None), LMRecords)]


def _lm15() -> Any:
    """dspy's lm15 ``Request`` and ``Response`` classes and their dict forms (None: this dspy has none)."""
    try:
        from dspy._vendor.lm15.serde import request_to_dict, response_from_dict, response_to_dict
        from dspy.lm15 import Request, Response
    except ImportError:
        return None
    return Request, Response, request_to_dict, response_to_dict, response_from_dict


def _key(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, bool]:
    """The key of a ``BaseLM.__call__(prompt=None, *, messages=None, **kwargs)`` call, and whether it is
    an explicit lm15 Request (answered with an lm15 Response)."""
    import dspy

    rest = dict(kwargs)
    prompt = args[0] if args else rest.pop("prompt", None)
    messages = rest.pop("messages", None)
    request = rest.pop("request", None)
    lm15 = _lm15()
    if lm15 is not None and isinstance(prompt, lm15[0]):
        request, prompt = prompt, None
    if len(args) > 1 or dspy.settings.get("send_stream") is not None:
        raise Unrecordable("positional arguments, or a streaming call")
    if request is not None:
        if lm15 is None or not isinstance(request, lm15[0]) or prompt is not None or messages is not None:
            raise Unrecordable("not one lm15 Request")
        try:
            as_dict = lm15[2](request)
        except (TypeError, ValueError) as exc:
            raise Unrecordable(str(exc)) from None
        return request_key(lm, None, None, rest, as_dict), True
    if not plain(prompt) or not plain(messages):
        raise Unrecordable("not a plain prompt or messages call")
    return request_key(lm, prompt, messages, rest), False


class _Call:
    """One LM call as the wrapper sees it: the tracker that answers or records it, its key, its kind."""

    __slots__ = ("key", "tracker", "typed")

    def __init__(self, tracker: Any, key: str, typed: bool) -> None:
        self.tracker, self.key, self.typed = tracker, key, typed


def _stored(call: _Call, outputs: Any) -> Any:
    """What the journal keeps of an answer (None: it cannot be kept exactly)."""
    if not call.typed:
        return outputs if plain(outputs) else None
    lm15 = _lm15()
    if lm15 is None or not isinstance(outputs, lm15[1]):
        return None
    try:
        as_dict = lm15[3](outputs)
    except (TypeError, ValueError):
        return None
    return {RESPONSE: as_dict} if plain(as_dict) else None


def _answer(call: _Call, stored: Any) -> tuple[bool, Any]:
    """(True, the answer as the LM returns it) from what the journal kept; (False, None) when unusable."""
    if not call.typed:  # dspy's outputs of a prompt or messages call: a list (of strings or dicts)
        return (True, stored) if type(stored) is list else (False, None)
    lm15 = _lm15()
    if lm15 is None or not isinstance(stored, dict) or not isinstance(stored.get(RESPONSE), dict):
        return False, None
    try:
        return True, lm15[4](stored[RESPONSE])
    except (TypeError, ValueError, KeyError):
        return False, None


def _begin(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[_Call | None, bool, Any]:
    """(the call to record or None, True when answered, the answer) before the LM is called."""
    trackers = _recorders(lm)
    if not trackers:
        return None, False, None
    tracker = trackers[0]
    try:
        call = _Call(tracker, *_key(lm, args, kwargs))
    except Unrecordable:
        tracker.count("lm_unrecorded")
        return None, False, None
    if tracker.resume:
        found, stored = _guarded(tracker, lambda: tracker.lm_records.get(call.key), (False, None))
        found, outputs = _answer(call, stored) if found else (False, None)
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
    stored = _stored(call, outputs)
    if stored is None:
        tracker.count("lm_unrecorded")
        return outputs
    if _guarded(tracker, lambda: tracker.lm_records.put(call.key, str(getattr(lm, "model", "")), stored), False):
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


__all__ = ["IGNORED_KWARGS", "RESPONSE", "LMRecords", "install", "plain", "request_key"]
