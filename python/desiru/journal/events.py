"""Typed journal events: immutable records of one change each, addressed by module path.

Every edit that ``diff_states`` produces (docs/STATE.md) maps 1:1 to an event type
here, and every event maps back to at most one edit, so replaying events is
``apply_edits`` of their edits. ``CheckpointTagged`` names a point in the history
and changes nothing; ``ModuleImported`` is a ``ModuleAdded`` that also records
where the module came from.
"""

from __future__ import annotations

import datetime as _dt
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from desiru.errors import CorruptDataError, DesiruError
from desiru.serialization import migrations


def _frozen(payload: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(payload or {}))


@dataclass(frozen=True)
class Event:
    """One change of a program: its type, schema version, seq, timestamp, module path and payload.

    ``seq`` and ``timestamp`` are 0 on an event built by hand; the journal assigns
    them when it appends the event (and returns the stored copy).
    """

    #: name stored on disk
    type: ClassVar[str] = "Event"
    #: edit op of docs/STATE.md this event stands for (None: no edit)
    op: ClassVar[str | None] = None
    #: payload keys the edit carries
    fields: ClassVar[tuple[str, ...]] = ()
    #: version of this event type's payload layout; upcasters bring older ones forward
    schema_version: ClassVar[int] = 1

    path: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0
    timestamp: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise DesiruError(f"{self.type}: path must be a str, got {type(self.path).__name__}",
                              hint='give the dotted path of a module, e.g. path="answer" or "qa.answer" '
                              '("" for the program itself)')
        object.__setattr__(self, "payload", _frozen(self.payload))
        missing = [k for k in self.fields if k not in self.payload]
        if missing:
            raise DesiruError(f"{self.type} needs payload keys {missing}", seq=self.seq or None,
                              hint=f"give payload={{{', '.join(repr(k) + ': ...' for k in self.fields)}}}")

    def _stamped(self, seq: int, timestamp: float) -> Event:
        """A copy with the journal's seq and timestamp (payload already frozen and checked: no re-check)."""
        new = object.__new__(type(self))
        new.__dict__.update(path=self.path, payload=self.payload, seq=seq, timestamp=timestamp)
        return new

    @property
    def time(self) -> _dt.datetime:
        """The timestamp as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.timestamp, tz=_dt.timezone.utc)

    def to_edit(self) -> dict[str, Any] | None:
        """The docs/STATE.md edit this event applies, or None for events that change nothing."""
        if self.op is None:
            return None
        edit = {"op": self.op, "path": self.path}
        for k in self.fields:
            edit[k] = self.payload[k]
        return edit

    def to_record(self) -> dict[str, Any]:
        """The plain dict stored on disk (msgpack), with the current schema version."""
        return {
            "type": self.type,
            "schema_version": self.schema_version,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "path": self.path,
            "payload": dict(self.payload),
        }

    def __repr__(self) -> str:
        keys = ", ".join(sorted(self.payload))
        return f"{self.type}(seq={self.seq}, path={self.path!r}, payload keys=[{keys}])"


@dataclass(frozen=True, repr=False)
class ProgramCreated(Event):
    """The whole program state, at the first commit or when the root class changes."""

    type: ClassVar[str] = "ProgramCreated"
    op: ClassVar[str | None] = "program_created"
    fields: ClassVar[tuple[str, ...]] = ("state",)


@dataclass(frozen=True, repr=False)
class ModuleAdded(Event):
    """A module (or nested program, with its name) inserted at ``index`` of its parent."""

    type: ClassVar[str] = "ModuleAdded"
    op: ClassVar[str | None] = "module_added"
    fields: ClassVar[tuple[str, ...]] = ("index", "state")


@dataclass(frozen=True, repr=False)
class ModuleImported(Event):
    """A module added from a file (``payload["source"]``); replays like ModuleAdded."""

    type: ClassVar[str] = "ModuleImported"
    op: ClassVar[str | None] = "module_added"
    fields: ClassVar[tuple[str, ...]] = ("index", "state")


@dataclass(frozen=True, repr=False)
class ModuleRemoved(Event):
    """The module or nested program at ``path`` removed."""

    type: ClassVar[str] = "ModuleRemoved"
    op: ClassVar[str | None] = "module_removed"


@dataclass(frozen=True, repr=False)
class SignatureSet(Event):
    """The module's signature replaced."""

    type: ClassVar[str] = "SignatureSet"
    op: ClassVar[str | None] = "signature_set"
    fields: ClassVar[tuple[str, ...]] = ("signature",)


