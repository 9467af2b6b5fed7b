"""``program.to_state()`` for commits, without copying the demos of 100,000 each time.

A commit reads the built state once: the Rust diff against the parent's state, then
nothing (the journal keeps the parent's state with the diff's edits applied, their
values copied). So the state may share what it can with the program:

- a module seen for the first time gives its Examples' own dicts, neither copied nor
  checked (the diff compares them by value: about 0.1 us a demo, against 2 us for
  ``Module.to_state``'s copy);
- a module seen before whose ``demos`` list holds the very same Example objects as at
  the previous build gets the previous build's demo list back (an identity check per
  demo, ~30 ns), and after the commit that list is the journal's own (``rebind``), so the
  Rust diff skips it by identity too.

The second is sound because an Example cannot be changed in place: it has no setters, and
only demos whose values are immutable scalars are reused (a demo holding a list or a dict
could be mutated inside without its identity changing: those modules are rebuilt every
time). Every other field comes from ``Module.to_state`` / ``Program.to_state`` themselves,
called with the demos (or children) set aside for the call and ``copy=False`` (the
parameters and metadata are the program's own dicts, read once), so this file holds no
copy of their logic; classes that override ``to_state`` are always asked directly. What
such a call gave is reused while every object it read is the same one (``_fields_of``,
``_program_fields``, the class's registered name, and no class attribute of that name such as
a property): the dicts it holds are the program's own, so a change inside them shows through.
Each build copies the reused parts into new dicts (a state handed out is never changed by a
later build), and a program's custom data (copied by its hook, which may read the children)
is asked anew each time, with the children in place. The journal
calls this under its lock; another thread reading the same module's ``demos`` during a
commit could see the list set aside. The result equals ``program.to_state()``
(tests/test_journal_state_builder.py).
"""

from __future__ import annotations

import operator
import weakref
from typing import Any

from desiru import _engine, registry
from desiru.example import Example, field_dicts
from desiru.module import Module
from desiru.program import Program, warn_script_classes
from desiru.signature import Signature
from desiru.state import copy_tree, leaves_only


def _immutable_example(d: Any) -> bool:
    return type(d) is Example and leaves_only(d._data)


class StateBuilder:
    """Builds program states, remembering per module path the demos of the last build."""

    def __init__(self) -> None:
        # module path -> (a weak reference to the module, the Example objects, their demo states);
        # (ref, None, None) for a module seen once (its demos were not checked). The reference is weak
        # so a program the caller dropped is freed when the caller drops it, not in the next commit
        self._cache: dict[str, tuple[Any, list[Any] | None, list[dict[str, Any]] | None]] = {}
        self._seen: set[str] = set()
        #: the state built last (rebind takes the journal's copy of it only), and the paths whose cached
        #: demo list that build made
        self._last: dict[str, Any] | None = None
        self._fresh: list[str] = []
        #: module path, or program prefix ("" or "outer."), -> (what its to_state read, the state it gave):
        #: see _fields_of and _program_fields
        self._shells: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def build(self, program: Program) -> dict[str, Any]:
        """Equal to ``program.to_state()``; shares demo lists with earlier builds where nothing changed.

        Warns (desiru.program.warn_script_classes) about classes defined in ``__main__`` on the way.
        """
        self._seen = set()
        self._fresh = []
        state = self._program(program, "")
        seen = self._seen
        if not seen.issuperset(self._cache):
            for path in [p for p in self._cache if p not in seen]:
                del self._cache[path]  # modules that are gone: let their demos be freed
        if not seen.issuperset(self._shells):
            for path in [p for p in self._shells if p not in seen]:
                del self._shells[path]
        self._last = state
        return state

    def _program(self, program: Program, prefix: str, name: str | None = None) -> dict[str, Any]:
        """The state of ``program`` (with ``"name": name`` first, for a nested one)."""
        children = program.__dict__.get("_modules")
        if type(program).to_state is not Program.to_state or not isinstance(children, dict):
            warn_script_classes(program)
            return _named(name, program.to_state())
        # everything but the children comes from Program.to_state itself (no copy of its logic): it runs
        # on the program with its children set aside for the call, or gave the same last time
        self._seen.add(prefix)
        state = _named(name, self._shell(prefix, program, _program_fields(program), "_modules", {}))
        # the custom data comes from a hook that copies it (and may read the children): asked every time
        state["custom_data"] = program.custom_serialization()
        modules = []
        for child_name, child in children.items():
            path = prefix + child_name
            if isinstance(child, Program):
                modules.append(self._program(child, path + ".", child_name))
            else:
                modules.append(self._module(child, path, child_name))
        state["modules"] = modules
        return state

    def _module(self, module: Module, path: str, name: str) -> dict[str, Any]:
        """The state of ``module``, with ``"name": name`` first (its entry in its program's modules)."""
        examples = module.__dict__.get("demos")
        if type(module).to_state is not Module.to_state or type(examples) is not list:
            registry.warn_if_script_class(type(module))
            return _named(name, module.to_state())
        self._seen.add(path)
        cached = self._cache.get(path)
        if cached is not None and cached[0]() is not module:
            cached = None
        if cached is None:
            registry.warn_if_script_class(type(module))  # once per class: on a module's first sight
            # first sight: the Examples' own dicts, for this commit's diff only (see the docstring); those
            # of a program replay() built are the journal's own, which the diff skips by identity
            demos = field_dicts(examples)
            if demos is None:  # a plain mapping (or another object) put into the list by hand
                demos = [d._data if type(d) is Example else dict(d) for d in examples]
            self._cache[path] = (weakref.ref(module), None, None)
        else:
            before, kept = cached[1] or [], cached[2] or []
            # the Example objects unchanged at both ends (a pointer walk in Rust): only the middle is looked at
            p, q = _engine.common_ends(before, examples)
            if p == len(before) == len(examples):
                demos = kept  # the same Example objects as last time: the same list
            else:
                # the cache holds its Examples alive, so an id found here is that very object
                previous = dict(zip(map(id, before[p:len(before) - q]), kept[p:len(kept) - q]))
                middle = []
                reusable = True
                for d in examples[p:len(examples) - q]:
                    demo = previous.get(id(d))
                    if demo is None:
                        if _immutable_example(d):
                            demo = dict(d._data)  # == Module.to_state's copy_tree of it: its values are scalars
                        else:
                            demo = copy_tree(d._data if type(d) is Example else dict(d))
                            reusable = False
                    middle.append(demo)
                demos = kept[:p] + middle + kept[len(kept) - q:]
                if reusable:
                    self._cache[path] = (weakref.ref(module), list(examples), demos)
                    self._fresh.append(path)
                else:
                    self._cache.pop(path, None)
        # every other field from Module.to_state itself, run with the demos set aside, or the state it
        # gave last time when it would give the same again (_shell)
        state = _named(name, self._shell(path, module, _fields_of(module), "demos", []))
        state["demos"] = demos
        return state

    def _shell(self, key: str, obj: Module | Program, fields: tuple[Any, ...] | None, aside: str,
               empty: Any) -> dict[str, Any]:
        """What ``obj.to_state(copy=False)`` gives with its ``aside`` attribute (demos, children) set
        aside for the call: the dict it gave last time at ``key`` while ``fields`` are the same objects
        and the class's name is the same, else made now. Never handed out: callers copy it (``_named``).
        """
        shell = self._shells.get(key)
        if shell is not None and fields is not None and len(fields) == len(shell[0]) and \
                all(map(operator.is_, fields, shell[0])) and shell[1]["class"] == registry.class_name(type(obj)):
            return shell[1]
        registry.warn_if_script_class(type(obj))
        held = obj.__dict__[aside]
        obj.__dict__[aside] = empty
        try:
            made = obj.to_state(copy=False)  # read once by the diff: nothing needs a copy
        finally:
            obj.__dict__[aside] = held
        base, reads = (Program, _PROGRAM_READS) if isinstance(obj, Program) else (Module, _MODULE_READS)
        if fields is not None and _plain(type(obj), base, reads):
            self._shells[key] = (fields, made)
        else:
            self._shells.pop(key, None)
        return made

    def rebind(self, built: dict[str, Any], state: dict[str, Any]) -> None:
        """Reuse ``state``'s demo lists from now on: the journal's copy of ``built``.

        When ``built`` is the state built last, ``state`` equals it by value, so each list that
        build cached is swapped for the list at the same path (the lists it reused are the
        journal's already); the next build of unchanged demos then returns the journal's list,
        which the diff skips by identity.
        """
        if built is not self._last:
            return
        self._last = None
        for path in self._fresh:
            cached = self._cache.get(path)
            mine = _demo_list_at(state, path)
            if cached is not None and cached[2] is not None and mine is not None and len(mine) == len(cached[2]):
                self._cache[path] = (cached[0], cached[1], mine)


