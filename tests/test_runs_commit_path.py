"""The commit fast path: states kept by structure, hashes of changed modules only, demos not copied.

Each test commits programs that change the ways an optimizer changes them (in place, as fresh
copies, from random parents) and checks what matters: every commit replays to exactly the
program committed, and its content hash is ``state_hash`` of that program's state.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import desiru as ds
from desiru import _engine
from desiru.journal import Journal, ParameterSet, state_hash
from desiru.journal.state_hash import StateHasher


def _program(n_modules: int = 3, n_demos: int = 6) -> ds.Program:
    p = ds.Program()
    for m in range(n_modules):
        demos = [ds.Example(question=f"q{m}.{i}", answer=f"a{i}") for i in range(n_demos)]
        setattr(p, f"m{m}", ds.Predict("question -> answer", demos=demos))
    return p


def _check(j: Journal, committed: dict[int, dict[str, Any]]) -> None:
    for seq, state in committed.items():
        assert j.replay_state(seq=seq) == state, seq
        assert j.trial(seq).content_hash == state_hash(state).hex(), seq


def test_in_place_changes_on_the_line_replay_exactly(tmp_path: Path) -> None:
    p = _program()
    committed = {}
    tagged = ds.Example(question="holds a list", tags=["a"])
    with Journal.open(tmp_path / "line.journal") as j:
        for step in range(12):
            m = getattr(p, f"m{step % 3}")
            if step % 4 == 0:
                m.demos[step % len(m.demos)] = ds.Example(question=f"new {step}", answer="x")
            elif step % 4 == 1:
                m.demos.append(tagged if step == 1 else ds.Example(question=f"more {step}", answer="y"))
            elif step % 4 == 2:
                tagged.tags.append(f"in place {step}")  # a demo holding a list, changed in place
            else:
                m.parameters["step"] = step
            r = j.commit(p, score=float(step))
            assert r.changed, step
            committed[r.seq] = p.to_state()
            assert r.content_hash == state_hash(committed[r.seq]).hex()
        _check(j, committed)
    with Journal.open(tmp_path / "line.journal", readonly=True) as j:
        _check(j, committed)


def test_unchanged_demos_are_not_compared_again(tmp_path: Path) -> None:
    """After a commit the builder hands back the journal's own demo lists, so the diff skips them."""
    p = _program()
    with Journal.open(tmp_path / "same.journal") as j:
        for i in range(3):
            p.m0.demos[0] = ds.Example(question=f"changed {i}", answer="x")
            j.commit(p)
        head = j._head_state
        assert head is not None
        built = j._builder.build(p)
        assert [a["demos"] is b["demos"] for a, b in zip(built["modules"], head["modules"])] == [True] * 3


def test_fresh_copies_from_random_parents(tmp_path: Path) -> None:
    rng = random.Random(3)
    root = _program()
    committed = {}
    with Journal.open(tmp_path / "tree.journal", snapshot_every=7) as j:
        r = j.commit(root, score=0.0)
        held = [(r, root)]
        committed[r.seq] = root.to_state()
        for step in range(30):
            parent_r, parent = held[rng.randrange(len(held))]
            cand = parent.copy()
            m = getattr(cand, f"m{rng.randrange(3)}")
            m.demos[rng.randrange(len(m.demos))] = ds.Example(question=f"step {step}", answer=str(step))
            before = j._state_of(parent_r.seq)  # the parent's state, as the commit reads it
            r = j.commit(cand, parent=parent_r, score=float(step))
            assert r.parent == parent_r.seq
            committed[r.seq] = cand.to_state()
            held = [*held, (r, cand)][-5:]
            # what the journal keeps shares every untouched module with the parent's state
            kept = j._state_of(r.seq)
            shared = [a is b for a, b in zip(kept["modules"], before["modules"])]
            assert shared.count(False) == 1, shared
        _check(j, committed)
    with Journal.open(tmp_path / "tree.journal", readonly=True) as j:
        _check(j, committed)


def test_hand_appended_events_change_the_hash(tmp_path: Path) -> None:
    """append_many changes the head state in place: its remembered module hashes are dropped."""
    p = _program()
    with Journal.open(tmp_path / "hand.journal") as j:
        j.commit(p, score=1.0)
        j.append(ParameterSet(path="m1", payload={"key": "t", "value": 0.5}))
        p.m1.parameters["t"] = 0.5
        r = j.commit(p, score=2.0)  # no change of state: the results only
        assert r.content_hash == state_hash(p.to_state()).hex()
        j.append(ParameterSet(path="m1", payload={"key": "t", "value": 0.7}))
        p.m1.parameters["t"] = 0.7
        p.m2.parameters["u"] = 1
        r = j.commit(p, score=3.0)
        assert r.content_hash == state_hash(p.to_state()).hex()
        assert [t.seq for t in j.find(p)] == [r.seq]