@dataclass(frozen=True, repr=False)
class DemoAdded(Event):
    """One demo inserted at ``index`` of the module's demos."""

    type: ClassVar[str] = "DemoAdded"
    op: ClassVar[str | None] = "demo_added"
    fields: ClassVar[tuple[str, ...]] = ("index", "demo")


@dataclass(frozen=True, repr=False)
class DemoRemoved(Event):
    """The demo at ``index`` removed."""

    type: ClassVar[str] = "DemoRemoved"
    op: ClassVar[str | None] = "demo_removed"
    fields: ClassVar[tuple[str, ...]] = ("index",)


@dataclass(frozen=True, repr=False)
class DemosReordered(Event):
    """Demos became ``[old[i] for i in order]``."""

    type: ClassVar[str] = "DemosReordered"
    op: ClassVar[str | None] = "demos_reordered"
    fields: ClassVar[tuple[str, ...]] = ("order",)


@dataclass(frozen=True, repr=False)
class ParameterSet(Event):
    """One parameter set to a value."""

    type: ClassVar[str] = "ParameterSet"
    op: ClassVar[str | None] = "parameter_set"
    fields: ClassVar[tuple[str, ...]] = ("key", "value")


@dataclass(frozen=True, repr=False)
class ParameterUnset(Event):
    """One parameter removed."""

    type: ClassVar[str] = "ParameterUnset"
    op: ClassVar[str | None] = "parameter_unset"
    fields: ClassVar[tuple[str, ...]] = ("key",)


@dataclass(frozen=True, repr=False)
class MetadataSet(Event):
    """The metadata dict of the module or program at ``path`` replaced."""

    type: ClassVar[str] = "MetadataSet"
    op: ClassVar[str | None] = "metadata_set"
    fields: ClassVar[tuple[str, ...]] = ("value",)


@dataclass(frozen=True, repr=False)
class ConfigurationSet(Event):
    """The configuration dict of the program at ``path`` replaced."""

    type: ClassVar[str] = "ConfigurationSet"
    op: ClassVar[str | None] = "configuration_set"
    fields: ClassVar[tuple[str, ...]] = ("value",)


@dataclass(frozen=True, repr=False)
class CustomDataSet(Event):
    """The custom_data of the program at ``path`` replaced."""

    type: ClassVar[str] = "CustomDataSet"
    op: ClassVar[str | None] = "custom_data_set"
    fields: ClassVar[tuple[str, ...]] = ("value",)


@dataclass(frozen=True, repr=False)
class CheckpointTagged(Event):
    """A named point in the history (``payload["tag"]``); changes nothing.

    Schema 2 adds ``payload["target"]``: the commit the tag names when that is not the
    event's own commit, and ``payload["moved_from"]`` when the tag pointed elsewhere before.
    """

    type: ClassVar[str] = "CheckpointTagged"
    fields: ClassVar[tuple[str, ...]] = ("tag",)
    schema_version: ClassVar[int] = 2

    @property
    def tag(self) -> str | None:
        """The tag name (None for an unnamed checkpoint)."""
        return self.payload["tag"]


@dataclass(frozen=True, repr=False)
class Committed(Event):
    """Opens a commit of a run: its parent commit's seq (0: none), its state's content hash, its writer.

    The commit's other events are the diff against the parent's state, so a branch from
    any earlier commit costs the size of its own change. A commit group without this event
    (journals of release 0.1.0, events appended by hand on a line) has the commit before it
    as its parent.
    """

    type: ClassVar[str] = "Committed"
    fields: ClassVar[tuple[str, ...]] = ("parent", "hash", "writer")


@dataclass(frozen=True, repr=False)
class ResultsRecorded(Event):
    """Results of a commit (score, metrics, params), beside its state and never inside it.

    ``payload["commit"]`` is the commit's seq (absent: the commit this event closes).
    Several records for one commit merge, later values winning.
    """

    type: ClassVar[str] = "ResultsRecorded"
    fields: ClassVar[tuple[str, ...]] = ("score", "metrics", "params")


