"""Pure-Python twin of the Rust codec (``rust/src/codec``, ``rust/src/py/encode.rs``).

Bytes come from the ``msgpack`` package (the reference the Rust codec matches
byte for byte). What ``msgpack`` does not check by itself (state-tree types,
the depth limit, str-only map keys, ext types) is checked here, and errors
carry the same messages, paths and offsets as the Rust extension: on any
failure a slow, exact pass (``_Scanner`` for bytes, ``_walk`` for objects)
finds the first problem the way the Rust code does.
"""

from __future__ import annotations

import hashlib
import operator
from typing import Any

import msgpack
import xxhash

from desiru.errors import CorruptDataError, SerializationError

#: Deepest nesting of containers (the root container is depth 1), as in Rust.
MAX_DEPTH = 512
#: Largest ``max_depth`` ``unpackb`` accepts (the msgpack package's own limit).
HARD_MAX_DEPTH = 1024
#: Longest str/bin/array/map msgpack can describe.
MAX_LEN = 2**32 - 1

CORRUPT_HINT = "the bytes are damaged, truncated or not a desiru msgpack document; restore them from a good copy"
UNSERIALIZABLE_HINT = (
    "a state tree holds only dict (str keys), list, tuple, str, int, float, bool, None and bytes; "
    "convert the value (e.g. str() it or make it a dict) before saving"
)

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
_BYTES_LIKE = (bytes, bytearray, memoryview)


# ----------------------------------------------------------------- encoding


