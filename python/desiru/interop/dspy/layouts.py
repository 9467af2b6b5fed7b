"""The layouts dspy has written a predictor's state in, read into desiru and written back.

- ``signature`` (dspy 2.6 and later): traces, train, demos, signature {instructions,
  fields: [{prefix, description}]}, (fields,) lm.
- ``signature-2.5`` (2.5.3 to 2.5.x): lm, traces, train, demos, signature and, for a
  ChainOfThought, ``extended_signature`` (the signature the LM sees, with reasoning).
- ``flat`` (2.x up to 2.5.2): lm, traces, train, demos, signature_instructions,
  signature_prefix (the last field's prefix) and, for a ChainOfThought,
  extended_signature_instructions / extended_signature_prefix.
- ``early`` (early 2.x): lm, traces, train, demos; no signature state at all.

The desiru module shows the signature the LM sees (the extended one of a
ChainOfThought); what a layout records beside it (a base signature that differs)
stays in ``metadata["dspy"]``, so writing back is exact. What a layout does not
record (field names, prefixes, descriptions) is derived (see fields.py) and listed
in ``metadata["dspy"]["unrecorded"]``.
"""

from __future__ import annotations

import re
from typing import Any

from desiru.errors import CorruptDataError, DesiruError
from desiru.interop.dspy import fields as fl
from desiru.signature import default_prefix
from desiru.state import copy_tree

SIGNATURE = "signature"
SIGNATURE_25 = "signature-2.5"
FLAT = "flat"
EARLY = "early"

#: the key order each layout writes
ORDER = {
    SIGNATURE: ("traces", "train", "demos", "signature", "fields", "lm"),
    SIGNATURE_25: ("lm", "traces", "train", "demos", "signature", "extended_signature"),
    FLAT: ("lm", "traces", "train", "demos", "signature_instructions", "signature_prefix",
           "extended_signature_instructions", "extended_signature_prefix"),
    EARLY: ("lm", "traces", "train", "demos"),
}
#: keys a layout derives from the module (the rest of a state is kept as it was)
_OWN = {
    SIGNATURE: {"demos", "signature", "lm"},
    SIGNATURE_25: {"demos", "signature", "extended_signature", "lm"},
    FLAT: {"demos", "lm", "signature_instructions", "signature_prefix", "extended_signature_instructions",
           "extended_signature_prefix"},
    EARLY: {"demos", "lm"},
}
_FLAT_CORE = ("signature_instructions", "signature_prefix")
_FLAT_EXT = ("extended_signature_instructions", "extended_signature_prefix")
_VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def version_tuple(version: str) -> tuple[int, int, int]:
    """``"2.5.43"`` -> (2, 5, 43); ``"2.6"`` -> (2, 6, 0); ``"3.0.0b2"`` -> (3, 0, 0)."""
    m = _VERSION.match(version)
    if m is None:
        raise DesiruError(f"cannot read the dspy version {version!r}", hint="write it as 2.6, 2.6.27 or 3.0.3")
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def layout_for_version(version: str) -> str:
    """The layout the dspy release ``version`` writes."""
    v = version_tuple(version)
    if v < (2, 5, 3):
        return FLAT
    return SIGNATURE_25 if v < (2, 6, 0) else SIGNATURE


def writes_metadata(version: str) -> bool:
    """dspy writes a metadata block (dependency versions) from 2.5.41 on (PR #1889, December 2024)."""
    return version_tuple(version) >= (2, 5, 41)


def classify(state: dict[str, Any]) -> str | None:
    """The layout of one parameter's saved state, or None when it is not a predictor's."""
    if not isinstance(state.get("demos"), list) or "lm" not in state:
        return None
    if isinstance(state.get("signature"), dict):
        return SIGNATURE_25 if "extended_signature" in state or next(iter(state)) == "lm" else SIGNATURE
    if "signature_instructions" in state or "signature_prefix" in state:
        return FLAT
    return EARLY if "signature" not in state else None


def own_keys(layout: str) -> set[str]:
    return _OWN[layout]


# -- reading ---------------------------------------------------------------------------------
def _check_sig(where: str, sig: Any, path: str | None) -> tuple[str, list[dict[str, Any]]]:
    instructions = sig.get("instructions", "") if isinstance(sig, dict) else None
    fields = sig.get("fields") if isinstance(sig, dict) else None
    if not isinstance(instructions, str) or not isinstance(fields, list):
        raise CorruptDataError(f"{where}: signature needs 'instructions' (string) and 'fields' (list)", path=path)
    for f in fields:
        if not (isinstance(f, dict) and isinstance(f.get("prefix"), str) and isinstance(f.get("description"), str)):
            raise CorruptDataError(f"{where}: each signature field needs a string 'prefix' and 'description'",
                                   path=path)
    return instructions, fields


