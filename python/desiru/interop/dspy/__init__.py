"""DSPy adapter: live dspy modules and DSPy's JSON state files as desiru programs.

- states.py: dspy parameter states <-> desiru state trees (one module per parameter);
- layouts.py, fields.py: the layouts dspy has written a predictor in, and the field
  names and input/output split derived from what a save records;
- live.py: live dspy modules (from_dspy, to_dspy) and desiru files of them;
- saves.py: DSPy's own JSON files, read and written back as they were;
- upgrade.py: writing for a named dspy release, each change listed;
- templates.py: a stand-in dspy module to load a save into;
- drift.py: fields matched by name and their types checked when loading into a class;
- track.py, resume.py: optimization runs recorded (and resumed) through dspy's callbacks;
- lm_record.py: the LM's answers kept in the journal and replayed on resume (record_lm=True);
- cache.py, examples.py: the fast paths (commits convert only changed demos; Examples built fast);
- adapter.py: the entry in desiru.adapters through which Journal.commit, Program.save and
  Journal.replay(into=) take live dspy modules (registered when this package is imported).

DSPy is imported lazily: desiru works without it, and this package can be imported
without it; only the functions that build or read dspy objects need it.
"""

from __future__ import annotations

from desiru.interop.dspy.adapter import ADAPTER
from desiru.interop.dspy.live import LMStateWarning, as_program, from_dspy, is_dspy_module, load, save, to_dspy
from desiru.interop.dspy.saves import (
    dspy_document,
    read_dspy_save,
    write_dspy_save,
)
from desiru.interop.dspy.states import ADAPTER_FORMAT, INPUT_KEYS, META, ROOT, dspy_state
from desiru.interop.dspy.templates import dspy_template
from desiru.interop.dspy.track import track
from desiru.interop.dspy.upgrade import dependency_versions

__all__ = [
    "ADAPTER",
    "ADAPTER_FORMAT",
    "INPUT_KEYS",
    "META",
    "ROOT",
    "LMStateWarning",
    "as_program",
    "dependency_versions",
    "dspy_document",
    "dspy_state",
    "dspy_template",
    "from_dspy",
    "is_dspy_module",
    "load",
    "read_dspy_save",
    "save",
    "to_dspy",
    "track",
    "write_dspy_save",
]