class _Bad(Exception):
    """An encoding failure unwinding to the root, collecting its path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.rev_path: list[tuple[str, Any]] = []


def _short_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = "<unprintable>"
    return text[:57] + "..." if len(text) > 60 else text


def _key_seg(key: Any) -> tuple[str, Any]:
    if isinstance(key, str):
        try:
            key.encode("utf-8")
            return ("key", str(key))
        except UnicodeEncodeError:
            pass
    return ("key", f"[{_short_repr(key)}]")


def _render_path(rev_path: list[tuple[str, Any]]) -> str:
    path = ""
    for kind, seg in reversed(rev_path):
        if kind == "index":
            path += f"[{seg}]"
        elif not path:
            path += seg
        else:
            path += "." + seg
    return path


def _unserializable(bad: _Bad) -> SerializationError:
    path = _render_path(bad.rev_path)
    where = f"at {path}" if path else "at the root of the tree"
    return SerializationError(f"{bad.message} {where}", hint=UNSERIALIZABLE_HINT)


def _check_str(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad("a str holds lone surrogates and cannot be encoded as UTF-8") from None


def _check_depth(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Bad(f"containers nest deeper than {MAX_DEPTH} levels (is there a cycle?)")


def _walk(obj: Any, depth: int, canonical: bool, full: bool) -> Any:
    """Check ``obj`` (the same checks, in the same order, as the Rust encoder) and
    return what msgpack should pack: ``obj`` itself, or with ``canonical`` a copy
    with sorted dicts. ``full`` adds the checks msgpack makes on its own (lone
    surrogates, int range), used to name the first error exactly. One frame per
    level, so 512 levels stay within Python's recursion limit."""
    t = type(obj)
    if t is str or (t not in _SCALARS and isinstance(obj, str)):
        if full:
            _check_str(obj)
        return obj
    if t is bool or obj is None:
        return obj
    if t is int or (t not in _SCALARS and isinstance(obj, int)):
        if full and not _INT_MIN <= obj <= _INT_MAX:
            raise _Bad(f"int {_short_repr(obj)} is outside msgpack's range [-2**63, 2**64-1]")
        return obj
    if t is float or t is bytes or isinstance(obj, (float, bytes, bytearray)):
        return obj
    if isinstance(obj, memoryview):
        if not obj.c_contiguous:
            raise _Bad("a memoryview that is not C-contiguous cannot be written (pass bytes(view))")
        return obj
    # the fast path skips children needing no check: plain scalars (str and int
    # only when not in the full pass)
    skip = _SCALARS if not full else _SCALARS - {str, int}
    # tuple subclasses are refused: msgpack packs its ExtType (a namedtuple) as an ext.
    # Subclasses of list and dict are read through the base class (their stored
    # items, as the Rust encoder does), never through overridden methods.
    if t is list or t is tuple or isinstance(obj, list):
        depth += 1
        _check_depth(depth)
        items = obj if t is list or t is tuple else list.copy(obj)
        out: list[Any] | None = [] if canonical or items is not obj else None
        for i, item in enumerate(items):
            if type(item) in skip:
                new = item
            else:
                try:
                    new = _walk(item, depth, canonical, full)
                except _Bad as bad:
                    bad.rev_path.append(("index", i))
                    raise
            if out is None and new is not item:
                out = list(items[:i])
            if out is not None:
                out.append(new)
        return obj if out is None else out
    if t is dict or isinstance(obj, dict):
        depth += 1
        _check_depth(depth)
        plain = obj if t is dict else dict(dict.items(obj))
        if not canonical:
            changed: dict[Any, Any] | None = None if plain is obj else {}
            for i, (key, value) in enumerate(plain.items()):
                if type(key) not in skip:
                    try:
                        _walk(key, depth, False, full)  # keys are hashable: nothing to rebuild
                    except _Bad as bad:
                        bad.rev_path.append(_key_seg(key))
                        raise
                if type(value) in skip:
                    new = value
                else:
                    try:
                        new = _walk(value, depth, False, full)
                    except _Bad as bad:
                        bad.rev_path.append(_key_seg(key))
                        raise
                if changed is None and new is not value:
                    changed = dict(list(plain.items())[:i])
                if changed is not None:
                    changed[key] = new
            return obj if changed is None else changed
        for key in plain:
            if not isinstance(key, str):
                bad = _Bad(
                    f"a dict key of type '{type(key).__name__}' cannot be encoded canonically: "
                    "state-tree keys must be str"
                )
                bad.rev_path.append(_key_seg(key))
                raise bad
            try:
                _check_str(key)
            except _Bad as bad:
                bad.rev_path.append(_key_seg(key))
                raise
        sorted_dict = {}
        # UTF-8 byte order, as in Rust (equal to code point order for exact str)
        for key in sorted(plain) if t is dict else sorted(plain, key=str.encode):
            value = plain[key]
            name = str.__str__(key)
            if type(value) in skip:
                sorted_dict[name] = value
                continue
            try:
                sorted_dict[name] = _walk(value, depth, True, full)
            except _Bad as bad:
                bad.rev_path.append(("key", name))
                raise
        return sorted_dict
    raise _Bad(f"cannot serialize a value of type '{t.__name__}'")


def packb(obj: Any, canonical: bool = False) -> bytes:
    """msgpack encoding of a state tree, byte-identical to
    ``msgpack.packb(obj, use_bin_type=True)``; ``canonical`` sorts map keys."""
    if type(canonical) is not bool:  # as the Rust engine: a bool, not a truthy value
        raise TypeError(f"argument 'canonical': '{type(canonical).__name__}' object cannot be converted to 'PyBool'")
    try:
        tree = _walk(obj, 0, canonical, full=False)
    except _Bad:
        tree = None  # the exact pass below names the first error
    else:
        try:
            return msgpack.packb(tree, use_bin_type=True)
        except (TypeError, ValueError, OverflowError, UnicodeEncodeError, BufferError):
            pass
    try:
        _walk(obj, 0, canonical, full=True)
    except _Bad as bad:
        raise _unserializable(bad) from None
    # msgpack failed on something our checks do not cover (e.g. a length past 2**32-1)
    try:
        msgpack.packb(tree, use_bin_type=True)
    except Exception as exc:
        raise SerializationError(f"cannot serialize the tree: {exc}", hint=UNSERIALIZABLE_HINT) from None
    raise SerializationError("cannot serialize the tree", hint=UNSERIALIZABLE_HINT)  # pragma: no cover


