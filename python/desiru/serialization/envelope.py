"""The envelope every document carries around its state tree.

Key order is fixed so that the format and its version come first: a reader checks
the version before it interprets anything else (docs/FORMAT.md).
"""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from typing import Any

import msgpack

from desiru import _engine
from desiru._version import __version__ as LIBRARY_VERSION
from desiru.errors import CorruptDataError, FormatError, IncompatibleVersionError
from desiru.serialization.version import CURRENT_VERSION, Version

FORMAT_NAME = "desiru"
CHECKSUM_ALGORITHM = "xxh3-128"
KINDS = ("program", "module")
#: the first format whose header is covered by ``header_checksum`` (docs/FORMAT.md, docs/VERSIONING.md)
HEADER_CHECKSUM_SINCE = Version("2.1.0")
HEADER_CHECKSUM = "header_checksum"


def checksum_of(state: Any) -> str:
    """``"xxh3-128:<hex>"`` of the canonical msgpack encoding of ``state``."""
    return f"{CHECKSUM_ALGORITHM}:{_engine.content_hash(state).hex()}"


def header_checksum_of(tree: dict[str, Any]) -> str:
    """``"xxh3-128:<hex>"`` of the canonical msgpack of every header field: all but ``state`` and
    ``header_checksum`` itself (the state is covered through ``checksum``, which is a header field)."""
    header = {k: v for k, v in tree.items() if k not in ("state", HEADER_CHECKSUM)}
    return f"{CHECKSUM_ALGORITHM}:{_engine.content_hash(header).hex()}"


def check_header(tree: dict[str, Any], version: Version, path: str | None) -> None:
    """CorruptDataError unless the header is what its writer wrote: ``header_checksum`` holds, and
    is there in every file of format 2.1.0 or later (a flipped key or value, a wrong "written by")."""
    want = tree.get(HEADER_CHECKSUM)
    if want is None and version < HEADER_CHECKSUM_SINCE:
        return  # written before the header was covered
    if not isinstance(want, str) or not want.startswith(f"{CHECKSUM_ALGORITHM}:"):
        raise CorruptDataError(
            f"the document's header has no valid {HEADER_CHECKSUM} (found {want!r:.60}); format {version} "
            f"files carry one (since {HEADER_CHECKSUM_SINCE}; this release writes {CURRENT_VERSION})", path=path,
            hint="the file was altered or damaged; restore it from a backup")
    try:
        got = header_checksum_of(tree)
    except Exception:  # a header value no state tree can hold: not what a writer wrote
        got = None
    if got != want:
        raise CorruptDataError(
            f"header checksum mismatch: the file says {want}, its header fields hash to {got}",
            path=path, hint="a header field (a name or a value) was altered or damaged; restore it from a backup")


def build(
    state: dict[str, Any], kind: str, *, extra: dict[str, Any] | None = None, checksum: str | None = None,
    module_table: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The document tree for ``state``: header fields first, the state last.

    ``checksum`` may be given when the caller already has the canonical bytes of the state;
    ``module_table`` is the table of a msgpack program (only msgpack has byte ranges).
    """
    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": str(CURRENT_VERSION),
        "kind": kind,
        "class": state.get("class"),
        "library_version": LIBRARY_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "python_version": platform.python_version(),
    }
    for k, v in (extra or {}).items():  # fields a newer minor wrote, kept as they were
        if k not in (HEADER_CHECKSUM, "module_table"):
            header.setdefault(k, v)
    if module_table is not None:
        header["module_table"] = module_table
    header["checksum"] = checksum or checksum_of(state)
    header[HEADER_CHECKSUM] = header_checksum_of(header)
    header["state"] = state
    return header


@dataclass
class Document:
    """A loaded document: its kind, state, and what the file said about itself."""

    kind: str
    state: dict[str, Any]
    version: Version
    header: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    compression: str | None = None
    encrypted: bool = False
    path: str | None = None
    key_id: str | None = None


def scan_header(data: bytes) -> tuple[Version | None, int | None]:
    """One pass over a msgpack document's header entries: its format version, and where the
    value of "state" starts (None for either when not found).

    The version is read before anything else is decoded. A desiru writer puts "state" last
    and encodes it canonically, so ``data[offset:]`` are exactly the bytes the checksum
    covers: verifying is then one XXH3 pass, not a re-encode.
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 16, strict_map_key=False)
    unpacker.feed(bytes(data[: 1 << 16]))
    version = None
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "state":
                return version, int(unpacker.tell())
            if key in ("format_version", "version") and version is None:
                value = unpacker.unpack()
                version = Version.parse(value) if isinstance(value, str) else None
            else:
                unpacker.skip()
    except Exception:  # the full decode reports malformed bytes with their offset
        pass
    return version, None


def peek_version(data: bytes, fmt: str, path: str | None = None) -> Version | None:
    """The format version of a msgpack document, read from its header entries only."""
    return scan_header(data)[0] if fmt == "msgpack" else None


def header_version(tree: Any, path: str | None) -> Version:
    """The format version a decoded document claims."""
    if not isinstance(tree, dict):
        raise FormatError(f"not a desiru document: the top level is a {type(tree).__name__}", path=path)
    raw = tree.get("format_version", tree.get("version") if "program" in tree else None)
    if raw is None:
        if looks_like_dspy_save(tree):
            raise FormatError("this is a DSPy save file (dspy's module.save('x.json')), not a desiru document",
                              path=path, hint="read it with desiru.interop.dspy.read_dspy_save(path), or "
                              "convert it: `desiru convert FILE program.json`")
        raise FormatError("not a desiru document: it has no format_version", path=path,
                          hint="this file was not written by desiru")
    try:
        return Version.parse(raw)
    except Exception:
        raise IncompatibleVersionError(f"the file's format version {raw!r} is not a version", path=path) from None


def looks_like_dspy_save(tree: Any) -> bool:
    """True for the JSON object dspy's ``module.save("x.json")`` writes: predictor states (with
    ``demos``) keyed by name, or one predictor's state."""
    if not isinstance(tree, dict) or "format_version" in tree:
        return False
    if isinstance(tree.get("demos"), list):
        return True
    return any(isinstance(v, dict) and isinstance(v.get("demos"), list) for v in tree.values())


def check_newer(version: Version, path: str | None) -> None:
    """A newer major may have changed everything after the version: refuse before reading on."""
    if version.major > CURRENT_VERSION.major:
        raise IncompatibleVersionError(
            f"the file has format {version}, newer than this release reads ({CURRENT_VERSION})",
            path=path,
            hint="upgrade desiru to read it",
        )
