"""Regenerate records.bin and manifest.json (the shared record-framing vectors).

The bytes are written by the pure-Python twin (the ``xxhash`` package's xxh3),
so `cargo test` checks the Rust framing against an independent implementation
and pytest checks both. Run from the repository root:
``python tests/vectors/frames/make_vectors.py``. The files are frozen: once
committed they pin the on-disk layout; regenerate only on a format change.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import xxhash

from desiru._pure.frame import MAX_RECORD, frame_encode, frame_scan

HERE = Path(__file__).resolve().parent
SALT = 0x9E3779B97F4A7C15
OTHER_SALT = 0x0123456789ABCDEF


def segment(items: list[tuple[bytes, int, int]]) -> bytes:
    return b"".join(frame_encode(p, seq, salt) for p, seq, salt in items)


def main() -> None:
    payloads = [
        b"",
        b"hello journal",
        bytes(range(256)),
        b"\x82\xa2op\xadparameter_set\xa4path\xa6answer" * 10,
        "unicode \u00e9\u4e2d\U0001f600".encode(),
    ]
    seg0 = segment([(p, i + 1, SALT) for i, p in enumerate(payloads)])
    bad_payload = bytearray(segment([(b"first", 1, SALT), (b"second", 2, SALT), (b"third!", 3, SALT)]))
    bad_payload[-2] ^= 0x10  # a bit in the last record's payload
    other_salt = segment([(b"mine", 10, SALT), (b"theirs", 11, OTHER_SALT)])
    huge = bytearray(struct.pack("<IQQ", 0xFFFFFFF0, 12, 0))
    huge += (xxhash.xxh3_64_intdigest(bytes(huge), seed=SALT) & 0xFFFFFFFF).to_bytes(4, "little")
    over_limit = segment([(b"before", 11, SALT)]) + bytes(huge) + b"trailing garbage"
    seq_repeat = segment([(b"a", 7, SALT), (b"b", 7, SALT)])
    seq_back = segment([(b"a", 9, SALT), (b"b", 10, SALT), (b"c", 4, SALT)])

    blob = bytearray()
    bounds: dict[str, tuple[int, int]] = {}
    for name, seg in [
        ("seg0", seg0),
        ("bad_payload", bytes(bad_payload)),
        ("other_salt", other_salt),
        ("over_limit", over_limit),
        ("seq_repeat", seq_repeat),
        ("seq_back", seq_back),
    ]:
        bounds[name] = (len(blob), len(blob) + len(seg))
        blob += seg
    s0, e0 = bounds["seg0"]
    last = frame_scan(seg0, SALT)[0][-1][1]
    third = frame_scan(seg0, SALT)[0][2][1]

    specs = [
        ("clean", s0, e0, 0, SALT, MAX_RECORD),
        ("clean from the third record", s0, e0, third, SALT, MAX_RECORD),
        ("empty slice", s0, s0, 0, SALT, MAX_RECORD),
        ("torn header", s0, s0 + last + 10, 0, SALT, MAX_RECORD),
        ("torn payload", s0, s0 + last + 30, 0, SALT, MAX_RECORD),
        ("wrong salt", s0, e0, 0, OTHER_SALT, MAX_RECORD),
        ("lowered max_record", s0, e0, 0, SALT, 100),
        ("bad payload checksum", *bounds["bad_payload"], 0, SALT, MAX_RECORD),
        ("record of another journal", *bounds["other_salt"], 0, SALT, MAX_RECORD),
        ("length over limit", *bounds["over_limit"], 0, SALT, MAX_RECORD),
        ("seq repeated", *bounds["seq_repeat"], 0, SALT, MAX_RECORD),
        ("seq going back", *bounds["seq_back"], 0, SALT, MAX_RECORD),
    ]
    cases = []
    for name, start, end, offset, salt, max_record in specs:
        records, good_end, fault = frame_scan(bytes(blob[start:end]), salt, offset, max_record)
        cases.append(
            {
                "name": name,
                "start": start,
                "end": end,
                "offset": offset,
                "salt": salt,
                "max_record": max_record,
                "records": [{"seq": s, "offset": o, "payload_hex": p.hex()} for s, o, p in records],
                "good_end": good_end,
                "fault": list(fault) if fault else None,
            }
        )
    (HERE / "records.bin").write_bytes(bytes(blob))
    manifest = {
        "about": "record-framing vectors: scan bin[start:end] from offset with salt and max_record",
        "header_len": 24,
        "max_record": MAX_RECORD,
        "cases": cases,
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
