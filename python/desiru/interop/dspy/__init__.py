"""DSPy adapter: live dspy modules and DSPy's JSON state files as desiru programs.

One desiru module per dspy parameter, in ``named_parameters()`` order (for a
program of predictors that is ``named_predictors()``). A dotted dspy name becomes
nested desiru programs, so ``"sub.cot.predict"`` is the desiru path
``sub.cot.predict``; a segment that is not an identifier (``"layers[0]"``) gets a
cleaned name (``layers_0``). Each module's ``metadata["dspy"]["name"]`` keeps the
exact dspy name, and ``to_dspy`` matches on it, so the round trip is exact.

Layout of a converted predictor (see docs/dspy.md):
- signature: instructions, and fields with dspy's prefix (``prefix``) and
  description (``desc``), inputs then outputs;
- demos: the dicts dspy saves; a demo that was a ``dspy.Example`` also carries the
  reserved key ``"_dspy_input_keys"`` (its sorted input keys, or None when never set);
- parameters: the predictor's own ``config`` (LM call settings such as temperature)
  and, under ``"lm"``, the state of the LM object it carries (``lm.dump_state()``);
- metadata["dspy"]: name, class, the other keys of its saved state (traces, train, ...).

DSPy is imported lazily: desiru works without it, and this module can be imported
without it; only the functions that build or read dspy objects need it.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desiru import _engine
from desiru.atomic import atomic_write
from desiru.errors import CorruptDataError, DesiruError, FormatError, SerializationError, UnknownModuleError
from desiru.interop.dspy import layouts
from desiru.program import Program
from desiru.state import copy_tree

if TYPE_CHECKING:
    from desiru.serialization.documents import SaveResult

#: the metadata key (on programs and modules) that holds what only DSPy needs back
META = "dspy"
#: reserved demo key: the input keys of a demo that was a dspy.Example
INPUT_KEYS = "_dspy_input_keys"
#: the name dspy gives a program that is itself a predictor (a bare dspy.Predict)
ROOT = "self"
#: layout version of what this adapter writes into metadata["dspy"]
ADAPTER_FORMAT = 1

_RESERVED = frozenset(dir(Program)) | {"configuration", "metadata", "custom_data"}
_HINT_INSTALL = "install it with: pip install 'desiru[dspy]'"


# -- detection -----------------------------------------------------------------------------
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


# -- dspy -> desiru --------------------------------------------------------------------------
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


def looks_like_dspy_save(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a JSON object that is not a desiru document (so: a DSPy save to read)."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        with p.open("rb") as f:
            head = f.read(1 << 16).lstrip()
    except OSError:
        return False
    return head.startswith(b"{") and b'"format_version"' not in head


def _is_predictor_state(doc: dict[str, Any]) -> bool:
    """True when a file's top level is one predictor's state (what a bare dspy.Predict saves)."""
    sig = doc.get("signature")
    return (isinstance(doc.get("demos"), list) or (isinstance(sig, dict) and "fields" in sig)
            or layouts.classify(doc) is not None)


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


def _program_tree(
    states: Mapping[str, Any],
    live: Mapping[str, Any],
    *,
    root: Any,
    save_metadata: Any,
    path: str | None,
) -> dict[str, Any]:
    """The desiru state tree of a dspy program, from its per-parameter dspy states.

    ``live`` maps names to the live parameters and ``root`` is the live module, when
    there is one: they give field names, config and class names.
    """
    # the dspy module that owns each dotted prefix (for the class of nested programs)
    owners = {} if root is None else {
        n.removeprefix("self."): m for n, m in root.named_sub_modules() if n != "self"}
    tree = _empty_program()
    meta: dict[str, Any] = {"format": ADAPTER_FORMAT}
    if root is not None:
        meta["class"] = _class_path(type(root))
    if save_metadata is not None:
        meta["save_metadata"] = _plain(save_metadata, "metadata", path)
    tree["metadata"] = {META: meta}
    # per parent program: (kind, dspy segment) -> (desiru name, node); kind keeps a leaf
    # and a nested program with the same dspy segment apart
    nodes: dict[int, dict[tuple[str, str], tuple[str, dict[str, Any]]]] = {}
    for name, state in states.items():
        if not isinstance(name, str):
            raise CorruptDataError(f"predictor name {name!r} is not a string", path=path)
        module = _module_state(name, state, live.get(name), path)
        *parents, leaf = _segments(name)
        parent = tree
        for k, seg in enumerate(parents):
            prefix = ".".join(parents[: k + 1])
            node = _empty_program()
            node["metadata"] = {META: {"name": prefix}}
            if prefix in owners:
                node["metadata"][META]["class"] = _class_path(type(owners[prefix]))
            parent, _ = _child(nodes, parent, "program", seg, node)
        _, created = _child(nodes, parent, "module", leaf, module)
        if not created:
            raise CorruptDataError(f"predictor {name!r} appears twice", path=path)
    return tree


def _empty_program() -> dict[str, Any]:
    return {"kind": "program", "class": "desiru.Program", "modules": [], "configuration": {},
            "custom_data": None, "metadata": {}}


def _child(nodes: dict[int, dict[tuple[str, str], tuple[str, dict[str, Any]]]], parent: dict[str, Any],
           kind: str, seg: str, node: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The child of ``parent`` for dspy segment ``seg``: the one there, or ``node`` under a fresh name."""
    table = nodes.setdefault(id(parent), {})
    found = table.get((kind, seg))
    if found is not None:
        return found[1], False
    used = {n for n, _ in table.values()}
    base = _clean(seg)
    name, i = base, 2
    while name in used:
        name, i = f"{base}_{i}", i + 1
    entry = {"name": name, **node}
    parent["modules"].append(entry)
    table[(kind, seg)] = (name, entry)
    return entry, True