def content_hash(obj: Any) -> bytes:
    """xxh3-128 (16 big-endian bytes) of the canonical encoding of a state tree."""
    return xxhash.xxh3_128_digest(packb(obj, canonical=True))


def _byte_arg(func: str, data: Any) -> Any:
    if not isinstance(data, _BYTES_LIKE):
        raise TypeError(f"{func}() needs bytes, bytearray or memoryview, not '{type(data).__name__}'")
    if type(data) is memoryview and not data.c_contiguous:
        return data.tobytes()  # a strided view: its bytes in order, as the Rust engine reads them
    return data


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """sha256 of bytes (32 bytes)."""
    return hashlib.sha256(_byte_arg("sha256", data)).digest()


def xxh3_128(data: bytes | bytearray | memoryview) -> bytes:
    """xxh3-128 of bytes (16 big-endian bytes)."""
    return xxhash.xxh3_128_digest(_byte_arg("xxh3_128", data))


# ----------------------------------------------------------------- decoding


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError("ext types are not allowed in a state tree")


def _plain(obj: Any, max_depth: int) -> bool:
    """True if a decoded tree is within ``max_depth`` and holds only state-tree
    types with str keys (msgpack lets bytes keys, Timestamps and depth through)."""
    stack = [(obj, 1)]
    scalars = _SCALARS
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if any(type(key) is not str for key in node):
                return False
            children = node.values()
        elif kind is list:
            children = node
        elif kind in scalars:
            continue
        else:
            return False
        if depth > max_depth:
            return False
        for value in children:
            t = type(value)
            if t in scalars:
                continue
            if t is dict or t is list:
                stack.append((value, depth + 1))
            else:
                return False
    return True


