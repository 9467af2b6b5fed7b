"""Pure-Python twin of applying edits to a state tree (``rust/src/py/diff/apply.rs``): ``apply_edits(state,
edits, own=None)`` applies them in order, in place or copy on write, and says which edit does not fit and why."""

from __future__ import annotations

from typing import Any

from desiru._pure.tree import EDIT_HINT, Edit, State, copy_tree
from desiru.errors import CorruptDataError, UnknownModuleError

# --------------------------------------------------------------------- apply


class _Applier:
    def __init__(self, root: State, own: dict[int, Any] | None) -> None:
        #: copy on write: what the caller owns already, by id (changed in place); everything else is
        #: shared and copied (shallowly) before it changes, the copy added here. None: all in place
        self.own = own
        self.root = self.mine(root)
        self.cache: dict[str, State] = {}

    def mine(self, obj: Any) -> Any:
        """``obj`` if it may change in place (no ``own``, or the caller's already), else a shallow
        copy of this dict or list that is now the caller's."""
        own = self.own
        if own is None or id(obj) in own or (type(obj) is not dict and type(obj) is not list):
            return obj
        copy = obj.copy()
        own[id(copy)] = copy
        return copy

    def mine_field(self, node: State, key: str, value: Any) -> Any:
        """``value`` (a list or dict held by ``node`` at ``key``) made the caller's, ``node`` pointing at it."""
        mine = self.mine(value)
        if mine is not value:
            node[key] = mine
        return mine

    def fail(self, n: int, op: str, message: str) -> CorruptDataError:
        return CorruptDataError(f"edit {n} ({op}): {message}", hint=EDIT_HINT)

    def field(self, n: int, op: str, edit: Edit, key: str) -> Any:
        if key not in edit:
            raise self.fail(n, op, f"lacks the key {key!r}")
        return edit[key]

    def index(self, n: int, op: str, edit: Edit) -> int:
        index = self.field(n, op, edit, "index")
        if type(index) is not int:
            raise self.fail(n, op, f"index must be an int, not '{type(index).__name__}'")
        return index

    def resolve(self, n: int, op: str, path: str) -> State:
        node = self.cache.get(path)
        if node is not None:
            return node
        node = self.root
        if path:
            for name in path.split("."):
                modules = node.get("modules")
                if type(modules) is not list:
                    break
                modules = self.mine_field(node, "modules", modules)
                for i, m in enumerate(modules):
                    if type(m) is dict and m.get("name") == name:
                        node = modules[i] = self.mine(m)
                        break
                else:
                    break
            else:
                self.cache[path] = node
                return node
            raise UnknownModuleError(f"edit {n} ({op}): no module at path {path!r}", hint=EDIT_HINT)
        return node

    def container(self, n: int, op: str, node: State, path: str, key: str, kind: type) -> Any:
        value = node.get(key)
        if type(value) is not kind:
            raise self.fail(n, op, f"the node at {path!r} has no {key} {kind.__name__}")
        return self.mine_field(node, key, value)  # every caller changes it in place

    def need_kind(self, n: int, op: str, node: State, path: str, kind: str) -> None:
        if node.get("kind") != kind:
            raise self.fail(n, op, f"the node at {path!r} is not a {kind}")

    def apply(self, n: int, edit: Any) -> None:
        if type(edit) is not dict:
            raise CorruptDataError(f"edit {n} is not a dict but '{type(edit).__name__}'", hint=EDIT_HINT)
        op = edit.get("op")
        handler = _HANDLERS.get(op) if type(op) is str else None
        if handler is None:
            raise CorruptDataError(f"edit {n} has an unknown op {op!r}", hint=EDIT_HINT)
        path = edit.get("path")
        if type(path) is not str:
            raise self.fail(n, op, "path must be a str")
        handler(self, n, op, path, edit)

    # --- one method per op

    def program_created(self, n: int, op: str, path: str, edit: Edit) -> None:
        if path != "":
            raise self.fail(n, op, "path must be '' (the root)")
        state = self.field(n, op, edit, "state")
        if type(state) is not dict:
            raise self.fail(n, op, f"state must be a dict, not '{type(state).__name__}'")
        fresh = copy_tree(state)
        self.root.clear()
        self.root.update(fresh)
        self.cache.clear()

    def module_added(self, n: int, op: str, path: str, edit: Edit) -> None:
        parent_path, _, name = path.rpartition(".")
        if not name:
            raise self.fail(n, op, f"{path!r} does not name a module")
        index = self.index(n, op, edit)
        state = self.field(n, op, edit, "state")
        if type(state) is not dict or state.get("name") != name:
            raise self.fail(n, op, f"state must be a dict named {name!r}")
        parent = self.resolve(n, op, parent_path)
        modules = self.container(n, op, parent, parent_path, "modules", list)
        if any(type(m) is dict and m.get("name") == name for m in modules):
            raise self.fail(n, op, f"a module named {name!r} already exists at {parent_path!r}")
        if not 0 <= index <= len(modules):
            raise self.fail(n, op, f"index {index} is out of range for {len(modules)} modules")
        modules.insert(index, copy_tree(state))
        self.cache.clear()

    def module_removed(self, n: int, op: str, path: str, edit: Edit) -> None:
        if not path:
            raise self.fail(n, op, "the root cannot be removed")
        node = self.resolve(n, op, path)
        parent_path = path.rpartition(".")[0]
        modules = self.container(n, op, self.resolve(n, op, parent_path), parent_path, "modules", list)
        for k, m in enumerate(modules):
            if m is node:
                del modules[k]
                break
        self.cache.clear()

    def signature_set(self, n: int, op: str, path: str, edit: Edit) -> None:
        node = self.resolve(n, op, path)
        self.need_kind(n, op, node, path, "module")
        node["signature"] = copy_tree(self.field(n, op, edit, "signature"))

    def demo_added(self, n: int, op: str, path: str, edit: Edit) -> None:
        node = self.resolve(n, op, path)
        index = self.index(n, op, edit)
        demo = self.field(n, op, edit, "demo")
        demos = self.container(n, op, node, path, "demos", list)
        if not 0 <= index <= len(demos):
            raise self.fail(n, op, f"index {index} is out of range for {len(demos)} demos")
        demos.insert(index, copy_tree(demo))

    def demo_removed(self, n: int, op: str, path: str, edit: Edit) -> None:
        node = self.resolve(n, op, path)
        index = self.index(n, op, edit)
        demos = self.container(n, op, node, path, "demos", list)
        if not 0 <= index < len(demos):
            raise self.fail(n, op, f"index {index} is out of range for {len(demos)} demos")
        del demos[index]

    def demos_reordered(self, n: int, op: str, path: str, edit: Edit) -> None:
        node = self.resolve(n, op, path)
        order = self.field(n, op, edit, "order")
        demos = self.container(n, op, node, path, "demos", list)
        size = len(demos)
        seen = [False] * size
        ok = type(order) is list and len(order) == size
        if ok:
            for i in order:
                if type(i) is not int or not 0 <= i < size or seen[i]:
                    ok = False
                    break
                seen[i] = True
        if not ok:
            raise self.fail(n, op, f"order is not a permutation of the {size} demos")
        demos[:] = [demos[i] for i in order]

    def parameter_set(self, n: int, op: str, path: str, edit: Edit) -> None:
        node = self.resolve(n, op, path)
        key = self.field(n, op, edit, "key")
        value = self.field(n, op, edit, "value")
        params = self.container(n, op, node, path, "parameters", dict)
        params[key] = copy_tree(value)

    def parameter_unset(self, n: int, op: str, path: str, edit: Edit) -> None:
        node = self.resolve(n, op, path)
        key = self.field(n, op, edit, "key")
        params = self.container(n, op, node, path, "parameters", dict)
        if key not in params:
            raise self.fail(n, op, f"no parameter {key!r} at {path!r}")
        del params[key]

    def _set(self, n: int, op: str, path: str, edit: Edit, key: str, kind: str | None) -> None:
        node = self.resolve(n, op, path)
        if kind is not None:
            self.need_kind(n, op, node, path, kind)
        node[key] = copy_tree(self.field(n, op, edit, "value"))

    def metadata_set(self, n: int, op: str, path: str, edit: Edit) -> None:
        self._set(n, op, path, edit, "metadata", None)

    def configuration_set(self, n: int, op: str, path: str, edit: Edit) -> None:
        self._set(n, op, path, edit, "configuration", "program")

    def custom_data_set(self, n: int, op: str, path: str, edit: Edit) -> None:
        self._set(n, op, path, edit, "custom_data", "program")


