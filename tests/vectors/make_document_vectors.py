"""Write the frozen document vectors of tests/vectors/documents/ (see tests/vectors/README.md).

Run once: ``DESIRU_PURE_PYTHON=1 python tests/vectors/make_document_vectors.py``. A vector
that already exists is never rewritten (its bytes are what releases promised to read);
adding a vector means adding it here and running the script again, which writes only
the new files. Every vector comes with ``<file>.expected.json``: the exact state it must
load to (or the error it must raise), built here independently of the migration code.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import msgpack

import desiru as ds
from desiru.serialization import envelope

OUT = Path(__file__).resolve().parent / "documents"
RAW_KEY = "5f" * 8 + "a1" * 8 + "3c" * 8 + "e7" * 8  # 64 hex chars = 32 raw bytes; a test key, not a secret
PASSPHRASE = "correct horse battery staple"


# -- the expected-state encoding: JSON with tagged bytes and non-finite floats ---------------------
def tag(value: Any) -> Any:
    """JSON for a state tree: bytes and inf/nan as {"__tagged__": ...} objects (keys no state uses)."""
    if isinstance(value, bytes):
        return {"__tagged__": "bytes", "hex": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__tagged__": "float", "value": repr(value)}
    if isinstance(value, dict):
        return {k: tag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tag(v) for v in value]
    return value


def expect(name: str, **fields: Any) -> None:
    fields.setdefault("key", None)
    fields.setdefault("warning", None)
    fields.setdefault("error", None)
    fields.setdefault("header_extra", {})
    if "state" in fields:
        fields["state"] = tag(fields["state"])
    text = json.dumps({"file": name, **fields}, indent=1, ensure_ascii=False, allow_nan=False)
    (OUT / f"{name}.expected.json").write_text(text + "\n", encoding="utf-8")


def write(name: str, data: bytes) -> None:
    (OUT / name).write_bytes(data)


# -- format 2.0.0: written by this release's own save path ------------------------------------------
def v2_program() -> ds.Program:
    """A program that touches every corner of the state tree and of the json/yaml tagging."""
    p = ds.Program()
    p.retrieve = ds.Predict("question -> context", temperature=0.0, max_tokens=128)
    p.retrieve.demos = [ds.Example(question="Capital of France?", context="Paris is the capital of France.")]
    p.answer = ds.ChainOfThought(ds.Signature("question, context -> answer", instructions="Answer in one word."),
                                 temperature=0.2, stop=["\n\n"])
    p.answer.demos = [
        ds.Example(question="2+2?", context="arithmetic", reasoning="2 plus 2 is 4.", answer="4"),
        ds.Example(question="日本の首都は?", context="地理 🙂", reasoning="", answer="東京"),
    ]
    p.answer.metadata = {"score": 0.93, "trials": [1, 2, 3]}
    sub = ds.Program()
    sub.summarize = ds.Predict("text -> summary")
    sub.configuration = {"style": "terse"}
    p.sub = sub
    p.configuration = {
        "optimizer": "MIPROv2",
        "seed": 42,
        "ints": [2**64 - 1, 2**63, -(2**63), 2**32, -(2**31), 0, -1, 127, 128, -32, -33],
        "floats": [0.1, -0.0, 1e308, 5e-324, math.inf, -math.inf],
        "empty": {"list": [], "map": {}, "text": ""},
    }
    p.metadata = {"run": "vectors-1", "none": None, "flag": True}
    p.custom_data = {"blob": b"\x00\x01\xfe\xff", "$bytes": "not bytes", "nested": {"$float": "nan"},
                     "tagged": {"$bytes": "AAE="}}
    return p


def make_v2() -> None:
    p = v2_program()
    state = p.to_state()
    for name, kwargs in [
        ("v2_0_0.json", {}),
        ("v2_0_0.yaml", {}),
        ("v2_0_0.msgpack", {}),
        ("v2_0_0.msgpack.zst", {"compress": "zstd"}),
        ("v2_0_0.json.gz", {"compress": "gzip"}),
    ]:
        if (OUT / name).exists():
            continue
        stem = name.removesuffix(".zst").removesuffix(".gz")
        r = p.save(OUT / stem, **kwargs)
        assert r.path.name == name, r.path
        expect(name, version="2.0.0", kind="program", format=r.format, compression=r.compression,
               encrypted=False, state=state)
    if not (OUT / "v2_0_0_module.json").exists():
        p.export_module("answer", OUT / "v2_0_0_module.json")
        expect("v2_0_0_module.json", version="2.0.0", kind="module", format="json", compression=None,
               encrypted=False, state={"name": "answer", **p.answer.to_state()})
    if not (OUT / "v2_0_0_encrypted_rawkey.bin").exists():
        r = p.save(OUT / "v2_0_0_encrypted_rawkey.bin", key=RAW_KEY)
        assert r.path.name == "v2_0_0_encrypted_rawkey.bin"
        expect(r.path.name, version="2.0.0", kind="program", format="msgpack", compression=None,
               encrypted=True, key=RAW_KEY, state=state)
    if not (OUT / "v2_0_0_encrypted_passphrase.json.zst").exists():
        r = p.save(OUT / "v2_0_0_encrypted_passphrase.json", format="json", compress="zstd", key=PASSPHRASE)
        assert r.path.name == "v2_0_0_encrypted_passphrase.json.zst"
        expect(r.path.name, version="2.0.0", kind="program", format="json", compression="zstd",
               encrypted=True, key=PASSPHRASE, state=state)


def make_v2_1() -> None:
    """Format 2.1.0: the header covered by header_checksum (written by this release's save path)."""
    p = v2_program()
    state = p.to_state()
    for name, kwargs in [("v2_1_0.json", {}), ("v2_1_0.yaml", {}), ("v2_1_0.msgpack.zst", {"compress": "zstd"})]:
        if (OUT / name).exists():
            continue
        stem = name.removesuffix(".zst").removesuffix(".gz")
        r = p.save(OUT / stem, **kwargs)
        assert r.path.name == name, r.path
        expect(name, version="2.1.0", kind="program", format=r.format, compression=r.compression,
               encrypted=False, state=state)


def make_v2_2() -> None:
    """Format 2.2.0: msgpack programs carry a module table (written by this release's save path), and a
    2.1.0 msgpack file without one (the last format before it), which loads eagerly."""
    p = v2_program()
    sub = ds.Program()
    sub.inner = ds.Predict("text -> label")
    p.sub = sub
    state = p.to_state()
    for name, kwargs in [("v2_2_0.msgpack", {}), ("v2_2_0.msgpack.zst", {"compress": "zstd"})]:
        if (OUT / name).exists():
            continue
        r = p.save(OUT / name.removesuffix(".zst"), **kwargs)
        assert r.path.name == name, r.path
        expect(name, version="2.2.0", kind="program", format="msgpack", compression=r.compression,
               encrypted=False, state=state)
    if not (OUT / "v2_1_0.msgpack").exists():
        tree = envelope.build(state, "program")
        tree["format_version"] = "2.1.0"
        del tree["header_checksum"], tree["state"]
        tree["header_checksum"] = envelope.header_checksum_of(tree)
        tree["state"] = state
        write("v2_1_0.msgpack", msgpack.packb(tree, use_bin_type=True))
        expect("v2_1_0.msgpack", version="2.1.0", kind="program", format="msgpack", compression=None,
               encrypted=False, state=state)


# -- format 1.0.0 / 1.1.0: the original Ruby design's layout -------------------------------------------
LEGACY_PROGRAM: dict[str, Any] = {
    "class": "Desiru::Program",
    "modules": [
        {
            "name": "retrieve",
            "class": "Desiru::Modules::Predict",
            "signature": "question -> context",
            "demonstrations": [{"question": "Capital of France?", "context": "Paris is the capital of France."}],
            "parameters": {"temperature": 0.0, "max_tokens": 128, "instruction_template": None, "custom": {}},
            "metadata": {},
        },
        {
            "name": "answer",
            "class": "Desiru::Modules::ChainOfThought",
            "signature": "question: string, context: string -> answer: string",
            "demonstrations": [
                {"question": "2+2?", "context": "arithmetic", "answer": "4"},
                {"question": "日本の首都は?", "context": "地理", "answer": "東京"},
            ],
            "parameters": {"temperature": 0.2, "max_tokens": None, "instruction_template": "Answer in one word.",
                           "custom": {"top_p": 0.9}},
            "metadata": {"score": 0.93, "optimizer": "BootstrapFewShot"},
        },
    ],
    "configuration": {"max_demos": 4, "seed": 7},
    "custom_data": {"notes": ["best so far"]},
}


def ruby_checksum(program: dict[str, Any]) -> str:
    """What the Ruby design stored: sha256 of the program section as JSON.generate writes it."""
    text = json.dumps(program, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def legacy_tree(version: str, program: dict[str, Any], *, checksum: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"desiru_version": "0.1.0", "ruby_version": "3.3.0",
                            "created_at": "2025-06-20T10:00:00Z", "program_class": program["class"]}
    if checksum:
        meta["checksum"] = ruby_checksum(program)
    return {"version": version, "metadata": meta, "program": program, "timestamp": "2025-06-20T10:00:00Z"}


#: the same 1.0.0 document as Ruby's YAML.dump writes a hash with symbol keys
LEGACY_YAML = """\
---
:version: 1.0.0
:metadata:
  :desiru_version: 0.1.0
  :ruby_version: 3.3.0
  :created_at: '2025-06-20T10:00:00Z'
  :program_class: Desiru::Program
  :checksum: '{checksum}'
:program:
  :class: Desiru::Program
  :modules:
  - :name: retrieve
    :class: Desiru::Modules::Predict
    :signature: question -> context
    :demonstrations:
    - :question: Capital of France?
      :context: Paris is the capital of France.
    :parameters:
      :temperature: 0.0
      :max_tokens: 128
      :instruction_template:
      :custom: {{}}
    :metadata: {{}}
  - :name: answer
    :class: Desiru::Modules::ChainOfThought
    :signature: 'question: string, context: string -> answer: string'
    :demonstrations:
    - :question: 2+2?
      :context: arithmetic
      :answer: '4'
    - :question: 日本の首都は?
      :context: 地理
      :answer: 東京
    :parameters:
      :temperature: 0.2
      :max_tokens:
      :instruction_template: Answer in one word.
      :custom:
        :top_p: 0.9
    :metadata:
      :score: 0.93
      :optimizer: BootstrapFewShot
  :configuration:
    :max_demos: 4
    :seed: 7
  :custom_data:
    :notes:
    - best so far
:timestamp: '2025-06-20T10:00:00Z'
"""


def legacy_expected_state(*, streaming: tuple[bool, bool] = (False, False)) -> dict[str, Any]:
    """The state a legacy file must load to, built by hand with the public API (not the migration)."""
    p = ds.Program()
    p.retrieve = ds.Predict("question -> context", temperature=0.0, max_tokens=128,
                            streaming_enabled=streaming[0])
    p.retrieve.demos = [ds.Example(question="Capital of France?", context="Paris is the capital of France.")]
    p.answer = ds.ChainOfThought(ds.Signature("question, context -> answer", instructions="Answer in one word."),
                                 temperature=0.2, streaming_enabled=streaming[1], top_p=0.9)
    p.answer.demos = [ds.Example(question="2+2?", context="arithmetic", answer="4"),
                      ds.Example(question="日本の首都は?", context="地理", answer="東京")]
    p.answer.metadata = {"score": 0.93, "optimizer": "BootstrapFewShot"}
    p.configuration = {"max_demos": 4, "seed": 7}
    p.custom_data = {"notes": ["best so far"]}
    return p.to_state()


def make_v2_3() -> None:
    """Format 2.3.0: module tables carry each module's outline; compressed or encrypted msgpack programs
    are written in per-module frames (desiru's container, version 2), so they open lazily too."""
    p = v2_program()
    sub = ds.Program()
    sub.inner = ds.Predict("text -> label")
    p.sub = sub
    state = p.to_state()
    for name, kwargs in [("v2_3_0.msgpack", {}), ("v2_3_0.msgpack.zst", {"compress": "zstd"}),
                         ("v2_3_0.msgpack.gz", {"compress": "gzip"}),
                         ("v2_3_0_encrypted_rawkey.msgpack", {"compress": "zstd", "key": RAW_KEY}),
                         ("v2_3_0_encrypted_passphrase.msgpack", {"key": PASSPHRASE})]:
        if (OUT / name).exists():
            continue
        r = p.save(OUT / name.removesuffix(".zst").removesuffix(".gz"), **kwargs)
        assert r.path.name == name, r.path
        expect(name, version="2.3.0", kind="program", format="msgpack", compression=r.compression,
               encrypted=r.encrypted, key=kwargs.get("key"), state=state)


def make_legacy() -> None:
    tree = legacy_tree("1.0.0", LEGACY_PROGRAM, checksum=True)
    migrated = {"layout": "desiru-ruby", "format_version": "1.0.0",
                "metadata": {k: v for k, v in tree["metadata"].items() if k != "checksum"},
                "timestamp": "2025-06-20T10:00:00Z"}
    common = {"version": "1.0.0", "kind": "program", "encrypted": False, "state": legacy_expected_state(),
              "header_extra": {"migrated_from": migrated}}
    files = {
        "legacy_1_0_0.json": (json.dumps(tree, indent=2, ensure_ascii=False).encode("utf-8"), "json", None),
        "legacy_1_0_0.yaml": (LEGACY_YAML.format(checksum=tree["metadata"]["checksum"]).encode("utf-8"), "yaml",
                              None),
        "legacy_1_0_0.msgpack": (msgpack.packb(tree, use_bin_type=True), "msgpack", None),
        "legacy_1_0_0.json.gz": (gzip.compress(json.dumps(tree, ensure_ascii=False).encode("utf-8"), mtime=0),
                                 "json", "gzip"),
    }
    for name, (data, fmt, comp) in files.items():
        if (OUT / name).exists():
            continue
        write(name, data)
        expect(name, format=fmt, compression=comp, **common)
    # 1.1.0: the design's example step already applied (one module chose streaming), no checksum
    if not (OUT / "legacy_1_1_0.json").exists():
        program = json.loads(json.dumps(LEGACY_PROGRAM))
        program["modules"][0]["parameters"]["streaming_enabled"] = True
        program["modules"][1]["parameters"]["streaming_enabled"] = False
        tree11 = legacy_tree("1.1.0", program, checksum=False)
        write("legacy_1_1_0.json", json.dumps(tree11, indent=2, ensure_ascii=False).encode("utf-8"))
        expect("legacy_1_1_0.json", version="1.1.0", kind="program", format="json", compression=None,
               encrypted=False, state=legacy_expected_state(streaming=(True, False)),
               header_extra={"migrated_from": {"layout": "desiru-ruby", "format_version": "1.1.0",
                                               "metadata": tree11["metadata"],
                                               "timestamp": "2025-06-20T10:00:00Z"}})


# -- versions this release must refuse or read with care ------------------------------------------------
def make_other_versions() -> None:
    if not (OUT / "v2_1_0_unknown_fields.json").exists():
        # a newer minor of our major: extra header field, extra program and module state fields
        p = ds.Program()
        p.answer = ds.Predict("question -> answer", temperature=0.5)
        state = p.to_state()
        state["schedule"] = {"every": "1h", "until": None}
        state["modules"][0]["adapter"] = {"name": "chat", "version": 3}
        header = {"format": "desiru", "format_version": "2.1.0", "kind": "program", "class": state["class"],
                  "library_version": "2.4.0", "created_at": "2027-01-01T00:00:00.000Z",
                  "python_version": "3.14.0", "provenance": {"host": "build-7", "signed": False},
                  "checksum": envelope.checksum_of(state), "state": state}
        write("v2_1_0_unknown_fields.json", json.dumps(header, indent=2).encode("utf-8"))
        # written as a "newer minor" before 2.1.0 existed; format 2.1.0 covers the header with
        # header_checksum, which this file lacks: it is refused (v2_2_0_unknown_fields.json took its role)
        expect("v2_1_0_unknown_fields.json", version="2.1.0", kind="program", format="json", compression=None,
               encrypted=False, error="CorruptDataError")
    if not (OUT / "v2_2_0_unknown_fields.json").exists():
        # a newer minor of our major: extra header field, extra program and module state fields
        p = ds.Program()
        p.answer = ds.Predict("question -> answer", temperature=0.5)
        state = p.to_state()
        state["schedule"] = {"every": "1h", "until": None}
        state["modules"][0]["adapter"] = {"name": "chat", "version": 3}
        header = {"format": "desiru", "format_version": "2.2.0", "kind": "program", "class": state["class"],
                  "library_version": "2.6.0", "created_at": "2027-06-01T00:00:00.000Z",
                  "python_version": "3.14.0", "provenance": {"host": "build-7", "signed": False},
                  "checksum": envelope.checksum_of(state)}
        header["header_checksum"] = envelope.header_checksum_of(header)
        header["state"] = state
        write("v2_2_0_unknown_fields.json", json.dumps(header, indent=2).encode("utf-8"))
        # written as a "newer minor" before 2.2.0 existed; it is now the current format (no warning, its
        # unknown fields still kept); v2_3_0_unknown_fields.json took its role
        expect("v2_2_0_unknown_fields.json", version="2.2.0", kind="program", format="json", compression=None,
               encrypted=False, state=state, header_extra={"provenance": {"host": "build-7", "signed": False}})
    if not (OUT / "v2_3_0_unknown_fields.json").exists():
        # a newer minor of our major: extra header field, extra program and module state fields
        p = ds.Program()
        p.answer = ds.Predict("question -> answer", temperature=0.5)
        state = p.to_state()
        state["schedule"] = {"every": "1h", "until": None}
        state["modules"][0]["adapter"] = {"name": "chat", "version": 3}
        header = {"format": "desiru", "format_version": "2.3.0", "kind": "program", "class": state["class"],
                  "library_version": "2.8.0", "created_at": "2027-09-01T00:00:00.000Z",
                  "python_version": "3.14.0", "provenance": {"host": "build-7", "signed": False},
                  "checksum": envelope.checksum_of(state)}
        header["header_checksum"] = envelope.header_checksum_of(header)
        header["state"] = state
        write("v2_3_0_unknown_fields.json", json.dumps(header, indent=2).encode("utf-8"))
        # written as a "newer minor" before 2.3.0 existed; it is now the current format (no warning, its
        # unknown fields still kept); v2_4_0_unknown_fields.json took its role
        expect("v2_3_0_unknown_fields.json", version="2.3.0", kind="program", format="json", compression=None,
               encrypted=False, state=state, header_extra={"provenance": {"host": "build-7", "signed": False}})
    if not (OUT / "v2_4_0_unknown_fields.json").exists():
        # a newer minor of our major: extra header field, extra program and module state fields
        p = ds.Program()
        p.answer = ds.Predict("question -> answer", temperature=0.5)
        state = p.to_state()
        state["schedule"] = {"every": "1h", "until": None}
        state["modules"][0]["adapter"] = {"name": "chat", "version": 3}
        header = {"format": "desiru", "format_version": "2.4.0", "kind": "program", "class": state["class"],
                  "library_version": "2.9.0", "created_at": "2027-12-01T00:00:00.000Z",
                  "python_version": "3.14.0", "provenance": {"host": "build-7", "signed": False},
                  "checksum": envelope.checksum_of(state)}
        header["header_checksum"] = envelope.header_checksum_of(header)
        header["state"] = state
        write("v2_4_0_unknown_fields.json", json.dumps(header, indent=2).encode("utf-8"))
        expect("v2_4_0_unknown_fields.json", version="2.4.0", kind="program", format="json", compression=None,
               encrypted=False, warning="NewerFormatWarning", state=state,
               header_extra={"provenance": {"host": "build-7", "signed": False}})
    if not (OUT / "v3_0_0.msgpack").exists():
        # a newer major: after its version the body uses a msgpack extension type this release cannot
        # decode, so only a reader that checks the version first fails with the right error
        doc = {"format": "desiru", "format_version": "3.0.0", "kind": "program",
               "checksum": "blake3:" + "00" * 32, "state": msgpack.ExtType(42, b"\x01future")}
        write("v3_0_0.msgpack", msgpack.packb(doc, use_bin_type=True))
        expect("v3_0_0.msgpack", version="3.0.0", format="msgpack", compression=None, encrypted=False,
               error="IncompatibleVersionError")
    if not (OUT / "v3_0_0.json").exists():
        doc = {"format": "desiru", "format_version": "3.0.0", "kind": "graph", "checksum": "blake3:00",
               "state": {"nodes": []}}
        write("v3_0_0.json", json.dumps(doc, indent=2).encode("utf-8"))
        expect("v3_0_0.json", version="3.0.0", format="json", compression=None, encrypted=False,
               error="IncompatibleVersionError")
    if not (OUT / "v0_9_0.json").exists():
        tree = legacy_tree("0.9.0", LEGACY_PROGRAM, checksum=False)
        write("v0_9_0.json", json.dumps(tree, indent=2, ensure_ascii=False).encode("utf-8"))
        expect("v0_9_0.json", version="0.9.0", format="json", compression=None, encrypted=False,
               error="IncompatibleVersionError")


# -- journals (format 2.0.0, event schema 1): directories written by ds.Journal -----------------------------
def make_journals() -> None:
    for name, key in (("journal_2_0_0.journal", None), ("journal_2_0_0_encrypted.journal", RAW_KEY)):
        if not (OUT / name).exists():
            write_journal(name, key)


def write_journal(name: str, key: str | None) -> None:
    """A journal of four commits (every event type), a snapshot between the third and the fourth."""
    p = ds.Program()
    p.answer = ds.Predict("question -> answer", temperature=0.2)
    history: list[dict[str, Any]] = []
    tags: dict[str, int] = {}
    with ds.Journal.open(OUT / name, key=key, fsync="always") as j:
        def commit(tag: str | None = None) -> None:
            r = j.commit(p, tag=tag)
            history.append({"seq": j.head, "state": p.to_state()})
            if tag is not None:
                tags[tag] = r.seq
        commit()
        p.answer.demos.append(ds.Example(question="2+2?", answer="4"))
        p.answer.demos.append(ds.Example(question="日本の首都は?", answer="東京", raw=b"\x00\xff"))
        commit("epoch_1")
        p.answer.parameters["temperature"] = 0.7
        del p.answer.parameters["temperature"]
        p.answer.parameters["max_tokens"] = 64
        p.answer.demos.reverse()
        p.reason = ds.ChainOfThought("question -> answer")
        p.configuration = {"optimizer": "MIPROv2"}
        p.metadata = {"run": 2}
        commit()
        j.snapshot()
        p.answer.demos.pop(0)
        p.answer.signature = p.answer.signature.with_instructions("Answer in one word.")
        del p.reason
        p.custom_data = {"best": 0.91}
        commit("epoch_2")
        events = [{"seq": e.seq, "type": e.type, "path": e.path, "schema_version": e.schema_version}
                  for e in j.events()]
    (OUT / name / "lock").unlink(missing_ok=True)  # the writer's lock target: recreated on open
    expect(name, version="2.0.0", kind="journal", format=None, compression=None, encrypted=key is not None,
           key=key, head=history[-1]["seq"], tags=tags, events=events,
           commits=[{"seq": h["seq"], "state": tag(h["state"])} for h in history])


def main() -> int:
    global OUT
    if len(sys.argv) > 1:  # a scratch folder, to look at what would be written
        OUT = Path(sys.argv[1]).resolve()
    OUT.mkdir(exist_ok=True)
    make_v2()
    make_v2_1()
    make_v2_2()
    make_v2_3()
    make_legacy()
    make_other_versions()
    make_journals()
    print(f"vectors in {OUT}: {len(list(OUT.glob('*.expected.json')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
