"""Objects of other libraries as desiru programs: the seam adapters plug into.

The model, the documents and the journal accept "a Program, or anything an adapter turns
into one" without importing any adapter: an adapter (``desiru.interop.dspy``) registers an
``Adapter`` here when it is imported, and ``import desiru`` imports the adapters it ships.
Lookups go through ``find``; nothing here knows a library by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from desiru.errors import DesiruError, SerializationError


class StateConverter(Protocol):
    """Turns live objects into state trees, reusing what it converted before (one per journal)."""

    def state(self, obj: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Adapter:
    """How desiru reads and writes the objects of one library.

    - ``accepts(obj)``: True for the objects this adapter converts (must not import the library);
    - ``to_program(obj)``: the desiru Program of ``obj`` (typed Any here: this module sits below the
      program model, which itself asks for adapters);
    - ``converter()``: optional, a fresh ``StateConverter`` that a journal keeps to commit the same
      live object again and again cheaply (it converts only what changed);
    - ``load_into(program, template, **options)``: optional, a copy of ``template`` holding the
      state of ``program`` (what ``Journal.replay(into=...)`` returns).
    """

    name: str
    #: what the adapter takes, for messages: "a dspy module"
    label: str
    accepts: Callable[[Any], bool]
    to_program: Callable[[Any], Any]
    converter: Callable[[], StateConverter] | None = None
    load_into: Callable[..., Any] | None = None


_ADAPTERS: dict[str, Adapter] = {}
_LOCK = threading.Lock()


def register(adapter: Adapter) -> Adapter:
    """Make ``adapter`` known (registering the same name again replaces it: a reload)."""
    if not isinstance(adapter, Adapter):
        raise DesiruError(f"register() takes an Adapter, got {type(adapter).__name__}")
    with _LOCK:
        _ADAPTERS[adapter.name] = adapter
    return adapter


def find(obj: Any) -> Adapter | None:
    """The adapter that accepts ``obj``, or None."""
    for adapter in tuple(_ADAPTERS.values()):
        if adapter.accepts(obj):
            return adapter
    return None


def to_program(obj: Any, what: str = "save") -> Any:
    """The desiru Program of ``obj`` (not a Program itself) through the adapter that accepts it;
    else a DesiruError that says what ``what`` takes."""
    adapter = find(obj)
    if adapter is None:
        takes = " or ".join(["a desiru Program", *(a.label for a in tuple(_ADAPTERS.values()))])
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        raise SerializationError(f"cannot {what} a {kind}: expected {takes}",
                                 hint="build a desiru.Program (or convert the object with its adapter)")
    return adapter.to_program(obj)


def load_into(program: Any, template: Any, **options: Any) -> Any:
    """A copy of ``template`` (a live object of an adapted library) holding ``program``'s state."""
    adapter = find(template)
    if adapter is None or adapter.load_into is None:
        labels = [a.label for a in tuple(_ADAPTERS.values()) if a.load_into is not None]
        takes = " or ".join(labels) or "an object of an adapted library"
        raise DesiruError(f"into= must be {takes}, got a {type(template).__name__}",
                          hint="leave into= out to get the desiru Program itself")
    return adapter.load_into(program, template, **options)


__all__ = ["Adapter", "StateConverter", "find", "load_into", "register", "to_program"]
