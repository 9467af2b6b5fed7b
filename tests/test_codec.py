"""The msgpack codec and hashes, through desiru._engine (Rust, or the pure-Python
twin with DESIRU_PURE_PYTHON=1): differential tests against the msgpack and
xxhash packages, boundary values, frozen vectors and malformed input."""

from __future__ import annotations

import collections
import enum
import hashlib
import json
import math
import struct
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from desiru import _engine as codec
from desiru.errors import CorruptDataError, DesiruError, SerializationError

VECTORS = Path(__file__).parent / "vectors" / "msgpack"
MANIFEST = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))


def ref_packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def sort_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: sort_keys(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [sort_keys(x) for x in obj]
    return obj


def from_typed(v: Any) -> Any:
    """The object a vector's typed JSON describes (see tests/vectors/README.md)."""
    if v is None or isinstance(v, bool):
        return v
    ((tag, arg),) = v.items()
    if tag == "int":
        return int(arg)
    if tag == "float":
        return float(arg)
    if tag == "str":
        return arg
    if tag == "bin":
        return bytes.fromhex(arg)
    if tag == "array":
        return [from_typed(x) for x in arg]
    if tag == "map":
        return {k: from_typed(x) for k, x in arg}
    if tag == "str_repeat":
        return arg[0] * arg[1]
    if tag == "bin_repeat":
        return bytes.fromhex(arg[0]) * arg[1]
    if tag == "array_repeat":
        return [from_typed(arg[0])] * arg[1]
    if tag == "nest":
        out = from_typed(arg[1])
        for _ in range(arg[0]):
            out = [out]
        return out
    raise AssertionError(f"unknown tag {tag}")


def vector_bytes(entry: dict[str, Any]) -> bytes:
    if "file" in entry:
        return (VECTORS / entry["file"]).read_bytes()
    return bytes.fromhex(entry["hex"])


# ---------------------------------------------------------------- strategies

BOUNDARY_INTS = sorted(
    {
        b + d
        for b in (0, 2**5, 2**7, 2**8, 2**15, 2**16, 2**31, 2**32, 2**63, 2**64)
        for d in (-1, 0, 1)
        if 0 <= b + d < 2**64
    }
    | {-b + d for b in (32, 33, 2**7, 2**15, 2**31, 2**63) for d in (-1, 0, 1) if -(2**63) <= -b + d < 0}
)

ints = st.one_of(st.sampled_from(BOUNDARY_INTS), st.integers(min_value=-(2**63), max_value=2**64 - 1))
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, math.inf, -math.inf])
texts = st.text(max_size=40) | st.sampled_from(["", "é", "日本語", "🙂🙃", "a" * 31, "a" * 32, "x" * 255, "y" * 256])
scalars = st.none() | st.booleans() | ints | floats | texts | st.binary(max_size=40)


def trees(keys: st.SearchStrategy[Any] = texts) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=6) | st.tuples(children, children) | st.dictionaries(keys, children, max_size=6)
        ),
        max_leaves=30,
    )