def _segments(name: str) -> list[str]:
    """Split a dspy parameter name on dots outside brackets: ``"d['a.b'].x"`` -> ``["d['a.b']", "x"]``."""
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in name:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"" and depth:
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == "." and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _clean(segment: str) -> str:
    """A desiru module name for a dspy name segment: an identifier that is not a Program attribute."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", segment).strip("_") or "module"
    if name[0].isdigit():
        name = f"m_{name}"
    return f"{name}_" if name in _RESERVED else name


def _module_state(name: str, state: Any, live: Any, path: str | None) -> dict[str, Any]:
    """The desiru module state of one dspy parameter's saved state, whatever dspy version wrote it."""
    where = f"predictor {name!r}"
    if not isinstance(state, dict):
        raise CorruptDataError(f"{where}: state must be an object, got {type(state).__name__}", path=path)
    state = _plain(state, where, path)
    meta: dict[str, Any] = {"name": name}
    if live is not None:
        meta["class"] = _class_path(type(live))
    layout = layouts.classify(state)
    if layout is None:  # not a Predict (e.g. Retrieve, Flex): keep its state whole
        meta["raw"] = state
        return {"kind": "module", "class": "desiru.Module",
                "signature": {"instructions": "", "inputs": [], "outputs": []},
                "demos": [], "parameters": {}, "metadata": {META: meta}}
    if layout != layouts.SIGNATURE:
        meta["layout"] = layout
    if [k for k in state if k in layouts.ORDER[layout]] != [k for k in layouts.ORDER[layout] if k in state]:
        meta["keys"] = list(state)  # not the order dspy writes: keep the file's
    for i, demo in enumerate(state["demos"]):
        if not isinstance(demo, dict):
            raise CorruptDataError(f"{where}: demo {i} must be an object, got {type(demo).__name__}", path=path)
    signature = layouts.read_signature(layout, where, state, getattr(live, "signature", None), meta, path)
    demos = _demos(where, state["demos"], getattr(live, "demos", None), path)
    parameters: dict[str, Any] = {}
    config = getattr(live, "config", None)
    if isinstance(config, dict):
        config = _plain(config, f"{where} config", path)
        if "lm" in config:
            raise SerializationError(f"{where}: its config has an 'lm' entry, which collides with its LM "
                                     "state", hint="set the LM with predictor.lm = ... instead")
        parameters.update(config)
        meta["config_captured"] = True
    lm = state["lm"]
    if lm is not None:
        if not isinstance(lm, dict):
            raise CorruptDataError(f"{where}: 'lm' must be an object or null", path=path)
        parameters["lm"] = lm
    meta["extra_state"] = {k: v for k, v in state.items() if k not in layouts.own_keys(layout)}
    return {"kind": "module", "class": "desiru.Predict", "signature": signature, "demos": demos,
            "parameters": parameters, "metadata": {META: meta}}


