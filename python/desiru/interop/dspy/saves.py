"""DSPy's JSON state files (``module.save("x.json")``), of every dspy release, read and written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desiru import _engine
from desiru.atomic import atomic_write
from desiru.errors import CorruptDataError, DesiruError, FormatError, SerializationError
from desiru.interop.dspy import layouts, upgrade
from desiru.interop.dspy.live import _is_parameter, _require_dspy, as_program, is_dspy_module
from desiru.interop.dspy.states import META, ROOT, _meta, _program_tree, dspy_state
from desiru.program import Program
from desiru.state import copy_tree

if TYPE_CHECKING:
    from desiru.serialization.documents import SaveResult

def read_dspy_save(path: str | os.PathLike[str], template: Any = None) -> Program:
    """A desiru Program from a JSON state file written by dspy's ``module.save("x.json")``.

    DSPy's file does not name signature fields nor say which are inputs; pass the
    dspy module the file belongs to as ``template`` to take both from it (and its
    predictors' config). Without it, names and the split are read from DSPy's
    default instructions when they are there, else guessed from the prefixes, and
    the module is marked ``metadata["dspy"]["field_split"] == "guessed"``.
    """
    where = os.fspath(path)
    p = Path(path)
    if p.is_dir():
        raise FormatError("this is a folder (DSPy's save_program=True layout: a pickle), not a JSON state "
                          "file", path=where, hint="save the state with module.save('program.json')")
    if p.suffix.lower() == ".pkl":
        raise FormatError("DSPy .pkl files are pickles, which desiru never loads (they can run code)",
                          path=where, hint="save the state with module.save('program.json') instead")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DesiruError(f"cannot read the file: {exc.strerror or exc}", path=where,
                          hint="check the path") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CorruptDataError(f"not valid JSON: {exc.msg}", path=where, offset=exc.pos,
                               hint="is this a DSPy state file written by module.save('x.json')?") from None
    except UnicodeDecodeError as exc:
        raise CorruptDataError("not UTF-8 JSON", path=where, offset=exc.start) from None
    except RecursionError:
        raise CorruptDataError("the JSON is nested too deeply", path=where) from None
    if not isinstance(doc, dict):
        raise CorruptDataError(f"a DSPy state file holds a JSON object, got {type(doc).__name__}", path=where)
    order = list(doc)
    source: dict[str, Any] = {}  # what writing the file back exactly needs beyond modules and metadata
    save_metadata = doc.pop("metadata", None)
    if save_metadata is not None and not isinstance(save_metadata, dict):
        raise CorruptDataError("'metadata' must be an object", path=where)
    live: dict[str, Any] = {}
    if template is not None:
        _require_dspy()
        if not is_dspy_module(template):
            raise DesiruError(f"template must be a dspy module, got {type(template).__qualname__}",
                              path=where)
        live = dict(template.named_parameters())
    # a bare predictor saves its own state, not a name -> state map
    if _is_parameter(template) if template is not None else _is_predictor_state(doc):
        doc = {ROOT: doc}
    elif list(doc) == [ROOT]:
        source["named_self"] = True  # {"self": {...}}, not a bare predictor's state at the top
    tree = _program_tree(doc, live, root=template, save_metadata=save_metadata, path=where)
    if save_metadata is None:
        source["metadata"] = False
    if order != [*(k for k in order if k != "metadata"), *(["metadata"] if save_metadata is not None else [])]:
        source["keys"] = order
    if source:
        tree["metadata"][META]["file"] = source
    return Program.from_state(tree, path=where)


def _is_predictor_state(doc: dict[str, Any]) -> bool:
    """True when a file's top level is one predictor's state (what a bare dspy.Predict saves)."""
    sig = doc.get("signature")
    return (isinstance(doc.get("demos"), list) or (isinstance(sig, dict) and "fields" in sig)
            or layouts.classify(doc) is not None)


def write_dspy_save(program: Program | Any, path: str | os.PathLike[str], *,
                    dspy_version: str | None = None) -> SaveResult:
    """Write ``program`` as a DSPy JSON state file that dspy's ``module.load(path)`` reads.

    A program read from a DSPy file is written back as that file was (its layout, key
    order, "self" key and metadata block, or none); any other program in the layout of
    the installed dspy, with metadata as dspy writes it. ``dspy_version`` names the dspy
    release to write for instead (see ``dspy_document``, which also says what changed).
    """
    from desiru.serialization.documents import SaveResult

    where = os.fspath(path)
    if Path(where).suffix.lower() != ".json":
        raise FormatError("DSPy reads state files only with a .json suffix", path=where,
                          hint="name the file something.json")
    doc, _ = dspy_document(as_program(program), dspy_version)
    try:
        text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=_no_json)
    except ValueError as exc:
        raise SerializationError(f"cannot write as JSON: {exc}", path=where,
                                 hint="DSPy's JSON state cannot hold NaN, infinity or bytes") from None
    data = (text + "\n").encode("utf-8")
    size = atomic_write(where, data)
    digest = _engine.sha256(data).hex()  # a DSPy state file records no checksum of its own
    return SaveResult(Path(where), size, digest, "json", None, False, digest)


def dspy_document(program: Program | Any, dspy_version: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The JSON document of a DSPy save of ``program``, and what was changed to make it.

    Without ``dspy_version``, a program read from a DSPy file gives that file back and no
    change. With it (or for a program from elsewhere, the installed dspy's version) the
    document is in the layout that release writes; older layouts are brought forward as
    docs/dspy.md says, and each change is listed.
    """

    prog = as_program(program)
    pmeta = _meta(prog.metadata)
    source = pmeta.get("file") if isinstance(pmeta.get("file"), dict) else None
    save_metadata = pmeta.get("save_metadata")
    if dspy_version is None and (source is not None or isinstance(save_metadata, dict)):
        source = source or {}
        states = dspy_state(prog)
        recorded = source.get("keys")
        keys: list[str] = recorded if isinstance(recorded, list) else []
        bare = not source.get("named_self") and list(states) == [ROOT]
        _check_names(not bare, states)
        body = dict(states[ROOT] if bare else states)
        if isinstance(save_metadata, dict):
            body["metadata"] = copy_tree(save_metadata)
        return {k: body[k] for k in [*keys, *body] if k in body}, []
    version = dspy_version or upgrade.dependency_versions().get("dspy") or upgrade.LATEST
    states, changes = upgrade.states_for(prog, version)
    bare = list(states) == [ROOT]
    body = dict(states[ROOT]) if bare else dict(states)
    _check_names(not bare, states)
    from_file = source is not None or isinstance(save_metadata, dict)
    metadata, note = upgrade.metadata_for(save_metadata, version, from_file=from_file)
    if metadata is not None:
        body["metadata"] = metadata
    if note:
        changes.append(note)
    return body, changes


def _check_names(named: bool, states: dict[str, Any]) -> None:
    if named and "metadata" in states:
        raise SerializationError("a predictor is named 'metadata', which DSPy's file format reserves")


def _no_json(value: Any) -> Any:
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


