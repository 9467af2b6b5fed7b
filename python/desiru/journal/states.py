"""The states of a writer's commits: its line head in memory, recent commits cached, others rebuilt.

A commit is diffed against its parent's state. The writer keeps the state of its line
head (the commit its next ``commit(parent=None)`` derives from) and of its 4,096 most
recently used commits; every state it keeps shares with its parent's every node the
commit did not touch, so a cached state costs the size of its changes. Any other
commit's state is its nearest cached ancestor plus the events of the commits in
between, or a replay from its nearest snapshot.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from desiru import _engine
from desiru.errors import DesiruError
from desiru.journal.events import Committed
from desiru.journal.runs import Node
from desiru.journal.state_hash import StateHasher
from desiru.journal.store import JournalStore
from desiru.state import LEAVES, copy_tree

if TYPE_CHECKING:
    from collections.abc import Iterator

#: commit states kept in memory (sharing structure) so a commit from a recent parent replays nothing:
#: an optimizer picks parents among hundreds or thousands of earlier trials (with 256, a run of 1,000
#: trials from random parents spent 40% of its time rebuilding parents' states)
STATE_CACHE = 4096
#: ... and at most this many demos in the distinct module nodes they hold (about 1.8 GB at the large
#: benchmark program's demo size): states replayed from a snapshot share nothing, so a run of random
#: parents on a program of 1,000,000 demos would otherwise keep hundreds of whole copies
STATE_CACHE_DEMOS = 1_000_000
#: ... and about this many bytes in everything else they hold (signatures, parameters, metadata,
#: configuration, custom data, the module lists), each distinct object counted once: states replayed
#: from a snapshot share none of it, and a program carrying 1 MB of custom data or prompt text would
#: otherwise keep 4 GB of copies in 4,096 states
STATE_CACHE_BYTES = 512 * 1024 * 1024
#: the most commits applied on top of a cached ancestor before replaying from a snapshot instead
STATE_CHAIN = 1024


def _module_nodes(state: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The module nodes (dicts holding demos) of a program state, nested programs walked."""
    modules = state.get("modules") if type(state) is dict else None
    if type(modules) is list:
        for m in modules:
            if type(m) is dict:
                if type(m.get("demos")) is list:
                    out.append(m)
                _module_nodes(m, out)
    return out


def _weight(value: Any, depth: int = 0) -> int:
    """About how many bytes ``value`` holds: its strings' lengths, and 64 a container or a number."""
    kind = type(value)
    if kind is str or kind is bytes:
        return 56 + len(value)
    if kind is dict:
        return 64 + sum(_weight(k, depth + 1) + _weight(v, depth + 1) for k, v in value.items()) if depth < 64 else 64
    if kind is list:
        return 64 + sum(_weight(v, depth + 1) for v in value) if depth < 64 else 64
    return 32


def _parts(state: dict[str, Any], nodes: list[dict[str, Any]]) -> list[tuple[Any, bool]]:
    """What a state holds besides demos, as the objects its commits share: the root's fields, each
    module node's fields (a commit copies only the ones it changes), and each list of module nodes
    (``True``: weighed by its length only, its nodes are counted on their own)."""
    out: list[tuple[Any, bool]] = [(v, k == "modules") for k, v in state.items()]
    for node in nodes:
        out += [(v, k == "modules") for k, v in node.items() if k != "demos"]
    return out


class StateCache:
    """The states of recent commits, least recently used dropped first, bounded by count and by memory.

    States share module nodes (a commit's state is its parent's with only the modules it touched
    copied), so memory is counted per distinct object: each module node's demos once, however many
    cached states hold it, and the weight (about the bytes, ``_weight``) of every other distinct part
    (``_parts``). Past ``STATE_CACHE`` states, ``STATE_CACHE_DEMOS`` demos or ``STATE_CACHE_BYTES``,
    the least recently used go.
    """

    def __init__(self) -> None:
        self._states: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._nodes = _Held()  # module nodes, sized by their demos
        self._parts = _Held()  # everything else (``_parts``), sized by ``_weight``

    @property
    def demos(self) -> int:
        """Demos in the distinct module nodes the cached states hold."""
        return self._nodes.total

    @property
    def weight(self) -> int:
        """About the bytes of everything else the cached states hold (each distinct object once)."""
        return self._parts.total

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, seq: object) -> bool:
        return seq in self._states

    def get(self, seq: int) -> dict[str, Any] | None:
        return self._states.get(seq)

    def touch(self, seq: int) -> None:
        self._states.move_to_end(seq)

    def seqs(self) -> list[int]:
        return list(self._states)

    def put(self, seq: int, state: dict[str, Any]) -> None:
        if seq in self._states:
            self._drop(seq)
        self._states[seq] = state
        nodes = _module_nodes(state, [])
        for node in nodes:
            self._nodes.hold(node, _demo_count)
        for part, shallow in _parts(state, nodes):
            self._parts.hold(part, _list_weight if shallow else _weight)
        while len(self._states) > 1 and (len(self._states) > STATE_CACHE or self.demos > STATE_CACHE_DEMOS
                                         or self.weight > STATE_CACHE_BYTES):
            self._drop(next(iter(self._states)))

    def keep_only(self, keep: Callable[[int], bool]) -> None:
        """Drop every state whose seq ``keep`` refuses (compaction: the commits that went)."""
        for seq in [s for s in self._states if not keep(s)]:
            self._drop(seq)

    def _drop(self, seq: int) -> None:
        state = self._states.pop(seq)
        nodes = _module_nodes(state, [])
        for node in nodes:
            self._nodes.release(node)
        for part, _shallow in _parts(state, nodes):
            self._parts.release(part)


