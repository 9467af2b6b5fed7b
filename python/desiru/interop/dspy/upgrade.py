"""Writing a program for a named dspy release: layouts brought forward, each change said.

dspy 2.6 changed more than the layout of a predictor's state: ChainOfThought became
a module holding a Predict (its state is saved as ``name.predict``, a bare one as
``predict``), its reasoning field is ``reasoning`` (``rationale`` before 2.5), a
save without a metadata block no longer loads, and ``extended_signature`` is refused.
"""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Any

from desiru.errors import DesiruError
from desiru.interop.dspy import fields as fl
from desiru.interop.dspy import layouts
from desiru.interop.dspy.states import ROOT, _meta, param_state
from desiru.module import Module
from desiru.program import Program
from desiru.state import copy_tree

#: the layout written when neither the caller nor an installed dspy names a version
LATEST = "3.0.0"


def states_for(program: Program, version: str) -> tuple[dict[str, Any], list[str]]:
    """dspy parameter name -> state for dspy ``version``, and the changes made to get there."""
    entries, changes = modules_for(program, version)
    return {name: state for name, (_, state) in entries.items()}, changes


def modules_for(program: Program, version: str, *,
                owned: bool = False) -> tuple[dict[str, tuple[Any, dict[str, Any]]], list[str]]:
    """dspy parameter name for dspy ``version`` -> (the module as that release keeps it, its state),
    and the changes made to get there. ``owned``: the program's demos may be handed over (see
    ``states._dspy_demos``)."""
    target = layouts.layout_for_version(version)
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    changes: list[str] = []
    for dotted, module in program.named_modules():
        meta = _meta(module.metadata)
        name = meta.get("name", dotted)
        if "raw" in meta:
            out[name] = (module, param_state(dotted, module, meta))
            continue
        source = meta.get("layout", layouts.SIGNATURE)
        said: list[str] = []
        if source != target:
            said.append(f"{_LAYOUT_NAMES[source]} -> {_LAYOUT_NAMES[target]}")
        if target == layouts.SIGNATURE and meta.get("cot") and source != layouts.SIGNATURE:
            new_name = "predict" if name == ROOT else f"{name}.predict"
            said.append(f"renamed to {new_name!r} (a ChainOfThought holds its Predict as .predict since dspy 2.6)")
            module, meta = _cot_forward(module, meta, said)
            name = new_name
        elif target != layouts.SIGNATURE and not meta.get("cot") and _is_cot_predict(name, module):
            new_name = ROOT if name == "predict" else name.rsplit(".", 1)[0]
            said.append(f"renamed to {new_name!r} (before dspy 2.6 a ChainOfThought was itself the Predict)")
            module, meta = _cot_back(module, {**meta, "cot": True}, target, said)
            name = new_name
        if source != target and meta.get("unrecorded"):
            said.append("the old file did not record its " + ", ".join(meta["unrecorded"])
                        + ": wrote dspy's defaults for the derived field names")
        if name in out:
            raise DesiruError(f"two predictors would be named {name!r} for dspy {version}",
                              hint=f"see module {dotted!r}")
        out[name] = (module, param_state(dotted, module, meta, target, owned=owned))
        if said:
            changes.append(f"{meta.get('name', dotted)}: " + "; ".join(said))
    return out, changes


_LAYOUT_NAMES = {
    layouts.SIGNATURE: "dspy 2.6+ layout",
    layouts.SIGNATURE_25: "dspy 2.5 layout (signature + extended_signature)",
    layouts.FLAT: "dspy 2.4 flat layout (signature_instructions/signature_prefix)",
    layouts.EARLY: "early dspy 2.x layout (no signature state)",
}


def _cot_forward(module: Any, meta: dict[str, Any], said: list[str]) -> tuple[Any, dict[str, Any]]:
    """A ChainOfThought predictor of dspy < 2.6 as dspy 2.6 keeps it: one signature, with ``reasoning``."""
    state = module.to_state()
    meta = dict(meta)
    base = meta.pop("base_signature", None)
    meta.pop("cot", None)
    if base is not None:
        said.append("dropped the base signature kept beside the extended one (dspy 2.6 keeps only the one "
                    "the LM sees)")
    for side in ("inputs", "outputs"):
        for f in state["signature"][side]:
            if f["name"] == "rationale":
                f["name"] = "reasoning"
            if f["name"] == "reasoning" and f["prefix"] == fl.COT_PREFIX and f["desc"].startswith("${produce"):
                f["desc"] = "${reasoning}"  # dspy 2.6's ChainOfThought field
    renamed = _rename_key(state["demos"], "rationale", "reasoning")
    if renamed:
        said.append(f"demo key 'rationale' -> 'reasoning' in {renamed} demos")
    state["metadata"] = {**state["metadata"], "dspy": meta}
    return Module.from_state(state), meta


def _is_cot_predict(name: str, module: Any) -> bool:
    """The Predict inside a dspy 2.6+ ChainOfThought: named ``predict``, its first output the reasoning."""
    first = next(iter(module.signature.outputs), None)
    return (name == "predict" or name.endswith(".predict")) and first in ("reasoning", "rationale")


def _cot_back(module: Any, meta: dict[str, Any], target: str, said: list[str]) -> tuple[Any, dict[str, Any]]:
    """A dspy 2.6+ ChainOfThought's Predict as dspy before 2.5 kept it: the field named ``rationale``."""
    if target != layouts.FLAT:
        return module, meta
    state = module.to_state()
    for f in state["signature"]["outputs"]:
        if f["name"] == "reasoning":
            f["name"] = "rationale"
    renamed = _rename_key(state["demos"], "reasoning", "rationale")
    if renamed:
        said.append(f"demo key 'reasoning' -> 'rationale' in {renamed} demos")
    state["metadata"] = {**state["metadata"], "dspy": meta}
    return Module.from_state(state), meta


def _rename_key(demos: list[dict[str, Any]], old: str, new: str) -> int:
    """Rename a key in place in every demo that has it (and not the new one), keeping key order."""
    renamed = 0
    for demo in demos:
        if old in demo and new not in demo:
            items = [(new if k == old else k, v) for k, v in demo.items()]
            demo.clear()
            demo.update(items)
            renamed += 1
    return renamed


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


def metadata_for(save_metadata: Any, version: str, *, from_file: bool) -> tuple[dict[str, Any] | None, str]:
    """The metadata block dspy ``version`` writes (None before 2.5.41), and a note when it changed."""
    if not layouts.writes_metadata(version):
        return None, "dropped the metadata block (dspy before 2.5.41 wrote none)" if save_metadata else ""
    deps = save_metadata.get("dependency_versions") if isinstance(save_metadata, dict) else None
    saved = deps.get("dspy") if isinstance(deps, dict) else None
    if isinstance(saved, str) and (saved == version or (
            layouts.writes_metadata(saved)
            and layouts.layout_for_version(saved) == layouts.layout_for_version(version))):
        return copy_tree(save_metadata), ""  # written by a release of the same layout: it stays true
    env = dependency_versions()
    if layouts.version_tuple(version) < (2, 6, 0):  # 2.5 wrote full versions, 2.6 major.minor
        env["python"] = ".".join(map(str, sys.version_info[:3]))
    env["dspy"] = version
    new = {"dependency_versions": {k: env[k] for k in ("python", "dspy", "cloudpickle") if k in env}}
    if not from_file:
        return new, ""
    was = f"dspy {deps.get('dspy')}" if isinstance(deps, dict) else "no metadata block"
    return new, f"metadata: {was} -> dependency_versions naming dspy {version}, the release written for"