def test_state_hash_covers_the_whole_state() -> None:
    state = _program().to_state()
    seen = {state_hash(state)}
    variants = []
    for change in ("root", "module", "demo", "order", "extra module"):
        s = _program().to_state()
        if change == "root":
            s["metadata"] = {"x": 1}
        elif change == "module":
            s["modules"][1]["parameters"] = {"t": 0.1}
        elif change == "demo":
            s["modules"][2]["demos"][3]["answer"] = "other"
        elif change == "order":
            s["modules"].reverse()
        else:
            s["modules"].append({**s["modules"][0], "name": "m9"})
        variants.append(s)
        seen.add(state_hash(s))
    assert len(seen) == 1 + len(variants)
    assert state_hash(_program().to_state()) == state_hash(state)  # equal states, equal hashes
    hasher = StateHasher()
    for s in [state, *variants, state]:
        assert hasher.state(s) == state_hash(s)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=15))
def test_any_tree_of_changes_replays_and_hashes(tmp_path_factory: Any, steps: list[tuple[int, int, int]]) -> None:
    path = tmp_path_factory.mktemp("h") / "run.journal"
    root = _program(3, 3)
    committed = {}
    with Journal.open(path, fsync="never", snapshot_every=5) as j:
        r = j.commit(root, score=0.0)  # scored: a run's commit, with its hash (a plain one has none)
        held = [(r, root)]
        committed[r.seq] = root.to_state()
        for pick, module, kind in steps:
            parent_r, parent = held[pick % len(held)]
            cand = parent if kind == 3 else parent.copy()  # 3: changed in place, the others fresh copies
            m = getattr(cand, f"m{module}")
            if kind == 0:
                m.demos.append(ds.Example(question=f"q{pick}", answer="a"))
            elif kind == 1 and m.demos:
                del m.demos[pick % len(m.demos)]
            else:
                m.parameters["p"] = pick
            r = j.commit(cand, parent=parent_r, score=float(pick))
            committed[r.seq] = cand.to_state()
            held.append((r, cand))
        _check(j, committed)