def _demos(where: str, demos: list[Any], live_demos: Any, path: str | None) -> list[dict[str, Any]]:
    """The saved demos, with the input keys of those that were dspy.Example objects."""
    out = []
    align = isinstance(live_demos, list) and len(live_demos) == len(demos)
    example_cls = getattr(sys.modules.get("dspy.primitives.example"), "Example", None)
    for i, demo in enumerate(demos):
        if not isinstance(demo, dict):
            raise CorruptDataError(f"{where}: demo {i} must be an object, got {type(demo).__name__}",
                                   path=path)
        if INPUT_KEYS in demo:
            raise SerializationError(f"{where}: demo {i} uses the reserved key {INPUT_KEYS!r}",
                                     hint="rename that demo field")
        if align and example_cls is not None and isinstance(live_demos[i], example_cls):
            keys = getattr(live_demos[i], "_input_keys", None)
            demo = {**demo, INPUT_KEYS: None if keys is None else sorted(map(str, keys))}
        out.append(demo)
    return out


_LEAVES = frozenset({str, bool, int, float, bytes, type(None)})


def _plain(value: Any, where: str, path: str | None = None) -> Any:
    """``value`` as a fresh state tree (what dspy's JSON save would write), or a SerializationError.

    A copy, because dspy's dump_state shares lists and dicts with the live module.
    """
    trail: list[str] = []  # where we are, formatted only for an error (this runs per demo field)

    def walk(v: Any) -> Any:
        t = type(v)
        if t in _LEAVES:
            return v
        if t is dict or isinstance(v, dict):
            out = {}
            for k, item in v.items():
                if type(k) is not str:
                    if not isinstance(k, str):
                        raise SerializationError(f"{_trail(where, trail)}: key {k!r} is not a string", path=path)
                    k = str.__str__(k)
                if type(item) in _LEAVES:
                    out[k] = item
                else:
                    trail.append(f".{k}")
                    out[k] = walk(item)
                    trail.pop()
            return out
        if t is list or t is tuple or isinstance(v, (list, tuple)):
            items = []
            for i, item in enumerate(v):
                trail.append(f"[{i}]")
                items.append(walk(item))
                trail.pop()
            return items
        if isinstance(v, str):  # subclasses (str enums, ...) as their plain value
            return str.__str__(v)
        if isinstance(v, (bool, int, float)):
            return bool(v) if isinstance(v, bool) else int(v) if isinstance(v, int) else float(v)
        if hasattr(v, "model_dump"):  # pydantic models, as dspy's serialize_object writes them
            return walk(v.model_dump(mode="json"))
        raise SerializationError(
            f"{_trail(where, trail)}: a {t.__qualname__} cannot be saved",
            path=path,
            hint="keep demos, config and LM settings to JSON values (str, number, bool, null, list, dict)",
        )

    return walk(value)


def _trail(where: str, trail: list[str]) -> str:
    return where + "".join(trail)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- desiru -> dspy --------------------------------------------------------------------------
