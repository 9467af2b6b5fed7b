"""dspy parameter states <-> desiru state trees: one desiru module per dspy parameter.

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
- metadata["dspy"]: name, class, the layout it was saved in when not the current one
  (layouts.py), the other keys of its saved state (traces, train, ...).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from desiru.errors import CorruptDataError, DesiruError, SerializationError
from desiru.interop.dspy import layouts
from desiru.interop.dspy.drift import field_types
from desiru.interop.dspy.fields import INPUT_KEYS
from desiru.program import Program
from desiru.state import LEAVES, copy_tree

#: the metadata key (on programs and modules) that holds what only DSPy needs back
META = "dspy"
#: the name dspy gives a program that is itself a predictor (a bare dspy.Predict)
ROOT = "self"
#: layout version of what this adapter writes into metadata["dspy"]
ADAPTER_FORMAT = 1

_RESERVED = frozenset(dir(Program)) | {"configuration", "metadata", "custom_data"}


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
    if hasattr(getattr(live, "signature", None), "input_fields"):
        meta["types"] = field_types(live.signature)
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



def _plain(value: Any, where: str, path: str | None = None) -> Any:
    """``value`` as a fresh state tree (what dspy's JSON save would write), or a SerializationError.

    A copy, because dspy's dump_state shares lists and dicts with the live module.
    """
    trail: list[str] = []  # where we are, formatted only for an error (this runs per demo field)

    def walk(v: Any) -> Any:
        t = type(v)
        if t in LEAVES:
            return v
        if t is dict or isinstance(v, dict):
            out = {}
            for k, item in v.items():
                if type(k) is not str:
                    if not isinstance(k, str):
                        raise SerializationError(f"{_trail(where, trail)}: key {k!r} is not a string", path=path)
                    k = str.__str__(k)
                if type(item) in LEAVES:
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


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _dspy_demos(demos: list[Any], owned: bool = False) -> list[dict[str, Any]]:
    """Desiru demos as dspy saves them: fresh dicts without the reserved input-keys entry.

    Read from each Example's own dict and copied at C speed when every value is a scalar
    (a load may convert many thousands of demos). ``owned``: nobody else holds the demos (a
    program just read from a file), so each Example's own dict is handed over as it is, input
    keys included (``to_dspy`` takes them out when it makes the dspy Examples).
    """
    if owned:
        return [d._data if type(getattr(d, "_data", None)) is dict else dict(d) for d in demos]
    out, scalars = [], _SCALARS.issuperset
    for demo in demos:
        data = getattr(demo, "_data", None)
        d = dict(data if type(data) is dict else demo)
        d.pop(INPUT_KEYS, None)
        out.append(d if scalars(map(type, d.values())) else {k: copy_tree(v) for k, v in d.items()})
    return out


def param_state(dotted: str, module: Any, meta: dict[str, Any], layout: str | None = None, *,
                owned: bool = False) -> dict[str, Any]:
    """One module's dspy state, in ``layout`` (default: the one it was read in); ``owned``: see _dspy_demos."""
    if "raw" in meta:
        return copy_tree(meta["raw"])
    lm = module.parameters.get("lm")
    if lm is not None and not isinstance(lm, dict):
        raise DesiruError(f"module {dotted!r}: parameter 'lm' must be a dict of LM settings or absent")
    if lm is not None and "model" not in lm:
        raise DesiruError(f"module {dotted!r}: the LM settings in parameter 'lm' have no 'model'",
                          hint="set parameters['lm'] = {'model': 'provider/name', ...}")
    recorded = meta.get("layout", layouts.SIGNATURE)
    demos = _dspy_demos(module.demos, owned)
    return layouts.write_predictor(module, meta, layout or recorded, lm, demos)
