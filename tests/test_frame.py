"""Record framing: round trips, torn tails, bit flips, stale salts, limits, shared vectors.

Every test runs on the pure-Python twin and, when the extension provides it
(and DESIRU_PURE_PYTHON is not set), on the Rust implementation; a differential
test checks that both give identical results on damaged buffers.
"""

from __future__ import annotations

import json
import mmap
import random
import struct
from pathlib import Path
from types import ModuleType

import pytest
import xxhash
from engines import implementations
from hypothesis import given, settings
from hypothesis import strategies as st

from desiru._pure import frame as pure
from desiru.errors import SerializationError

VECTORS = Path(__file__).parent / "vectors" / "frames"
SALT = 0xA5A5_0000_DEAD_BEEF
HEADER_LEN = 24


IMPLS = implementations(pure, "frame_scan")
impl_param = pytest.mark.parametrize("impl", IMPLS, ids=[m.__name__.rsplit(".", 1)[-1] for m in IMPLS])


def build(impl: ModuleType, payloads: list[bytes], salt: int = SALT, first_seq: int = 1) -> bytes:
    return b"".join(impl.frame_encode(p, first_seq + i, salt) for i, p in enumerate(payloads))


def valid_header(length: int, seq: int, salt: int, payload_sum: int = 0) -> bytes:
    first = struct.pack("<IQQ", length, seq, payload_sum)
    return first + (xxhash.xxh3_64_intdigest(first, seed=salt) & 0xFFFFFFFF).to_bytes(4, "little")


@impl_param
def test_layout_matches_the_spec(impl: ModuleType) -> None:
    rec = impl.frame_encode(b"payload", 42, SALT)
    length, seq, psum, hsum = struct.unpack_from("<IQQI", rec)
    assert (length, seq) == (7, 42)
    assert psum == xxhash.xxh3_64_intdigest(b"payload", seed=SALT)
    assert hsum == xxhash.xxh3_64_intdigest(rec[:20], seed=SALT) & 0xFFFFFFFF
    assert rec[HEADER_LEN:] == b"payload"
    assert impl.MAX_RECORD == pure.MAX_RECORD == 256 * 1024 * 1024


@impl_param
@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    salt=st.integers(0, 2**64 - 1),
    first_seq=st.integers(0, 2**40),
)
def test_round_trip(impl: ModuleType, payloads: list[bytes], salt: int, first_seq: int) -> None:
    buf = build(impl, payloads, salt, first_seq)
    records, good_end, fault = impl.frame_scan(buf, salt)
    assert fault is None
    assert good_end == len(buf)
    assert [p for _, _, p in records] == payloads
    assert [s for s, _, _ in records] == list(range(first_seq, first_seq + len(payloads)))
    offsets = [o for _, o, _ in records]
    assert offsets == [sum(HEADER_LEN + len(p) for p in payloads[:i]) for i in range(len(payloads))]
    assert all(type(p) is bytes for _, _, p in records)


@impl_param
def test_scan_from_an_offset_and_of_other_buffer_types(impl: ModuleType, tmp_path: Path) -> None:
    payloads = [b"one", b"two" * 50, b"", b"four"]
    buf = build(impl, payloads)
    full = impl.frame_scan(buf, SALT)
    third = full[0][2][1]
    records, good_end, fault = impl.frame_scan(buf, SALT, third)
    assert records == full[0][2:] and good_end == len(buf) and fault is None
    assert impl.frame_scan(buf, SALT, len(buf)) == ([], len(buf), None)
    for other in (bytearray(buf), memoryview(buf), memoryview(bytearray(buf))):
        assert impl.frame_scan(other, SALT) == full
    path = tmp_path / "j"
    path.write_bytes(buf)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert impl.frame_scan(mm, SALT) == full
    assert impl.frame_encode(bytearray(b"two" * 50), 2, SALT) == impl.frame_encode(b"two" * 50, 2, SALT)


