"""Live dspy modules <-> desiru programs, and desiru files of dspy programs.

DSPy is imported lazily: desiru works without it, and this module can be imported
without it; only the functions that build or read dspy objects need it.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from desiru.errors import DesiruError, SerializationError, UnknownModuleError
from desiru.interop.dspy import upgrade
from desiru.interop.dspy.drift import align, rename_fields
from desiru.interop.dspy.examples import ExampleFactory
from desiru.interop.dspy.layouts import SIGNATURE
from desiru.interop.dspy.states import INPUT_KEYS, ROOT, _meta, _program_tree
from desiru.program import Program
from desiru.state import copy_tree

if TYPE_CHECKING:
    from desiru.serialization.documents import SaveResult

_HINT_INSTALL = "install it with: pip install 'desiru[dspy]'"


def is_dspy_module(obj: Any) -> bool:
    """True when ``obj`` is a dspy module (checked without importing dspy)."""
    base = sys.modules.get("dspy.primitives.base_module")
    return base is not None and isinstance(obj, base.BaseModule)


def _require_dspy() -> Any:
    try:
        import dspy
    except ImportError as exc:
        raise DesiruError(f"DSPy is not installed ({exc})", hint=_HINT_INSTALL) from None
    return dspy


def as_program(obj: Any) -> Program:
    """``obj`` as a desiru Program: a Program unchanged, a live dspy module converted."""
    if isinstance(obj, Program):
        return obj
    if is_dspy_module(obj):
        return from_dspy(obj)
    raise SerializationError(
        f"expected a desiru Program or a dspy module, got {type(obj).__module__}.{type(obj).__qualname__}",
        hint="build a desiru.Program, or pass a dspy.Module",
    )


def from_dspy(module: Any) -> Program:
    """A desiru Program holding the state of a live dspy module (one desiru module per predictor)."""
    _require_dspy()
    if not is_dspy_module(module):
        raise SerializationError(f"from_dspy needs a dspy module, got {type(module).__qualname__}")
    from dspy.utils.saving import get_dependency_versions

    live = dict(module.named_parameters())
    states = {name: _dump_param(param) for name, param in live.items()}
    tree = _program_tree(states, live, root=module,
                         save_metadata={"dependency_versions": get_dependency_versions()}, path=None)
    return Program.from_state(tree)


def _is_parameter(obj: Any) -> bool:
    """True for dspy parameters (Predict, ...): their state is their own, not keyed by name."""
    param = sys.modules.get("dspy.predict.parameter")
    return param is not None and isinstance(obj, param.Parameter)


def _dump_param(param: Any) -> Any:
    """``param.dump_state()`` as dspy's JSON save would write it (json_mode where supported)."""
    try:
        takes_json_mode = "json_mode" in inspect.signature(param.dump_state).parameters
    except (TypeError, ValueError):
        takes_json_mode = False
    return param.dump_state(json_mode=True) if takes_json_mode else param.dump_state()


def to_dspy(program: Program, into: Any, *, copy: bool = False, allow_unsafe_lm_state: bool = False,
            fields: str = "strict", rename: Mapping[str, str] | None = None, check_types: bool = True) -> Any:
    """Load ``program`` into the dspy module ``into`` (same structure) and return it.

    ``into`` is changed in place, as dspy's own ``load()`` does; ``copy=True`` loads into
    ``into.deepcopy()`` instead and leaves ``into`` as it was. Demos that were
    ``dspy.Example`` objects come back as Examples with their input keys, and each
    predictor's ``config`` is restored. ``allow_unsafe_lm_state`` is passed to dspy
    (it lets LM states keep endpoints such as api_base and import custom LM classes;
    only for trusted programs); without it, dropped endpoints are warned about
    (``LMStateWarning``). Signature fields are matched by name and their types checked
    (``drift.align``): drift raises a DesiruError unless ``fields="by_name"``, ``rename=``
    or ``check_types=False`` say what to do (docs/dspy.md).
    """
    return _to_dspy(program, into, copy=copy, allow_unsafe_lm_state=allow_unsafe_lm_state, fields=fields,
                    rename=rename, check_types=check_types, owned=False)


