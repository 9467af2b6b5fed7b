"""desiru.crypto on its own: key forms and ids, the container bytes (read back by an independent
reader written from docs/FORMAT.md), segments, header bounds, and journal records."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pickle
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from hypothesis import given
from hypothesis import strategies as st

import desiru as ds
from desiru import crypto
from desiru.serialization.container import CONTAINER_MAGIC

RAW = bytes(range(32))
PASSPHRASE = "correct horse battery staple"


def all_forms(raw: bytes) -> list[object]:
    """Every way a user may spell the same 32-byte key."""
    b64 = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    return [
        raw,
        bytearray(raw),
        memoryview(raw),
        raw.hex(),
        raw.hex().upper(),
        f"  {raw.hex()}\n",
        b64,
        b64.rstrip("="),
        url,
        url.rstrip("="),
        b64 + "\n",
        crypto.Key.from_user(raw),
    ]


# -- keys ---------------------------------------------------------------------------------------
def test_every_form_of_one_key_is_the_same_key() -> None:
    expected = hmac.new(RAW, b"desiru key id v1", hashlib.sha256).digest()[:8].hex()
    for form in all_forms(RAW):
        key = crypto.Key.from_user(form)  # type: ignore[arg-type]
        assert key.key_id == expected, form
        assert not key.is_passphrase and key.kdf is None
        assert crypto.key_id_of(form) == expected  # type: ignore[arg-type]


@given(st.binary(min_size=32, max_size=32))
def test_key_forms_agree_for_any_key(raw: bytes) -> None:
    ids = {crypto.Key.from_user(form).key_id for form in all_forms(raw)}  # type: ignore[arg-type]
    assert ids == {crypto.key_id_of(raw)}


def test_key_id_never_contains_the_key() -> None:
    key = crypto.Key.from_user(RAW)
    assert len(key.key_id) == 16 and key.key_id not in RAW.hex()
    assert RAW.hex() not in repr(key) and "raw" in repr(key)
    blob = crypto.seal_document(b"x", RAW)
    assert RAW not in blob and RAW.hex().encode() not in blob
    with pytest.raises(TypeError):
        pickle.dumps(key)


@pytest.mark.parametrize("size", [0, 1, 16, 31, 33, 64])
def test_bytes_of_the_wrong_length_are_refused(size: int) -> None:
    with pytest.raises(ds.DesiruError, match=f"exactly 32 bytes; got {size}"):
        crypto.Key.from_user(os.urandom(size))


@pytest.mark.parametrize("bad", [None, 12345, 1.5, ["k"]])
def test_other_types_are_refused(bad: object) -> None:
    with pytest.raises(ds.DesiruError, match="bytes or str"):
        crypto.Key.from_user(bad)  # type: ignore[arg-type]


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(ds.DesiruError, match="empty"):
        crypto.Key.from_user("")


@pytest.mark.parametrize(
    "text",
    [
        "a" * 64 + "x",  # 65 characters: a passphrase, not hex
        "g" * 64,  # 64 characters that are not hex
        base64.b64encode(bytes(31)).decode(),  # base64, but of 31 bytes
        base64.b64encode(bytes(33)).decode(),
        "hunter2",
    ],
)
def test_strings_that_are_not_keys_are_passphrases(text: str) -> None:
    key = crypto.Key.from_user(text)
    assert key.is_passphrase and key.kdf is not None and key.kdf["name"] == "scrypt"


def test_passphrase_derivation_matches_scrypt_and_salt_changes_the_id() -> None:
    a = crypto.Key.from_user(PASSPHRASE)
    assert (a.kdf["n"], a.kdf["r"], a.kdf["p"]) == (crypto.SCRYPT_N, crypto.SCRYPT_R, crypto.SCRYPT_P)
    assert len(a.kdf["salt"]) == 16
    derived = Scrypt(salt=a.kdf["salt"], length=32, n=2**15, r=8, p=1).derive(PASSPHRASE.encode())
    assert a.key_id == crypto.key_id_of(derived)
    again = crypto.Key.from_user(PASSPHRASE, a.kdf)
    assert again.key_id == a.key_id
    assert crypto.key_id_of(PASSPHRASE, a.kdf) == a.key_id
    b = crypto.Key.from_user(PASSPHRASE)  # fresh salt: another key, another id
    assert b.kdf["salt"] != a.kdf["salt"] and b.key_id != a.key_id
    assert b.for_kdf(a.kdf).key_id == a.key_id
    with pytest.raises(ds.DesiruError, match="depends on the salt"):
        crypto.key_id_of(PASSPHRASE)


def test_passphrases_are_unicode_normalized() -> None:
    nfc, nfd = "caf\u00e9 au lait", "cafe\u0301 au lait"
    k = crypto.Key.from_user(nfc)
    assert crypto.Key.from_user(nfd, k.kdf).key_id == k.key_id


def test_kdf_cost_can_be_chosen_and_is_bounded() -> None:
    cheap = crypto.Key.from_user(PASSPHRASE, {"name": "scrypt", "n": 2**12, "r": 8, "p": 1})
    assert cheap.kdf["n"] == 2**12 and len(cheap.kdf["salt"]) == 16
    for bad in ({"n": 2**21}, {"n": 3000}, {"r": 64}, {"p": 17}, {"n": 2**18, "r": 16}, {"salt": b"short"}):
        with pytest.raises(ds.CorruptDataError, match="scrypt parameters out of bounds"):
            crypto.Key.from_user(PASSPHRASE, bad)
    with pytest.raises(ds.DesiruError, match="unknown key derivation"):
        crypto.Key.from_user(PASSPHRASE, {"name": "argon2id"})


def test_generate_key_is_a_hex_key() -> None:
    text = crypto.generate_key()
    assert len(text) == 64 and not crypto.Key.from_user(text).is_passphrase
    assert crypto.generate_key() != text


# -- an independent reader, written from docs/FORMAT.md -----------------------------------------
def reference_open(blob: bytes, raw_key: bytes | None = None, passphrase: str | None = None) -> bytes:
    """Decrypt a container the way another language would, following FORMAT.md only."""
    assert blob[:8] == b"\x89DSRU\r\n\x1a"
    version, cipher, kdf_id, seg_log2 = blob[8:12]
    assert (version, cipher) == (1, 1) and kdf_id in (0, 1) and 12 <= seg_log2 <= 30
    key_id, nonce = blob[12:20], blob[20:32]
    end = 32
    if kdf_id == 1:
        log2_n, r, p = blob[32:35]
        salt = blob[35:51]
        end = 51
        assert passphrase is not None
        raw_key = Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase.encode())
    assert raw_key is not None
    assert hmac.new(raw_key, b"desiru key id v1", hashlib.sha256).digest()[:8] == key_id
    header, body = blob[:end], blob[end:]
    stride = (1 << seg_log2) + 16
    count = len(body) // stride + 1
    out = []
    for i in range(count):
        seg_nonce = (int.from_bytes(nonce, "big") ^ i).to_bytes(12, "big")
        aad = header + struct.pack(">Q", i) + bytes([i == count - 1])
        out.append(AESGCM(raw_key).decrypt(seg_nonce, body[i * stride : (i + 1) * stride], aad))
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096, 10_000])
def test_container_layout_matches_the_spec(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(crypto, "WRITE_SEGMENT_LOG2", 12)  # 4 KiB segments so small bodies span several
    body = os.urandom(size)
    blob = crypto.seal_document(body, RAW)
    assert blob.startswith(CONTAINER_MAGIC) and blob[11] == 12
    assert len(blob) == 32 + size + 16 * (size // 4096 + 1)
    assert reference_open(blob, raw_key=RAW) == body
    assert crypto.open_document(blob, RAW) == (body, crypto.key_id_of(RAW))


def test_writers_use_one_segment_up_to_a_gib() -> None:
    assert [crypto.segment_log2_for(n) for n in (0, 1, 4095, 4096, 10_000, 110 << 20, 2**30 - 1, 2**30, 2**40)] == [
        12,
        12,
        12,
        13,
        14,
        27,
        30,
        30,
        30,
    ]
    body = os.urandom(10_000)
    blob = crypto.seal_document(body, RAW)
    assert blob[11] == 14 and len(blob) == 32 + len(body) + 16  # one segment, one tag
    assert reference_open(blob, raw_key=RAW) == body


def test_passphrase_container_matches_the_spec() -> None:
    body = b"secret body" * 50
    blob = crypto.seal_document(body, PASSPHRASE)
    assert blob[10] == 1 and blob[32] == 15 and blob[33] == 8 and blob[34] == 1
    assert reference_open(blob, passphrase=PASSPHRASE) == body
    header = crypto.read_header(blob)
    assert header.kdf is not None and header.size == 51 and header.kdf["salt"] == blob[35:51]


def test_each_seal_uses_a_fresh_nonce() -> None:
    blobs = [crypto.seal_document(b"same body", RAW) for _ in range(50)]
    assert len({b[20:32] for b in blobs}) == 50
    assert len(set(blobs)) == 50


def test_segments_cannot_be_dropped_reordered_or_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "WRITE_SEGMENT_LOG2", 12)
    body = os.urandom(3 * 4096 + 100)  # four segments
    blob = crypto.seal_document(body, RAW)
    head, stride = 32, 4096 + 16
    segs = [blob[head + i * stride : head + (i + 1) * stride] for i in range(4)]
    variants = {
        "cut at a segment boundary": blob[: head + 3 * stride],
        "first segment dropped": blob[:head] + b"".join(segs[1:]),
        "two segments swapped": blob[:head] + segs[1] + segs[0] + segs[2] + segs[3],
        "last byte cut": blob[:-1],
        "tag only": blob[: head + 16],
        "header only": blob[:head],
    }
    for name, bad in variants.items():
        with pytest.raises((ds.DecryptionError, ds.CorruptDataError)):
            crypto.open_document(bad, RAW)
            pytest.fail(name)


def test_header_bytes_are_authenticated() -> None:
    blob = bytearray(crypto.seal_document(b"body" * 100, RAW))
    blob[11] = 13  # another segment size: same bytes, different AAD
    with pytest.raises(ds.DecryptionError, match="authentication failed"):
        crypto.open_document(bytes(blob), RAW)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (CONTAINER_MAGIC + b"\x01\x01", "truncated"),  # a 10-byte file
        (CONTAINER_MAGIC + bytes([1, 1, 1, 20]) + bytes(20) + b"\x0f\x08", "truncated inside its scrypt"),
        (CONTAINER_MAGIC + bytes([0, 1, 0, 20]) + bytes(40), "invalid encrypted container version 0"),
        (CONTAINER_MAGIC + bytes([1, 9, 0, 20]) + bytes(40), "unknown cipher id 9"),
        (CONTAINER_MAGIC + bytes([1, 1, 7, 20]) + bytes(40), "unknown key derivation id 7"),
        (CONTAINER_MAGIC + bytes([1, 1, 0, 31]) + bytes(40), "segment size"),
        (CONTAINER_MAGIC + bytes([1, 1, 0, 11]) + bytes(40), "segment size"),
        (CONTAINER_MAGIC + bytes([1, 1, 1, 20]) + bytes(20) + bytes([40, 8, 1]) + bytes(60), "out of bounds"),
        (
            CONTAINER_MAGIC + bytes([1, 1, 1, 20]) + bytes(20) + bytes([20, 255, 255]) + bytes(60),
            "out of bounds",
        ),
        (CONTAINER_MAGIC + bytes([1, 1, 0, 20]) + bytes(20) + bytes(15), "truncated"),
    ],
)
def test_malformed_headers_fail_at_once(blob: bytes, match: str) -> None:
    with pytest.raises(ds.CorruptDataError, match=match):
        crypto.open_document(blob, RAW)


def test_a_newer_container_version_says_upgrade() -> None:
    blob = bytearray(crypto.seal_document(b"x", RAW))
    blob[8] = 3  # 2 is the framed container (docs/FORMAT.md)
    with pytest.raises(ds.IncompatibleVersionError, match="newer"):
        crypto.open_document(bytes(blob), RAW)


def test_key_errors_name_both_ids() -> None:
    blob = crypto.seal_document(b"x", RAW)
    other = os.urandom(32)
    with pytest.raises(ds.MissingKeyError):
        crypto.open_document(blob, None, path="f.bin")
    with pytest.raises(ds.DecryptionError) as err:
        crypto.open_document(blob, other, path="f.bin")
    assert f"encrypted with key id {crypto.key_id_of(RAW)}; the key given has id {crypto.key_id_of(other)}" in str(
        err.value
    )
    assert err.value.path == "f.bin" and not isinstance(err.value, ds.MissingKeyError)
    with pytest.raises(ds.DecryptionError, match="a passphrase was given"):
        crypto.open_document(blob, PASSPHRASE)
    pblob = crypto.seal_document(b"x", PASSPHRASE)
    with pytest.raises(ds.DecryptionError, match="wrong passphrase or damaged file"):
        crypto.open_document(pblob, "not it")
    with pytest.raises(ds.DecryptionError, match="a raw key was given"):
        crypto.open_document(pblob, RAW)


def test_a_passphrase_key_object_is_reused_without_scrypt_per_seal() -> None:
    key = crypto.Key.from_user(PASSPHRASE)
    a, b = crypto.seal_document(b"one", key), crypto.seal_document(b"two", key)
    assert a[35:51] == b[35:51] == key.kdf["salt"]
    assert crypto.open_document(a, key)[0] == b"one"
    other = crypto.seal_document(b"three", PASSPHRASE)  # another salt: the Key re-derives for it
    assert crypto.open_document(other, key)[0] == b"three"


# -- journal records ----------------------------------------------------------------------------
def test_records_round_trip_and_are_bound_to_journal_and_seq() -> None:
    key = crypto.Key.from_user(RAW)
    jid = os.urandom(16)
    rec = crypto.seal_record(key, jid, 7, b"payload")
    assert len(rec) == len(b"payload") + crypto.RECORD_OVERHEAD and rec[0] == 1
    assert crypto.open_record(key, jid, 7, rec) == b"payload"
    assert crypto.seal_record(key, jid, 7, b"payload") != rec  # fresh nonce
    with pytest.raises(ds.DecryptionError) as err:
        crypto.open_record(key, jid, 8, rec)
    assert err.value.seq == 8
    with pytest.raises(ds.DecryptionError):
        crypto.open_record(key, os.urandom(16), 7, rec)
    with pytest.raises(ds.DecryptionError):
        crypto.open_record(crypto.Key.from_user(os.urandom(32)), jid, 7, rec)
    for i in range(len(rec)):
        bad = bytearray(rec)
        bad[i] ^= 0x01
        with pytest.raises(ds.DecryptionError):
            crypto.open_record(key, jid, 7, bytes(bad))
    with pytest.raises(ds.DecryptionError, match="too short"):
        crypto.open_record(key, jid, 7, rec[:20])


def test_record_aad_spells_out_the_spec() -> None:
    key = crypto.Key.from_user(RAW)
    rec = crypto.seal_record(key, b"J1", 2**40, b"event")
    aad = b"desiru journal record v1\x00" + bytes([2]) + b"J1" + struct.pack(">Q", 2**40)
    assert AESGCM(RAW).decrypt(rec[1:13], rec[13:], aad) == b"event"


def test_records_need_a_key_object() -> None:
    with pytest.raises(ds.MissingKeyError):
        crypto.seal_record(None, b"j", 1, b"x")  # type: ignore[arg-type]
    with pytest.raises(ds.DesiruError, match=r"Key\.from_user"):
        crypto.seal_record(RAW, b"j", 1, b"x")  # type: ignore[arg-type]
    key = crypto.Key.from_user(RAW)
    with pytest.raises(ds.DesiruError, match="journal id too long"):
        crypto.seal_record(key, bytes(256), 1, b"x")
    with pytest.raises(ds.DesiruError, match="out of range"):
        crypto.seal_record(key, b"j", -1, b"x")


def test_check_key_id() -> None:
    key = crypto.Key.from_user(RAW)
    crypto.check_key_id(key, key.key_id)
    with pytest.raises(ds.DecryptionError, match="the key given has id") as err:
        crypto.check_key_id(key, "00" * 8, path="j", seq=3)
    assert err.value.seq == 3


def test_crypto_imports_nothing_from_serialization() -> None:
    """The container's magic and layout live in desiru.crypto; serialization.container imports them, and
    nothing in the crypto package imports serialization back, not even inside a function (issue 18)."""
    import ast

    root = Path(crypto.__file__).parent
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("desiru.serialization") for n in names), (path.name, node.lineno)
    container_src = (root.parent / "serialization" / "container.py").read_text()
    assert "from desiru.crypto import CONTAINER_MAGIC" in container_src
    assert "CONTAINER_MAGIC = " not in container_src  # defined once, in crypto
