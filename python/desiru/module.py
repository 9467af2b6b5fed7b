"""Modules: one LM step each, with a signature, few-shot demos, parameters and metadata.

``Predict`` asks the configured LM for the signature's outputs; ``ChainOfThought``
first asks for a ``reasoning`` field. Subclasses register themselves by name so
that files can name them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from desiru import registry
from desiru.errors import CorruptDataError, DesiruError
from desiru.example import Example, Prediction, adopt_all, field_dicts
from desiru.lm import current_lm
from desiru.prompt import build_prompt, parse_output
from desiru.signature import Field, Signature, ensure_signature
from desiru.state import copy_for_objects, copy_tree, require_mapping

#: parameters that are passed to the LM on each call (others stay module settings)
LM_PARAMETERS = ("temperature", "max_tokens", "top_p", "stop", "n", "model")
#: keys of a module state this release knows; others (from a newer minor) are kept in ``_unknown``
STATE_KEYS = frozenset({"kind", "name", "class", "signature", "demos", "parameters", "metadata"})


def _same(value: Any) -> Any:
    return value




def _demo_dicts(demos: list[Any], copy: bool) -> list[dict[str, Any]]:
    """The demos as field dicts: copies, or (``copy=False``) the Examples' own dicts, one C-level pass."""
    if not copy:
        own = field_dicts(demos)
        if own is not None:
            return own
    keep = copy_tree if copy else _same
    return [keep(d._data if isinstance(d, Example) else dict(d)) for d in demos]


class Module:
    """A step of a program: a signature, demos (list[Example]), parameters and metadata."""

    __desiru_name__: ClassVar[str] = "desiru.Module"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registry.register(cls)

    def __init__(
        self,
        signature: str | Signature,
        *,
        demos: Iterable[Mapping[str, Any]] = (),
        metadata: Mapping[str, Any] | None = None,
        **parameters: Any,
    ) -> None:
        self.signature: Signature = ensure_signature(signature)
        self.demos: list[Example] = [d if isinstance(d, Example) else Example(d) for d in demos]
        self.parameters: dict[str, Any] = dict(parameters)
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- state -------------------------------------------------------------------------
    def to_state(self, *, copy: bool = True) -> dict[str, Any]:
        """The module as a state tree (see docs/STATE.md).

        ``copy=False`` shares containers with the module instead of copying them: only for
        a state that is serialized at once and never kept (saving 100,000 demos copies a lot).
        """
        keep = copy_tree if copy else _same
        state = {
            "kind": "module",
            "class": registry.class_name(type(self)),
            "signature": self.signature.to_state(),
            "demos": _demo_dicts(self.demos, copy),
            "parameters": keep(self.parameters),
            "metadata": keep(self.metadata),
        }
        unknown = getattr(self, "_unknown", None)
        if unknown:  # fields a newer minor wrote: written back unchanged
            state.update(copy_tree(unknown))
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, path: str | None = None, copy: bool = True) -> Module:
        """Build a module from a state tree: the class it names, or ``cls`` when called on a subclass.

        ``copy=False`` adopts the state's containers (for a state just decoded and owned by no one).
        """
        require_mapping(state, "module state", path)
        target = cls
        if cls is Module:
            target = registry.resolve(state.get("class"), base=Module, path=path)
        module = target.__new__(target)
        try:
            module._restore(state, copy)
        except DesiruError as exc:
            exc.locate(path)
            raise
        return module

    def _restore(self, state: Mapping[str, Any], copy: bool = True) -> None:
        keep = copy_tree if copy else _same
        self.signature = Signature.from_state(state.get("signature") or {})
        demos = state.get("demos") or []
        if not isinstance(demos, list):
            raise CorruptDataError(f"demos must be a list, got {type(demos).__name__}")
        if not all(type(d) is dict for d in demos):
            for i, d in enumerate(demos):
                require_mapping(d, f"demo {i}", None)
        self.demos = adopt_all([copy_tree(d) for d in demos] if copy else demos)
        self.parameters = dict(keep(require_mapping(state.get("parameters") or {}, "parameters", None)))
        self.metadata = dict(keep(require_mapping(state.get("metadata") or {}, "metadata", None)))
        self._unknown = {k: copy_tree(v) for k, v in state.items() if k not in STATE_KEYS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Module):
            return NotImplemented
        return type(self) is type(other) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.signature)!r}, demos={len(self.demos)}, parameters={self.parameters})"

    def copy(self) -> Module:
        """A deep copy (through the state tree; Examples holding only immutable values share those)."""
        kind = type(self)
        if kind.to_state is Module.to_state and getattr(kind.from_state, "__func__", None) is _FROM_STATE:
            # one copy instead of two (to_state's and from_state's); see desiru.state.copy_for_objects
            return kind.from_state(copy_for_objects(self.to_state(copy=False)), copy=False)
        return kind.from_state(self.to_state())

    # -- running -----------------------------------------------------------------------
    def forward(self, **inputs: Any) -> Prediction:
        """Run this step; plain Modules have no behaviour of their own."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, **inputs: Any) -> Prediction:
        return self.forward(**inputs)


#: Module.from_state itself: copy() takes its fast path only for classes that do not override it
_FROM_STATE = Module.__dict__["from_state"].__func__


class Predict(Module):
    """Ask the configured LM for the signature's outputs, with the demos as few-shot examples."""

    __desiru_name__ = "desiru.Predict"

    def lm_params(self) -> dict[str, Any]:
        """The parameters passed to the LM on each call."""
        return {k: v for k, v in self.parameters.items() if k in LM_PARAMETERS}

    def forward(self, **inputs: Any) -> Prediction:
        missing = [name for name in self.signature.inputs if name not in inputs]
        if missing:
            raise DesiruError(f"{type(self).__name__} needs inputs {missing}; got {sorted(inputs)}")
        lm, defaults = current_lm()
        prompt = build_prompt(self.signature, self.demos, inputs)
        text = lm(prompt, **{**defaults, **self.lm_params()})
        return Prediction(parse_output(self.signature, text))


REASONING = Field(
    "reasoning", desc="Think step by step before answering.", prefix="Reasoning: Let's think step by step in order to"
)


class ChainOfThought(Predict):
    """Predict with a ``reasoning`` output field first, so the LM thinks before it answers."""

    __desiru_name__ = "desiru.ChainOfThought"

    def __init__(self, signature: str | Signature, **kwargs: Any) -> None:
        super().__init__(signature, **kwargs)
        if "reasoning" not in self.signature.outputs:
            self.signature = self.signature.prepend_output(REASONING)


registry.register(Module)
registry.register(Predict)
registry.register(ChainOfThought)
