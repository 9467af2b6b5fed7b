"""No input reaches Python as anything but a desiru error (or TypeError for a
wrong argument type): random and adversarial bytes to unpackb, weird objects to
packb/content_hash, and the Rust and pure-Python engines agreeing on every
error's kind, offset and message."""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from desiru import _engine as codec
from desiru._pure import codec as pure
from desiru.errors import CorruptDataError, SerializationError

try:
    from desiru import _native as native
except ImportError:  # pragma: no cover - a checkout without the extension
    native = None

SEED = (Path(__file__).parent / "vectors" / "msgpack" / "state_small.bin").read_bytes()

ADVERSARIAL = [
    b"",
    b"\xc1",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff" + b"\xa0" * 8,
    b"\xdb\xff\xff\xff\xff",
    b"\xc6\x7f\xff\xff\xff" + b"\x00" * 16,
    b"\x91" * 100_000,
    b"\x81\xa0" * 50_000 + b"\xc0",
    b"\x81\x91\xc0\xc0",
    b"\xd9\x02\xed\xa0",
    b"\xa4\xf0\x9f\x99",  # a 4-byte emoji cut short
    b"\xc7\x00\x00",
    b"\xd8\xff" + b"\x00" * 16,
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01",
]


def decode_outcome(func: Any, data: bytes) -> tuple[str, Any]:
    """What decoding does: ('ok', value bytes) or ('error', (offset, message))."""
    try:
        value = func(data)
    except CorruptDataError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data)
        assert exc.hint
        return ("error", (exc.offset, exc.message))
    return ("ok", msgpack.packb(value, use_bin_type=True))


def check_bytes(data: bytes) -> None:
    outcome = decode_outcome(codec.unpackb, data)
    if native is not None:
        assert decode_outcome(native.unpackb, data) == decode_outcome(pure.unpackb, data)
    if outcome[0] == "ok":
        # whatever decodes, msgpack decodes to the same value (compared as bytes: NaN)
        assert outcome[1] == msgpack.packb(msgpack.unpackb(data), use_bin_type=True)


@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    check_bytes(data)


@given(st.data())
def test_mutated_states(draw: Any) -> None:
    data = bytearray(SEED[:2000])
    for _ in range(draw.draw(st.integers(1, 4))):
        if not data:
            break
        at = draw.draw(st.integers(0, len(data) - 1))
        op = draw.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        if op == "flip":
            data[at] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw.draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        else:
            data.insert(at, draw.draw(st.sampled_from([0xC1, 0xDD, 0xDF, 0xDB, 0xC6, 0xD4, 0xFF, 0x00])))
    check_bytes(bytes(data))


@pytest.mark.parametrize("data", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_bytes(data: bytes) -> None:
    outcome = decode_outcome(codec.unpackb, data)
    assert outcome[0] == "error" or data.startswith(b"\xcb")
    check_bytes(data)


def test_random_bytes_many_seeds() -> None:
    rnd = random.Random(1234)
    for _ in range(3000):
        check_bytes(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 24))))


# ---------------------------------------------------------------- weird objects


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr fails")


class IntWithBadRepr(int):
    def __repr__(self) -> str:
        raise RuntimeError("repr fails")


class KeyWithBadHash(str):
    def __hash__(self) -> int:
        return 1


class Weird(dict):
    def items(self) -> Any:
        raise RuntimeError("items() is not used")


class IndexOnly:
    def __index__(self) -> int:
        return 3


class FloatOnly:
    def __float__(self) -> float:
        return 1.0


WEIRD = [
    BadRepr(),
    {"a": BadRepr()},
    {BadRepr(): 1},
    IntWithBadRepr(2**70),
    IntWithBadRepr(5),
    {KeyWithBadHash("k"): 1, "j": 2},
    Weird(a=1),
    IndexOnly(),
    FloatOnly(),
    type,
    object,
    Ellipsis,
    NotImplemented,
    (x for x in range(3)),
    range(3),
    frozenset({1}),
    {1, 2},
    2**100,
    -(2**100),
    10**5000,
    "\ud800",
    ["ok", {"x": b"\x00", "y": ["\udfff"]}],
    {("tuple", "key"): 1},
    {None: 1},
    {1.5: 2},
    memoryview(b"abcd")[::2],
    memoryview(bytes(range(8))).cast("I"),
    bytearray(),
    msgpack.ExtType(5, b"x"),
    msgpack.Timestamp(0, 0),
]


@pytest.mark.parametrize("obj", WEIRD, ids=range(len(WEIRD)))
def test_weird_objects(obj: Any) -> None:
    for canonical in (False, True):
        try:
            data = codec.packb(obj, canonical=canonical)
        except SerializationError as exc:
            assert "at " in exc.message and exc.hint
            if native is not None:
                outcomes = []
                for impl in (native, pure):
                    with pytest.raises(SerializationError) as info:
                        impl.packb(obj, canonical=canonical)
                    outcomes.append(info.value.message)
                assert outcomes[0] == outcomes[1]
        else:
            assert isinstance(data, bytes)
            if not canonical and not isinstance(obj, Weird):
                assert data == msgpack.packb(obj, use_bin_type=True)
            if native is not None:
                assert native.packb(obj, canonical=canonical) == pure.packb(obj, canonical=canonical)
    try:
        assert len(codec.content_hash(obj)) == 16
    except SerializationError:
        pass


def test_subclasses_are_read_through_their_base_class() -> None:
    """Overridden items()/__iter__ are not called: the stored items are written."""

    class OddList(list):
        def __iter__(self) -> Any:
            raise RuntimeError("__iter__ is not used")

    obj = {"d": Weird(a=OddList([1, Weird(b=2)]))}
    expected = {"d": {"a": [1, {"b": 2}]}}
    assert codec.packb(obj) == msgpack.packb(expected, use_bin_type=True)
    assert codec.packb(obj, canonical=True) == msgpack.packb(expected, use_bin_type=True)
    assert codec.content_hash(obj) == codec.content_hash(expected)


def test_wrong_argument_types() -> None:
    for func in (codec.unpackb, codec.sha256, codec.xxh3_128):
        for arg in (None, 1, "text", [1], object()):
            with pytest.raises(TypeError):
                func(arg)


def test_no_leak_on_errors() -> None:
    """Failing half way through a big container frees what was built."""
    data = msgpack.packb([{"k": "v" * 10} for _ in range(1000)], use_bin_type=True)[:-1] + b"\xc1"
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(50):
        with pytest.raises(CorruptDataError):
            codec.unpackb(data)
    gc.collect()
    assert len(gc.get_objects()) - before < 100
