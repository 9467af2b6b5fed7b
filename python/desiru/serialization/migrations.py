"""Bring old files forward: document migrations and event upcasters.

Documents: ``@register_migration("1.0.0", "1.1.0")`` registers a function from one
format version to the next, on the plain document tree. ``upgrade_document`` runs
the chain from the file's version to ``CURRENT_VERSION`` in order; a file of a
newer minor of our major loads as it is, with a ``NewerFormatWarning``.

Events: ``@register_upcaster("DemoAdded", 1)`` registers a function from schema 1
to schema 2 of one event type, on the plain record dict. ``upcast_event`` runs the
chain from the record's ``schema_version`` to the current schema of its type
(declared by the journal's events module with ``use_event_types``).

A gap in either chain, a newer major, or a newer event schema raises
IncompatibleVersionError naming the file's version, ours and the missing step.
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from desiru.errors import DesiruError, IncompatibleVersionError
from desiru.serialization.version import CURRENT_VERSION, NewerFormatWarning, Version

Tree = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

#: from-version -> (to-version, fn); each step moves a document tree one version forward
_MIGRATIONS: dict[Version, tuple[Version, Callable[[Tree], Tree]]] = {}
#: event type -> {from-schema: fn}; each upcaster moves a record from schema n to n + 1
_UPCASTERS: dict[str, dict[int, Callable[[Tree], Tree]]] = {}

#: header fields this release writes (envelope.build); any other header field is kept as it was
KNOWN_HEADER_FIELDS = frozenset({
    "format", "format_version", "kind", "class", "library_version", "created_at", "python_version",
    "checksum", "header_checksum", "module_table", "state",
})


# -- documents -----------------------------------------------------------------------------------
def register_migration(from_version: str | Version, to_version: str | Version) -> Callable[[F], F]:
    """Register ``fn(tree) -> tree`` that turns a document of ``from_version`` into ``to_version``.

    The function gets the decoded document tree (a plain dict, its own copy) and returns
    the tree of the next version; the runner stamps the new version on it afterwards.
    """
    start, end = Version.parse(str(from_version)), Version.parse(str(to_version))
    if not start < end:
        raise DesiruError(f"a migration must go forward: {start} -> {end}",
                          hint="register it from the older version to the newer one")
    if end > CURRENT_VERSION:
        raise DesiruError(f"a migration to {end} goes past the current format {CURRENT_VERSION}")

    def decorate(fn: F) -> F:
        known = _MIGRATIONS.get(start)
        if known is not None and known[1] is not fn:
            raise DesiruError(f"a migration from format {start} is already registered (to {known[0]})",
                              hint="each version has one next step; change that one")
        _MIGRATIONS[start] = (end, fn)
        return fn

    return decorate


@register_migration("2.0.0", "2.1.0")
def _header_under_checksum(tree: Tree) -> Tree:
    """2.1.0 covers the header by ``header_checksum`` (written on every save); nothing else changed."""
    tree.pop("header_checksum", None)  # a 2.0.0 file never had one; the next save writes it anew
    return tree


@register_migration("2.1.0", "2.2.0")
def _module_table(tree: Tree) -> Tree:
    """2.2.0 msgpack programs carry ``module_table`` (lazy open, docs/FORMAT.md); the next msgpack save
    writes it. The state is unchanged: a 2.1.0 file loads eagerly, as it always did."""
    tree.pop("module_table", None)  # a 2.1.0 file never had one
    return tree


@register_migration("2.2.0", "2.3.0")
def _framed_and_outlined(tree: Tree) -> Tree:
    """2.3.0 module tables carry each module's outline, and compressed or encrypted programs are written
    in per-module frames (docs/FORMAT.md); the state is unchanged, the next save writes both."""
    tree.pop("module_table", None)  # a 2.2.0 table has no outlines: the next save writes a new one
    return tree


def migration_chain(version: Version | str) -> list[tuple[Version, Version]]:
    """The steps that bring ``version`` to the current format, in order (empty when none are needed)."""
    steps, _ = _plan(Version.parse(str(version)))
    return [(start, end) for start, end, _ in steps]


def _plan(version: Version) -> tuple[list[tuple[Version, Version, Callable[[Tree], Tree]]], Version]:
    """The steps from ``version`` as far as the registry reaches, and the version where they end."""
    steps: list[tuple[Version, Version, Callable[[Tree], Tree]]] = []
    at = version
    while at < CURRENT_VERSION:
        step = _MIGRATIONS.get(at)
        if step is None:  # a patch release of a registered version migrates like that version
            step = next((s for v, s in sorted(_MIGRATIONS.items(), key=lambda kv: kv[0], reverse=True)
                         if (v.major, v.minor) == (at.major, at.minor) and v <= at < s[0]), None)
        if step is None:
            break
        steps.append((at, step[0], step[1]))
        at = step[0]
    return steps, at


@dataclass(frozen=True)
class MigrationContext:
    """What a running migration may want to know beyond the tree: the file, its original version,
    and whether checksums are checked (``load_document(verify=False)`` turns that off)."""

    path: str | None = None
    original: Version | None = None
    verify: bool = True


_CONTEXT: contextvars.ContextVar[MigrationContext | None] = contextvars.ContextVar(
    "desiru_migration_context", default=None)


def current_context() -> MigrationContext:
    """The context of the migration chain now running (defaults outside of one)."""
    return _CONTEXT.get() or MigrationContext()


def upgrade_document(tree: Tree, version: Version, path: str | None, *, verify: bool = True) -> Tree:
    """The document tree brought to the current format, or IncompatibleVersionError naming the gap.

    A newer minor (or patch) of our major comes back unchanged, fields and all: a newer
    minor with a NewerFormatWarning. ``verify=False`` skips checks of legacy checksums.
    """
    if version.major > CURRENT_VERSION.major:
        raise IncompatibleVersionError(
            f"the file has format {version}, newer than this release reads ({CURRENT_VERSION})",
            path=path, hint="upgrade desiru to read it",
        )
    if version >= CURRENT_VERSION:
        if (version.major, version.minor) != (CURRENT_VERSION.major, CURRENT_VERSION.minor):
            warnings.warn(
                f"{path or 'the document'} has format {version}, a newer minor than this release's "
                f"{CURRENT_VERSION}: it loads, and the fields this release does not know are kept and "
                "written back unchanged; upgrade desiru to use them",
                NewerFormatWarning,
                stacklevel=5,
            )
        return tree
    steps, reached = _plan(version)
    if reached.major != CURRENT_VERSION.major:
        raise IncompatibleVersionError(
            f"the file has format {version} and this release reads {CURRENT_VERSION}, but the migration "
            f"chain stops at {reached} (missing step: {reached} -> the next version towards "
            f"{CURRENT_VERSION})",
            path=path,
            hint="read it with the release that wrote it and save it again, or register the missing step "
            "with desiru.serialization.migrations.register_migration",
        )
    token = _CONTEXT.set(MigrationContext(path, version, verify))
    try:
        for start, end, fn in steps:
            try:
                out = fn(tree)
            except DesiruError as exc:
                if exc.path is None and path is not None:  # migrations see trees, not files: say which file
                    exc.path = path
                    exc.args = (exc._render(),)
                raise
            if not isinstance(out, dict):
                raise DesiruError(
                    f"the migration {start} -> {end} returned a {type(out).__name__}, not a dict",
                    path=path, hint="a migration returns the document tree")
            tree = out
            _stamp(tree, end)
    finally:
        _CONTEXT.reset(token)
    return tree


def _stamp(tree: Tree, version: Version) -> None:
    """Write the version a step produced into the tree (ours: format_version; legacy: version)."""
    if "format_version" in tree or "version" not in tree:
        tree["format_version"] = str(version)
    else:
        tree["version"] = str(version)


def unknown_header_fields(header: dict[str, Any]) -> dict[str, Any]:
    """The header fields of a loaded document that this release does not write itself.

    A program loaded from a file keeps them and writes them back when saved again
    (newer-minor fields, ``migrated_from``), so nothing a newer release wrote is lost.
    """
    return {k: v for k, v in header.items() if k not in KNOWN_HEADER_FIELDS}


# -- events ---------------------------------------------------------------------------------------
def register_upcaster(event_type: str, from_schema: int) -> Callable[[F], F]:
    """Register ``fn(record) -> record`` bringing ``event_type`` records from schema n to n + 1.

    The record is the plain dict the journal stored (its own copy); the runner sets its
    ``schema_version`` to n + 1 afterwards.
    """
    if not isinstance(event_type, str) or not event_type:
        raise DesiruError(f"event type must be a non-empty string, got {event_type!r}")
    if isinstance(from_schema, bool) or not isinstance(from_schema, int) or from_schema < 0:
        raise DesiruError(f"schema versions are integers >= 0, got {from_schema!r}")

    def decorate(fn: F) -> F:
        steps = _UPCASTERS.setdefault(event_type, {})
        known = steps.get(from_schema)
        if known is not None and known is not fn:
            raise DesiruError(f"an upcaster for {event_type} from schema {from_schema} is already registered")
        steps[from_schema] = fn
        return fn

    return decorate


#: event type -> its class (with ``schema_version``); the journal declares its types through
#: ``use_event_types`` when its events module is imported (this layer never imports the journal)
_EVENT_TYPES: Mapping[str, Any] = {}


def use_event_types(types: Mapping[str, Any]) -> None:
    """Declare the event types whose current schema ``upcast_event`` brings records to (the mapping
    is kept, not copied: types added to it later are seen)."""
    global _EVENT_TYPES
    _EVENT_TYPES = types


def current_schema_version(event_type: str) -> int | None:
    """The schema_version this release writes for ``event_type``, or None when it is not a known type."""
    cls = _EVENT_TYPES.get(event_type)
    return None if cls is None else int(cls.schema_version)


def upcast_event(record: Tree, *, target: int | None = None) -> Tree:
    """The record brought to the current schema of its event type (``target`` overrides it).

    Records of a type this release does not know come back unchanged (the journal
    reports them); a newer schema than ours, or a gap in the chain, raises
    IncompatibleVersionError naming the event type, seq and both versions.
    """
    if not isinstance(record, dict):
        raise IncompatibleVersionError(f"an event record must be a mapping, got {type(record).__name__}")
    event_type = record.get("type")
    seq = record.get("seq") if isinstance(record.get("seq"), int) else None
    want = target
    if want is None and isinstance(event_type, str):
        want = current_schema_version(event_type)
    if want is None:
        return record
    have = record.get("schema_version", 1)
    if isinstance(have, bool) or not isinstance(have, int) or have < 0:
        raise IncompatibleVersionError(f"the {event_type} event has an invalid schema_version {have!r}",
                                       seq=seq)
    if have > want:
        raise IncompatibleVersionError(
            f"the {event_type} event has schema {have}, newer than this release reads ({want})",
            seq=seq, hint="upgrade desiru to read this journal",
        )
    steps = _UPCASTERS.get(str(event_type), {})
    out = record
    while have < want:
        fn = steps.get(have)
        if fn is None:
            raise IncompatibleVersionError(
                f"the {event_type} event has schema {record.get('schema_version', 1)} and this release "
                f"reads {want}, but no upcaster from schema {have} is registered "
                f"(missing step: {have} -> {have + 1})",
                seq=seq,
                hint="register one with desiru.serialization.migrations.register_upcaster",
            )
        nxt = fn(dict(out))
        if not isinstance(nxt, dict):
            raise DesiruError(f"the {event_type} upcaster from schema {have} returned a {type(nxt).__name__}",
                              seq=seq, hint="an upcaster returns the record dict")
        have += 1
        nxt["schema_version"] = have
        out = nxt
    return out