def dspy_state(program: Program, layout: str | None = None) -> dict[str, Any]:
    """The program as dspy's ``dump_state()`` gives it: dspy parameter name -> state (no file metadata).

    Each predictor is written in the layout it was read in (``layout`` overrides: one of
    ``desiru.interop.dspy.layouts``' names).
    """
    out: dict[str, Any] = {}
    for dotted, module in program.named_modules():
        meta = _meta(module.metadata)
        name = meta.get("name", dotted)
        if not isinstance(name, str):
            raise CorruptDataError(f"module {dotted!r}: metadata dspy.name must be a string")
        if name in out:
            raise DesiruError(f"two modules map to the dspy predictor {name!r}",
                              hint=f"see module {dotted!r}")
        out[name] = param_state(dotted, module, meta, layout)
    return out


def _meta(metadata: Any) -> dict[str, Any]:
    meta = metadata.get(META) if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) else {}


def param_state(dotted: str, module: Any, meta: dict[str, Any], layout: str | None = None) -> dict[str, Any]:
    """One module's dspy state, in ``layout`` (default: the one it was read in)."""
    if "raw" in meta:
        return copy_tree(meta["raw"])
    lm = module.parameters.get("lm")
    if lm is not None and not isinstance(lm, dict):
        raise DesiruError(f"module {dotted!r}: parameter 'lm' must be a dict of LM settings or absent")
    if lm is not None and "model" not in lm:
        raise DesiruError(f"module {dotted!r}: the LM settings in parameter 'lm' have no 'model'",
                          hint="set parameters['lm'] = {'model': 'provider/name', ...}")
    recorded = meta.get("layout", layouts.SIGNATURE)
    return layouts.write_predictor(module, meta, layout or recorded, lm)


def to_dspy(program: Program, into: Any, *, copy: bool = False, allow_unsafe_lm_state: bool = False) -> Any:
    """Load ``program`` into the dspy module ``into`` (same structure) and return it.

    ``into`` is changed in place, as dspy's own ``load()`` does; ``copy=True`` loads into
    ``into.deepcopy()`` instead and leaves ``into`` as it was. Demos that were
    ``dspy.Example`` objects come back as Examples with their input keys, and each
    predictor's ``config`` is restored. ``allow_unsafe_lm_state`` is passed to dspy
    (it lets LM states keep endpoints such as api_base and import custom LM classes;
    only for trusted programs).
    """
    dspy = _require_dspy()
    if not isinstance(program, Program):
        raise DesiruError(f"to_dspy needs a desiru Program, got {type(program).__qualname__}")
    if not is_dspy_module(into):
        raise DesiruError(f"into= must be a dspy module, got {type(into).__qualname__}",
                          hint="pass an instance of the dspy program this state belongs to")
    target = into.deepcopy() if copy else into
    states = dspy_state(program)
    params = dict(target.named_parameters())
    missing = [n for n in params if n not in states]
    unknown = [n for n in states if n not in params]
    if missing or unknown:
        raise UnknownModuleError(
            f"the dspy module {type(target).__qualname__} does not match the program: "
            f"predictors missing from the program {missing}, not in the dspy module {unknown}",
            hint="load into an instance of the dspy program the state came from",
        )
    # a bare predictor (dspy names it "self") loads its own state, not a name -> state map
    ordered = states[ROOT] if _is_parameter(target) else {n: states[n] for n in params}
    if allow_unsafe_lm_state:
        target.load_state(ordered, allow_unsafe_lm_state=True)
    else:
        target.load_state(ordered)
    modules = {(_meta(m.metadata).get("name", d)): m for d, m in program.named_modules()}
    for name, param in params.items():
        _restore_live(param, modules[name], dspy)
    return target


