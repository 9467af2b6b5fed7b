"""The class registry: the only way a name in a file becomes a Python class.

Program and Module subclasses register themselves by qualified name when they
are defined. Loading looks names up here and never imports anything a file
names, so a file saying "subprocess.Popen" is an UnknownClassError, not a call.
"""

from __future__ import annotations

import warnings
from typing import Any

from desiru.errors import UnknownClassError

_CLASSES: dict[str, type] = {}
_ALIASES: dict[str, str] = {}
#: script classes already warned about (once per class name and process)
_WARNED: set[str] = set()

#: the base names a state from a plain ``ds.Program`` / ``ds.Module`` carries: any subclass may load it
GENERIC = frozenset({"desiru.Program", "desiru.Module"})


class ScriptClassWarning(UserWarning):
    """A class defined in a script run as ``__main__`` was saved: only that script can load it by name."""


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
            hint=("it was saved from a script run as __main__; load it with the class: "
                  "ds.load(path, cls=YourProgram) (docs: stable class names in README.md)"
                  if name.startswith("__main__.") else
                  "import the module that defines it before loading, or load with a class: "
                  "ds.load(path, cls=YourProgram)"),
        )
    if not issubclass(cls, base):
        raise UnknownClassError(f"class {name!r} is a {cls.__name__}, not a {base.__name__}", path=path)
    return cls


def matches(cls: type, name: Any) -> bool:
    """True when a file naming class ``name`` may load as ``cls``.

    It may when ``name`` is ``cls``'s registered name or an alias of it, when ``name`` is
    the same class saved from a script run as ``__main__`` (``__main__.Triage`` loads as
    ``triage.Triage``), when a legacy file names the bare class name, or when the file holds
    a plain ``desiru.Program``/``desiru.Module``.
    """
    if name is None:
        return True  # a hand-made state that names no class: nothing contradicts cls
    if not isinstance(name, str):
        return False
    own = class_name(cls)
    return (name == own or _ALIASES.get(name) == own or name in GENERIC
            or name == f"__main__.{cls.__qualname__}"
            or ("." not in name and name == cls.__name__))  # a legacy (Ruby) file names the bare class


def check_class(cls: type, name: Any, *, path: str | None = None) -> None:
    """Raise UnknownClassError naming both classes when a file naming ``name`` is not a ``cls``."""
    if matches(cls, name):
        return
    raise UnknownClassError(
        f"this file holds a {name!r}, not a {class_name(cls)!r}",
        path=path,
        hint=f"load it with ds.load(path) (as the class it names) or with that class; to put its state into "
             f"{cls.__name__} anyway, pass any_class=True",
    )


def warn_if_script_class(cls: type) -> None:
    """Warn once when ``cls`` was defined in a script run as ``__main__`` and has no stable name.

    Files then name it ``__main__.X``, which no other script can load by name.
    """
    name = class_name(cls)
    if not name.startswith("__main__.") or name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(
        f"class {name!r} is defined in the script being run, so files name it {name!r} and only this "
        f"script loads them by name; give it a stable name: __desiru_name__ = \"yourproject.{cls.__qualname__}\" "
        f"in the class body (or define it in a module), or load with ds.load(path, cls={cls.__qualname__})",
        ScriptClassWarning,
        stacklevel=4,
    )


def registered() -> dict[str, type]:
    """A copy of the registry, name -> class."""
    return dict(_CLASSES)
