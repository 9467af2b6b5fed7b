"""A deterministic dspy LM for tests: it answers from rules, so optimizers really search.

The task is arithmetic ("What is 3 + 4?" -> "7"). The LM answers correctly only when
the prompt earns it: each demo in the prompt and the word "carefully" in the
instructions raise the largest first operand it gets right. Any other output field
(instruction proposals, summaries, reflections) gets a text that depends only on
the prompt (so two runs see the same text), and about two thirds of the proposed
instructions contain "carefully". ``calls`` counts the requests it answered, its copies'
included (optimizers call ``lm.copy(...)``; a copy shares the counter).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from types import SimpleNamespace
from typing import Any

import dspy

_OUTPUTS = re.compile(r"Your output fields are:\n(.*?)(?:\n\n|All interactions|$)", re.S)
_FIELD = re.compile(r"^\d+\. `(\w+)` \(([^)]*)\)", re.M)
_QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def reach(n_demos: int, instructions: str) -> int:
    """The largest first operand answered right with this many demos and these instructions."""
    return 1 + 2 * n_demos + (6 if "carefully" in instructions.lower() else 0)


class RuleLM(dspy.BaseLM):
    """Answers from rules (see the module docstring); never calls a provider."""

    def __init__(self) -> None:
        super().__init__(model="rules/arith", model_type="chat", temperature=0.0, max_tokens=1000, cache=False)
        self._counter = {"calls": 0}  # shared with copies (dspy's copy() is shallow)
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        """Requests answered by this LM and its copies."""
        return self._counter["calls"]

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        with self._lock:
            self._counter["calls"] += 1
        messages = messages or [{"role": "user", "content": prompt or ""}]
        text = self.answer(messages)
        message = SimpleNamespace(content=text, tool_calls=None, role="assistant")
        choice = SimpleNamespace(message=message, finish_reason="stop", index=0, logprobs=None)
        return SimpleNamespace(choices=[choice], usage={"prompt_tokens": 0, "completion_tokens": 0,
                                                         "total_tokens": 0}, model="rules/arith")

    def answer(self, messages: list[dict[str, Any]]) -> str:
        system = next((str(m["content"]) for m in messages if m["role"] == "system"), "")
        last = str(messages[-1]["content"])
        fields = _FIELD.findall(m.group(1)) if (m := _OUTPUTS.search(system)) else [("answer", "str")]
        instructions = system.split("your objective is:", 1)[-1]
        n_demos = sum(1 for m in messages if m["role"] == "assistant")
        digest = int(hashlib.sha256((system + last).encode()).hexdigest(), 16)
        values = {name: self.value(name, kind, last, instructions, n_demos, digest) for name, kind in fields}
        if "Outputs will be a JSON object" in system or "Respond with a JSON object" in last:
            return json.dumps(values)
        return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in values.items()) + "[[ ## completed ## ]]"

    @staticmethod
    def value(name: str, kind: str, last: str, instructions: str, n_demos: int, digest: int) -> Any:
        questions = _QUESTION.findall(last)
        if name == "answer" and questions:
            a, b = map(int, questions[-1])
            return str(a + b) if a <= reach(n_demos, instructions) else str(a + b + 1)
        if name == "reasoning":
            return "Add the two numbers."
        if "instruction" in name:
            careful = "carefully " if digest % 3 != 0 else ""
            return f"Add the two numbers {careful}and give the sum (variant {digest % 7})."
        if kind.startswith("bool"):
            return digest % 2 == 0
        if kind.startswith("int") or kind.startswith("float"):
            return digest % 5
        if kind.startswith("list"):
            return json.dumps([f"item {digest % 3}"])
        return f"A note about {name} ({digest % 11})."
