"""The content hash of a program state, built from one hash per top-level module.

A commit records the hash of its whole state. Hashing the canonical bytes of a
100,000-demo state takes about 50 ms; a commit that changed one module should not pay
that. So the hash of a state is the xxh3-128 (the Rust hasher, ``_engine.content_hash``)
of the canonical msgpack of

    ["desiru.state-hash", 1, <the state without "modules">, [<content_hash of each module entry>, ...]]

and a module's hash is remembered by the identity of its (never changed in place) dict:
the journal's states share every module a commit did not touch with the parent's
state, so a commit hashes only the modules it changed. The value is still a function of
the whole canonical state (equal states, equal hashes; any change of any field changes
it), but it is not ``content_hash(state)`` (docs/journal.md, "Runs").
"""

from __future__ import annotations

from typing import Any

from desiru import _engine

#: the first items of the hashed array: what it is, and the version of this definition
TAG = ("desiru.state-hash", 1)
#: module hashes remembered; past it the memory is dropped (it only saves rehashing)
LIMIT = 4096


def _parts(state: Any) -> tuple[Any, list[Any] | None]:
    modules = state.get("modules") if type(state) is dict else None
    if type(modules) is not list:
        return state, None
    return {k: v for k, v in state.items() if k != "modules"}, modules


def state_hash(state: Any) -> bytes:
    """The 16-byte content hash of a program state (see the module docstring)."""
    root, modules = _parts(state)
    hashes = None if modules is None else [_engine.content_hash(m) for m in modules]
    return _engine.content_hash([*TAG, root, hashes])


class StateHasher:
    """``state_hash`` that remembers each module dict's hash while the dict is alive.

    Only for states whose module dicts are never changed in place once hashed (the
    journal's states: an edit copies a node before changing it; ``forget`` covers the
    nodes a writer changes in place).
    """

    def __init__(self) -> None:
        # id(module dict) -> (the dict, kept so its id cannot be reused, its hash)
        self._known: dict[int, tuple[Any, bytes]] = {}

    def module(self, node: Any) -> bytes:
        known = self._known.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        h = _engine.content_hash(node)
        if len(self._known) >= LIMIT:
            self._known = {}
        self._known[id(node)] = (node, h)
        return h

    def state(self, state: Any) -> bytes:
        """Equal to ``state_hash(state)``."""
        return self.parts(state)[0]

    def parts(self, state: Any) -> tuple[bytes, list[bytes] | None]:
        """``state_hash(state)`` and the hashes of its modules (None: a state without a module list)."""
        root, modules = _parts(state)
        hashes = None if modules is None else [self.module(m) for m in modules]
        return _engine.content_hash([*TAG, root, hashes]), hashes

    def seed(self, state: Any, hashes: Any, digest: bytes) -> bool:
        """Remember ``hashes`` as the hashes of ``state``'s modules, if they make ``digest`` with its root.

        For a state rebuilt from the log, with the module hashes its commit recorded: they are
        taken only when they and the state's root give the commit's recorded hash.
        """
        root, modules = _parts(state)
        if (modules is None or type(hashes) is not list or len(hashes) != len(modules)
                or any(type(h) is not bytes or len(h) != 16 for h in hashes)
                or _engine.content_hash([*TAG, root, hashes]) != digest):
            return False
        if len(self._known) + len(modules) > LIMIT:
            self._known = {}
        for node, h in zip(modules, hashes):
            self._known[id(node)] = (node, h)
        return True

    def forget(self, nodes: Any) -> None:
        """Drop what is remembered of these nodes (about to be changed in place)."""
        for node in nodes:
            self._known.pop(id(node), None)


__all__ = ["LIMIT", "TAG", "StateHasher", "state_hash"]