def _fields_of(module: Module) -> tuple[Any, ...] | None:
    """What ``Module.to_state(copy=False)`` reads besides the demos, as objects compared by identity;
    None when that is not enough to know its result (a Signature subclass, or fields of a newer minor).

    The parameters and metadata are the module's own dicts in that state, not copies, so a change
    inside them shows through a state built earlier; a signature's fields are frozen, and its
    instructions a str. So while every object here is the same, the state built last is the one
    ``to_state`` would build now.
    """
    d = module.__dict__
    sig, params, meta = d.get("signature"), d.get("parameters"), d.get("metadata")
    if type(sig) is not Signature or type(params) is not dict or type(meta) is not dict or d.get("_unknown"):
        return None  # (a field that is not in __dict__ may be a property: read each time)
    return (type(module), sig, sig.instructions, *sig.inputs.values(), None, *sig.outputs.values(), params, meta)


def _program_fields(program: Program) -> tuple[Any, ...] | None:
    """As ``_fields_of``, for what ``Program.to_state(copy=False)`` reads (its configuration and metadata
    are the program's own dicts there); None for fields of a newer minor."""
    d = program.__dict__
    conf, meta = d.get("configuration"), d.get("metadata")
    if type(conf) is not dict or type(meta) is not dict or d.get("_unknown"):
        return None
    return (type(program), conf, meta)


#: what Module.to_state / Program.to_state read from the object: a class that defines one of them
#: itself (a property, say) may compute it anew each time, so its shells are never reused
_MODULE_READS = ("signature", "demos", "parameters", "metadata", "_unknown")
_PROGRAM_READS = ("_modules", "configuration", "custom_data", "metadata", "_unknown")


def _plain(cls: type, base: type, reads: tuple[str, ...]) -> bool:
    """Whether no class between ``cls`` and ``base`` defines an attribute ``to_state`` reads."""
    for c in cls.__mro__:
        if c is base:
            return True
        if any(r in c.__dict__ for r in reads):
            return False
    return False


def _named(name: str | None, state: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``state`` with ``"name": name`` first (a module's entry in its program), or a copy."""
    return dict(state) if name is None else {"name": name, **state}


def _demo_list_at(state: Any, path: str) -> list[Any] | None:
    """The demo list of the module at ``path`` ("a" or "outer.inner") in a program state, if any."""
    node = state
    for name in path.split("."):
        modules = node.get("modules") if type(node) is dict else None
        if type(modules) is not list:
            return None
        node = next((m for m in modules if type(m) is dict and m.get("name") == name), None)
    demos = node.get("demos") if type(node) is dict else None
    return demos if type(demos) is list else None


__all__ = ["StateBuilder"]
