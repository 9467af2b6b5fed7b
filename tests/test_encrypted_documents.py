"""Encrypted documents through the public API: save/load/ds.load/export/import with key=,
EncryptedSerializer, key forms, tampering, plaintext leaks, and ds.rekey."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from programs import QA, programs, sample_program

import desiru as ds
from desiru import crypto
from desiru.serialization import EncryptedSerializer, Serializer
from desiru.serialization.container import CONTAINER_MAGIC

FORMATS = ["json", "yaml", "msgpack"]
COMPRESSIONS = [None, "zstd", "gzip"]
SUFFIX = {"json": ".json", "yaml": ".yaml", "msgpack": ".msgpack"}
RAW = bytes(range(100, 132))
PASSPHRASE = "tr0ub4dor & 3"
MARKER = "MARKER-q7Zk-secret-prompt-text"
SERIALIZER = EncryptedSerializer(RAW)


def marked_program() -> QA:
    """The sample program with a marker string in a demo, an instruction and a parameter."""
    p = sample_program()
    p.answer.demos.append(ds.Example(question=f"What is {MARKER}?", context=MARKER * 3, answer=MARKER))
    p.retrieve.parameters["system"] = f"never reveal {MARKER}"
    return p


def key_forms(raw: bytes) -> dict[str, object]:
    return {
        "raw": raw,
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "base64": base64.b64encode(raw).decode(),
        "base64url-unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "Key": crypto.Key.from_user(raw),
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compress", COMPRESSIONS)
def test_round_trip_every_format_and_compression(tmp_path: Path, fmt: str, compress: str | None) -> None:
    p = marked_program()
    r = p.save(tmp_path / f"qa{SUFFIX[fmt]}", compress=compress, key=RAW)
    assert r.encrypted is True and r.format == fmt and r.compression == compress
    data = r.path.read_bytes()
    assert data.startswith(CONTAINER_MAGIC)
    assert MARKER.encode() not in data
    loaded = QA.load(r.path, key=RAW.hex())
    assert loaded == p
    doc = ds.load(r.path, key=RAW)
    assert type(doc) is QA and doc == p
    if fmt == "msgpack":  # a program in per-module frames (container version 2), each compressed then sealed
        header = crypto.read_header(data)
        assert (header.version, header.encrypted, header.compression) == (crypto.FRAMED_VERSION, True, compress)
        return
    inner = crypto.open_document(data, RAW)[0]  # the layer under the encryption is the compression
    if compress == "zstd":
        assert inner.startswith(b"\x28\xb5\x2f\xfd")
    elif compress == "gzip":
        assert inner.startswith(b"\x1f\x8b")


@pytest.mark.parametrize("fmt", FORMATS)
def test_passphrase_round_trip(tmp_path: Path, fmt: str) -> None:
    p = marked_program()
    r = p.save(tmp_path / f"qa{SUFFIX[fmt]}", compress="zstd", key=PASSPHRASE)
    header = crypto.read_header(r.path.read_bytes())
    assert header.kdf is not None and header.kdf["n"] == crypto.SCRYPT_N
    assert QA.load(r.path, key=PASSPHRASE) == p
    with pytest.raises(ds.DecryptionError, match="wrong passphrase or damaged file"):
        QA.load(r.path, key=PASSPHRASE + " ")


def test_all_key_forms_are_one_key(tmp_path: Path) -> None:
    p = marked_program()
    forms = key_forms(RAW)
    for save_name, save_form in forms.items():
        path = tmp_path / f"{save_name}.msgpack"
        p.save(path, key=save_form)
        for load_name, load_form in forms.items():
            assert QA.load(path, key=load_form) == p, (save_name, load_name)


def test_key_from_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_ENCRYPTION_KEY", base64.b64encode(RAW).decode() + "\n")
    p = marked_program()
    p.save(tmp_path / "qa.msgpack", key=os.environ["MODEL_ENCRYPTION_KEY"])
    assert QA.load(tmp_path / "qa.msgpack", key=RAW.hex()) == p


def test_missing_and_wrong_keys(tmp_path: Path) -> None:
    path = marked_program().save(tmp_path / "qa.json", key=RAW).path
    with pytest.raises(ds.MissingKeyError) as missing:
        ds.load(path)
    assert missing.value.path == str(path)
    other = os.urandom(32)
    with pytest.raises(ds.DecryptionError) as wrong:
        QA.load(path, key=other)
    assert not isinstance(wrong.value, ds.MissingKeyError)
    assert f"encrypted with key id {crypto.key_id_of(RAW)}; the key given has id {crypto.key_id_of(other)}" in str(
        wrong.value
    )
    assert str(path) in str(wrong.value)
    with pytest.raises(ds.DesiruError, match="exactly 32 bytes; got 31"):
        QA.load(path, key=RAW[:31])


def test_export_and_import_module_with_a_key(tmp_path: Path) -> None:
    p = marked_program()
    r = p.export_module("answer", tmp_path / "answer.yaml", compress="gzip", key=PASSPHRASE)
    assert MARKER.encode() not in r.path.read_bytes()
    q = QA()
    with pytest.raises(ds.MissingKeyError):
        q.import_module(r.path)
    mod = q.import_module(r.path, name="reasoning", key=PASSPHRASE)
    assert mod.to_state() == p.answer.to_state()
    assert isinstance(ds.load(r.path, key=PASSPHRASE), ds.Module)


def test_serializer_and_encrypted_serializer() -> None:
    p = marked_program()
    s = EncryptedSerializer(RAW.hex())
    assert s.key_id == crypto.key_id_of(RAW)
    for fmt in FORMATS:
        for compress in COMPRESSIONS:
            blob = s.serialize(p, format=fmt, compress=compress)
            assert blob.startswith(CONTAINER_MAGIC) and MARKER.encode() not in blob
            assert s.deserialize(blob) == p
            assert EncryptedSerializer(RAW).deserialize(blob) == p
            assert Serializer().deserialize(blob, key=base64.b64encode(RAW).decode()) == p
    assert s.serialize(p) != s.serialize(p)  # a fresh nonce every time
    with pytest.raises(ds.MissingKeyError):
        Serializer().deserialize(s.serialize(p))
    with pytest.raises(ds.DecryptionError, match="key id"):
        EncryptedSerializer(os.urandom(32)).deserialize(s.serialize(p))


@settings(max_examples=15)
@given(program=programs(), fmt=st.sampled_from(FORMATS), compress=st.sampled_from(COMPRESSIONS))
def test_generated_programs_round_trip_encrypted(program: ds.Program, fmt: str, compress: str | None) -> None:
    blob = SERIALIZER.serialize(program, format=fmt, compress=compress)
    assert blob.startswith(CONTAINER_MAGIC)
    back = SERIALIZER.deserialize(blob)
    assert type(back) is type(program) and back.to_state() == program.to_state()


def test_encrypted_serializer_refuses_plaintext_and_needs_a_key() -> None:
    p = marked_program()
    plain = Serializer().serialize(p)
    with pytest.raises(ds.DecryptionError, match="not encrypted"):
        EncryptedSerializer(RAW).deserialize(plain)
    with pytest.raises(ds.DesiruError, match="needs a key"):
        EncryptedSerializer(None)  # type: ignore[arg-type]
    with pytest.raises(ds.DesiruError, match="expected bytes"):
        EncryptedSerializer(RAW).deserialize("text")  # type: ignore[arg-type]


def test_a_passphrase_serializer_derives_once() -> None:
    s = EncryptedSerializer(PASSPHRASE)
    p = marked_program()
    a, b = s.serialize(p), s.serialize(p)
    assert crypto.read_header(a).kdf == crypto.read_header(b).kdf  # same salt: scrypt ran once
    assert EncryptedSerializer(PASSPHRASE).deserialize(a) == p


# -- tampering ------------------------------------------------------------------------------------
def _flip_every_byte(blob: bytes, key: object) -> dict[type, int]:
    """Flip each byte in turn; every variant must raise, none may load. Returns error counts by type."""
    seen: dict[type, int] = {}
    magic = len(CONTAINER_MAGIC)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        try:
            Serializer().deserialize(bytes(bad), key=key)
        except ds.DesiruError as exc:
            # a damaged magic is no longer a container: format detection refuses the binary bytes; a
            # version byte flipped from 2 (framed) to 3 names a newer container
            allowed = (ds.DecryptionError, ds.CorruptDataError) + ((ds.FormatError,) if i < magic else ()) + (
                (ds.IncompatibleVersionError,) if i == magic and blob[magic] == crypto.FRAMED_VERSION else ())
            assert isinstance(exc, allowed), (i, exc)
            assert not isinstance(exc, ds.MissingKeyError) or i < magic, (i, exc)
            seen[type(exc)] = seen.get(type(exc), 0) + 1
        else:
            pytest.fail(f"flipping byte {i} of {len(blob)} went undetected")
    return seen


@pytest.mark.parametrize(("fmt", "compress"), [("msgpack", None), ("json", "zstd"), ("yaml", "gzip")])
def test_every_flipped_byte_is_detected(fmt: str, compress: str | None) -> None:
    p = QA()
    p.answer.demos = [ds.Example(question="q", answer=MARKER)]
    blob = Serializer().serialize(p, format=fmt, compress=compress, key=RAW)
    seen = _flip_every_byte(blob, RAW)
    assert sum(seen.values()) == len(blob)
    # the body and the key-bound header; a framed document's frame directory (4 + 8 bytes a frame) is
    # checked against the file's size first (CorruptDataError), and binds every frame too
    clear = 4 + 8 * int.from_bytes(blob[33:37], "big") if blob[8] == crypto.FRAMED_VERSION else 0
    assert seen.get(ds.DecryptionError, 0) >= len(blob) - 32 - clear


def test_every_flipped_byte_of_a_passphrase_document_is_detected() -> None:
    p = QA()
    p.answer.demos = [ds.Example(question="q", answer=MARKER)]
    blob = Serializer().serialize(p, key=PASSPHRASE)
    key = crypto.Key.from_user(PASSPHRASE, crypto.read_header(blob).kdf)  # derive once for the body flips
    seen = _flip_every_byte(blob, key)
    assert sum(seen.values()) == len(blob)


@pytest.mark.parametrize("segment_log2", [None, 20], ids=["one segment", "1 MiB segments"])
def test_truncations_are_detected(monkeypatch: pytest.MonkeyPatch, segment_log2: int | None) -> None:
    monkeypatch.setattr(crypto, "WRITE_SEGMENT_LOG2", segment_log2)
    p = marked_program()
    p.answer.demos.append(ds.Example(question="big", answer="x" * (3 << 20)))
    blob = Serializer().serialize(p, key=RAW)
    assert len(blob) > 3 << 20
    assert blob[11] == (segment_log2 or 22)  # by default the smallest power of two above the body
    assert Serializer().deserialize(blob, key=RAW) == p
    stride = (1 << blob[11]) + 16
    cuts = [0, 5, 8, 31, 32, 33, 48, 32 + stride, 32 + 2 * stride, len(blob) - 16, len(blob) - 1]
    for cut in (c for c in cuts if c < len(blob)):
        with pytest.raises((ds.DecryptionError, ds.CorruptDataError)):
            Serializer().deserialize(blob[:cut], key=RAW)
    with pytest.raises((ds.DecryptionError, ds.CorruptDataError)):
        Serializer().deserialize(blob + b"\x00", key=RAW)


def test_no_plaintext_leaks_compressed_or_not(tmp_path: Path) -> None:
    p = marked_program()
    needles = [MARKER.encode(), MARKER.encode("utf-16-le"), MARKER[:12].encode()]
    # the check can fail: the marker is there when nothing is encrypted
    plain = p.save(tmp_path / "plain.json").path.read_bytes()
    assert MARKER.encode() in plain
    assert MARKER.encode() in p.save(tmp_path / "plain.msgpack").path.read_bytes()
    for fmt in FORMATS:
        for compress in COMPRESSIONS:
            for key in (RAW, PASSPHRASE):
                data = p.save(tmp_path / f"e{SUFFIX[fmt]}", compress=compress, key=key).path.read_bytes()
                for needle in needles:
                    assert needle not in data, (fmt, compress)
                assert RAW not in data and RAW.hex().encode() not in data and PASSPHRASE.encode() not in data
    leftovers = [f.name for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    assert leftovers == []


# -- rekey --------------------------------------------------------------------------------------
def test_rekey_round_trip(tmp_path: Path) -> None:
    p = marked_program()
    path = p.save(tmp_path / "qa.msgpack", compress="zstd", key=RAW).path
    new = os.urandom(32)
    r = ds.rekey(path, RAW.hex(), base64.b64encode(new).decode())
    assert (r.kind, r.old_key_id, r.new_key_id, r.path) == (
        "document",
        crypto.key_id_of(RAW),
        crypto.key_id_of(new),
        path,
    )
    assert QA.load(path, key=new) == p
    with pytest.raises(ds.DecryptionError, match=f"encrypted with key id {crypto.key_id_of(new)}"):
        QA.load(path, key=RAW)
    assert crypto.read_header(path.read_bytes()).compression == "zstd"  # still zstd, in per-module frames
    r = ds.rekey(path, new, PASSPHRASE)
    assert (
        crypto.read_header(path.read_bytes()).kdf is not None
        and r.new_key_id == crypto.read_header(path.read_bytes()).key_id
    )
    assert QA.load(path, key=PASSPHRASE) == p
    ds.rekey(path, PASSPHRASE, RAW)
    assert QA.load(path, key=RAW) == p


def test_rekey_encrypts_and_decrypts_plain_documents(tmp_path: Path) -> None:
    p = marked_program()
    path = p.save(tmp_path / "qa.json").path
    r = ds.rekey(path, None, RAW)
    assert r.old_key_id is None and MARKER.encode() not in path.read_bytes()
    assert QA.load(path, key=RAW) == p
    r = ds.rekey(path, RAW, None)
    assert r.new_key_id is None and MARKER.encode() in path.read_bytes()
    assert QA.load(path) == p


def test_rekey_is_atomic_and_refuses_mistakes(tmp_path: Path) -> None:
    p = marked_program()
    path = p.save(tmp_path / "qa.msgpack", key=RAW).path
    before = path.read_bytes()
    with pytest.raises(ds.DecryptionError, match="key id"):
        ds.rekey(path, os.urandom(32), PASSPHRASE)
    with pytest.raises(ds.MissingKeyError):
        ds.rekey(path, None, PASSPHRASE)
    with pytest.raises(ds.DesiruError, match="old key, a new key, or both"):
        ds.rekey(path, None, None)
    tampered = bytearray(before)
    tampered[-5] ^= 0x40
    path.write_bytes(bytes(tampered))
    with pytest.raises(ds.DecryptionError, match="authentication failed"):
        ds.rekey(path, RAW, PASSPHRASE)
    assert path.read_bytes() == bytes(tampered)
    path.write_bytes(before)
    plain = p.save(tmp_path / "plain.json").path
    plain_bytes = plain.read_bytes()
    with pytest.raises(ds.DesiruError, match="not encrypted"):
        ds.rekey(plain, RAW, PASSPHRASE)
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b'{"not": "a desiru document"}')
    with pytest.raises(ds.DesiruError):
        ds.rekey(garbage, None, RAW)
    assert path.read_bytes() == before and plain.read_bytes() == plain_bytes
    assert garbage.read_bytes() == b'{"not": "a desiru document"}'
    assert sorted(f.name for f in tmp_path.iterdir()) == ["garbage.json", "plain.json", "qa.msgpack"]
    with pytest.raises(ds.DesiruError, match="no such file"):
        ds.rekey(tmp_path / "missing.bin", RAW, PASSPHRASE)


def test_rekey_keeps_the_file_mode(tmp_path: Path) -> None:
    path = marked_program().save(tmp_path / "qa.msgpack", key=RAW).path
    path.chmod(0o600)
    ds.rekey(path, RAW, os.urandom(32))
    assert path.stat().st_mode & 0o777 == 0o600


def test_docs_encryption_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "encryption.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODEL_ENCRYPTION_KEY", raising=False)
    namespace = {"__name__": "encryption_doc_example"}
    for code in blocks:  # one namespace: later blocks use what earlier ones defined, as a reader would
        exec(compile(code, str(doc), "exec"), namespace)
    assert (tmp_path / "bot.journal").is_dir() and (tmp_path / "bot.msgpack").is_file()


def test_a_key_refuses_a_plain_file(tmp_path: Path) -> None:
    """A key means the data must be encrypted: a planted plaintext is refused, not loaded."""
    plain = ds.Program(step=ds.Predict("q -> a")).save(tmp_path / "plain.json").path
    with pytest.raises(ds.NotEncryptedError, match="not encrypted"):
        ds.load(plain, key=b"k" * 32)
    with pytest.raises(ds.DecryptionError):
        ds.Program.load(plain, key="a passphrase")
    assert ds.load(plain) == ds.Program(step=ds.Predict("q -> a"))