def read_signature(layout: str, where: str, state: dict[str, Any], live_sig: Any, meta: dict[str, Any],
                   path: str | None) -> dict[str, Any]:
    """The desiru signature state of a predictor saved in ``layout``; notes what it needs in ``meta``."""
    if layout in (SIGNATURE, SIGNATURE_25):
        key = "extended_signature" if "extended_signature" in state else "signature"
        instructions, fields = _check_sig(where, state[key], path)
        if key == "extended_signature":
            meta["cot"] = True
            base = state["signature"]
            _check_sig(where, base, path)
            if base != state[key]:  # what dspy 2.5 kept beside the signature the LM sees
                meta["base_signature"] = copy_tree(base)
        return _recorded_signature(instructions, fields, state["demos"], live_sig, meta)
    if layout == FLAT:
        for k in (*_FLAT_CORE, *_FLAT_EXT):
            if k in state and not isinstance(state[k], str):
                raise CorruptDataError(f"{where}: {k!r} must be a string", path=path)
        cot = _FLAT_EXT[0] in state or _FLAT_EXT[1] in state
        base_instr, base_prefix = state.get(_FLAT_CORE[0], ""), state.get(_FLAT_CORE[1])
        instr = state.get(_FLAT_EXT[0], base_instr) if cot else base_instr
        prefix = state.get(_FLAT_EXT[1], base_prefix) if cot else base_prefix
        if cot:
            meta["cot"] = True
            base = {k: state[k] for k in _FLAT_CORE if k in state}
            if base != {"signature_instructions": instr, "signature_prefix": prefix}:
                meta["base_signature"] = base
        return _derived_signature(instr, base_prefix, prefix, state["demos"], cot, live_sig, meta)
    # early: nothing but demos; a ChainOfThought shows by its rationale in bootstrapped demos
    cot = any("rationale" in k or "reasoning" in k for k in fl.field_keys(state["demos"]))
    if cot:
        meta["cot"] = True
    return _derived_signature(None, None, None, state["demos"], cot, live_sig, meta)


def _recorded_signature(instructions: str, fields: list[dict[str, Any]], demos: list[Any], live_sig: Any,
                        meta: dict[str, Any]) -> dict[str, Any]:
    n = len(fields)
    if live_sig is not None and hasattr(live_sig, "input_fields"):
        ins, outs = list(live_sig.input_fields), list(live_sig.output_fields)
        names = (ins + outs)[:n]
        extra = [fl.name_from_prefix(f["prefix"]) or "output" for f in fields[len(names):]]
        derived = fl.Derived(fl.unique(names + extra), min(len(ins), n))
    else:
        derived = fl.derive(fields, instructions, demos)
    _note(meta, derived)
    empty = [nm for nm, f in zip(derived.names, fields) if f["prefix"] == ""]
    if empty:  # desiru fills an empty prefix with the default one; remember the dspy value
        meta["empty_prefix"] = empty
    out = [{"name": nm, "desc": f["description"], "prefix": f["prefix"] or default_prefix(nm)}
           for nm, f in zip(derived.names, fields)]
    return {"instructions": instructions, "inputs": out[:derived.n_inputs], "outputs": out[derived.n_inputs:]}


def _note(meta: dict[str, Any], derived: fl.Derived) -> None:
    if derived.split_guessed:
        meta["field_split"] = "guessed"
    if derived.guessed_names:
        meta["guessed_names"] = derived.guessed_names