def same_value(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself and tuples as lists (via msgpack bytes)."""
    return ref_packb(a) == ref_packb(b)


# ---------------------------------------------------------------- differential


@given(trees())
def test_packb_equals_msgpack(obj: Any) -> None:
    assert codec.packb(obj) == ref_packb(obj)


@given(trees(keys=texts | ints))
def test_packb_non_str_keys_equal_msgpack_when_not_canonical(obj: Any) -> None:
    assert codec.packb(obj) == ref_packb(obj)


@given(trees())
def test_round_trip(obj: Any) -> None:
    data = codec.packb(obj)
    back = codec.unpackb(data)
    assert same_value(back, obj)
    assert same_value(back, msgpack.unpackb(data, raw=False))
    assert type(back) is type(msgpack.unpackb(data, raw=False))


@given(trees())
def test_canonical_equals_msgpack_of_sorted_tree(obj: Any) -> None:
    expected = ref_packb(sort_keys(obj))
    assert codec.packb(obj, canonical=True) == expected
    assert codec.content_hash(obj) == xxhash.xxh3_128_digest(expected)


@given(st.dictionaries(texts, ints, min_size=2, max_size=12), st.randoms())
def test_canonical_ignores_insertion_order(d: dict[str, int], rnd: Any) -> None:
    items = list(d.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert codec.packb(shuffled, canonical=True) == codec.packb(d, canonical=True)
    assert codec.content_hash({"x": [shuffled]}) == codec.content_hash({"x": [d]})


@pytest.mark.parametrize("value", BOUNDARY_INTS)
def test_boundary_ints(value: int) -> None:
    data = codec.packb(value)
    assert data == ref_packb(value)
    assert codec.unpackb(data) == value
    assert type(codec.unpackb(data)) is int


@pytest.mark.parametrize("value", [2**64, 2**64 + 1, -(2**63) - 1, 10**30, -(10**30)])
def test_int_out_of_range(value: int) -> None:
    with pytest.raises(SerializationError, match=r"outside msgpack's range") as info:
        codec.packb({"params": [value]})
    assert str(value)[:20] in str(info.value)
    assert "params[0]" in str(info.value)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536])
def test_length_boundaries(size: int) -> None:
    for obj in ("s" * size, b"\x01" * size, [None] * size, {f"{i:06d}": i for i in range(size)}):
        data = codec.packb(obj)
        assert data == ref_packb(obj)
        assert codec.unpackb(data) == obj


def test_float_policy() -> None:
    for value in (0.0, -0.0, 1.5, math.inf, -math.inf, 1e-310, 1.7976931348623157e308):
        data = codec.packb(value)
        assert data == ref_packb(value) == b"\xcb" + struct.pack(">d", value)
        assert struct.pack(">d", codec.unpackb(data)) == struct.pack(">d", value)
    odd_nan = struct.unpack(">d", bytes.fromhex("7ff8000000000abc"))[0]
    data = codec.packb(odd_nan)
    assert data == b"\xcb" + bytes.fromhex("7ff8000000000abc")  # payload kept bit for bit
    assert struct.pack(">d", codec.unpackb(data)).hex() == "7ff8000000000abc"
    # -0.0 and 0.0 are different states (and hashes): floats are never normalized
    assert codec.content_hash(-0.0) != codec.content_hash(0.0)
    # float32 from other writers decodes, widened
    assert codec.unpackb(b"\xca" + struct.pack(">f", 1.5)) == 1.5


class MyDict(dict):
    pass


class MyList(list):
    pass


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class Color(enum.IntEnum):
    RED = 1


def test_subclasses_pack_as_their_base() -> None:
    obj = MyDict(
        a=MyList([MyStr("s"), MyInt(7), MyFloat(2.5), Color.RED]),
        b=collections.OrderedDict(z=1, y=2),
        c=bytearray(b"ab"),
        d=memoryview(b"cd"),
        e=(1, (2, 3)),
    )
    plain = {
        "a": ["s", 7, 2.5, 1],
        "b": {"z": 1, "y": 2},
        "c": b"ab",
        "d": b"cd",
        "e": [1, [2, 3]],
    }
    assert codec.packb(obj) == ref_packb(obj) == ref_packb(plain)
    assert codec.packb(obj, canonical=True) == ref_packb(sort_keys(plain))
    assert codec.packb({MyStr("k"): 1}, canonical=True) == ref_packb({"k": 1})


def test_large_output_equals_msgpack() -> None:
    """Outputs past 16 MB are assembled in parallel halves (Rust): same bytes."""
    obj = {
        "demos": [
            {"context": f"{i:08d}" + "x" * (900 + i % 300), "id": i, "b": b"\x01" * (i % 500)} for i in range(24_000)
        ]
    }
    data = codec.packb(obj)
    assert len(data) > 16 << 20
    assert data == ref_packb(obj)
    assert codec.packb(obj, canonical=True) == ref_packb(sort_keys(obj))


# ---------------------------------------------------------------- encode errors


class Opaque:
    pass


@pytest.mark.parametrize(
    ("obj", "type_name", "path"),
    [
        ({"demos": [0, 1, 2, {"answer": Opaque()}]}, "Opaque", "demos[3].answer"),
        ([1, 2, {3, 4}], "set", "[2]"),
        (complex(1, 2), "complex", "the root of the tree"),
        ({"a": {"b": msgpack.ExtType(1, b"x")}}, "ExtType", "a.b"),
        ({"t": msgpack.Timestamp(1, 0)}, "Timestamp", "t"),
        ({"f": len}, "builtin_function_or_method", "f"),
        ([[[iter([])]]], "list_iterator", "[0][0][0]"),
        ({"p": [collections.namedtuple("Point", "x y")(1, 2)]}, "Point", "p[0]"),
    ],
)
def test_unsupported_type_names_type_and_path(obj: Any, type_name: str, path: str) -> None:
    for canonical in (False, True):
        with pytest.raises(SerializationError) as info:
            codec.packb(obj, canonical=canonical)
        text = str(info.value)
        assert f"type '{type_name}'" in text
        assert text.endswith(f"at {path} ({info.value.hint})")
        assert "convert" in (info.value.hint or "")
    with pytest.raises(SerializationError):
        codec.content_hash(obj)


def test_non_str_key_is_an_error_only_in_canonical_mode() -> None:
    obj = {"params": {1: "a"}}
    assert codec.packb(obj) == ref_packb(obj)
    with pytest.raises(SerializationError, match=r"key of type 'int'.* at params\.\[1\]"):
        codec.packb(obj, canonical=True)
    with pytest.raises(SerializationError, match="must be str"):
        codec.content_hash({(1, 2): 3})


def test_lone_surrogate_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match=r"lone surrogates.* at x\[1\]"):
        codec.packb({"x": ["ok", "bad \ud800"]})
    with pytest.raises(SerializationError, match="lone surrogates"):
        codec.packb({"\udc00": 1}, canonical=True)


def nest(depth: int, leaf: Any = None) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def test_depth_limit() -> None:
    ok = nest(512, 1)  # 512 nested lists around a scalar
    assert codec.packb(ok) == ref_packb(ok)
    assert codec.unpackb(codec.packb(ok)) == ok
    with pytest.raises(SerializationError, match="deeper than 512"):
        codec.packb(nest(513))
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(SerializationError, match="cycle"):
        codec.packb(cyclic)
    d: dict[str, Any] = {}
    d["self"] = d
    with pytest.raises(SerializationError, match=r"at self\.self\.self"):
        codec.content_hash(d)


# ---------------------------------------------------------------- decode


def test_unpackb_types_and_inputs() -> None:
    data = ref_packb({"s": "é", "b": b"\x00", "l": [1, -1, 2**64 - 1, -(2**63), 1.5, None, True, False]})
    expected = {"s": "é", "b": b"\x00", "l": [1, -1, 2**64 - 1, -(2**63), 1.5, None, True, False]}
    for form in (data, bytearray(data), memoryview(data)):
        assert codec.unpackb(form) == expected
    with pytest.raises(TypeError, match="needs bytes"):
        codec.unpackb("not bytes")
    with pytest.raises(TypeError):
        codec.unpackb(12)


def test_max_depth_argument() -> None:
    assert codec.unpackb(b"\x90", max_depth=1) == []
    with pytest.raises(CorruptDataError) as info:
        codec.unpackb(b"\x91\x90", max_depth=1)
    assert info.value.offset == 1
    for bad in (0, -1, 1025):
        with pytest.raises(ValueError, match="max_depth"):
            codec.unpackb(b"\xc0", max_depth=bad)
    deep = b"\x91" * 1024 + b"\xc0"
    out = codec.unpackb(deep, max_depth=1024)
    for _ in range(1024):  # walk down: == would exceed Python's recursion limit
        assert type(out) is list and len(out) == 1
        out = out[0]
    assert out is None


def test_bomb_fails_at_once_without_allocating() -> None:
    for data in (
        b"\xdd\xff\xff\xff\xff" + b"\x00" * 5,
        b"\xdf\xff\xff\xff\xff" + b"\x00" * 5,
        b"\xc6\xff\xff\xff\xff",
    ):
        with pytest.raises(CorruptDataError) as info:
            codec.unpackb(data)
        assert info.value.offset == 0


def test_every_truncation_of_a_state_is_corrupt() -> None:
    data = (VECTORS / "state_small.bin").read_bytes()
    for cut in list(range(0, 200)) + list(range(200, len(data), 997)):
        with pytest.raises(CorruptDataError) as info:
            codec.unpackb(data[:cut])
        assert info.value.offset is not None and 0 <= info.value.offset <= cut


# ---------------------------------------------------------------- frozen vectors


@pytest.mark.parametrize("entry", MANIFEST["valid"], ids=lambda e: e["name"])
def test_valid_vectors(entry: dict[str, Any]) -> None:
    obj = from_typed(entry["value"])
    expected = vector_bytes(entry)
    assert codec.packb(obj, canonical=entry["canonical"]) == expected
    decoded = codec.unpackb(expected)
    assert codec.packb(decoded) == expected  # wire order kept, NaN bits kept
    assert same_value(decoded, sort_keys(obj) if entry["canonical"] else obj)


@pytest.mark.parametrize("entry", MANIFEST["malformed"], ids=lambda e: e["name"])
def test_malformed_vectors(entry: dict[str, Any]) -> None:
    with pytest.raises(CorruptDataError) as info:
        codec.unpackb(vector_bytes(entry), max_depth=entry["max_depth"])
    assert info.value.offset == entry["offset"]
    assert entry["error"] in info.value.message
    assert info.value.hint


@pytest.mark.parametrize("entry", MANIFEST["states"], ids=lambda e: e["name"])
def test_state_vectors(entry: dict[str, Any]) -> None:
    data = vector_bytes(entry)
    state = codec.unpackb(data)
    assert state["kind"] == "program" and len(state["modules"]) == 5
    assert codec.packb(state, canonical=True) == data
    assert codec.packb(state) == data  # decoded in wire order, which is sorted
    assert codec.content_hash(state).hex() == entry["content_hash"]
    assert codec.xxh3_128(data).hex() == entry["content_hash"]
    assert codec.sha256(data).hex() == entry["sha256"]


# ---------------------------------------------------------------- hashes


@pytest.mark.parametrize("size", [0, 1, 3, 240, 241, 1024, 65535, 65536, 1 << 20])
def test_hashes_equal_references(size: int) -> None:
    data = bytes((i * 131 + 7) & 0xFF for i in range(size))
    for form in (data, bytearray(data), memoryview(data)):
        assert codec.sha256(form) == hashlib.sha256(data).digest()
        assert codec.xxh3_128(form) == xxhash.xxh3_128_digest(data)
    assert len(codec.content_hash({"a": 1})) == 16


def test_threads_get_their_own_results() -> None:
    """Per-thread buffers and GIL-free hashing: concurrent calls do not mix."""
    big = bytes(range(256)) * 4096  # 1 MiB: hashed with the GIL released
    errors: list[str] = []

    def work(k: int) -> None:
        obj = {"k": k, "text": str(k) * (1000 + k), "demos": [{"i": i, "s": "x" * (i % 300)} for i in range(200)]}
        for _ in range(20):
            if codec.packb(obj) != ref_packb(obj):
                errors.append(f"packb {k}")
            if codec.unpackb(codec.packb(obj)) != obj:
                errors.append(f"unpackb {k}")
            if codec.sha256(big + bytes([k])) != hashlib.sha256(big + bytes([k])).digest():
                errors.append(f"sha256 {k}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_hash_rejects_non_bytes() -> None:
    for func in (codec.sha256, codec.xxh3_128):
        with pytest.raises(TypeError, match="needs bytes"):
            func("text")


def test_errors_are_desiru_errors() -> None:
    with pytest.raises(DesiruError):
        codec.unpackb(b"\xc1")
    with pytest.raises(DesiruError):
        codec.packb(Opaque())