@dataclass(frozen=True, repr=False)
class LMResponseRecorded(Event):
    """An LM's answer to one request, kept so a resumed run replays it (desiru.interop.dspy.track).

    ``payload["key"]`` is a hash of the request (model, prompt or messages, the settings that
    change the answer), ``payload["outputs"]`` the answer as the LM client returned it (JSON
    values only), ``payload["model"]`` the model's name. Changes nothing in the program.
    """

    type: ClassVar[str] = "LMResponseRecorded"
    fields: ClassVar[tuple[str, ...]] = ("key", "model", "outputs")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        ProgramCreated, ModuleAdded, ModuleImported, ModuleRemoved, SignatureSet, DemoAdded, DemoRemoved,
        DemosReordered, ParameterSet, ParameterUnset, MetadataSet, ConfigurationSet, CustomDataSet,
        CheckpointTagged, Committed, ResultsRecorded, LMResponseRecorded,
    )
}
#: edit op -> the event type diff output becomes (ModuleImported is never produced by a diff)
EVENT_OF_OP: dict[str, type[Event]] = {
    cls.op: cls for cls in EVENT_TYPES.values() if cls.op is not None and cls is not ModuleImported
}
#: edit op -> (its event type, the payload keys that type needs), for a commit's hot path
_MADE_OF_OP: dict[str, tuple[type[Event], frozenset[str]]] = {
    op: (cls, frozenset(cls.fields)) for op, cls in EVENT_OF_OP.items()
}
#: event type name -> edit op, for the replay fast path that skips building Event objects
OP_OF_TYPE: dict[str, str | None] = {name: cls.op for name, cls in EVENT_TYPES.items()}


migrations.use_event_types(EVENT_TYPES)  # upcasts bring records to these classes' schema_version


@migrations.register_upcaster("CheckpointTagged", 1)
def _tag_names_its_own_commit(record: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 -> 2: a tag of release 0.1.0 names its own seq; schema 2 may name another commit.

    Nothing to change: a schema-2 tag without ``target`` also names its own commit.
    """
    return record



def event_from_edit(edit: Mapping[str, Any], seq: int = 0, timestamp: float = 0.0) -> Event:
    """The typed event of one docs/STATE.md edit."""
    payload = dict(edit)
    op = payload.pop("op", None)
    made = _MADE_OF_OP.get(op) if type(op) is str else None
    if made is None:
        raise DesiruError(f"edit op {op!r} has no event type", hint=f"known ops: {sorted(EVENT_OF_OP)}")
    cls, needs = made
    path = payload.pop("path", "")
    if type(path) is not str or not payload.keys() >= needs:
        return cls(path=path, payload=payload, seq=seq, timestamp=timestamp)  # raises, saying what is wrong
    # what __post_init__ would check holds: build it without the dataclass's init (a commit's hot path)
    ev = object.__new__(cls)
    ev.__dict__.update(path=path, payload=types.MappingProxyType(payload), seq=seq, timestamp=timestamp)
    return ev


def event_from_record(record: Mapping[str, Any], *, path: str | None = None) -> Event:
    """The typed event of a record dict (already upcast to the current schema)."""
    try:
        cls = EVENT_TYPES[record["type"]]
        seq = record["seq"]
        ts = record["timestamp"]
        ev_path = record.get("path", "")
        payload = record.get("payload") or {}
    except (KeyError, TypeError) as exc:
        raise CorruptDataError(f"malformed event record: missing {exc}", path=path,
                               seq=record.get("seq") if isinstance(record, Mapping) else None) from None
    if record.get("schema_version", 1) != cls.schema_version:
        raise CorruptDataError(
            f"{cls.type} has schema version {record.get('schema_version')!r}, this release reads "
            f"{cls.schema_version}", path=path, seq=seq,
            hint="register an upcaster with desiru.serialization.migrations.register_upcaster",
        )
    if not isinstance(payload, Mapping) or not isinstance(seq, int) or not isinstance(ts, (int, float)):
        raise CorruptDataError("malformed event record", path=path, seq=seq if isinstance(seq, int) else None)
    return cls(path=ev_path, payload=payload, seq=seq, timestamp=float(ts))


__all__ = [
    "EVENT_TYPES",
    "CheckpointTagged",
    "Committed",
    "ConfigurationSet",
    "CustomDataSet",
    "DemoAdded",
    "DemoRemoved",
    "DemosReordered",
    "Event",
    "LMResponseRecorded",
    "MetadataSet",
    "ModuleAdded",
    "ModuleImported",
    "ModuleRemoved",
    "ParameterSet",
    "ParameterUnset",
    "ProgramCreated",
    "ResultsRecorded",
    "SignatureSet",
    "event_from_edit",
    "event_from_record",
]
