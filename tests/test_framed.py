"""Framed documents (container version 2): compressed or encrypted programs in per-module frames, opened
lazily one module at a time, loaded eagerly as before, and refused when frames are swapped, flipped or cut."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from programs import Outer, programs

import desiru as ds
from desiru import crypto
from desiru.serialization import framed
from desiru.serialization.documents import load_document

VECTORS = Path(__file__).parent / "vectors" / "documents"
RAW = bytes(range(7, 39))
LAYOUTS = {"zstd": dict(compress="zstd"), "gzip": dict(compress="gzip"), "key": dict(key=RAW),
           "key+zstd": dict(key=RAW, compress="zstd"), "passphrase+gzip": dict(key="open sesame", compress="gzip")}


def big_program() -> Outer:
    o = Outer()
    o.first.demos = [ds.Example(text=f"text {i}", summary="s" * i) for i in range(30)]
    o.qa.answer.demos = [ds.Example(question="q", context="c", reasoning="r", answer=str(i)) for i in range(5)]
    o.configuration = {"seed": 3}
    o.custom_data = {"blob": b"\x00\xff"}
    return o


def save(o: ds.Program, folder: Path, layout: str) -> Path:
    return o.save(folder / "p.msgpack", **LAYOUTS[layout]).path


def frames_of(path: Path) -> tuple[bytes, list[int], list[int], int]:
    """The header, the start and length of every frame, and where the directory starts (read by hand)."""
    data = path.read_bytes()
    header = crypto.read_header(data)
    at = header.size
    (count,) = struct.unpack(">I", data[at:at + 4])
    lengths = [struct.unpack(">Q", data[at + 4 + 8 * i:at + 12 + 8 * i])[0] for i in range(count)]
    starts, pos = [], at + 4 + 8 * count
    for n in lengths:
        starts.append(pos)
        pos += n
    assert pos == len(data)
    return data[:header.size], starts, lengths, at


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_framed_program_opens_lazily_and_equals_the_eager_load(layout: str, tmp_path: Path) -> None:
    o = big_program()
    path = save(o, tmp_path, layout)
    key = LAYOUTS[layout].get("key")
    header = crypto.read_header(path.read_bytes())
    assert (header.version, header.encrypted, header.compression) == (
        crypto.FRAMED_VERSION, key is not None, LAYOUTS[layout].get("compress"))
    if key is not None:
        assert b"text 29" not in path.read_bytes()
    p = ds.load(path, key=key, lazy=True)
    assert type(p) is Outer and "first" not in vars(p) and "qa" not in vars(p)  # pending: no frame opened yet
    assert p.configuration == {"seed": 3} and p.custom_data == {"blob": b"\x00\xff"}
    assert p.first.demos[29]["summary"] == "s" * 29 and "qa" not in vars(p)
    eager = ds.load(path, key=key)
    assert "first" in vars(eager) and eager == o and p == o
    assert ds.load_module(path, "qa.answer", key=key).to_state() == o.qa.answer.to_state()
    assert Outer.load(path, key=key, lazy=True) == o
    doc = load_document(path, key=key)
    assert (doc.compression, doc.encrypted) == (LAYOUTS[layout].get("compress"), key is not None)


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(program=programs(), layout=st.sampled_from(["zstd", "gzip", "key+zstd"]), touch=st.integers(0, 3))
def test_framed_round_trips_of_any_program(program: ds.Program, layout: str, touch: int,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    path = save(program, tmp_path_factory.mktemp("framed"), layout)
    key = LAYOUTS[layout].get("key")
    eager = ds.load(path, key=key)
    lazy = ds.load(path, key=key, lazy=True)
    names = list(eager.modules)
    if names:
        getattr(lazy, names[touch % len(names)])
    assert eager.to_state() == program.to_state() and lazy == eager
    for name in names:
        assert ds.load_module(path, name, key=key).to_state() == eager.get_module(name).to_state()


def test_one_module_opens_the_head_the_tail_and_its_own_frame_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    o = big_program()
    path = save(o, tmp_path, "key+zstd")
    opened: list[int] = []
    real = crypto.open_frame

    def spy(key, header, bound, frame, name, blob, **kw):  # type: ignore[no-untyped-def]
        opened.append(frame)
        return real(key, header, bound, frame, name, blob, **kw)

    monkeypatch.setattr(crypto, "open_frame", spy)
    assert ds.load_module(path, "qa", key=RAW) == o.qa
    assert opened == [0, 3, 2]  # head, tail, then "qa" (frame 2); "first" (frame 1) stays sealed
    opened.clear()
    p = ds.load(path, key=RAW, lazy=True)
    assert opened == [0, 3]
    p.first  # noqa: B018
    assert opened == [0, 3, 1]


def test_eager_load_of_a_framed_file_gives_the_program_a_plain_file_gives(tmp_path: Path) -> None:
    o = big_program()
    plain = ds.load(o.save(tmp_path / "plain.msgpack").path)
    for layout in LAYOUTS:
        path = save(o, tmp_path, layout)
        assert ds.load(path, key=LAYOUTS[layout].get("key")).to_state() == plain.to_state()


def _swap_modules(path: Path) -> None:
    """Swap the two module frames (1 and 2) and their lengths in the directory: a well-formed file."""
    data = bytearray(path.read_bytes())
    _, starts, lengths, at = frames_of(path)
    a = bytes(data[starts[1]:starts[1] + lengths[1]])
    b = bytes(data[starts[2]:starts[2] + lengths[2]])
    data[starts[1]:starts[2] + lengths[2]] = b + a
    data[at + 4 + 8:at + 4 + 24] = struct.pack(">QQ", lengths[2], lengths[1])
    path.write_bytes(bytes(data))


def twins() -> ds.Program:
    """Two modules whose frames have the same length (so swapping them keeps the directory valid)."""
    p = ds.Program()
    p.a = ds.Predict("q -> a")
    p.b = ds.Predict("q -> a")
    p.a.demos = [ds.Example(q="first", a="1")]
    p.b.demos = [ds.Example(q="other", a="2")]
    return p


def test_swapped_module_frames_fail_authentication(tmp_path: Path) -> None:
    path = save(twins(), tmp_path, "key")
    data = bytearray(path.read_bytes())
    _, starts, lengths, _ = frames_of(path)
    assert lengths[1] == lengths[2]
    one, two = bytes(data[starts[1]:starts[2]]), bytes(data[starts[2]:starts[2] + lengths[2]])
    data[starts[1]:starts[2] + lengths[2]] = two + one
    path.write_bytes(bytes(data))
    p = ds.load(path, key=RAW, lazy=True)  # head and tail are where they were
    with pytest.raises(ds.DecryptionError, match="module 'a' \\(frame 1\\)") as info:
        p.a  # noqa: B018
    assert info.value.path == str(path) and info.value.offset == starts[1]
    with pytest.raises(ds.DecryptionError, match="module 'b' \\(frame 2\\)"):
        ds.load_module(path, "b", key=RAW)
    with pytest.raises(ds.DecryptionError, match="authentication failed"):
        ds.load(path, key=RAW)


@pytest.mark.parametrize("layout", ["key", "key+zstd"])
def test_frames_swapped_with_their_directory_entries_fail_at_open(layout: str, tmp_path: Path) -> None:
    path = save(big_program(), tmp_path, layout)
    _swap_modules(path)  # the directory is bound into every frame: even the head frame no longer opens
    with pytest.raises(ds.DecryptionError, match="frame 0"):
        ds.load(path, key=RAW, lazy=True)
    with pytest.raises(ds.DecryptionError, match="frame 0"):
        ds.load(path, key=RAW)


@pytest.mark.parametrize("layout", ["zstd", "gzip"])
def test_swapped_module_frames_of_a_compressed_file_are_named(layout: str, tmp_path: Path) -> None:
    path = save(big_program(), tmp_path, layout)
    _swap_modules(path)
    p = ds.load(path, lazy=True)
    with pytest.raises(ds.CorruptDataError, match="module 'first'"):
        p.first  # noqa: B018
    with pytest.raises(ds.CorruptDataError, match="module 'first'"):
        ds.load(path)


def test_frames_from_another_file_or_place_fail(tmp_path: Path) -> None:
    o = big_program()
    one = save(o, tmp_path, "key")
    two = o.save(tmp_path / "two.msgpack", key=RAW).path  # same key, same program, another nonce
    _, starts, lengths, _ = frames_of(one)
    data_two = bytearray(two.read_bytes())
    _, starts2, lengths2, _ = frames_of(two)
    assert lengths == lengths2
    data_two[starts2[1]:starts2[1] + lengths2[1]] = one.read_bytes()[starts[1]:starts[1] + lengths[1]]
    two.write_bytes(bytes(data_two))
    with pytest.raises(ds.DecryptionError, match="module 'first'"):
        ds.load_module(two, "first", key=RAW)
    assert ds.load_module(two, "qa", key=RAW) == o.qa  # the other frames still open


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_flipped_byte_and_every_cut_is_a_clear_error(layout: str, tmp_path: Path) -> None:
    p = ds.Program()
    p.a = ds.Predict("q -> a")
    p.a.demos = [ds.Example(q="x" * 40, a="y")]
    p.b = ds.Predict("q -> a")
    path = save(p, tmp_path, layout)
    key = LAYOUTS[layout].get("key")
    if isinstance(key, str):
        key = crypto.Key.from_user(key, crypto.read_header(path.read_bytes()).kdf)  # scrypt once
    good = path.read_bytes()
    bad = tmp_path / "bad.msgpack"
    want = p.to_state()
    for i in range(len(good)):
        flipped = bytearray(good)
        flipped[i] ^= 0x01
        bad.write_bytes(bytes(flipped))
        for lazy in (False, True):
            try:
                state = ds.load(bad, key=key, lazy=lazy).to_state()  # every module touched
            except ds.DesiruError:
                continue
            # without a key nothing authenticates the compressed bytes: a flip may only hit what the
            # stream ignores (gzip's mtime or text flag), never change the program silently
            assert key is None and state == want, f"flipping byte {i} of {len(good)} went undetected (lazy={lazy})"
    for cut in range(0, len(good), 7):
        bad.write_bytes(good[:cut])
        with pytest.raises(ds.DesiruError):
            ds.load(bad, key=key)
        with pytest.raises(ds.DesiruError):
            ds.load(bad, key=key, lazy=True).to_state()
    bad.write_bytes(good + b"\x00")
    with pytest.raises(ds.CorruptDataError, match="follow the last frame"):
        ds.load(bad, key=key, lazy=True)


def test_keys_are_checked_before_any_frame_is_opened(tmp_path: Path) -> None:
    path = save(big_program(), tmp_path, "key+zstd")
    with pytest.raises(ds.MissingKeyError):
        ds.load(path, lazy=True)
    with pytest.raises(ds.DecryptionError, match="encrypted with key id"):
        ds.load(path, key=os.urandom(32), lazy=True)
    with pytest.raises(ds.DecryptionError, match="a passphrase was given"):
        ds.load_module(path, "first", key="a passphrase")
    compressed = save(big_program(), tmp_path, "zstd")
    with pytest.raises(ds.NotEncryptedError):
        ds.load(compressed, key=RAW, lazy=True)


def test_migrate_and_convert_write_the_framed_layout(tmp_path: Path) -> None:
    path = tmp_path / "old.msgpack.zst"
    shutil.copy(VECTORS / "v2_2_0.msgpack.zst", path)
    assert not framed.is_framed(path.read_bytes())  # 2.2.0: one zstd frame around the whole document
    res = ds.migrate(path)
    assert res.changed and framed.is_framed(path.read_bytes())
    p = ds.load(path, lazy=True)
    assert not any(n in vars(p) for n in p._modules) and p == ds.load(res.backup)
    from click.testing import CliRunner

    from desiru.cli.app import cli

    written = tmp_path / "converted.msgpack.gz"
    r = CliRunner().invoke(cli, ["convert", str(VECTORS / "v2_0_0.msgpack.zst"), str(written)])
    assert r.exit_code == 0, r.output
    assert crypto.read_header(written.read_bytes()).compression == "gzip"
    assert ds.load(written, lazy=True) == ds.load(VECTORS / "v2_0_0.msgpack.zst")


@pytest.mark.parametrize("name", ["v2_3_0.msgpack.zst", "v2_3_0.msgpack.gz", "v2_3_0_encrypted_rawkey.msgpack",
                                  "v2_3_0_encrypted_passphrase.msgpack"])
def test_the_framed_vectors_open_lazily(name: str) -> None:
    import json

    key = json.loads((VECTORS / f"{name}.expected.json").read_text())["key"]
    p = ds.load(VECTORS / name, key=key, lazy=True)
    assert not any(n in vars(p) for n in p._modules)
    assert p == ds.load(VECTORS / "v2_3_0.msgpack")


def test_rekey_moves_a_framed_file_between_keys_and_layouts(tmp_path: Path) -> None:
    o = big_program()
    path = save(o, tmp_path, "key+zstd")
    new = os.urandom(32)
    r = ds.rekey(path, RAW, new)
    assert (r.old_key_id, r.new_key_id) == (crypto.key_id_of(RAW), crypto.key_id_of(new))
    assert crypto.read_header(path.read_bytes()).compression == "zstd"
    assert ds.load(path, key=new, lazy=True) == o
    ds.rekey(path, new, None)  # decrypted: still compressed in frames
    assert not crypto.is_encrypted(path.read_bytes()) and framed.is_framed(path.read_bytes())
    assert ds.load(path, lazy=True) == o
    plain = save(o, tmp_path, "key")
    ds.rekey(plain, RAW, None)  # neither compressed nor encrypted: a plain msgpack document
    assert not framed.is_framed(plain.read_bytes()) and ds.load(plain, lazy=True) == o