def _c_long(name: str, value: Any) -> int:
    """``value`` as the Rust engine takes an integer argument: an index, within a C long."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"argument '{name}': '{type(value).__name__}' object cannot be interpreted as an "
                        f"integer") from None
    if not -(1 << 63) <= v < 1 << 63:
        raise OverflowError("Python int too large to convert to C long")
    return v


def unpackb(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one msgpack value of a state tree, with bounded depth and allocation."""
    max_depth = _c_long("max_depth", max_depth)
    if not 1 <= max_depth <= HARD_MAX_DEPTH:
        raise ValueError(f"max_depth must be between 1 and {HARD_MAX_DEPTH}, not {max_depth}")
    buf = _byte_arg("unpackb", data)
    try:
        obj = msgpack.unpackb(buf, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except Exception:
        obj = _Scanner.FAILED
    if obj is not _Scanner.FAILED and _plain(obj, max_depth):
        return obj
    error = _Scanner(bytes(buf), max_depth).first_error()
    if error is None:  # pragma: no cover - msgpack and the scanner disagree
        raise CorruptDataError("malformed msgpack", offset=0, hint=CORRUPT_HINT)
    raise error


class _Corrupt(Exception):
    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


# marker -> (what, size of the length field) for str/bin with explicit lengths
_LEN_STR = {0xD9: ("str8 header", 1), 0xDA: ("str16 header", 2), 0xDB: ("str32 header", 4)}
_LEN_BIN = {0xC4: ("bin8 header", 1), 0xC5: ("bin16 header", 2), 0xC6: ("bin32 header", 4)}
_LEN_ARRAY = {0xDC: ("array16 header", 2), 0xDD: ("array32 header", 4)}
_LEN_MAP = {0xDE: ("map16 header", 2), 0xDF: ("map32 header", 4)}
_FIXED = {
    0xCA: ("float32", 4),
    0xCB: ("float64", 8),
    0xCC: ("uint8", 1),
    0xCD: ("uint16", 2),
    0xCE: ("uint32", 4),
    0xCF: ("uint64", 8),
    0xD0: ("int8", 1),
    0xD1: ("int16", 2),
    0xD2: ("int32", 4),
    0xD3: ("int64", 8),
}


class _Scanner:
    """The Rust reader's rules in Python: finds the first error and its offset.

    Slow, and only run on bytes already known to be bad."""

    FAILED = object()

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def first_error(self) -> CorruptDataError | None:
        try:
            self._values()
            if self.pos != len(self.data):
                raise _Corrupt(self.pos, f"{len(self.data) - self.pos} trailing bytes after the msgpack value")
        except _Corrupt as bad:
            return CorruptDataError(bad.message, offset=bad.offset, hint=CORRUPT_HINT)
        return None

    def _take(self, n: int, start: int, what: str) -> bytes:
        left = len(self.data) - self.pos
        if n > left:
            raise _Corrupt(
                start,
                f"truncated {what}: needs {n} more bytes, only {left} left before the end at {len(self.data)}",
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _container(self, n: int, min_item: int, start: int, what: str) -> tuple[str, int]:
        left = len(self.data) - self.pos
        if n * min_item > left:
            raise _Corrupt(start, f"{what} claims {n} entries but only {left} bytes are left")
        return (what, n)

    def _token(self) -> tuple[str, Any]:
        start = self.pos
        if start >= len(self.data):
            raise _Corrupt(start, "unexpected end of data: a value was expected")
        marker = self.data[start]
        self.pos += 1
        if marker <= 0x7F or marker >= 0xE0 or marker in (0xC0, 0xC2, 0xC3):
            return ("scalar", None)
        if 0x80 <= marker <= 0x8F:
            return self._container(marker & 0x0F, 2, start, "map")
        if 0x90 <= marker <= 0x9F:
            return self._container(marker & 0x0F, 1, start, "array")
        if 0xA0 <= marker <= 0xBF:
            return ("str", self._take(marker & 0x1F, start, "str"))
        if marker in _FIXED:
            what, size = _FIXED[marker]
            self._take(size, start, what)
            return ("scalar", None)
        for table, kind in ((_LEN_STR, "str"), (_LEN_BIN, "bin")):
            if marker in table:
                what, size = table[marker]
                n = int.from_bytes(self._take(size, start, what), "big")
                return (kind, self._take(n, start, kind))
        if marker in _LEN_ARRAY:
            what, size = _LEN_ARRAY[marker]
            return self._container(int.from_bytes(self._take(size, start, what), "big"), 1, start, "array")
        if marker in _LEN_MAP:
            what, size = _LEN_MAP[marker]
            return self._container(int.from_bytes(self._take(size, start, what), "big"), 2, start, "map")
        if marker == 0xC1:
            raise _Corrupt(start, "reserved marker 0xc1 is never valid msgpack")
        raise _Corrupt(start, f"msgpack ext type (marker 0x{marker:02x}) is not allowed in a state tree")

    def _check_utf8(self, raw: bytes) -> None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Corrupt(self.pos - len(raw) + exc.start, "invalid UTF-8 in a str") from None

    def _one(self, stack: list[list[Any]]) -> None:
        start = self.pos
        kind, arg = self._token()
        if kind == "str":
            self._check_utf8(arg)
        elif kind in ("array", "map"):
            if len(stack) + 1 > self.max_depth:
                raise _Corrupt(start, f"containers nest deeper than max_depth={self.max_depth}")
            stack.append([kind, arg])

    def _values(self) -> None:
        """Walk one value with an explicit stack (depth may exceed Python's recursion limit)."""
        stack: list[list[Any]] = []
        self._one(stack)
        while stack:
            top = stack[-1]
            if top[1] == 0:
                stack.pop()
                continue
            top[1] -= 1
            if top[0] == "map":
                key_at = self.pos
                key_kind, raw = self._token()
                if key_kind != "str":
                    raise _Corrupt(key_at, "map key is not a str (state-tree keys are str)")
                self._check_utf8(raw)
            self._one(stack)
