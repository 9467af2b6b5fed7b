"""The class registry: the only way a name in a file becomes a Python class.

Program and Module subclasses register themselves by qualified name when they
are defined. Loading looks names up here and never imports anything a file
names, so a file saying "subprocess.Popen" is an UnknownClassError, not a call.
"""

from __future__ import annotations

from typing import Any

from desiru.errors import UnknownClassError

_CLASSES: dict[str, type] = {}
_ALIASES: dict[str, str] = {}


def class_name(cls: type) -> str:
    """The registered name of ``cls``: ``__desiru_name__`` if set, else module.qualname."""
    explicit = cls.__dict__.get("__desiru_name__")
    return explicit if isinstance(explicit, str) else f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type, *aliases: str) -> type:
    """Register ``cls`` under its name (and older names, so renamed classes keep loading)."""
    _CLASSES[class_name(cls)] = cls
    for alias in aliases:
        _ALIASES[alias] = class_name(cls)
    return cls


def alias(old_name: str, cls: type) -> None:
    """Make files that name ``old_name`` load as ``cls`` (for renamed or legacy classes)."""
    _ALIASES[old_name] = class_name(cls)


def resolve(name: Any, *, base: type, path: str | None = None) -> type:
    """The registered class called ``name`` that is a subclass of ``base``."""
    if not isinstance(name, str):
        raise UnknownClassError(f"class name must be a string, got {type(name).__name__}", path=path)
    cls = _CLASSES.get(name) or _CLASSES.get(_ALIASES.get(name, ""))
    if cls is None:
        raise UnknownClassError(
            f"class {name!r} is not registered",
            path=path,
            hint="import the module that defines it before loading, or load with a class: "
            "YourProgram.load(path)",
        )
    if not issubclass(cls, base):
        raise UnknownClassError(f"class {name!r} is a {cls.__name__}, not a {base.__name__}", path=path)
    return cls


def registered() -> dict[str, type]:
    """A copy of the registry, name -> class."""
    return dict(_CLASSES)