def _derived_signature(instructions: str | None, base_prefix: str | None, last_prefix: str | None,
                       demos: list[Any], cot: bool, live_sig: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """A signature for a layout that records at most the instructions and the last field's prefix."""
    cot_name = fl.reasoning_name(demos, default="rationale")  # dspy before 2.5 named it rationale
    ins, outs, guessed = _flat_fields(instructions or "", base_prefix, demos, cot, cot_name, live_sig)
    if cot and cot_name not in outs:
        outs.insert(0, cot_name)
    names = fl.unique(ins + outs)
    ins, outs = names[:len(ins)], names[len(ins):]
    last = outs[-1]
    unrecorded = ["descriptions", "prefixes" if last_prefix is None else "prefixes except the last"]
    if instructions is None:
        instructions = fl.default_instructions(ins, [o for o in outs if o != cot_name or not cot])
        unrecorded.insert(0, "instructions")
    meta["unrecorded"] = unrecorded
    if guessed:
        meta["field_split"] = "guessed"

    def field(name: str) -> dict[str, Any]:
        if cot and name == cot_name:  # ChainOfThought's own field, as dspy 2.x made it
            return {"name": name, "desc": "${produce the " + last + "}. We ...", "prefix": fl.COT_PREFIX}
        prefix = last_prefix if name == last and last_prefix is not None else default_prefix(name)
        return {"name": name, "desc": "${" + name + "}", "prefix": prefix}

    return {"instructions": instructions, "inputs": [field(n) for n in ins], "outputs": [field(n) for n in outs]}


def _flat_fields(instructions: str, base_prefix: str | None, demos: list[Any], cot: bool, cot_name: str,
                 live_sig: Any) -> tuple[list[str], list[str], bool]:
    """Inputs, outputs (the reasoning field left out unless the demos place it) and whether the split is
    a guess, for a predictor whose save records no field list."""
    if live_sig is not None and hasattr(live_sig, "input_fields"):
        return list(live_sig.input_fields), [o for o in live_sig.output_fields if o != cot_name], False
    m = fl.DEFAULT_INSTRUCTIONS.fullmatch(instructions)
    if m:
        return re.findall(r"`([^`]*)`", m.group(1)), re.findall(r"`([^`]*)`", m.group(2)), False
    last = fl.name_from_prefix(base_prefix) if base_prefix is not None else None
    augmented = sorted(fl.field_keys(demos), key=len, reverse=True)
    if augmented:  # dspy writes a bootstrapped demo's keys in field order: inputs, then outputs
        keys = augmented[0]
        last = last if last in keys else keys[-1]
        if cot_name in keys:
            i = keys.index(cot_name)
            return keys[:i], keys[i:], False
        ins = [k for k in keys if k != last]
        return ins, [last], len(ins) > 1
    keys = list(dict.fromkeys(k for d in demos if isinstance(d, dict) for k in d if k not in fl.DEMO_META_KEYS))
    if last is None:
        last = keys[-1] if keys else "output"
    ins = [k for k in keys if k not in (last, cot_name)]
    return ins, [last], len(ins) != 1


# -- writing ---------------------------------------------------------------------------------
def signature_state(module: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """dspy's ``signature.dump_state()`` of a desiru module."""
    empty = set(meta.get("empty_prefix") or ())
    return {
        "instructions": module.signature.instructions,
        "fields": [{"prefix": "" if n in empty and f.prefix == default_prefix(n) else f.prefix,
                    "description": f.desc} for n, f in module.signature.fields.items()],
    }


def write_predictor(module: Any, meta: dict[str, Any], layout: str, lm: Any, demos: list[Any]) -> dict[str, Any]:
    """A predictor's dspy state in ``layout``: keys in the order the file had (or dspy writes), values
    from the module, and what the module cannot hold from ``meta``."""
    extra = meta.get("extra_state")
    extra = extra if isinstance(extra, dict) else {"traces": [], "train": []}
    values: dict[str, Any] = {k: copy_tree(v) for k, v in extra.items() if k not in _OWN[layout]}
    values["demos"] = demos
    values["lm"] = copy_tree(lm)
    sig = signature_state(module, meta)
    base = meta.get("base_signature")
    cot = bool(meta.get("cot"))
    if layout == SIGNATURE:
        values["signature"] = sig
    elif layout == SIGNATURE_25:
        if cot:
            values["extended_signature"] = sig
            values["signature"] = copy_tree(base) if isinstance(base, dict) and "fields" in base else sig
        else:
            values["signature"] = sig
    elif layout == FLAT:
        last = sig["fields"][-1]["prefix"] if sig["fields"] else ""
        if cot:
            values["extended_signature_instructions"] = sig["instructions"]
            values["extended_signature_prefix"] = last
        flat_base = base if isinstance(base, dict) and "fields" not in base else {}
        values["signature_instructions"] = flat_base.get("signature_instructions", sig["instructions"])
        values["signature_prefix"] = flat_base.get("signature_prefix", last)
    recorded = meta.get("keys")
    order = list(recorded) if isinstance(recorded, list) and meta.get("layout", SIGNATURE) == layout else []
    order += [k for k in ORDER[layout] if k not in order]
    out = {k: values.pop(k) for k in order if k in values}
    out.update(values)
    return out