@impl_param
def test_truncation_at_every_offset_of_the_last_record(impl: ModuleType) -> None:
    payloads = [b"first record", b"", b"the last record, somewhat longer than the rest"]
    buf = build(impl, payloads)
    full, _, _ = impl.frame_scan(buf, SALT)
    last = full[-1][1]
    for cut in range(last + 1, len(buf)):
        records, good_end, fault = impl.frame_scan(buf[:cut], SALT)
        assert records == full[:-1]
        assert good_end == last
        reason = "torn header" if cut - last < HEADER_LEN else "torn payload"
        assert fault == (last, reason), cut
    assert impl.frame_scan(buf[:last], SALT) == (full[:-1], last, None)


@impl_param
def test_every_flipped_bit_is_detected(impl: ModuleType) -> None:
    payloads = [b"alpha", b"\x00\x01\x02", b"omega!"]
    buf = build(impl, payloads)
    good, _, _ = impl.frame_scan(buf, SALT)
    for bit in range(len(buf) * 8):
        bad = bytearray(buf)
        bad[bit // 8] ^= 1 << (bit % 8)
        records, good_end, fault = impl.frame_scan(bytes(bad), SALT)
        assert fault is not None, f"flip of bit {bit} went unnoticed"
        # Records before the damaged one come back intact; nothing damaged is returned.
        assert records == good[: len(records)]
        assert fault[0] == good_end
        assert fault[0] <= bit // 8


@impl_param
def test_a_record_from_another_journal_is_rejected(impl: ModuleType) -> None:
    mine = impl.frame_encode(b"mine", 1, SALT)
    theirs = impl.frame_encode(b"theirs", 2, SALT ^ 0x1)
    records, good_end, fault = impl.frame_scan(mine + theirs, SALT)
    assert [p for _, _, p in records] == [b"mine"]
    assert good_end == len(mine)
    assert fault == (len(mine), "bad header checksum")
    assert impl.frame_scan(theirs, SALT) == ([], 0, (0, "bad header checksum"))


@impl_param
def test_an_enormous_length_with_a_valid_header_checksum_is_over_limit(impl: ModuleType) -> None:
    head = impl.frame_encode(b"ok", 1, SALT)
    for length in (0xFFFFFFFF, pure.MAX_RECORD + 1):
        buf = head + valid_header(length, 2, SALT) + b"x" * 100
        assert impl.frame_scan(buf, SALT) == ([(1, 0, b"ok")], len(head), (len(head), "length over limit"))
    # A caller may lower the limit; a record just at the limit passes.
    buf = impl.frame_encode(b"y" * 100, 1, SALT)
    assert impl.frame_scan(buf, SALT, 0, 100)[2] is None
    assert impl.frame_scan(buf, SALT, 0, 99) == ([], 0, (0, "length over limit"))


@impl_param
def test_seq_must_increase(impl: ModuleType) -> None:
    a = impl.frame_encode(b"a", 5, SALT)
    for seq in (5, 4, 0):
        b = impl.frame_encode(b"b", seq, SALT)
        assert impl.frame_scan(a + b, SALT) == ([(5, 0, b"a")], len(a), (len(a), "seq not increasing"))
    gap = impl.frame_encode(b"c", 9, SALT)
    assert impl.frame_scan(a + gap, SALT)[2] is None  # contiguity is the caller's concern


@impl_param
def test_bad_arguments(impl: ModuleType) -> None:
    buf = impl.frame_encode(b"x", 1, SALT)
    with pytest.raises(OverflowError):
        impl.frame_encode(b"x", -1, SALT)
    with pytest.raises(OverflowError):
        impl.frame_encode(b"x", 1, 2**64)
    with pytest.raises(OverflowError):
        impl.frame_scan(buf, -1)
    with pytest.raises(TypeError):
        impl.frame_scan(buf, 1.5)
    with pytest.raises(TypeError):
        impl.frame_scan("not bytes", SALT)
    with pytest.raises(ValueError, match="out of range"):
        impl.frame_scan(buf, SALT, len(buf) + 1)
    with pytest.raises(ValueError, match="out of range"):
        impl.frame_scan(buf, SALT, -1)
    with pytest.raises(ValueError, match="max_record"):
        impl.frame_scan(buf, SALT, 0, -1)
    # bytes(n) is calloc'ed: this costs no real memory.
    with pytest.raises(SerializationError, match="MAX_RECORD"):
        impl.frame_encode(bytes(pure.MAX_RECORD + 1), 1, SALT)


def _manifest() -> list[dict]:
    return json.loads((VECTORS / "manifest.json").read_text())["cases"]


@impl_param
@pytest.mark.parametrize("case", _manifest(), ids=lambda c: c["name"])
def test_shared_vectors(impl: ModuleType, case: dict) -> None:
    blob = (VECTORS / "records.bin").read_bytes()
    data = blob[case["start"] : case["end"]]
    records, good_end, fault = impl.frame_scan(data, case["salt"], case["offset"], case["max_record"])
    assert [(s, o, p.hex()) for s, o, p in records] == [
        (r["seq"], r["offset"], r["payload_hex"]) for r in case["records"]
    ]
    assert good_end == case["good_end"]
    assert fault == (tuple(case["fault"]) if case["fault"] else None)
    # Re-encoding the good records gives the very bytes on disk.
    for seq, off, payload in records:
        assert impl.frame_encode(payload, seq, case["salt"]) == data[off : off + HEADER_LEN + len(payload)]


def test_the_vectors_cover_every_fault_reason() -> None:
    reasons = {c["fault"][1] for c in _manifest() if c["fault"]}
    assert reasons == {
        "torn header",
        "torn payload",
        "bad header checksum",
        "bad payload checksum",
        "length over limit",
        "seq not increasing",
    }


def _damage(rng: random.Random, buf: bytes) -> bytes:
    data = bytearray(buf)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(4)
        if kind == 0 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data = data[: rng.randint(0, len(data))]
        elif kind == 2:
            i = rng.randint(0, len(data))
            data[i:i] = rng.randbytes(rng.randint(1, 40))
        elif data:
            i = rng.randrange(len(data))
            data[i : i + 4] = struct.pack("<I", rng.choice([0, 1, 2**31, 2**32 - 1, len(data)]))
    return bytes(data)


@pytest.mark.skipif(len(IMPLS) < 2, reason="needs both engines (the Rust extension built, DESIRU_PURE_PYTHON unset)")
@settings(max_examples=150, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=64), min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
    offset_pick=st.integers(0, 10),
)
def test_rust_and_python_agree_on_damaged_buffers(payloads: list[bytes], seed: int, offset_pick: int) -> None:
    rust = IMPLS[1]
    buf = build(pure, payloads)
    assert rust.frame_encode(payloads[0], 1, SALT) == pure.frame_encode(payloads[0], 1, SALT)
    bad = _damage(random.Random(seed), buf)
    offset = min(offset_pick * 7, len(bad))
    assert rust.frame_scan(bad, SALT, offset) == pure.frame_scan(bad, SALT, offset)


@impl_param
@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=400), salt=st.integers(0, 2**64 - 1))
def test_random_bytes_never_crash_or_validate(impl: ModuleType, data: bytes, salt: int) -> None:
    records, good_end, fault = impl.frame_scan(data, salt)
    # Random bytes pass a 32-bit header checksum with negligible probability.
    assert records == [] and good_end == 0
    assert (fault is None) == (data == b"")


def test_engine_seam_exposes_framing() -> None:
    from desiru import _engine

    rec = _engine.frame_encode(b"seam", 3, SALT)
    assert _engine.frame_scan(rec, SALT) == ([(3, 0, b"seam")], len(rec), None)
