"""Signatures: the named inputs and outputs of a module, with instructions.

``Signature("question, context -> answer", instructions="Answer briefly.")``
keeps field order, because prompts and saved files depend on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from desiru.errors import CorruptDataError, DesiruError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def default_prefix(name: str) -> str:
    """The prompt label of a field: ``"question_text"`` -> ``"Question Text:"``."""
    words = [w for w in name.split("_") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) + ":"


@dataclass(frozen=True)
class Field:
    """One input or output of a signature: its name, a description and its prompt prefix."""

    name: str
    desc: str = ""
    prefix: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DesiruError(
                f"invalid field name {self.name!r}",
                hint="field names are Python identifiers such as 'question' or 'answer_text'",
            )
        if not self.prefix:
            object.__setattr__(self, "prefix", default_prefix(self.name))

    def to_state(self) -> dict[str, str]:
        """The field as plain data."""
        return {"name": self.name, "desc": self.desc, "prefix": self.prefix}

    @classmethod
    def from_state(cls, state: Any) -> Field:
        """Rebuild a field from plain data, checking its shape."""
        if not isinstance(state, dict) or not isinstance(state.get("name"), str):
            raise CorruptDataError(f"a signature field must be a mapping with a 'name', got {state!r:.80}")
        return cls(str(state["name"]), str(state.get("desc", "") or ""), str(state.get("prefix", "") or ""))


def _parse_side(text: str, spec: str) -> list[Field]:
    fields: list[Field] = []
    for part in text.split(","):
        name = part.strip()
        if ":" in name:  # "question: str" -- the type annotation is accepted and ignored
            name = name.split(":", 1)[0].strip()
        if not name:
            continue
        if not _NAME.match(name):
            raise DesiruError(
                f"invalid field name {name!r} in signature {spec!r}",
                hint="write signatures as 'question, context -> answer'",
            )
        if any(f.name == name for f in fields):
            raise DesiruError(f"field {name!r} appears twice in signature {spec!r}")
        fields.append(Field(name))
    return fields


class Signature:
    """Ordered input and output fields plus the instructions given to the LM."""

    __slots__ = ("inputs", "instructions", "outputs")

    def __init__(
        self,
        spec: str | Signature | None = None,
        instructions: str | None = None,
        *,
        inputs: list[Field] | None = None,
        outputs: list[Field] | None = None,
    ) -> None:
        self.inputs: dict[str, Field] = {}
        self.outputs: dict[str, Field] = {}
        if isinstance(spec, Signature):
            self.inputs = dict(spec.inputs)
            self.outputs = dict(spec.outputs)
            self.instructions: str = spec.instructions if instructions is None else instructions
            return
        if spec is not None:
            if not isinstance(spec, str) or spec.count("->") != 1:
                raise DesiruError(
                    f"cannot parse signature {spec!r}",
                    hint="write it as 'input1, input2 -> output1, output2'",
                )
            left, right = spec.split("->")
            ins, outs = _parse_side(left, spec), _parse_side(right, spec)
            if not outs:
                raise DesiruError(f"signature {spec!r} has no output field", hint="add one after '->'")
            clash = {f.name for f in ins} & {f.name for f in outs}
            if clash:
                raise DesiruError(f"signature {spec!r} uses {sorted(clash)} as both input and output")
            self.inputs = {f.name: f for f in ins}
            self.outputs = {f.name: f for f in outs}
        for f in inputs or []:
            self.inputs[f.name] = f
        for f in outputs or []:
            self.outputs[f.name] = f
        self.instructions = instructions if instructions is not None else self._default_instructions()

    def _default_instructions(self) -> str:
        ins = ", ".join(f"`{n}`" for n in self.inputs) or "nothing"
        outs = ", ".join(f"`{n}`" for n in self.outputs)
        return f"Given the fields {ins}, produce the fields {outs}."

    @property
    def fields(self) -> dict[str, Field]:
        """All fields, inputs first."""
        return {**self.inputs, **self.outputs}

    def with_instructions(self, instructions: str) -> Signature:
        """A copy with other instructions."""
        return Signature(self, instructions)

    def prepend_output(self, field: Field) -> Signature:
        """A copy with ``field`` as the first output (how ChainOfThought adds reasoning)."""
        sig = Signature(self)
        sig.outputs = {field.name: field, **{k: v for k, v in self.outputs.items() if k != field.name}}
        return sig

    def to_state(self) -> dict[str, Any]:
        """The signature as plain data (see docs/STATE.md)."""
        return {
            "instructions": self.instructions,
            "inputs": [f.to_state() for f in self.inputs.values()],
            "outputs": [f.to_state() for f in self.outputs.values()],
        }

    @classmethod
    def from_state(cls, state: Any) -> Signature:
        """Rebuild a signature from plain data."""
        if isinstance(state, str):  # the legacy layout stores "question -> answer"
            return cls(state)
        if not isinstance(state, dict):
            raise CorruptDataError(f"a signature must be a mapping or a 'a -> b' string, got {type(state).__name__}")
        sig = cls.__new__(cls)
        sig.inputs = {f.name: f for f in map(Field.from_state, state.get("inputs") or [])}
        sig.outputs = {f.name: f for f in map(Field.from_state, state.get("outputs") or [])}
        sig.instructions = str(state.get("instructions", "") or "")
        return sig

    def __str__(self) -> str:
        return f"{', '.join(self.inputs)} -> {', '.join(self.outputs)}"

    def __repr__(self) -> str:
        return f"Signature({str(self)!r}, instructions={self.instructions!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]


def ensure_signature(spec: str | Signature) -> Signature:
    """Accept a signature or its string form."""
    return spec if isinstance(spec, Signature) else Signature(spec)