def _to_dspy(program: Program, into: Any, *, copy: bool, allow_unsafe_lm_state: bool, fields: str,
             rename: Mapping[str, str] | None, check_types: bool, owned: bool,
             detached: dict[str, list[dict[str, Any]]] | None = None) -> Any:
    """``to_dspy``; with ``owned`` nobody else holds ``program`` (just read from a file), so its demo
    dicts become the dspy demos without a copy; ``detached``: demo lists ``_detach_demos`` kept out of
    the program, by dotted module path."""
    dspy = _require_dspy()
    if not isinstance(program, Program):
        raise DesiruError(f"to_dspy needs a desiru Program, got {type(program).__qualname__}")
    if not is_dspy_module(into):
        raise DesiruError(f"into= must be a dspy module, got {type(into).__qualname__}",
                          hint="pass an instance of the dspy program this state belongs to; for a desiru "
                               "program class pass cls=, e.g. journal.replay(cls=Triage)")
    if rename:
        program = rename_fields(program, rename)
    target = into.deepcopy() if copy else into
    # as the installed dspy keeps it: a program read from an older release's save is brought forward
    entries, _ = upgrade.modules_for(program, dspy.__version__, owned=owned)
    if detached:
        dotted_of = {id(module): dotted for dotted, module in program.named_modules()}
        for module, state in entries.values():
            demos = detached.get(dotted_of.get(id(module), ""))
            if demos is not None:
                state["demos"] = demos
    states = {name: state for name, (_, state) in entries.items()}
    params = dict(target.named_parameters())
    missing = [n for n in params if n not in states]
    unknown = [n for n in states if n not in params]
    if missing or unknown:
        raise UnknownModuleError(
            f"the dspy module {type(target).__qualname__} does not match the program: "
            f"predictors missing from the program {missing}, not in the dspy module {unknown}",
            hint="load into an instance of the dspy program the state came from",
        )
    align(states, {name: module for name, (module, _) in entries.items()}, params, fields=fields,
          check_types=check_types)
    if not allow_unsafe_lm_state:
        _warn_dropped_endpoints(states)
    # a bare predictor (dspy names it "self") loads its own state, not a name -> state map
    ordered = states[ROOT] if _is_parameter(target) else {n: states[n] for n in params}
    if allow_unsafe_lm_state:
        target.load_state(ordered, allow_unsafe_lm_state=True)
    else:
        target.load_state(ordered)
    factory = ExampleFactory(dspy.Example)
    for name, param in params.items():
        _restore_live(param, entries[name][0], factory, owned)
    return target


_PLAIN = object()  # marks a demo that was a plain dict (no input keys recorded)
#: LM state keys dspy drops on load unless allow_unsafe_lm_state=True (dspy.predict.predict.UNSAFE_LM_STATE_KEYS)
_UNSAFE_LM_KEYS = ("api_base", "base_url", "model_list")


class LMStateWarning(UserWarning):
    """LM settings of a loaded program were dropped (endpoints, unless allow_unsafe_lm_state=True)."""


def _warn_dropped_endpoints(states: dict[str, Any]) -> None:
    """Say which endpoints dspy is about to drop: a program that silently calls another endpoint is a trap."""
    for name, state in states.items():
        lm = state.get("lm") if isinstance(state, dict) else None
        dropped = [k for k in _UNSAFE_LM_KEYS if isinstance(lm, dict) and k in lm]
        if dropped:
            warnings.warn(f"predictor {name!r}: its LM state sets {dropped}, which are dropped on load (the "
                          "program would call the provider's default endpoint); pass allow_unsafe_lm_state=True "
                          "to keep them for a trusted program", LMStateWarning, stacklevel=3)


