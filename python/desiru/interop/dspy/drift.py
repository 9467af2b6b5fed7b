"""Signature drift: saved fields meet a dspy class by name, never by position, and types are checked.

dspy's own ``load_state`` zips saved fields onto the class's fields by position, so a saved
"Short Answer:" prefix lands on whatever field is now in that place. ``to_dspy`` calls
``align`` first: each predictor's saved fields are matched to the class's fields by name
and put in the class's order; any difference (fields only on one side, an input that became
an output, a changed type) raises one DesiruError listing all of them, unless the caller
chose otherwise (``fields="by_name"``, ``rename=``, ``check_types=False``; see docs/dspy.md).

Field types are stored as strings in each predictor's ``metadata["dspy"]["types"]``
(``"str"``, ``"list[str]"``, ``"Literal['a', 'b']"``, a pydantic model's qualified name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from desiru.errors import DesiruError
from desiru.interop.dspy.fields import INPUT_KEYS
from desiru.program import Program

#: field modes of ``to_dspy``: "strict" (every difference is an error) or "by_name" (saved fields the
#: class lacks are ignored, class fields the program lacks keep the class's prefix and description)
FIELD_MODES = ("strict", "by_name")
_TYPING = re.compile(r"\btyping(_extensions)?\.")


def type_name(annotation: Any) -> str:
    """A field type as a string: builtins by name, classes by qualified name, generics as written."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        if annotation.__module__ == "builtins":
            return annotation.__qualname__
        return f"{annotation.__module__}.{annotation.__qualname__}"
    return _TYPING.sub("", repr(annotation)).replace("NoneType", "None")


def field_types(signature: Any) -> dict[str, str]:
    """Field name -> type string of a dspy signature."""
    return {name: type_name(f.annotation) for name, f in signature.fields.items()}


def rename_fields(program: Program, rename: Mapping[str, str]) -> Program:
    """A copy of ``program`` whose signature fields (and demo keys) named ``old`` are named ``new``."""
    for old, new in rename.items():
        if not (isinstance(old, str) and isinstance(new, str) and new.isidentifier()):
            raise DesiruError(f"rename maps field names to field names, got {old!r}: {new!r}",
                              hint="e.g. rename={'short_answer': 'answer'}")

    def walk(node: dict[str, Any]) -> None:
        for child in node.get("modules", []):
            walk(child)
        if node.get("kind") != "module":
            return
        sig = node["signature"]
        for side in ("inputs", "outputs"):
            for f in sig[side]:
                f["name"] = rename.get(f["name"], f["name"])
        names = [f["name"] for side in ("inputs", "outputs") for f in sig[side]]
        if len(set(names)) != len(names):
            raise DesiruError(f"rename gives module {node.get('name')!r} two fields of one name: {names}")
        node["demos"] = [{rename.get(k, k): _renamed_keys(v, rename) if k == input_keys else v
                          for k, v in demo.items()} for demo in node["demos"]]
        meta = node.get("metadata", {}).get("dspy")
        if isinstance(meta, dict):
            if isinstance(meta.get("types"), dict):
                meta["types"] = {rename.get(k, k): v for k, v in meta["types"].items()}
            if isinstance(meta.get("empty_prefix"), list):
                meta["empty_prefix"] = [rename.get(k, k) for k in meta["empty_prefix"]]


    input_keys = INPUT_KEYS
    state = program.to_state()
    walk(state)
    return Program.from_state(state)


def _renamed_keys(keys: Any, rename: Mapping[str, str]) -> Any:
    return sorted(rename.get(k, k) for k in keys) if isinstance(keys, list) else keys


def align(states: dict[str, Any], modules: Mapping[str, Any], params: Mapping[str, Any], *,
          fields: str = "strict", check_types: bool = True) -> None:
    """Put each predictor's saved fields in its class's order, matched by name; DesiruError on drift.

    ``states`` (dspy name -> the state ``load_state`` will get) is changed in place;
    ``modules`` are the program's modules and ``params`` the target's live predictors, by dspy name.
    """
    if fields not in FIELD_MODES:
        raise DesiruError(f"fields must be one of {FIELD_MODES}, got {fields!r}")
    problems: list[str] = []
    for name, param in params.items():
        live = getattr(param, "signature", None)
        state = states.get(name)
        if not hasattr(live, "input_fields") or not isinstance(state, dict) or "signature" not in state:
            continue
        module = modules[name]
        meta = module.metadata.get("dspy") if isinstance(module.metadata, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        saved = state["signature"]["fields"]
        ins, outs = list(live.input_fields), list(live.output_fields)
        # names not recorded from a live class (derived from a DSPy file, or journaled before types were
        # recorded): positions are all there is to go by, as for dspy's own load
        if meta and "types" not in meta:
            if len(saved) != len(ins) + len(outs):
                problems.append(f"predictor {name!r}: the saved signature has {len(saved)} fields, the class "
                                f"{len(ins) + len(outs)} ({', '.join(ins + outs)})")
            continue
        saved_in = list(module.signature.inputs)
        saved_out = list(module.signature.outputs)
        by_name = dict(zip(saved_in + saved_out, saved))
        diff = _differences(saved_in, saved_out, ins, outs, meta.get("types"), field_types(live) if check_types
                            else None, fields)
        if diff:
            problems.append(f"predictor {name!r} ({type(param).__qualname__}): {'; '.join(diff)}")
            continue
        current = {n: {"prefix": f.json_schema_extra.get("prefix", ""), "description": f.json_schema_extra.get(
            "desc", "")} for n, f in live.fields.items()}
        state["signature"] = {**state["signature"], "fields": [by_name.get(n, current[n]) for n in ins + outs]}
    if problems:
        raise DesiruError(
            "the program's signatures do not match the dspy class (fields are matched by name): "
            + " | ".join(problems),
            hint="load into the class the program was saved from; or, on purpose: fields='by_name' (ignore "
                 "fields on one side only), rename={'old': 'new'}, check_types=False")


def _differences(saved_in: list[str], saved_out: list[str], ins: list[str], outs: list[str],
                 saved_types: Any, live_types: dict[str, str] | None, mode: str) -> list[str]:
    saved_all, live_all = saved_in + saved_out, ins + outs
    out = []
    only_saved = [n for n in saved_all if n not in live_all]
    only_class = [n for n in live_all if n not in saved_all]
    if mode == "strict" and only_saved:
        out.append(f"fields only in the saved program {only_saved}")
    if mode == "strict" and only_class:
        out.append(f"fields only in the class {only_class}")
    moved = [n for n in saved_in if n in outs] + [n for n in saved_out if n in ins]
    if moved:
        out.append(f"input/output swapped {moved}")
    if live_types is not None and isinstance(saved_types, dict):
        changed = {n: (saved_types[n], live_types[n]) for n in live_all
                   if n in saved_types and n in saved_all and saved_types[n] != live_types[n]}
        if changed:
            out.append("types differ " + ", ".join(f"{n}: saved {a}, class {b}" for n, (a, b) in changed.items()))
    return out


__all__ = ["FIELD_MODES", "align", "field_types", "rename_fields", "type_name"]