def _restore_live(param: Any, module: Any, dspy: Any) -> None:
    """What dspy's load_state does not restore: Example demos with input keys, and config."""
    meta = _meta(module.metadata)
    if "raw" in meta:
        return
    demos = getattr(param, "demos", None)
    if isinstance(demos, list) and len(demos) == len(module.demos):
        for i, demo in enumerate(module.demos):
            if INPUT_KEYS in demo:
                keys = demo[INPUT_KEYS]
                ex = dspy.Example({k: v for k, v in demos[i].items() if k != INPUT_KEYS})
                demos[i] = ex.with_inputs(*keys) if isinstance(keys, list) else ex
    if isinstance(getattr(param, "config", None), dict):
        config = {k: copy_tree(v) for k, v in module.parameters.items() if k != "lm"}
        param.config = config if meta.get("config_captured") else {**param.config, **config}


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
    return SaveResult(Path(where), size, _engine.sha256(data).hex(), "json", None, False)


def dspy_document(program: Program | Any, dspy_version: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The JSON document of a DSPy save of ``program``, and what was changed to make it.

    Without ``dspy_version``, a program read from a DSPy file gives that file back and no
    change. With it (or for a program from elsewhere, the installed dspy's version) the
    document is in the layout that release writes; older layouts are brought forward as
    docs/dspy.md says, and each change is listed.
    """
    from desiru.interop.dspy import upgrade

    prog = as_program(program)
    pmeta = _meta(prog.metadata)
    source = pmeta.get("file") if isinstance(pmeta.get("file"), dict) else None
    save_metadata = pmeta.get("save_metadata")
    if dspy_version is None and (source is not None or isinstance(save_metadata, dict)):
        source = source or {}
        states = dspy_state(prog)
        keys = source.get("keys") if isinstance(source.get("keys"), list) else []
        bare = not source.get("named_self") and list(states) == [ROOT]
        _check_names(not bare, states)
        body = dict(states[ROOT] if bare else states)
        if isinstance(save_metadata, dict):
            body["metadata"] = copy_tree(save_metadata)
        return {k: body[k] for k in [*keys, *body] if k in body}, []
    version = dspy_version or dependency_versions().get("dspy") or upgrade.LATEST
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


def dependency_versions() -> dict[str, str]:
    """The versions block DSPy writes in its saves (python, dspy, cloudpickle), for this environment."""
    saving = sys.modules.get("dspy.utils.saving")
    if saving is not None:
        return dict(saving.get_dependency_versions())
    out = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    for dist, major_minor in (("dspy", False), ("cloudpickle", True)):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        out[dist] = ".".join(version.split(".")[:2]) if major_minor else version
    return out


# -- files and journals -------------------------------------------------------------------------
def save(module: Any, path: str | os.PathLike[str], **options: Any) -> SaveResult:
    """Save a live dspy module (or a Program) as a desiru file: ``Program.save`` options apply."""
    return as_program(module).save(path, **options)


def load(path: str | os.PathLike[str], into: Any, *, key: bytes | str | None = None,
         copy: bool = False, allow_unsafe_lm_state: bool = False) -> Any:
    """Load a desiru file into the dspy module ``into`` (see ``to_dspy``) and return it."""
    from desiru.api import load as ds_load

    obj = ds_load(path, key=key)
    if not isinstance(obj, Program):
        raise DesiruError("this file holds a single module, not a program", path=path,
                          hint="save the whole dspy program with desiru.interop.dspy.save(module, path)")
    return to_dspy(obj, into, copy=copy, allow_unsafe_lm_state=allow_unsafe_lm_state)


from desiru.interop.dspy.templates import dspy_template  # noqa: E402  (it imports from this module)

__all__ = [
    "ADAPTER_FORMAT",
    "INPUT_KEYS",
    "META",
    "as_program",
    "dependency_versions",
    "dspy_document",
    "dspy_state",
    "dspy_template",
    "from_dspy",
    "is_dspy_module",
    "load",
    "looks_like_dspy_save",
    "read_dspy_save",
    "save",
    "to_dspy",
    "write_dspy_save",
]