def _restore_live(param: Any, module: Any, factory: ExampleFactory, owned: bool) -> None:
    """What dspy's load_state does not restore: Example demos with input keys, and config.

    ``owned``: the demos dspy was given are the module's own dicts, input keys included
    (``states._dspy_demos``): each becomes an Example in place.
    """
    meta = _meta(module.metadata)
    if "raw" in meta:
        return
    demos = getattr(param, "demos", None)
    if owned and isinstance(demos, list):
        factory.adopt_marked(demos, INPUT_KEYS)
    elif isinstance(demos, list) and len(demos) == len(module.demos):
        marks = [getattr(d, "_data", d).get(INPUT_KEYS, _PLAIN) for d in module.demos]
        at = [i for i, mark in enumerate(marks) if mark is not _PLAIN]  # the demos that were dspy.Examples
        fields = []
        for i in at:
            f = demos[i]  # the dict made for this load (taken without a copy), unless dspy changed it
            fields.append(f if type(f) is dict and INPUT_KEYS not in f else
                          {k: v for k, v in dict(f).items() if k != INPUT_KEYS})
        made = factory.make_all(
            fields, [marks[i] if isinstance(marks[i], list) else None for i in at])
        for i, ex in zip(at, made):
            demos[i] = ex
    if isinstance(getattr(param, "config", None), dict):
        config = {k: copy_tree(v) for k, v in module.parameters.items() if k != "lm"}
        param.config = config if meta.get("config_captured") else {**param.config, **config}


def save(module: Any, path: str | os.PathLike[str], **options: Any) -> SaveResult:
    """Save a live dspy module (or a Program) as a desiru file: ``Program.save`` options apply."""
    return as_program(module).save(path, **options)


def load(path: str | os.PathLike[str], into: Any, *, key: bytes | str | None = None,
         copy: bool = False, allow_unsafe_lm_state: bool = False) -> Any:
    """Load a desiru file into the dspy module ``into`` (see ``to_dspy``) and return it.

    The program read is nobody else's: the demo dicts the file decodes to become the dspy
    demos (Examples take them), never copied nor wrapped in desiru Examples on the way.
    """
    from desiru import gcpause
    from desiru.files import from_document
    from desiru.serialization.documents import load_document

    with gcpause.paused():  # thousands of new dicts and Examples, none in a cycle
        doc = load_document(path, key=key)
        if doc.kind != "program":
            raise DesiruError("this file holds a single module, not a program", path=path,
                              hint="save the whole dspy program with desiru.interop.dspy.save(module, path)")
        detached = _detach_demos(doc.state)
        program = from_document(Program, doc)
        return _to_dspy(program, into, copy=copy, allow_unsafe_lm_state=allow_unsafe_lm_state, fields="strict",
                        rename=None, check_types=True, owned=True, detached=detached)


_DICTS = frozenset({dict})


def _detach_demos(tree: Any) -> dict[str, list[dict[str, Any]]]:
    """Take the demo lists out of a decoded program state (each left empty), by dotted module path.

    Only where the dspy state needs nothing of the demos but the demos themselves: a predictor
    in the current layout (not raw, not a ChainOfThought of dspy < 2.6), whose demos are all dicts
    (anything else stays for ``Module.from_state`` to check and refuse).
    """
    out: dict[str, list[dict[str, Any]]] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in node.get("modules") or () if isinstance(node, dict) else ():
            name = child.get("name") if isinstance(child, dict) else None
            if not isinstance(name, str):
                continue
            if child.get("kind") == "program":
                walk(child, f"{prefix}{name}.")
                continue
            meta, demos = _meta(child.get("metadata")), child.get("demos")
            if ("raw" in meta or meta.get("cot") or meta.get("layout", SIGNATURE) != SIGNATURE
                    or type(demos) is not list or not _DICTS.issuperset(map(type, demos))):
                continue
            out[f"{prefix}{name}"] = demos
            child["demos"] = []

    walk(tree, "")
    return out
