"""Document formats: json (readable), yaml (safe only) and msgpack (binary).

Each turns a document tree (the envelope dict holding a state tree) into bytes and
back, and ``detect`` names the format from the bytes alone. JSON has no bytes and
no NaN/Infinity, so those are written as tagged objects (docs/FORMAT.md):
``{"$bytes": "<base64>"}``, ``{"$float": "nan" | "inf" | "-inf"}``, and a user dict
that itself has exactly one key starting with "$" is wrapped as ``{"$dict": [[key, value]]}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from typing import Any

import yaml

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError, FormatError, SerializationError

FORMATS = ("json", "yaml", "msgpack")
SUFFIXES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".msgpack": "msgpack", ".mpk": "msgpack"}
DEFAULT_FORMAT = "msgpack"
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, with NaN as Python's own quiet NaN (PyYAML builds -nan as inf/inf),
    so that a state's canonical bytes, and so its checksum, are the same in every format."""

    def construct_yaml_float(self, node: yaml.Node) -> float:
        value = super().construct_yaml_float(node)
        return math.nan if math.isnan(value) else value


    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key given twice: which value wins would be the reader's guess
        (two documents joined into one file read as one mapping whose second half wins)."""
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue  # an unhashable key: the base class refuses it
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} appears twice in a "
                                                            f"mapping", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_SafeLoader.add_constructor("tag:yaml.org,2002:float", _SafeLoader.construct_yaml_float)


def normalize_format(fmt: str | None) -> str | None:
    """Validate a ``format=`` argument ("yml" and "mpk" are accepted aliases)."""
    if fmt is None:
        return None
    name = {"yml": "yaml", "mpk": "msgpack", "mp": "msgpack"}.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    return name


def format_from_suffix(path: str | os.PathLike[str]) -> str | None:
    """The format a file name asks for (".json", ".yaml", ".msgpack", ...), ignoring .zst/.gz."""
    name = os.fspath(path).lower()
    for comp in (".zst", ".zstd", ".gz"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    return SUFFIXES.get(os.path.splitext(name)[1])


# -- detection -----------------------------------------------------------------------------
#: what to do about a file that is not desiru's (the CLI drops nothing of it: no command is named)
NOT_DESIRU_HINT = ("desiru reads the documents and journals it writes (json, yaml, msgpack; zstd or gzip; "
                   "encrypted) and DSPy's module.save() JSON via desiru.interop.dspy.read_dspy_save "
                   "or `desiru convert`")

#: leading bytes of common files that are not desiru's, so they are named instead of called damaged
_FOREIGN = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF-", "a PDF document"), (b"PK\x03\x04", "a zip archive (or a file format built on zip)"),
    (b"\x7fELF", "an executable (ELF)"), (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x80\x04\x95", "a Python pickle (desiru never loads pickles)"),
    (b"\x80\x05\x95", "a Python pickle (desiru never loads pickles)"),
)


def _str_marker(byte: int) -> bool:
    """True for the first byte of a msgpack str (fixstr, str8/16/32)."""
    return 0xA0 <= byte <= 0xBF or byte in (0xD9, 0xDA, 0xDB)


def detect(data: bytes, path: str | None = None) -> str:
    """Name the format of a (decompressed, decrypted) document from its bytes."""
    if not data:
        raise CorruptDataError("the file is empty", path=path, hint="it was never written or was truncated to 0 bytes")
    for magic, what in _FOREIGN:
        if data.startswith(magic):
            raise FormatError(f"not a desiru file: it is {what}", path=path, hint=NOT_DESIRU_HINT)
    first = data[0]
    if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF):
        key_at = 1 if first <= 0x8F else 3 if first == 0xDE else 5
        if first != 0x80 and len(data) > key_at and not _str_marker(data[key_at]):
            # a desiru msgpack document is a map keyed by str; this first byte only looked like one
            raise FormatError("not a desiru file: the bytes are neither json, yaml, msgpack, zstd, gzip nor a "
                              "desiru container", path=path, hint=NOT_DESIRU_HINT)
        return "msgpack"
    head = data[:4096].lstrip(b" \t\r\n")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip(b" \t\r\n")
    if head.startswith(b"{"):
        return "json"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = head[: exc.start]
        if exc.start >= 16 and all(b >= 0x20 or b in b"\t\r\n" for b in prefix):
            return "yaml"  # readable text with a bad byte further on: a damaged yaml file, said with its offset
        if exc.start < len(head) - 4:  # not just a character cut at the 4 KiB boundary
            raise FormatError(
                "cannot tell the format: the bytes are neither json, yaml, msgpack, zstd, gzip nor a desiru "
                "container",
                path=path,
                offset=exc.start,
                hint=NOT_DESIRU_HINT,
            ) from None
        text = head[: exc.start].decode("utf-8")
    if any(ch < " " and ch not in "\t\r\n" for ch in text):
        raise FormatError("cannot tell the format: binary data that is not a known container", path=path,
                          hint=NOT_DESIRU_HINT)
    return "yaml"


# -- the state-tree check and json tagging ----------------------------------------------------
def _check_int(value: int, where: str) -> None:
    if not INT_MIN <= value <= INT_MAX:
        raise SerializationError(
            f"integer {value} at {where or 'top level'} does not fit in 64 bits",
            hint="store it as a string, or split it",
        )


def to_portable(value: Any, *, json_tags: bool, where: str = "") -> Any:
    """Check that ``value`` is a state tree; with ``json_tags`` also tag what JSON cannot hold."""
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is int:
        _check_int(value, where)
        return value
    if t is float:
        if json_tags and not math.isfinite(value):
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise SerializationError(
                    f"map key {k!r} at {where or 'top level'} is a {type(k).__name__}; state trees use str keys",
                    hint="convert the key to a string",
                )
            out[str(k)] = to_portable(v, json_tags=json_tags, where=f"{where}.{k}" if where else k)
        if json_tags and len(out) == 1 and next(iter(out)).startswith("$"):
            # pairs, not a map: json.loads hooks run inside-out and must not see a tag here
            return {"$dict": [[k, v] for k, v in out.items()]}
        return out
    if isinstance(value, (list, tuple)):
        return [to_portable(v, json_tags=json_tags, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return {"$bytes": base64.b64encode(raw).decode("ascii")} if json_tags else raw
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        _check_int(int(value), where)
        return int(value)
    if isinstance(value, float):
        return to_portable(float(value), json_tags=json_tags, where=where)
    if isinstance(value, str):
        return str(value)
    raise SerializationError(
        f"cannot save a value of type {type(value).__name__} at {where or 'top level'}",
        hint="state trees hold dict, list, str, int, float, bool, None and bytes; convert it, "
        "or override custom_serialization()",
    )


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((k, v),) = obj.items()
        if k == "$bytes" and isinstance(v, str):
            try:
                return base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                raise CorruptDataError(f"invalid base64 in a $bytes value: {v[:40]!r}") from None
        if k == "$float" and isinstance(v, str) and v in _FLOATS:
            return _FLOATS[v]
        if k == "$dict" and isinstance(v, list) and len(v) == 1 and isinstance(v[0], list) and len(v[0]) == 2:
            return {str(v[0][0]): v[0][1]}
        if k in ("$bytes", "$float", "$dict"):  # writers wrap every other one-key "$" map in $dict
            raise CorruptDataError(f"malformed {k} value {v!r:.60}", hint="the file was altered or damaged")
    return obj


def _check_loaded(value: Any, path: str | None, where: str = "") -> None:
    """Reject what a YAML file may build that is no state tree (dates, sets, non-str keys)."""
    t = type(value)
    if t in (str, int, float, bool, bytes) or value is None:
        return
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise CorruptDataError(f"map key {k!r} at {where or 'top level'} is not a string", path=path)
            _check_loaded(v, path, f"{where}.{k}" if where else k)
        return
    if t is list:
        for i, v in enumerate(value):
            _check_loaded(v, path, f"{where}[{i}]")
        return
    raise CorruptDataError(f"a {t.__name__} at {where or 'top level'} is not allowed in a desiru file", path=path)


#: deepest nesting a yaml document may have (the msgpack decoder's limit too)
MAX_DEPTH = 512


def _check_yaml_events(data: bytes, path: str | None) -> None:
    """Refuse yaml that the loader would choke on, from its flat event stream.

    PyYAML's C composer recurses once per nesting level with no limit (60 KB of "[" crash
    the process), and aliases let a small file stand for an exponential tree. desiru never
    writes either, so a document with more than MAX_DEPTH levels or any alias is refused.
    """
    depth = 0
    for event in yaml.parse(data, Loader=_SafeLoader):
        kind = type(event)
        if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            depth += 1
            if depth > MAX_DEPTH:
                raise CorruptDataError(
                    f"the yaml document is nested deeper than {MAX_DEPTH} levels",
                    path=path,
                    offset=event.start_mark.index if event.start_mark else None,
                )
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            depth -= 1
        elif kind is yaml.AliasEvent:
            raise CorruptDataError(
                "the yaml document uses an alias (*name); desiru files never do",
                path=path,
                offset=event.start_mark.index if event.start_mark else None,
                hint="write the value out in full",
            )


# -- encode / decode -----------------------------------------------------------------------------
def encode(tree: dict[str, Any], fmt: str) -> bytes:
    """The bytes of a document tree in ``fmt``."""
    if fmt == "msgpack":
        return bytes(_engine.packb(tree))
    if fmt == "json":
        text = json.dumps(to_portable(tree, json_tags=True), indent=2, ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8") + b"\n"
    if fmt == "yaml":
        portable = to_portable(tree, json_tags=False)
        try:
            text = yaml.dump(portable, Dumper=_SafeDumper, sort_keys=False, allow_unicode=True, width=100)
        except yaml.YAMLError as exc:
            raise SerializationError(f"cannot write yaml: {exc}") from None
        return text.encode("utf-8")
    raise FormatError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def decode(data: bytes, fmt: str, path: str | None = None) -> Any:
    """The document tree in ``data``; any malformation is a CorruptDataError with where it is."""
    if fmt == "msgpack":
        return _engine.unpackb(data)
    if fmt == "json":
        try:
            return json.loads(data.decode("utf-8"), object_hook=_untag)
        except UnicodeDecodeError as exc:
            raise CorruptDataError("the json document is not valid UTF-8", path=path, offset=exc.start) from None
        except json.JSONDecodeError as exc:
            raise CorruptDataError(f"invalid json: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                   path=path, offset=exc.pos,
                                   hint="the file is damaged or truncated; restore it from a backup") from None
        except RecursionError:
            raise CorruptDataError("the json document is nested too deeply", path=path) from None
        except ValueError as exc:  # e.g. an integer past CPython's digit limit (sys.set_int_max_str_digits)
            raise CorruptDataError(f"invalid json: {exc}", path=path,
                                   hint="desiru files hold 64-bit integers; the file was altered or damaged") from None
    if fmt == "yaml":
        try:
            _check_yaml_events(data, path)
            tree = yaml.load(data, Loader=_SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            raise CorruptDataError(
                f"invalid or unsafe yaml: {exc.problem or exc}",
                path=path,
                offset=mark.index if mark is not None else None,
                hint="desiru reads plain yaml only; tags such as !!python/... are refused, never executed",
            ) from None
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
            offset = getattr(exc, "position", None)  # yaml's ReaderError says where the bad byte is
            raise CorruptDataError(f"invalid yaml: {exc}", path=path, offset=offset,
                                   hint="the file is damaged; restore it from a backup") from None
        except RecursionError:
            raise CorruptDataError("the yaml document is nested too deeply", path=path) from None
        _check_loaded(tree, path)
        return tree
    raise DesiruError(f"unknown format {fmt!r}")