class _Held:
    """Objects held by any number of cached states, each counted once: its size and their total."""

    def __init__(self) -> None:
        # id -> [the object (kept alive, so its id is not reused), states holding it, its size]
        self._held: dict[int, list[Any]] = {}
        self.total = 0

    def hold(self, obj: Any, size: Callable[[Any], int]) -> None:
        entry = self._held.get(id(obj))
        if entry is None:
            n = size(obj)
            self._held[id(obj)] = [obj, 1, n]
            self.total += n
        else:
            entry[1] += 1

    def release(self, obj: Any) -> None:
        entry = self._held.get(id(obj))
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del self._held[id(obj)]
                self.total -= entry[2]


def _demo_count(node: dict[str, Any]) -> int:
    return len(node["demos"])


def _list_weight(value: Any) -> int:
    """A list of module nodes: its own slots (its nodes are counted on their own)."""
    return 64 + 8 * len(value) if type(value) is list else _weight(value)


def _owned(edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``edits`` with copies of the values they carry: a diff's edits hold parts of the caller's program
    (its demos' and parameters' own dicts), which neither an event nor a kept state may share."""
    return [e if LEAVES.issuperset(map(type, e.values())) else  # the edit itself is the diff's own
            {k: v if type(v) in LEAVES else copy_tree(v) for k, v in e.items()} for e in edits]


def _applied(state: dict[str, Any], edits: list[dict[str, Any]]) -> dict[str, Any]:
    """``state`` (left unchanged) with ``edits`` applied, on a copy of only what they change.

    Every node and container the edits do not change is shared with ``state`` (the engine's copy
    on write); the values the edits carry are copied by the apply itself.
    """
    return _engine.apply_edits(state, edits, {}) if edits else state


class CommitStates:
    """Part of ``Journal`` (a mixin): the states of commits, for diffing a new commit against its parent."""

    _store: JournalStore
    _mutex: threading.RLock
    _head_state: dict[str, Any] | None
    _private: dict[int, Any]
    _line_head: int | None
    _states: StateCache
    _depth: dict[int, int]
    _hasher: StateHasher
    _node_seqs: list[int]
    #: the state of the last replay a writer made, (seq, state), until the next one
    _replayed: tuple[int, dict[str, Any]] | None
    snapshot_every: int

    if TYPE_CHECKING:  # provided by Journal, RunIndex and ReplayMixin
        def _runs(self, upto: int | None = None) -> dict[int, Node]: ...
        def replay_state(self, seq: int | None = None, tag: str | None = None, at: Any = None, *,
                         _copy: bool = True, progress: Any = None) -> dict[str, Any]: ...
        def _ranges(self, lineage: list[int]) -> list[list[int]]: ...
        def _arrays(self, start: int, stop: int) -> Iterator[list[list[Any]]]: ...
        def _edits(self, arrays: list[list[Any]]) -> list[dict[str, Any]]: ...
        def _read_record(self, seq: int) -> dict[str, Any]: ...

    def _line(self) -> int:
        """The commit this writer's next commit(parent=None) derives from (0: none yet)."""
        if self._line_head is None:
            self._runs()
            self._line_head = self._node_seqs[-1] if self._node_seqs else 0
        return self._line_head

    def _ensure_head_state(self) -> dict[str, Any] | None:
        """The state of this writer's line head (owned by the journal: ``_private`` says which nodes)."""
        line = self._line()
        if self._head_state is None and line > 0:
            self._head_state = self._state_of(line)
            self._private = {}
        return self._head_state

    def _cache_state(self, seq: int, state: dict[str, Any]) -> None:
        """Keep a commit's state (shared structure, never changed in place) for commits derived from it."""
        self._states.put(seq, state)

    def _state_of(self, seq: int) -> dict[str, Any]:
        """The state of commit ``seq``, read only: from memory, a cached ancestor plus its events, or a replay."""
        if seq == self._line_head and self._head_state is not None:
            return self._head_state
        cached = self._states.get(seq)
        if cached is not None:
            self._states.touch(seq)
            return cached
        replayed = self._replayed
        if replayed is not None and replayed[0] == seq:
            self._cache_state(seq, replayed[1])
            return replayed[1]
        nodes = self._runs()
        first = self._store.first_seq()
        chain: list[int] = []
        s = seq
        base: dict[str, Any] | None = None
        while s and len(chain) <= STATE_CHAIN:
            if s == self._line_head and self._head_state is not None:
                base = self._head_state
                break
            base = self._states.get(s)
            if base is not None:
                break
            node = nodes.get(s)
            if node is None or node.dropped or node.first < first:
                break
            chain.append(s)
            s = node.parent
        if base is None:  # no ancestor in memory: from the nearest snapshot on its lineage
            state = self.replay_state(seq, _copy=True)
        else:
            state = self._apply_chain(base, [nodes[c] for c in reversed(chain)])
        self._seed_hashes(seq, state)
        self._cache_state(seq, state)
        return state

    def _seed_hashes(self, seq: int, state: dict[str, Any]) -> None:
        """Give the hasher the module hashes commit ``seq`` recorded, for its state rebuilt just now:
        a commit derived from it then hashes only the modules it changes. Without them (a commit of
        release 0.1.0, or a record that does not match) the modules are hashed when first needed."""
        node = self._runs().get(seq)
        if node is None or node.hash is None or node.dropped:
            return
        try:
            record = self._read_record(node.first)
        except DesiruError:
            return
        payload = record.get("payload")
        if record.get("type") == Committed.type and isinstance(payload, dict):
            self._hasher.seed(state, payload.get("modules"), node.hash)

    def _remember_replayed(self, seq: int, state: dict[str, Any]) -> None:
        """Keep the state a writer's replay just built (one): a commit derived from that program reads it
        back, and the program shares its strings, so the diff compares them by identity."""
        self._seed_hashes(seq, state)
        self._replayed = (seq, state)

    def _apply_chain(self, state: dict[str, Any], chain: list[Node]) -> dict[str, Any]:
        """``state`` (left unchanged) with the edits of the commits in ``chain`` (oldest first) applied,
        as one batch on a copy of only the nodes they touch."""
        edits: list[dict[str, Any]] = []
        for start, stop in self._ranges([node.last for node in chain]):
            for arrays in self._arrays(start, stop + 1):
                edits.extend(self._edits(arrays))
        return _applied(state, edits)  # decoded just now: nobody else holds them

    def _hash_later(self, state: Any) -> Any:
        """The hash of ``state`` (one the journal keeps: never changed in place), when first asked."""
        return functools.partial(self._hasher.state, state)

    def _depth_of(self, seq: int) -> int:
        """Events a replay of commit ``seq`` applies after its nearest snapshot (estimated when unknown)."""
        known = self._depth.get(seq)  # known first: listing the snapshots at every commit costs O(snapshots)
        if known is not None:
            return known
        if seq == 0 or seq in self._snapshot_set():
            return 0
        # not computed in this session: walk to the nearest snapshot (bounded walk, then assume the worst)
        total, s, steps = 0, seq, 0
        snaps = self._snapshot_set()
        nodes = self._runs()
        while s and s not in snaps and steps < 1024:
            node = nodes.get(s)
            if node is None:
                break
            total += node.last - node.first + 1
            s = node.parent
            steps += 1
        if s and s not in snaps:
            total = max(total, self.snapshot_every)
        self._depth[seq] = total
        return total

    def _snapshot_set(self) -> set[int]:
        return set(self._store.snapshot_seqs())

    def _switch_line(self, seq: int) -> None:
        """Make commit ``seq`` this writer's line head (its state becomes the head state)."""
        if seq == self._line_head:
            return
        if self._line_head and self._head_state is not None:
            self._cache_state(self._line_head, self._head_state)
        self._head_state = self._state_of(seq) if seq else None
        self._line_head, self._private = seq, {}


__all__ = ["STATE_CACHE", "STATE_CHAIN", "CommitStates"]
