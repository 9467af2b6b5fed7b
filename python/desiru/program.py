"""Programs: named modules (and nested programs) with configuration and custom data.

Modules are registered by attribute assignment, in order; ``named_modules()`` walks
nested programs with dotted names. Subclasses register by qualified name when
defined, which is how ``ds.load`` finds the class a file names.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from desiru import persistence, registry
from desiru.errors import CorruptDataError, DesiruError, UnknownModuleError
from desiru.module import Module
from desiru.persistence import LoadedDocument, SaveResult
from desiru.state import copy_for_objects, copy_tree, require_mapping

P = TypeVar("P", bound="Program")
_INTERNAL = frozenset({"_modules", "configuration", "metadata", "custom_data"})
#: keys of a program state this release knows; others (from a newer minor) are kept in ``_unknown``
STATE_KEYS = frozenset({"kind", "name", "class", "modules", "configuration", "custom_data", "metadata"})


class Program:
    """A compiled LM program: an ordered set of named modules and nested programs."""

    __desiru_name__: ClassVar[str] = "desiru.Program"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        registry.register(cls)

    def __init__(self, **modules: Module | Program) -> None:
        object.__setattr__(self, "_modules", {})
        self.configuration: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self.custom_data: Any = None
        for name, module in modules.items():
            setattr(self, name, module)

    # -- module registration -------------------------------------------------------------
    def _children(self) -> dict[str, Module | Program]:
        children = self.__dict__.get("_modules")
        if children is None:  # a subclass that assigns before calling super().__init__()
            children = {}
            object.__setattr__(self, "_modules", children)
        return children

    def __setattr__(self, name: str, value: Any) -> None:
        children = self._children()
        if isinstance(value, (Module, Program)) and not name.startswith("_"):
            if value is self:
                raise DesiruError("a program cannot contain itself",
                                  hint="assign a module or another program instance")
            reason = _bad_module_name(type(self), name)
            if reason:
                raise DesiruError(f"cannot add a module named {name!r}: {reason}", hint="choose another name")
            children[name] = value
        elif name in children:
            del children[name]
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        child = self._children().pop(name, None)
        if isinstance(child, _Pending) and name not in self.__dict__:
            return  # never built: nothing to remove but the entry
        object.__delattr__(self, name)

    def _add_pending(self, name: str, load: Callable[[], Module | Program]) -> None:
        """Register a child that ``load()`` builds when it is first touched (a lazily opened file)."""
        reason = _bad_module_name(type(self), name)
        if reason:
            raise CorruptDataError(f"a module entry is named {name!r}: {reason}")
        children = self._children()
        if name in children:
            raise CorruptDataError(f"two modules are named {name!r}",
                                   hint="module names are unique within their program")
        self.__dict__.pop(name, None)
        children[name] = _Pending(load)
        if any(name in vars(k) for k in type(self).__mro__):
            self._child(name)  # a class attribute of that name would hide the pending child

    def _child(self, name: str) -> Module | Program:
        """The child called ``name``, built now if it was pending."""
        children = self._children()
        child = children[name]
        if isinstance(child, _Pending):
            pending, child = child, child.get()
            if children.get(name) is pending:  # not replaced meanwhile
                children[name] = child
                object.__setattr__(self, name, child)
        elif name not in self.__dict__:  # a copy or an unpickled program whose child was pending
            object.__setattr__(self, name, child)
        return child

    def __getattr__(self, name: str) -> Any:
        children = self.__dict__.get("_modules")
        if children is not None and name in children:
            return self._child(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def modules(self) -> dict[str, Module | Program]:
        """The direct children, name -> Module or nested Program, in registration order."""
        return {name: self._child(name) for name in list(self._children())}

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every Module in the tree as (dotted name, module), depth first, in order."""
        for name in list(self._children()):
            child = self._child(name)
            dotted = f"{prefix}{name}"
            if isinstance(child, Program):
                yield from child.named_modules(dotted + ".")
            else:
                yield dotted, child

    def get_module(self, path: str) -> Module | Program:
        """The module or nested program at a dotted path such as ``"sub.answer"``."""
        node: Module | Program = self
        for part in path.split("."):
            if not isinstance(node, Program) or part not in node._children():
                known = [n for n, _ in self.named_modules()]
                raise UnknownModuleError(f"no module {path!r} in {type(self).__name__}", hint=f"known: {known}")
            node = node._child(part)
        return node

    def _set_child(self, path: str, child: Module | Program) -> None:
        parent_path, _, leaf = path.rpartition(".")
        parent = self.get_module(parent_path) if parent_path else self
        if not isinstance(parent, Program):
            raise UnknownModuleError(f"{parent_path!r} is a module, not a program; cannot add {leaf!r} to it")
        reason = _bad_module_name(type(parent), leaf)
        if reason:
            raise DesiruError(f"cannot add a module named {leaf!r}: {reason}", hint="choose another name")
        setattr(parent, leaf, child)

    # -- custom data hooks -------------------------------------------------------------------
    def custom_serialization(self) -> Any:
        """Extra data to save, as a state tree; override to save your own fields."""
        return copy_tree(self.custom_data)

    def custom_deserialization(self, data: Any) -> None:
        """Restore what custom_serialization() returned; override with your own fields."""
        self.custom_data = data

    # -- state -------------------------------------------------------------------------------
    def to_state(self, *, copy: bool = True) -> dict[str, Any]:
        """The program as a state tree (see docs/STATE.md).

        ``copy=False`` shares containers with the program instead of copying them: only for
        a state that is serialized at once and never kept.
        """
        modules = []
        for name in list(self._children()):
            child_state = self._child(name).to_state(copy=copy)
            modules.append({"name": name, **child_state})
        state = {
            "kind": "program",
            "class": registry.class_name(type(self)),
            "modules": modules,
            "configuration": copy_tree(self.configuration) if copy else self.configuration,
            "custom_data": self.custom_serialization(),
            "metadata": copy_tree(self.metadata) if copy else self.metadata,
        }
        unknown = self.__dict__.get("_unknown")
        if unknown:  # fields a newer minor wrote: written back unchanged
            state.update(copy_tree(unknown))
        return state

    @classmethod
    def from_state(cls: type[P], state: Mapping[str, Any], *, path: str | None = None, copy: bool = True,
                   any_class: bool = False) -> P:
        """Build a program from a state tree.

        On ``Program`` itself the class named in the state is used (through the
        registry). On a subclass, the state must name that class (its registered name,
        an alias, the same class saved from ``__main__``, or a plain ``desiru.Program``),
        else UnknownClassError; ``any_class=True`` builds the subclass whatever the state names.
        """
        require_mapping(state, "program state", path)
        target: type[Program] = cls
        if cls is Program:
            target = registry.resolve(state.get("class"), base=Program, path=path)
        elif not any_class:
            registry.check_class(cls, state.get("class"), path=path)
        program = _instantiate(target)
        try:
            program._restore(state, path, copy)
        except DesiruError as exc:
            exc.locate(path)
            raise
        return program  # type: ignore[return-value]

    def _restore(self, state: Mapping[str, Any], path: str | None, copy: bool = True) -> None:
        children = self._children()
        for name in list(children):
            delattr(self, name)
        modules = state.get("modules") or []
        if not isinstance(modules, list):
            raise CorruptDataError(f"'modules' must be a list, got {type(modules).__name__}", path=path)
        seen: set[str] = set()
        for entry in modules:
            require_mapping(entry, "module entry", path)
            name = entry.get("name")
            reason = _bad_module_name(type(self), name) if isinstance(name, str) else "it is not a string"
            if reason:
                raise CorruptDataError(f"a module entry is named {name!r}: {reason}", path=path)
            if name in seen:
                raise CorruptDataError(f"two modules are named {name!r}", path=path,
                                       hint="module names are unique within their program")
            seen.add(name)
            try:
                if entry.get("kind") == "program":
                    child: Module | Program = Program.from_state(entry, path=path, copy=copy)
                else:
                    child = Module.from_state(entry, path=path, copy=copy)
            except DesiruError as exc:
                exc.within(f"module {name!r}")
                raise
            setattr(self, name, child)
        self.configuration = dict(copy_tree(require_mapping(state.get("configuration") or {}, "configuration", path)))
        self.metadata = dict(copy_tree(require_mapping(state.get("metadata") or {}, "metadata", path)))
        self.custom_deserialization(copy_tree(state.get("custom_data")))
        self._unknown = {k: copy_tree(v) for k, v in state.items() if k not in STATE_KEYS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        return type(self) is type(other) and self.to_state() == other.to_state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modules={list(self._children())})"

    def copy(self: P) -> P:
        """A deep copy (through the state tree; Examples holding only immutable values share those)."""
        kind = type(self)
        if kind.to_state is Program.to_state and getattr(kind.from_state, "__func__", None) is _FROM_STATE:
            # one copy instead of two (to_state's and from_state's); see desiru.state.copy_for_objects
            return kind.from_state(copy_for_objects(self.to_state(copy=False)), copy=False)
        return kind.from_state(self.to_state())

    # -- running -----------------------------------------------------------------------------
    def forward(self, **inputs: Any) -> Any:
        """Run the program; subclasses define it. A program of one module runs that module."""
        children = list(self.modules.values())
        if len(children) == 1:
            return children[0](**inputs)
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # -- files -------------------------------------------------------------------------------
    # Saving and loading live above the model (desiru.files); they are reached through the seam
    # desiru.persistence, so nothing here imports serialization or an adapter.
    def save(
        self,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        compress: bool | str | None = None,
        key: bytes | str | None = None,
        sha256: bool = False,
    ) -> SaveResult:
        """Write the program to ``path`` atomically and durably; format from the suffix or ``format=``.

        The result's ``checksum`` is the content checksum the file records (xxh3-128);
        ``sha256=True`` also hashes the file's bytes with sha256 (``SaveResult.sha256``), which
        costs a second pass. ``Program.save(dspy_module, path)`` also works: a live dspy module
        goes through its adapter (desiru.interop.dspy) first.
        """
        return persistence.get().save(self, path, format=format, compress=compress, key=key, sha256=sha256)

    @classmethod
    def load(cls: type[P], path: str | os.PathLike[str], *, key: bytes | str | None = None, verify: bool = True,
             any_class: bool = False, lazy: bool = False) -> P:
        """Load a program file as ``cls`` (on ``Program`` itself: as the registered class the file names).

        On a subclass the file must hold that class (see ``from_state``), else UnknownClassError;
        ``any_class=True`` loads its state into ``cls`` whatever it names. ``verify=False`` skips
        the content checksum: unsafe, only to rescue a hand-edited file (docs/cli.md, --no-verify).
        ``lazy=True`` maps a msgpack file that has a module table and decodes each module when it
        is first touched (docs/FORMAT.md); any other file loads eagerly.
        """
        return persistence.get().load(cls, path, key=key, verify=verify, any_class=any_class,  # type: ignore[no-any-return]
                                      lazy_open=lazy)

    @staticmethod
    def load_module(path: str | os.PathLike[str], name: str, *, key: bytes | str | None = None) -> Module | Program:
        """One module (dotted ``name``) of a program file, reading only its bytes when the file has a
        module table; other files are loaded in full and the module taken from them."""
        return persistence.get().load_module(path, name, key=key)  # type: ignore[no-any-return]

    @classmethod
    def from_document(cls: type[P], doc: LoadedDocument, *, any_class: bool = False) -> P:
        """The program a loaded document holds: ``cls``, or on ``Program`` the class it names.

        The decoded state is adopted, not copied, and header fields this release does not
        write (from a newer minor) are kept so that saving writes them back unchanged.
        """
        return persistence.get().from_document(cls, doc, any_class=any_class)  # type: ignore[no-any-return]

    def export_module(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        compress: bool | str | None = None,
        key: bytes | str | None = None,
        sha256: bool = False,
    ) -> SaveResult:
        """Write one module (or nested program) to its own file, in the same formats as save()."""
        return persistence.get().export_module(self, name, path, format=format, compress=compress, key=key,
                                               sha256=sha256)

    def import_module(
        self, path: str | os.PathLike[str], name: str | None = None, *, key: bytes | str | None = None
    ) -> Module | Program:
        """Load a module file into this program under ``name`` (default: the name it was saved with)."""
        return persistence.get().import_module(self, path, name, key=key)  # type: ignore[no-any-return]


