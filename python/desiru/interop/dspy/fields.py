"""Field names and the input/output split of a dspy predictor, from what its save records.

A DSPy save never names signature fields nor says which are inputs: fields are
a list of {prefix, description}, matched by position when dspy loads them. The
names come, in order of trust, from: the live signature (a template), DSPy's
default instructions ("Given the fields `a`, produce the fields `b`."), DSPy's
default description ``${name}``, known dspy classes (ChainOfThought's reasoning,
ReAct's react predictor), the keys of a bootstrapped demo (dspy writes them in
field order), and a prefix that DSPy would have made from a name ("Search Query:"
from ``search_query``). What none of these gives is a guess, and is marked so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from desiru.signature import default_prefix

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_INSTRUCTIONS = re.compile(r"Given the fields (.*), produce the fields (.*)\.", re.S)
_GIVEN_FIELDS = re.compile(r"Given the fields? ((?:`[A-Za-z_][A-Za-z0-9_]*`(?:,\s*(?:and\s+)?|\s+and\s+)?)+)")
_DESC_NAME = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_DESC_COT = re.compile(r"^\$\{produce the (?:[A-Za-z_][A-Za-z0-9_]*|output fields)\}\. We \.\.\.$")
#: the prefix ChainOfThought gives its reasoning field (dspy 2.x)
COT_PREFIX = "Reasoning: Let's think step by step in order to"
#: reserved demo key: the input keys of a demo that was a dspy.Example
INPUT_KEYS = "_dspy_input_keys"
#: demo keys dspy adds that are not fields
DEMO_META_KEYS = frozenset({"augmented", "dspy_uuid", "dspy_split"})
#: the outputs dspy.ReAct gives its react predictor, in order
REACT_OUTPUTS = ("next_thought", "next_tool_name", "next_tool_args")
_REASONING = ("reasoning", "rationale")


@dataclass
class Derived:
    """Names of a predictor's fields, how many are inputs, and what of that is a guess."""

    names: list[str]
    n_inputs: int
    split_guessed: bool = False
    guessed_names: list[str] = field(default_factory=list)


def name_from_prefix(prefix: str) -> str | None:
    """The name DSPy made ``prefix`` from (``"Search Query:"`` -> ``search_query``), or None when no
    name gives that prefix (a sentence, a code fence, odd capitals)."""
    name = "_".join(prefix.removesuffix(":").strip().split()).lower()
    return name if _IDENT.match(name) and default_prefix(name) == prefix else None


def default_instructions(inputs: list[str], outputs: list[str]) -> str:
    """DSPy's instructions for a signature that has none of its own."""
    ins = ", ".join(f"`{n}`" for n in inputs)
    outs = ", ".join(f"`{n}`" for n in outputs)
    return f"Given the fields {ins}, produce the fields {outs}."


def field_keys(demos: list[Any]) -> list[list[str]]:
    """The field keys of each bootstrapped (``augmented``) demo, dspy's meta keys left out."""
    return [[k for k in d if k not in DEMO_META_KEYS] for d in demos if isinstance(d, dict) and d.get("augmented")]


def reasoning_name(demos: list[Any], default: str = "reasoning") -> str:
    """ChainOfThought's field as the demos spell it: ``rationale`` (dspy before 2.5) or ``reasoning``."""
    keys = {k for d in demos if isinstance(d, dict) for k in d}
    if "rationale" in keys and "reasoning" not in keys:
        return "rationale"
    return "reasoning" if "reasoning" in keys else default


def unique(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        base, i = name, 2
        while name in out:
            name, i = f"{base}_{i}", i + 1
        out.append(name)
    return out


def from_default_instructions(instructions: str, n: int, prefixes: list[str]) -> Derived | None:
    """Names and split from DSPy's default instructions, when the predictor still has them."""
    match = DEFAULT_INSTRUCTIONS.fullmatch(instructions)
    if not match:
        return None
    ins = re.findall(r"`([^`]*)`", match.group(1))
    outs = re.findall(r"`([^`]*)`", match.group(2))
    if not all(_IDENT.match(x) for x in ins + outs):
        return None
    if len(ins) + len(outs) == n:
        return Derived(unique(ins + outs), len(ins))
    # ChainOfThought keeps the instructions of the signature it extends, without its reasoning
    if len(ins) + len(outs) + 1 == n and _is_reasoning(prefixes[len(ins)], ""):
        return Derived(unique([*ins, "reasoning", *outs]), len(ins))
    return None


def _is_reasoning(prefix: str, desc: str) -> bool:
    return prefix in (COT_PREFIX, "Reasoning:") or desc == "${reasoning}" or bool(_DESC_COT.match(desc))


def derive(fields: list[dict[str, Any]], instructions: str, demos: list[Any]) -> Derived:
    """Names and split of a recorded field list (each {prefix, description}) with no live signature."""
    n = len(fields)
    prefixes = [f["prefix"] for f in fields]
    descs = [f["description"] for f in fields]
    found = from_default_instructions(instructions, n, prefixes)
    if found is not None:
        return found
    names: list[str | None] = [None] * n
    cot = reasoning_name(demos)
    for i, (prefix, desc) in enumerate(zip(prefixes, descs)):
        m = _DESC_NAME.match(desc)
        if m and m.group(1) != "reasoning":
            names[i] = m.group(1)
        elif _is_reasoning(prefix, desc) and i > 0:
            names[i] = cot
    # a bootstrapped demo holds one key per field, in field order: take it where it agrees
    for keys in field_keys(demos):
        if len(keys) == n and all(x is None or x == k for x, k in zip(names, keys)):
            agree = [name_from_prefix(p) for p in prefixes]
            if all(a is None or a == k or names[i] is not None for i, (a, k) in enumerate(zip(agree, keys))):
                names = list(keys)
                break
    demo_keys = [k for d in demos if isinstance(d, dict) for k in d if k not in DEMO_META_KEYS]
    guessed: list[int] = []  # positions whose name is a guess
    for i, prefix in enumerate(prefixes):
        if names[i] is not None:
            continue
        by_prefix = name_from_prefix(prefix)
        by_demo = next((k for k in demo_keys if default_prefix(k).lower() == prefix.lower()), None)
        names[i] = by_prefix or by_demo
    split = _split([x or "" for x in names], instructions)
    for i in range(n):
        if names[i] is None:
            names[i] = "input" if i < split[0] else "output"
            guessed.append(i)
    final = unique([str(x) for x in names])
    return Derived(final, split[0], split[1], [final[i] for i in guessed])


def _split(names: list[str], instructions: str) -> tuple[int, bool]:
    """How many of the (partly known) names are inputs, and whether that is a guess."""
    n = len(names)
    # dspy.ReAct's react predictor: inputs, trajectory -> next_thought, next_tool_name, next_tool_args
    if n > 3 and tuple(names[-3:]) == REACT_OUTPUTS:
        return n - 3, False
    # ChainOfThought prepends its reasoning to the outputs
    for i, name in enumerate(names):
        if name in _REASONING and i > 0:
            return i, False
    # instructions an optimizer rewrote often still open with "Given the fields `a`, `b`"
    match = _GIVEN_FIELDS.search(instructions)
    if match:
        given = re.findall(r"`([^`]*)`", match.group(1))
        if 0 < len(given) < n and names[: len(given)] == given:
            return len(given), False
    # otherwise the last field is an output (dspy's file keeps inputs first); more is a guess
    return max(n - 1, 0), n > 2
