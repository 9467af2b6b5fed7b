"""How many real DSPy saves the installed dspy's own loader reads, before and after desiru converts them.

    python benchmarks/dspy_wild_load.py [FOLDER]     # default: ../shared/dspy_wild beside the repo

For each file: "before" builds a stand-in program named as the file names its
predictors (``dspy_template``: what a user of the installed dspy would write) and
calls dspy's ``module.load(path)`` on the file as committed; "after" converts the
file with ``write_dspy_save(read_dspy_save(path), out, dspy_version=<installed>)``
and loads that into a stand-in named as the converted file names them. A file
counts as read when load() raises nothing and every predictor then holds the
file's instructions and demos. Not a timing benchmark: a compatibility count.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import dspy

from desiru.interop import dspy as dd

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "dspy_wild"


def dspy_reads(path: Path) -> tuple[bool, str]:
    """Whether the installed dspy loads ``path`` into a stand-in and then holds its instructions and demos."""
    try:
        program = dd.read_dspy_save(path)
        template = dd.dspy_template(program)
        logging.disable(logging.WARNING)  # dspy warns of every version mismatch; the count is what matters
        try:
            template.load(str(path))
        finally:
            logging.disable(logging.NOTSET)
    except Exception as exc:  # the point is to count what dspy refuses, whatever it raises
        return False, f"{type(exc).__name__}: {str(exc)[:70]}"
    doc = json.loads(path.read_text(encoding="utf-8"))
    states = doc if "demos" in doc else {k: v for k, v in doc.items() if k != "metadata"}
    live = dict(template.named_parameters())
    for name, param in live.items():
        state = doc if name == "self" and "demos" in doc else states.get(name)
        if not isinstance(param, dspy.Predict):
            continue
        dumped = param.dump_state()
        if dumped["signature"]["instructions"] != state["signature"]["instructions"]:
            return False, f"{name}: instructions not taken"
        if dumped["demos"] != state["demos"]:
            return False, f"{name}: demos not taken"
    return True, "ok"


def measure(folder: Path) -> list[dict[str, Any]]:
    """One row per file: name, before (bool, why), after (bool, why), changes made by the conversion."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(folder.glob("*.json")):
            out = Path(tmp) / path.name
            program = dd.read_dspy_save(path)
            changes = dd.dspy_document(program, dspy.__version__)[1]
            dd.write_dspy_save(program, out, dspy_version=dspy.__version__)
            rows.append({"file": path.name, "before": dspy_reads(path), "after": dspy_reads(out),
                         "changes": changes})
    return rows


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else DEFAULT
    rows = measure(folder)
    for r in rows:
        print(f"{r['file'][:60]:60} before={'yes' if r['before'][0] else 'no ':3} "
              f"after={'yes' if r['after'][0] else 'no ':3} {'' if r['before'][0] else r['before'][1]}")
    before = sum(r["before"][0] for r in rows)
    after = sum(r["after"][0] for r in rows)
    print(f"dspy {dspy.__version__} reads {before} of {len(rows)} files as committed, {after} of {len(rows)} "
          "after desiru convert --to dspy")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