#: Program.from_state itself: copy() takes its fast path only for classes that do not override it
_FROM_STATE = Program.__dict__["from_state"].__func__


def warn_script_classes(program: Program) -> None:
    """Warn (once per class) when the program or a part of it has a class defined in a script run
    as ``__main__``: files would name it ``__main__.X``, which other scripts cannot load by name."""
    registry.warn_if_script_class(type(program))
    for child in program._children().values():
        if isinstance(child, Program):
            warn_script_classes(child)
        else:
            registry.warn_if_script_class(type(child))


class _Pending:
    """A child not built yet: ``get()`` builds it once (thread-safe) and keeps it.

    Code that walks ``_modules`` itself (the journal's state builder) sees this proxy: its
    ``to_state()`` builds the child and returns the child's state.
    """

    def __init__(self, load: Callable[[], Module | Program]) -> None:
        self._load: Callable[[], Module | Program] | None = load
        self._lock = threading.Lock()
        self._value: Module | Program | None = None

    def get(self) -> Module | Program:
        with self._lock:
            if self._value is None:
                assert self._load is not None
                self._value = self._load()
                self._load = None  # the file map is released with the last pending child
            return self._value

    def to_state(self, *, copy: bool = True) -> dict[str, Any]:
        return self.get().to_state(copy=copy)

    def __reduce__(self) -> tuple[Any, ...]:  # copy.deepcopy and pickle see the built child
        return (_built, (self.get(),))


def _built(child: Module | Program) -> Module | Program:
    return child


def _bad_module_name(owner: type, name: str) -> str | None:
    """Why ``name`` cannot name a module of an ``owner`` program, or None when it can."""
    if not name.isidentifier():
        return "it is not a Python identifier"
    if name.startswith("_"):
        return "names starting with '_' are private"
    if name in _INTERNAL or hasattr(Program, name):
        return "that name is part of the Program API"
    existing = inspect.getattr_static(owner, name, None)
    if existing is not None and not isinstance(existing, (Module, Program)):
        return f"{owner.__name__} already defines {name!r}"
    return None


def _instantiate(cls: type[P]) -> P:
    """An instance of ``cls`` ready to be restored.

    A class whose ``__init__`` takes no required arguments is constructed normally (so
    attributes it sets up exist); otherwise the instance is made without calling it.
    """
    init = cls.__init__
    if init is Program.__init__:
        return cls()
    try:
        inspect.signature(cls).bind()
    except (TypeError, ValueError):
        program = cls.__new__(cls)
        Program.__init__(program)
        return program
    return cls()


registry.register(Program)
