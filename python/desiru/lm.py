"""The LM runtime: ``ds.configure(lm=callable)`` and a scripted fake LM for tests and demos.

An LM is any callable ``lm(prompt: str, **params) -> str``. desiru makes no network
calls itself; plug in whatever client you use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from desiru.errors import DesiruError

LM = Callable[..., str]

_lock = threading.Lock()
_settings: dict[str, Any] = {"lm": None, "params": {}}


def configure(lm: LM | None = None, **params: Any) -> None:
    """Set the LM that forward() calls, and default keyword parameters for it."""
    if lm is not None and not callable(lm):
        raise DesiruError(f"lm must be callable (prompt -> text), got {type(lm).__name__}")
    with _lock:
        _settings["lm"] = lm
        _settings["params"] = dict(params)


def current_lm() -> tuple[LM, dict[str, Any]]:
    """The configured LM and its default parameters; an error says how to configure one."""
    with _lock:
        lm, params = _settings["lm"], dict(_settings["params"])
    if lm is None:
        raise DesiruError(
            "no LM is configured",
            hint="call desiru.configure(lm=callable) first; desiru.ScriptedLM serves for tests",
        )
    return lm, params


@dataclass
class ScriptedLM:
    """A deterministic fake LM: replies come from a list, a mapping or a function.

    - a list: replies in turn (cycling when ``cycle=True``);
    - a mapping: the first key found in the prompt's last section picks the reply;
    - a function: ``script(prompt) -> str``.
    Every call is recorded in ``calls`` as (prompt, params).
    """

    script: Sequence[str] | Mapping[str, str] | Callable[[str], str]
    default: str | None = None
    cycle: bool = False
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, prompt: str, **params: Any) -> str:
        self.calls.append((prompt, dict(params)))
        script = self.script
        if callable(script):
            return script(prompt)
        if isinstance(script, Mapping):
            tail = prompt.rsplit("---", 1)[-1]
            for key, reply in script.items():
                if key in tail:
                    return reply
            return self._fallback(prompt)
        index = len(self.calls) - 1
        if index < len(script):
            return script[index]
        if self.cycle and script:
            return script[index % len(script)]
        return self._fallback(prompt)

    def _fallback(self, prompt: str) -> str:
        if self.default is None:
            raise DesiruError(
                f"ScriptedLM has no reply for call {len(self.calls)}",
                hint="give more replies, a default=, or cycle=True",
            )
        return self.default
