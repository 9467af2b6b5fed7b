"""Prompt building and output parsing for Predict-style modules.

The prompt is plain text: instructions, the field format, one section per demo,
then the inputs. The LM answers with "Prefix: value" lines, one per output field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from desiru.errors import DesiruError
from desiru.signature import Signature

SEPARATOR = "\n\n---\n\n"


def _render(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def build_prompt(sig: Signature, demos: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]) -> str:
    """The full prompt for one call: instructions, format, demos, then the inputs."""
    fmt = "\n".join(f"{f.prefix} ${{{f.name}}}" for f in sig.fields.values())
    sections = [sig.instructions, "Follow the following format.\n\n" + fmt]
    for demo in demos:
        lines = [f"{f.prefix} {_render(demo[f.name])}" for f in sig.fields.values() if f.name in demo]
        if lines:
            sections.append("\n".join(lines))
    current = [f"{f.prefix} {_render(inputs[name])}" for name, f in sig.inputs.items()]
    first_out = next(iter(sig.outputs.values()))
    current.append(first_out.prefix)
    sections.append("\n".join(current))
    return SEPARATOR.join(sections)


def _label(prefix: str) -> str:
    """The label of a prefix: "Reasoning: Let's think step by step" -> "Reasoning"."""
    return prefix.split(":", 1)[0].strip()


def parse_output(sig: Signature, text: str) -> dict[str, str]:
    """The output fields found in ``text`` as "Prefix: value" sections.

    A value runs until the next output prefix. When the reply omits the first
    prefix (the prompt ends with it), the leading text belongs to the first field.
    """
    fields = list(sig.outputs.values())
    labels = {_label(f.prefix): f.name for f in fields}
    pattern = re.compile(
        r"^\s*(" + "|".join(re.escape(label) for label in labels) + r")\s*:",
        re.IGNORECASE | re.MULTILINE,
    )
    by_label = {label.lower(): name for label, name in labels.items()}
    found: dict[str, str] = {}
    matches = list(pattern.finditer(text))
    head = text[: matches[0].start()] if matches else text
    if head.strip() and fields[0].name not in found:
        found[fields[0].name] = head.strip()
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = by_label[m.group(1).lower()]
        found.setdefault(name, text[m.end() : end].strip())
    missing = [f.name for f in fields if f.name not in found]
    if missing:
        raise DesiruError(
            f"the LM reply has no value for {missing}",
            hint=f"the reply must contain lines like '{fields[-1].prefix} ...'; reply was {text[:200]!r}",
        )
    return found
