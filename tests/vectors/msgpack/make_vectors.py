"""Regenerate the frozen msgpack vectors (run once; the outputs are committed).

Expected bytes of valid vectors come from the msgpack package
(``msgpack.packb(obj, use_bin_type=True)``; canonical ones from the key-sorted
tree), hashes from the xxhash package: an implementation independent of
desiru's. Malformed vectors are hand-made; their offsets are worked out by hand
in the comments below (the truncated-state one from the str it cuts).

    python tests/vectors/msgpack/make_vectors.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack
import xxhash

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "benchmarks"))

from data import small_state  # noqa: E402


def typed(obj: Any) -> Any:
    """A JSON form that keeps every msgpack type apart (see README.md)."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return {"int": str(obj)}
    if isinstance(obj, float):
        return {"float": repr(obj)}
    if isinstance(obj, str):
        return {"str": obj}
    if isinstance(obj, bytes):
        return {"bin": obj.hex()}
    if isinstance(obj, list):
        return {"array": [typed(x) for x in obj]}
    if isinstance(obj, dict):
        return {"map": [[k, typed(v)] for k, v in obj.items()]}
    raise TypeError(type(obj))


def sort_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: sort_keys(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [sort_keys(x) for x in obj]
    return obj


def nest(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


INTS = [
    0,
    1,
    31,
    32,
    127,
    128,
    255,
    256,
    32767,
    32768,
    65535,
    65536,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -5,
    -32,
    -33,
    -127,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
]
FLOATS = [0.0, -0.0, 1.5, -2.25, float("inf"), float("-inf"), float("nan"), 1e300, 5e-324, 0.1]
STRS = ["", "a", "é", "日本語", "🙂 astral ✓", "a" * 31, "a" * 32, "b" * 255, "c" * 256]
BINS = [b"", b"\x00", bytes(range(256)), b"\xff" * 255]


def valid() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, obj: Any, canonical: bool = False, long_form: Any = None) -> None:
        tree = sort_keys(obj) if canonical else obj
        data = msgpack.packb(tree, use_bin_type=True)
        entry: dict[str, Any] = {"name": name, "canonical": canonical}
        entry["value"] = long_form if long_form is not None else typed(obj)
        if len(data) > 600:
            (HERE / f"{name}.bin").write_bytes(data)
            entry["file"] = f"{name}.bin"
        else:
            entry["hex"] = data.hex()
        out.append(entry)

    for v in INTS:
        add(f"int_{v}", v)
    for v in FLOATS:
        add(f"float_{v!r}", v)
    for i, v in enumerate(STRS):
        add(f"str_{i}_len{len(v.encode())}", v)
    for i, v in enumerate(BINS):
        add(f"bin_{i}_len{len(v)}", v)
    for n in (65535, 65536):
        add(f"str_len{n}", "x" * n, long_form={"str_repeat": ["x", n]})
        add(f"bin_len{n}", b"\x07" * n, long_form={"bin_repeat": ["07", n]})
        add(f"array_len{n}", [None] * n, long_form={"array_repeat": [None, n]})
    for n in (0, 15, 16):
        add(f"array_len{n}", list(range(n)))
        add(f"map_len{n}", {f"k{i}": i for i in range(n)})
    add("nil", None)
    add("true", True)
    add("false", False)
    add("nested", {"a": [1, {"b": [None, True, 2.5, b"\x01"]}, "s"], "e": {}})
    keys = {"b": 1, "a": 2, "é": 3, "Z": 4, "aa": 5, "日": 6, "": 7, "🙂": 8}
    keys["ab"] = {"y": 1, "x": [{"q": 0, "p": 1}]}
    add("unsorted_keys", keys)
    add("canonical_keys", keys, canonical=True)
    add("depth_512", nest(511, []), long_form={"nest": [511, {"array": []}]})
    return out


def malformed() -> list[dict[str, Any]]:
    out = [
        # (name, hex, offset, message part, max_depth)
        ("empty", "", 0, "unexpected end of data", 512),
        ("reserved_c1", "c1", 0, "reserved marker 0xc1", 512),
        ("reserved_c1_in_map", "81a161c1", 3, "reserved marker 0xc1", 512),
        ("truncated_uint32", "ce0001", 0, "truncated uint32", 512),
        ("truncated_float64", "cb3ff0", 0, "truncated float64", 512),
        ("truncated_fixstr", "a36162", 0, "truncated str", 512),
        ("str8_past_end", "d90561", 0, "truncated str", 512),
        ("str32_header_cut", "db0000", 0, "truncated str32 header", 512),
        ("bin32_bomb", "c6ffffffff00", 0, "truncated bin", 512),
        ("array32_bomb", "ddffffffff0000000000", 0, "array claims 4294967295 entries", 512),
        ("map32_bomb", "dfffffffff0000000000", 0, "map claims 4294967295 entries", 512),
        ("array16_too_long", "dc0003c0c0", 0, "array claims 3 entries", 512),
        # outer array of 2: the inner [1, 1] fills 3 bytes, the second item is missing at offset 4
        ("missing_item", "92920101", 4, "unexpected end of data", 512),
        ("fixext1", "d40101", 0, "ext type (marker 0xd4)", 512),
        ("ext8_in_array", "9201c7010500", 2, "ext type (marker 0xc7)", 512),
        ("timestamp32", "d6ff00000000", 0, "ext type (marker 0xd6)", 512),
        # str of 3 bytes starting at offset 1: 'a' then 0xff at offset 2
        ("bad_utf8", "a361ff62", 2, "invalid UTF-8", 512),
        ("utf8_surrogate", "a3eda080", 1, "invalid UTF-8", 512),
        ("utf8_overlong", "a2c080", 1, "invalid UTF-8", 512),
        ("bad_utf8_key", "81a1ff01", 2, "invalid UTF-8", 512),
        ("int_key", "810102", 1, "map key is not a str", 512),
        ("bin_key", "81c4016101", 1, "map key is not a str", 512),
        ("nil_key", "81c001", 1, "map key is not a str", 512),
        ("array_key", "819001", 1, "map key is not a str", 512),
        ("trailing_byte", "c0c0", 1, "1 trailing bytes", 512),
        ("trailing_after_map", "80010203", 1, "3 trailing bytes", 512),
        # 513 nested arrays: the 513th header is at offset 512
        ("depth_513", "91" * 513 + "c0", 512, "deeper than max_depth=512", 512),
        ("depth_limit_2", "919191c0", 2, "deeper than max_depth=2", 2),
    ]
    return [{"name": n, "hex": h, "offset": o, "error": m, "max_depth": d} for n, h, o, m, d in out]


def main() -> None:
    state = small_state()
    state_bytes = msgpack.packb(sort_keys(state), use_bin_type=True)
    (HERE / "state_small.bin").write_bytes(state_bytes)
    # cut inside the first demo's "context" str: the error names that str's header
    ctx = b"context"
    key_at = state_bytes.index(b"\xa7" + ctx)
    str_at = key_at + 1 + len(ctx)
    assert state_bytes[str_at] in (0xD9, 0xDA), "expected a str8/str16 header"
    cut = str_at + 40
    (HERE / "state_small_truncated.bin").write_bytes(state_bytes[:cut])
    (HERE / "array32_bomb.bin").write_bytes(bytes.fromhex("ddffffffff0000000000"))
    manifest = {
        "generator": f"msgpack {msgpack.version}, xxhash {xxhash.VERSION}",
        "valid": valid(),
        "malformed": [
            *malformed(),
            {
                "name": "state_small_truncated",
                "file": "state_small_truncated.bin",
                "offset": str_at,
                "error": "truncated str",
                "max_depth": 512,
            },
            {
                "name": "array32_bomb_file",
                "file": "array32_bomb.bin",
                "offset": 0,
                "error": "array claims",
                "max_depth": 512,
            },
        ],
        "states": [
            {
                "name": "state_small",
                "file": "state_small.bin",
                "canonical": True,
                "content_hash": xxhash.xxh3_128_hexdigest(state_bytes),
                "sha256": __import__("hashlib").sha256(state_bytes).hexdigest(),
            },
        ],
    }
    # one vector per line: readable diffs when a vector changes
    lines = ["{", f' "generator": {json.dumps(manifest["generator"])},']
    for section in ("valid", "malformed", "states"):
        rows = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in manifest[section])
        lines.append(f' "{section}": [\n{rows}\n ]' + ("," if section != "states" else ""))
    lines.append("}")
    (HERE / "vectors.json").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
