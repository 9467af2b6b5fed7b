"""Examples: the few-shot demonstrations of a module, and the predictions it returns."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from typing import Any


class Example(Mapping[str, Any]):
    """A read-only mapping of field name to value, with attribute access.

    ``Example(question="q", answer="a").question == "q"``. ``with_inputs`` marks which
    keys are inputs (as DSPy does); the rest are labels.
    """

    __slots__ = ("_data", "_input_keys")

    def __init__(self, base: Mapping[str, Any] | None = None, **fields: Any) -> None:
        data: dict[str, Any] = dict(base) if base is not None else {}
        data.update(fields)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_input_keys", None)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only; build a new one with .copy(**changes)")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Example):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def _adopt(cls, data: dict[str, Any]) -> Example:
        """An Example that takes ownership of ``data`` without copying it (for loaders)."""
        ex = cls.__new__(cls)
        object.__setattr__(ex, "_data", data)
        object.__setattr__(ex, "_input_keys", None)
        return ex

    def __reduce__(self) -> tuple[Any, ...]:
        # read-only attributes defeat pickle's default slot restore; rebuild through __init__
        return (_rebuild, (type(self), self._data, self._input_keys))

    def to_dict(self) -> dict[str, Any]:
        """A new plain dict of the fields."""
        return dict(self._data)

    def copy(self, **changes: Any) -> Example:
        """A copy with some fields changed."""
        new = type(self)(self._data, **changes)
        object.__setattr__(new, "_input_keys", self._input_keys)
        return new

    def with_inputs(self, *keys: str) -> Example:
        """A copy that marks ``keys`` as the inputs."""
        new = self.copy()
        object.__setattr__(new, "_input_keys", tuple(keys))
        return new

    @property
    def input_keys(self) -> tuple[str, ...] | None:
        """The keys marked as inputs, or None when never marked."""
        return self._input_keys

    def inputs(self) -> Example:
        """Only the input fields (requires ``with_inputs``)."""
        if self._input_keys is None:
            raise ValueError("inputs() needs with_inputs(...) first")
        return Example({k: v for k, v in self._data.items() if k in self._input_keys})

    def labels(self) -> Example:
        """The fields that are not inputs."""
        keys = self._input_keys or ()
        return Example({k: v for k, v in self._data.items() if k not in keys})


_ONLY_EXAMPLES = frozenset({Example})
_DATA = operator.attrgetter("_data")  # an Example's field dict, read at C speed


def field_dicts(demos: list[Any]) -> list[dict[str, Any]] | None:
    """The Examples' own field dicts (not copies), or None when a demo is not exactly an Example.

    Two C-level passes over 100,000 demos (their types, then their dicts); an object that is
    not an Example may answer ``._data`` with anything (``__getattr__ = dict.get`` gives None).
    """
    if not _ONLY_EXAMPLES.issuperset(map(type, demos)):
        return None
    return list(map(_DATA, demos))


def adopt_all(dicts: list[dict[str, Any]]) -> list[Example]:
    """Examples that take ownership of ``dicts`` without copying (loading 100,000 demos).

    Slot setters are called directly: half the time of one ``_adopt`` call per demo.
    """
    new = object.__new__
    set_data = Example._data.__set__  # type: ignore[attr-defined]
    set_keys = Example._input_keys.__set__  # type: ignore[attr-defined]
    out = []
    append = out.append
    for d in dicts:
        ex = new(Example)
        set_data(ex, d)
        set_keys(ex, None)
        append(ex)
    return out


def _rebuild(cls: type[Example], data: dict[str, Any], input_keys: tuple[str, ...] | None) -> Example:
    ex = cls(data)
    object.__setattr__(ex, "_input_keys", input_keys)
    return ex


class Prediction(Example):
    """What a module returns: its output fields (and reasoning, for ChainOfThought)."""

    __slots__ = ()