def test_a_commit_from_a_replayed_parent_hashes_only_its_change(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's state is rebuilt from the log; the module hashes its commit recorded are reused."""
    path = tmp_path / "replayed.journal"
    p = _program(4, 5)
    with Journal.open(path) as j:
        first = j.commit(p, score=0.1)
        for i in range(3):
            p.m0.demos[0] = ds.Example(question=f"line {i}", answer="x")
            j.commit(p, score=0.2)
    hashed: list[Any] = []
    real = _engine.content_hash
    monkeypatch.setattr(_engine, "content_hash", lambda x: hashed.append(x) or real(x))
    with Journal.open(path) as j:
        cand = j.replay(seq=first.seq)  # a new writer: nothing of the run in memory
        cand.m2.demos.append(ds.Example(question="added", answer="y"))
        hashed.clear()
        r = j.commit(cand, parent=first, score=0.3)
        modules_hashed = [x for x in hashed if isinstance(x, dict) and "demos" in x]
        assert [m["name"] for m in modules_hashed] == ["m2"]
        assert r.content_hash == state_hash(cand.to_state()).hex()
        assert j.replay_state(seq=r.seq) == cand.to_state()
    monkeypatch.undo()
    with Journal.open(path, readonly=True) as j:
        assert j.verify().ok
        assert [t.seq for t in j.find(cand)] == [r.seq]


def test_recorded_module_hashes_that_do_not_match_are_not_used(tmp_path: Path) -> None:
    hasher = StateHasher()
    state = _program().to_state()
    digest, hashes = hasher.parts(state)
    assert hashes is not None
    fresh = _program().to_state()
    wrong = [hashes[0], hashes[0], hashes[2]]
    for bad in (wrong, hashes[:2], [*hashes[:2], "x"], None):
        assert not hasher.seed(fresh, bad, digest)
    assert hasher.seed(fresh, hashes, digest)
    assert hasher.state(fresh) == digest == state_hash(fresh)


def test_events_and_kept_states_own_their_values(tmp_path: Path) -> None:
    """The state a commit diffs shares the program's own dicts; what it writes and keeps must not."""
    p = _program()
    with Journal.open(tmp_path / "own.journal") as j:
        j.commit(p)
        p.m0.parameters["nested"] = {"a": [1]}
        r = j.commit(p, score=1.0)
        p.m0.parameters["nested"]["a"].append(2)  # changed in place after the commit
        (event,) = [e for e in r.events if e.type == "ParameterSet"]
        assert event.payload["value"] == {"a": [1]}
        assert j.replay_state(seq=r.seq)["modules"][0]["parameters"]["nested"] == {"a": [1]}
        r2 = j.commit(p, score=2.0)
        assert [e.type for e in r2.events] == ["Committed", "ParameterSet", "ResultsRecorded"]
        assert j.replay(seq=r2.seq) == p and j.replay(seq=r.seq) != p


def test_replayed_program_shares_only_immutable_demos_and_commits_them_by_identity(tmp_path: Path) -> None:
    """replay() hands out the journal's own leaf-only demo dicts (inside Examples, which have no
    setters), so a commit of the replayed program skips its unchanged demos by identity; a demo
    holding a list is copied, so changing it in place cannot reach the journal."""
    p = _program(2, 5)
    p.m0.demos.append(ds.Example(question="with a list", tags=["a"]))
    with Journal.open(tmp_path / "share.journal") as j:
        first = j.commit(p)
        before = j.replay_state(seq=first.seq)
        cand = j.replay(seq=first.seq)
        kept = j.replay_state(seq=first.seq, _copy=False)
        assert cand.m1.demos[0]._data is kept["modules"][1]["demos"][0]  # shared: an immutable Example
        listed = cand.m0.demos[-1]
        assert listed._data is not kept["modules"][0]["demos"][-1]  # holds a list: a copy
        listed.tags.append("changed in the replayed program only")
        cand.m1.demos[2] = cand.m1.demos[2].copy(answer="changed")
        cand.m1.parameters["temperature"] = 0.5
        second = j.commit(cand, parent=first)
        ops = sorted(type(ev).__name__ for ev in second.events)
        assert ops == sorted(["Committed", "DemoAdded", "DemoAdded", "DemoRemoved", "DemoRemoved", "ParameterSet"])
        assert j.replay_state(seq=first.seq) == before  # the parent's state is untouched
        assert j.replay_state(seq=second.seq) == cand.to_state()
        assert j.trial(second.seq).content_hash == state_hash(cand.to_state()).hex()


def test_the_state_cache_counts_shared_module_nodes_once_and_bounds_the_demos_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """States share module nodes; the cache counts each node's demos once and drops the oldest states past
    its demo budget (states replayed from a snapshot share nothing: hundreds of whole copies otherwise)."""
    from desiru.journal import states

    cache = states.StateCache()
    base = _program(3, 10).to_state()
    derived = {**base, "modules": [base["modules"][0], base["modules"][1], dict(base["modules"][2])]}
    cache.put(1, base)
    cache.put(2, derived)  # shares two of its three modules with state 1
    assert cache.demos == 40 and len(cache) == 2
    monkeypatch.setattr(states, "STATE_CACHE_DEMOS", 35)
    cache.put(3, _program(1, 5).to_state())  # past the budget: the oldest states go first
    assert cache.seqs() == [2, 3] and cache.demos == 35
    cache.keep_only(lambda s: s != 2)
    assert cache.seqs() == [3] and cache.demos == 5
    # a journal under a small budget: commits from random parents replay exactly, its memory bounded
    monkeypatch.setattr(states, "STATE_CACHE_DEMOS", 60)
    rng = random.Random(3)
    p = _program(3, 10)
    committed: dict[int, dict[str, Any]] = {}
    with Journal.open(tmp_path / "budget.journal", snapshot_every=40) as j:
        seqs = [j.commit(p, score=0.0).seq]
        committed[seqs[0]] = p.to_state()
        for step in range(40):
            parent = rng.choice(seqs)
            cand = j.replay(seq=parent)
            module = getattr(cand, f"m{step % 3}")
            module.demos[step % 10] = ds.Example(question=f"step {step}", answer="x")
            r = j.commit(cand, parent=parent, score=float(step))
            seqs.append(r.seq)
            committed[r.seq] = cand.to_state()
            assert j._states.demos <= 60 or len(j._states) == 1
        _check(j, committed)


def test_replay_into_a_class_with_its_own_from_state(tmp_path: Path) -> None:
    """replay(cls=...) of a class that overrides from_state without the copy= keyword still works."""

    class Custom(ds.Program):
        __desiru_name__ = "tests.runs_commit_path.Custom"

        @classmethod
        def from_state(cls, state: Any, *, path: Any = None, any_class: bool = False) -> Any:  # type: ignore[override]
            return super().from_state(state, path=path, any_class=any_class)

    p = Custom()
    p.m = ds.Predict("question -> answer", demos=[ds.Example(question="q", answer="a")])
    with Journal.open(tmp_path / "custom.journal") as j:
        j.commit(p)
        back = j.replay(cls=Custom)
    assert type(back) is Custom and back.to_state() == p.to_state()


def test_the_state_cache_bounds_what_else_its_states_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Besides demos, a cached state holds signatures, parameters, custom data...: each distinct object
    is weighed once (states derived by commits share them), and past the budget the oldest go."""
    import copy

    from desiru.journal import states

    cache = states.StateCache()
    base = _program(3, 2).to_state()
    base["custom_data"] = {"prompt": "x" * 100_000}
    derived = {**base, "modules": [base["modules"][0], base["modules"][1],
                                   {**base["modules"][2], "parameters": {"only": 1}}]}
    cache.put(1, base)
    one = cache.weight
    assert 100_000 < one < 120_000
    cache.put(2, derived)  # shares the custom data and two modules: weighs its new parts only
    assert one < cache.weight < one + 1_000
    monkeypatch.setattr(states, "STATE_CACHE_BYTES", 5 * one // 2)
    for seq in range(3, 8):  # replayed states share nothing: each weighs its own copy
        cache.put(seq, copy.deepcopy(base))
        assert cache.weight <= 5 * one // 2 or len(cache) == 1
    assert len(cache) == 2 and cache.seqs() == [6, 7]
    cache.keep_only(lambda s: s == 7)
    assert cache.seqs() == [7] and cache.weight == one and cache.demos == 6
    cache.keep_only(lambda s: False)
    assert cache.weight == 0 and cache.demos == 0


def _random_variant(rng: random.Random) -> ds.Program:
    """A program of one of two shapes (nested or flat) with a few random values."""
    from programs import Outer as Nested
    from programs import sample_program

    if rng.random() < 0.5:
        p: Any = Nested()
        p.qa.answer.demos = [ds.Example(question=f"q{rng.randrange(4)}", answer="a")]
        p.qa.answer.parameters["t"] = rng.randrange(3)
        p.first.parameters["u"] = rng.randrange(3)
        return p
    p = sample_program()
    p.answer.demos = [ds.Example(question=f"q{i}", answer=str(i)) for i in range(rng.randrange(3))]
    p.answer.parameters["t"] = rng.randrange(3)
    p.retrieve.metadata["m"] = rng.randrange(3)
    return p


def _module_paths(state: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    for m in state.get("modules", []):
        path = f"{prefix}.{m['name']}" if prefix else m["name"]
        if m.get("kind") == "module":
            out.append((path, m))
        out.extend(_module_paths(m, path))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_every_state_a_writer_keeps_equals_the_logs(tmp_path: Path, seed: int) -> None:
    """Commits from random parents, event groups appended to the head state in place (its own nodes
    changed, shared ones copied first), line switches and snapshots: every state the writer keeps,
    cached or at its head, is what a fresh reader replays for that commit."""
    from desiru.journal.events import DemoAdded, DemoRemoved, DemosReordered, MetadataSet

    rng = random.Random(seed)
    path = tmp_path / "k.journal"
    seqs = []
    with Journal.open(path, snapshot_every=7) as j:
        seqs.append(j.commit(_random_variant(rng)).seq)
        for step in range(60):
            r = rng.random()
            if r < 0.45:
                parent = rng.choice(seqs) if rng.random() < 0.6 else None
                seqs.append(j.commit(_random_variant(rng), parent=parent,
                                     score=rng.random() if rng.random() < 0.3 else None).seq)
            elif r < 0.9:
                where, module = rng.choice(_module_paths(j._ensure_head_state() or {}))
                kind = rng.randrange(5)
                if kind == 0:
                    ev: Any = DemoAdded(path=where, payload={"index": 0, "demo": {"question": f"x{step}"}})
                elif kind == 1 or (kind == 2 and not module["demos"]) or (kind == 4 and len(module["demos"]) < 2):
                    ev = ParameterSet(path=where, payload={"key": f"k{rng.randrange(3)}", "value": step})
                elif kind == 2:
                    ev = DemoRemoved(path=where, payload={"index": 0})
                elif kind == 3:
                    ev = MetadataSet(path=where, payload={"value": {"s": step}})
                else:
                    ev = DemosReordered(path=where, payload={"order": list(reversed(range(len(module["demos"]))))})
                j.append_many([ev])
                seqs.append(j._line_head)
            else:
                j._switch_line(rng.choice(seqs))
            if step % 5 == 4 or step == 59:
                kept = dict(j._states._states)
                if j._head_state is not None:
                    kept[j._line_head] = j._head_state
                with Journal.open(path, readonly=True) as reader:
                    for seq, state in kept.items():
                        assert state == reader.replay_state(seq=seq), f"step {step}: the state of {seq} differs"