_HANDLERS = {
    name: getattr(_Applier, name)
    for name in (
        "program_created",
        "module_added",
        "module_removed",
        "signature_set",
        "demo_added",
        "demo_removed",
        "demos_reordered",
        "parameter_set",
        "parameter_unset",
        "metadata_set",
        "configuration_set",
        "custom_data_set",
    )
}


def apply_edits(state: State, edits: list[Edit], own: dict[int, Any] | None = None) -> State:
    """Apply ``edits`` in order to ``state`` and return the result.

    With ``own`` None, ``state`` itself, changed in place. With ``own`` a dict (id -> object the
    caller owns), a copy on write: every node and container the edits change is copied first
    unless ``own`` holds it, the copies are added to ``own``, and everything else is shared with
    ``state``, which stays as it was (a journal keeps many states that share their unchanged parts).
    Raises CorruptDataError (or UnknownModuleError for a path that names no
    module) at the first edit that does not fit; the edits before it stay applied.
    """
    if type(state) is not dict:
        raise TypeError(f"apply_edits() needs a dict as the state, not '{type(state).__name__}'")
    if type(edits) is not list:
        raise TypeError(f"apply_edits() needs a list of edits, not '{type(edits).__name__}'")
    if own is not None and not isinstance(own, dict):
        raise TypeError(f"apply_edits() needs a dict or None as own, not '{type(own).__name__}'")
    applier = _Applier(state, own)
    for n, edit in enumerate(edits):
        applier.apply(n, edit)
    return applier.root


__all__ = ["apply_edits"]
