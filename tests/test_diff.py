"""Structural diff: apply(old, diff(old, new)) == new exactly, minimal edits, twin agreement.

Runs on the pure-Python twin and, when the extension provides it (and
DESIRU_PURE_PYTHON is not set), on the Rust implementation, and checks that
both produce identical edits and identical errors.
"""

from __future__ import annotations

import copy
import random
import struct
from types import ModuleType
from typing import Any

import pytest
from engines import implementations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desiru._pure import diff as pure
from desiru.errors import CorruptDataError, DesiruError, SerializationError, UnknownModuleError

IMPLS = implementations(pure, "diff_states")
impl_param = pytest.mark.parametrize("impl", IMPLS, ids=[m.__name__.rsplit(".", 1)[-1] for m in IMPLS])
both_needed = pytest.mark.skipif(
    len(IMPLS) < 2, reason="needs both engines (the Rust extension built, DESIRU_PURE_PYTHON unset)"
)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def exact(x: Any) -> Any:
    """A picture of a tree in which type, order and float bits all show (True != 1 != 1.0)."""
    t = type(x)
    if t is dict:
        return ("dict", sorted(((repr(k), exact(v)) for k, v in x.items()), key=lambda kv: kv[0]))
    if t is list or t is tuple:
        return (t.__name__, [exact(v) for v in x])
    if t is float:
        return ("float", struct.pack("<d", x))
    return (t.__name__, x)


def assert_exact(a: Any, b: Any) -> None:
    assert exact(a) == exact(b)


# ---------------------------------------------------------------- state trees

NAMES = ["answer", "retrieve", "rank", "judge", "plan", "sub"]
SCALARS = [None, True, False, 0, 1, 1.0, -0.0, 0.0, 2**64 - 1, -(2**63), "x", "", b"\x00", 3.5]


def rand_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and roll < 0.3:
        return {rng.choice("abcd"): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(SCALARS)


def rand_demo(rng: random.Random) -> dict[str, Any]:
    # A small pool, so duplicates (and 1 / 1.0 / True lookalikes) are common.
    demo: dict[str, Any] = {"question": rng.choice("abcde"), "answer": rng.choice([1, 1.0, True, "1", None])}
    if rng.random() < 0.2:
        demo["context"] = rand_value(rng, 1)
    return demo


def rand_signature(rng: random.Random) -> dict[str, Any]:
    field = {"name": rng.choice(["question", "answer"]), "desc": rng.choice(["", "d"]), "prefix": "P:"}
    return {"instructions": rng.choice(["Answer.", "Be brief."]), "inputs": [field], "outputs": []}


def rand_module(rng: random.Random, name: str) -> dict[str, Any]:
    return {
        "kind": "module",
        "name": name,
        "class": rng.choice(["desiru.Predict", "desiru.ChainOfThought"]),
        "signature": rand_signature(rng),
        "demos": [rand_demo(rng) for _ in range(rng.randint(0, 6))],
        "parameters": {rng.choice(["temperature", "max_tokens", "n"]): rng.choice(SCALARS) for _ in range(2)},
        "metadata": {"note": rand_value(rng, 1)} if rng.random() < 0.5 else {},
    }


def rand_program(rng: random.Random, depth: int = 0, name: str | None = None) -> dict[str, Any]:
    names = rng.sample(NAMES, rng.randint(0, 4))
    modules = [
        rand_program(rng, depth + 1, n) if depth < 2 and rng.random() < 0.2 else rand_module(rng, n) for n in names
    ]
    state: dict[str, Any] = {
        "kind": "program",
        "class": rng.choice(["desiru.Program", "myapp.QA"]),
        "modules": modules,
        "configuration": {"lm": rng.choice(["a", "b"])} if rng.random() < 0.7 else {},
        "custom_data": rand_value(rng),
        "metadata": {},
    }
    if name is not None:
        state["name"] = name
    return state


def nodes(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every program and module node of a tree, root first."""
    out = [state]
    for m in state.get("modules", []):
        out.extend(nodes(m) if m.get("kind") == "program" else [m])
    return out


def mutate(rng: random.Random, state: dict[str, Any]) -> None:
    """One random change of the kinds a program goes through while being optimized."""
    node = rng.choice(nodes(state))
    if node["kind"] == "module":
        demos = node["demos"]
        kind = rng.randrange(11)
        if kind == 0:
            demos.insert(rng.randint(0, len(demos)), rand_demo(rng))
        elif kind == 1 and demos:
            del demos[rng.randrange(len(demos))]
        elif kind == 2:
            rng.shuffle(demos)
        elif kind == 3 and demos:
            demos[rng.randrange(len(demos))] = rand_demo(rng)
        elif kind == 4:
            node["parameters"][rng.choice(["temperature", "max_tokens", "top_p"])] = rng.choice(SCALARS)
        elif kind == 5 and node["parameters"]:
            del node["parameters"][rng.choice(list(node["parameters"]))]
        elif kind == 6:
            node["signature"] = rand_signature(rng)
        elif kind == 7:
            node["metadata"] = {"step": rng.choice(SCALARS)}
        elif kind == 8:
            node["class"] = rng.choice(["desiru.Predict", "desiru.ChainOfThought", "other.Mod"])
        elif kind == 9 and len(demos) > 1:
            i, j = rng.sample(range(len(demos)), 2)
            demos[i], demos[j] = demos[j], demos[i]
        else:
            demos.append(copy.deepcopy(rng.choice(demos)) if demos else rand_demo(rng))
        return
    modules = node["modules"]
    kind = rng.randrange(9)
    free = [n for n in NAMES if n not in {m["name"] for m in modules}]
    if kind == 0 and free:
        modules.insert(rng.randint(0, len(modules)), rand_module(rng, rng.choice(free)))
    elif kind == 1 and modules:
        del modules[rng.randrange(len(modules))]
    elif kind == 2:
        rng.shuffle(modules)
    elif kind == 3 and free:
        modules.insert(rng.randint(0, len(modules)), rand_program(rng, 2, rng.choice(free)))
    elif kind == 4:
        node["configuration"] = {"lm": rng.choice(["a", "b", "c"]), "n": rng.choice(SCALARS)}
    elif kind == 5:
        node["custom_data"] = rand_value(rng)
    elif kind == 6:
        node["metadata"] = {"epoch": rng.choice(SCALARS)}
    elif kind == 7 and rng.random() < 0.3:
        node["class"] = rng.choice(["desiru.Program", "myapp.QA", "myapp.Other"])
    elif modules:
        m = rng.choice(modules)
        m["name"] = rng.choice(free) if free else m["name"]


@st.composite
def old_and_new(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = draw(st.randoms(use_true_random=False))
    old = rand_program(rng)
    new = copy.deepcopy(old)
    for _ in range(draw(st.integers(0, 6))):
        mutate(rng, new)
    return old, new


# -------------------------------------------------------------------- the laws


@impl_param
@SETTINGS
@given(pair=old_and_new())
def test_applying_the_diff_gives_new_exactly(impl: ModuleType, pair: tuple[dict, dict]) -> None:
    old, new = pair
    frozen_old, frozen_new = exact(old), exact(new)
    edits = impl.diff_states(old, new)
    assert exact(old) == frozen_old and exact(new) == frozen_new  # diff mutates nothing
    state = copy.deepcopy(old)
    result = impl.apply_edits(state, edits)
    assert result is state
    assert_exact(result, new)
    # And back again.
    assert_exact(impl.apply_edits(copy.deepcopy(new), impl.diff_states(new, old)), old)


def _containers(state: Any, out: dict[int, Any]) -> dict[int, Any]:
    """Every list and dict of a tree by id (kept alive in ``out``)."""
    if type(state) in (list, dict):
        out[id(state)] = state
        for v in state.values() if type(state) is dict else state:
            _containers(v, out)
    return out


@SETTINGS
@given(pair=old_and_new(), more=st.randoms(use_true_random=False))
def test_the_journals_copy_on_write_apply_leaves_the_parent_untouched(pair: tuple[dict, dict],
                                                                       more: random.Random) -> None:
    """``states._applied`` (what a commit keeps): the parent's state with the edits applied on copies of
    only what they change; the parent is untouched, and no container it holds is changed in place."""
    from desiru.journal.states import _applied

    old, new = pair
    frozen = exact(old)
    edits = pure.diff_states(old, new)
    # and a batch that edits a module an earlier edit of it added, then one the parent holds
    at = next((i for i, e in enumerate(edits) if e["op"] == "module_added" and e["state"].get("kind") == "module"),
              None)
    if at is not None:
        kept_modules = {m["name"] for m in new["modules"] if m.get("kind") == "module"}
        held = [m["name"] for m in old["modules"] if m.get("kind") == "module" and m["name"] in kept_modules]
        edits = [*edits[:at + 1], {"op": "parameter_set", "path": edits[at]["path"], "key": "late", "value": 1.0},
                 *edits[at + 1:]]
        if held:
            edits.append({"op": "parameter_set", "path": more.choice(held), "key": "later", "value": 2.0})
        new = pure.apply_edits(copy.deepcopy(old), edits)
    theirs = {i: exact(c) for i, c in _containers(old, {}).items()}
    result = _applied(old, copy.deepcopy(edits))
    assert_exact(result, new)
    assert exact(old) == frozen
    assert all(exact(c) == theirs[i] for i, c in _containers(old, {}).items())
    # what the edits did not touch is shared, not copied (a program_created replaces the whole state)
    if not edits:
        assert result is old
    if any(e["op"] == "program_created" for e in edits):
        return
    touched = {e["path"] for e in edits} | {e["path"].rpartition(".")[0] for e in edits}
    for m in old.get("modules", []):
        if m.get("kind") == "module" and not any(t == m["name"] or t.startswith(m["name"] + ".") for t in touched):
            kept = [n for n in result["modules"] if n.get("name") == m["name"]]
            assert kept and kept[0] is m


@impl_param
@SETTINGS
@given(pair=old_and_new(), more=old_and_new())
def test_copy_on_write_apply_changes_only_what_it_owns(impl: ModuleType, pair: tuple[dict, dict],
                                                        more: tuple[dict, dict]) -> None:
    """``apply_edits(state, edits, own)``: the result equals the in-place apply, ``state`` and every
    container it holds stay as they were (also when an edit fails), ``own`` gains exactly the copies,
    and a second apply with the same ``own`` changes those copies in place instead of copying again."""
    old, new = pair
    frozen, theirs = exact(old), {i: exact(c) for i, c in _containers(old, {}).items()}
    edits = impl.diff_states(old, new)
    own: dict[int, Any] = {}
    result = impl.apply_edits(old, copy.deepcopy(edits), own)
    assert_exact(result, new)
    assert exact(old) == frozen and all(exact(c) == theirs[i] for i, c in _containers(old, {}).items())
    assert result is not old and id(result) in own
    assert not set(own) & set(theirs)  # only copies: nothing of the parent's
    # a second batch on the same own: the owned root is changed in place
    again = impl.diff_states(result, more[1])
    root = result
    result2 = impl.apply_edits(result, again, own)
    assert_exact(result2, more[1])
    assert result2 is root
    assert exact(old) == frozen
    # a batch that fails half way leaves the parent as it was
    bad = [*copy.deepcopy(edits), {"op": "demo_removed", "path": "no-such-module", "index": 0}]
    with pytest.raises(DesiruError):
        impl.apply_edits(old, bad, {})
    assert exact(old) == frozen and all(exact(c) == theirs[i] for i, c in _containers(old, {}).items())


@impl_param
def test_copy_on_write_apply_needs_a_dict_as_own(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.apply_edits({}, [], [1])


@impl_param
@SETTINGS
@given(seed=st.randoms(use_true_random=False))
def test_unrelated_states_diff_and_apply(impl: ModuleType, seed: random.Random) -> None:
    old, new = rand_program(seed), rand_program(seed)
    assert_exact(impl.apply_edits(copy.deepcopy(old), impl.diff_states(old, new)), new)


@impl_param
@SETTINGS
@given(pair=old_and_new())
def test_equal_states_diff_to_nothing(impl: ModuleType, pair: tuple[dict, dict]) -> None:
    old, _ = pair
    assert impl.diff_states(old, old) == []
    assert impl.diff_states(old, copy.deepcopy(old)) == []


@impl_param
@SETTINGS
@given(pair=old_and_new())
def test_replay_from_nothing(impl: ModuleType, pair: tuple[dict, dict]) -> None:
    _, new = pair
    edits = impl.diff_states(None, new)
    assert [e["op"] for e in edits] == ["program_created"]
    state: dict[str, Any] = {"stale": True}
    assert_exact(impl.apply_edits(state, edits), new)
    # The applied state shares no container with the edits.
    state["modules"].append("x")
    assert "x" not in new["modules"]


@both_needed
@SETTINGS
@given(pair=old_and_new())
def test_rust_and_python_give_the_same_edits(pair: tuple[dict, dict]) -> None:
    old, new = pair
    rust = IMPLS[1]
    assert exact(rust.diff_states(old, new)) == exact(pure.diff_states(old, new))
    assert exact(rust.diff_states(new, old)) == exact(pure.diff_states(new, old))
    assert exact(rust.diff_states(None, new)) == exact(pure.diff_states(None, new))


# -------------------------------------------------------- output size and shape


def program(*modules: dict[str, Any], cls: str = "myapp.QA") -> dict[str, Any]:
    return {
        "kind": "program",
        "class": cls,
        "modules": list(modules),
        "configuration": {},
        "custom_data": None,
        "metadata": {},
    }


def module(name: str, demos: list[Any] | None = None, **params: Any) -> dict[str, Any]:
    return {
        "kind": "module",
        "name": name,
        "class": "desiru.Predict",
        "signature": {"instructions": "", "inputs": [], "outputs": []},
        "demos": demos if demos is not None else [],
        "parameters": params,
        "metadata": {},
    }


@impl_param
def test_one_changed_demo_among_many_is_one_remove_and_one_add(impl: ModuleType) -> None:
    demos = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5_000)]
    old = program(module("answer", demos))
    new = copy.deepcopy(old)
    new["modules"][0]["demos"][2_500] = {"question": "new", "answer": "fresh"}
    assert impl.diff_states(old, new) == [
        {"op": "demo_removed", "path": "answer", "index": 2_500},
        {"op": "demo_added", "path": "answer", "index": 2_500, "demo": {"question": "new", "answer": "fresh"}},
    ]


@impl_param
def test_types_count_as_changes(impl: ModuleType) -> None:
    old = program(module("m", [{"a": 1}], temperature=1, flag=0.0))
    new = program(module("m", [{"a": True}], temperature=True, flag=-0.0))
    edits = impl.diff_states(old, new)
    assert {(e["op"], e.get("key")) for e in edits} == {
        ("demo_removed", None),
        ("demo_added", None),
        ("parameter_set", "temperature"),
        ("parameter_set", "flag"),
    }
    assert_exact(impl.apply_edits(copy.deepcopy(old), edits), new)
    old["configuration"] = {"k": 1}
    new = copy.deepcopy(old)
    new["configuration"] = {"k": 1.0}
    assert impl.diff_states(old, new) == [{"op": "configuration_set", "path": "", "value": {"k": 1.0}}]


@impl_param
def test_reordering(impl: ModuleType) -> None:
    d = [{"n": i} for i in range(6)]
    old = program(module("m", d[:]), module("a"), module("b"), module("c"))
    new = program(module("b"), module("c"), module("a"), module("m", [d[0], d[2], d[1], d[3], d[4], d[5]]))
    edits = impl.diff_states(old, new)
    ops = [(e["op"], e["path"]) for e in edits]
    # The longest run in order (b, c) stays; m and a move; the demo swap is one reorder.
    assert ops == [("module_removed", "m"), ("module_removed", "a"), ("module_added", "a"), ("module_added", "m")]
    old2, new2 = program(module("m", d[:])), program(module("m", [d[0], d[2], d[1], d[3], d[4], d[5]]))
    assert impl.diff_states(old2, new2) == [{"op": "demos_reordered", "path": "m", "order": [0, 2, 1, 3, 4, 5]}]
    for a, b in ((old, new), (old2, new2)):
        assert_exact(impl.apply_edits(copy.deepcopy(a), impl.diff_states(a, b)), b)


@impl_param
def test_duplicate_demos_are_matched_as_a_multiset(impl: ModuleType) -> None:
    x, y = {"q": "x"}, {"q": "y"}
    old = program(module("m", [x, x, y, x]))
    new = program(module("m", [x, y, x]))
    assert impl.diff_states(old, new) == [{"op": "demo_removed", "path": "m", "index": 1}]


@impl_param
def test_nested_programs_use_dotted_paths(impl: ModuleType) -> None:
    inner = program(module("answer", [{"q": 1}]))
    inner["name"] = "sub"
    old = program(module("top"), inner)
    new = copy.deepcopy(old)
    new["modules"][1]["modules"][0]["parameters"]["t"] = 0.5
    new["modules"][1]["metadata"] = {"v": 2}
    new["modules"][1]["modules"].append(module("extra"))
    edits = impl.diff_states(old, new)
    assert [(e["op"], e["path"]) for e in edits] == [
        ("parameter_set", "sub.answer"),
        ("module_added", "sub.extra"),
        ("metadata_set", "sub"),
    ]
    assert_exact(impl.apply_edits(copy.deepcopy(old), edits), new)


@impl_param
def test_class_changes_replace(impl: ModuleType) -> None:
    old = program(module("m"), module("n"))
    new = copy.deepcopy(old)
    new["modules"][1]["class"] = "desiru.ChainOfThought"
    assert [(e["op"], e["path"]) for e in impl.diff_states(old, new)] == [
        ("module_removed", "n"),
        ("module_added", "n"),
    ]
    new = copy.deepcopy(old)
    new["class"] = "other.Program"
    assert [e["op"] for e in impl.diff_states(old, new)] == ["program_created"]


@impl_param
def test_odd_shapes_still_round_trip(impl: ModuleType) -> None:
    # Names that cannot address modules, extra keys, missing keys: the diff falls back to replacing.
    cases = [
        (program(module("a.b")), program(module("a.b", [{"q": 1}]))),
        (program(module("x"), module("x")), program(module("x"))),
        ({**program(), "extra": 1}, {**program(), "extra": 2}),
        ({"kind": "program", "class": "P"}, {"kind": "program", "class": "P", "modules": [module("m")]}),
        (program(module("m")), program({**module("m"), "metadata": None, "new_key": [1]})),
        (program(module("m", [{"q": 1}])), program({k: v for k, v in module("m").items() if k != "demos"})),
        ({"kind": "thing", "v": 1}, {"kind": "thing", "v": 2}),
    ]
    for old, new in cases:
        edits = impl.diff_states(old, new)
        assert_exact(impl.apply_edits(copy.deepcopy(old), edits), new)
        assert impl.diff_states(new, copy.deepcopy(new)) == []


@impl_param
def test_applied_state_does_not_alias_the_edits(impl: ModuleType) -> None:
    old = program(module("m"))
    new = program(module("m", [{"q": [1, 2]}], temperature={"v": [1]}))
    edits = impl.diff_states(old, new)
    state = impl.apply_edits(copy.deepcopy(old), edits)
    new["modules"][0]["demos"][0]["q"].append(3)
    new["modules"][0]["parameters"]["temperature"]["v"].append(2)
    assert state["modules"][0]["demos"][0]["q"] == [1, 2]
    assert state["modules"][0]["parameters"]["temperature"]["v"] == [1]


# ------------------------------------------------------------------ bad edits

BASE = program(module("m", [{"q": 1}, {"q": 2}], t=1), {**program(module("inner")), "name": "sub"})

BAD_EDITS: list[tuple[list[Any], type[Exception], str]] = [
    ([{"op": "demo_added", "path": "nope", "index": 0, "demo": {}}], UnknownModuleError, "no module at path 'nope'"),
    ([{"op": "parameter_set", "path": "sub.x", "key": "k", "value": 1}], UnknownModuleError, "'sub.x'"),
    ([{"op": "demo_removed", "path": "m", "index": 2}], CorruptDataError, "index 2 is out of range for 2 demos"),
    ([{"op": "demo_removed", "path": "m", "index": -1}], CorruptDataError, "out of range"),
    ([{"op": "demo_added", "path": "m", "index": 3, "demo": {}}], CorruptDataError, "out of range"),
    ([{"op": "demo_added", "path": "m", "index": 2**70, "demo": {}}], CorruptDataError, "out of range"),
    ([{"op": "demo_added", "path": "m", "index": True, "demo": {}}], CorruptDataError, "must be an int"),
    ([{"op": "demo_added", "path": "m", "index": 0}], CorruptDataError, "lacks the key 'demo'"),
    ([{"op": "demos_reordered", "path": "m", "order": [0, 0]}], CorruptDataError, "not a permutation"),
    ([{"op": "demos_reordered", "path": "m", "order": [1]}], CorruptDataError, "not a permutation"),
    ([{"op": "demos_reordered", "path": "m", "order": (1, 0)}], CorruptDataError, "not a permutation"),
    ([{"op": "parameter_unset", "path": "m", "key": "zz"}], CorruptDataError, "no parameter 'zz' at 'm'"),
    ([{"op": "configuration_set", "path": "m", "value": {}}], CorruptDataError, "is not a program"),
    ([{"op": "signature_set", "path": "", "signature": {}}], CorruptDataError, "is not a module"),
    ([{"op": "demo_added", "path": "sub", "index": 0, "demo": {}}], CorruptDataError, "has no demos list"),
    ([{"op": "module_added", "path": "m", "index": 0, "state": module("m")}], CorruptDataError, "already"),
    ([{"op": "module_added", "path": "z", "index": 0, "state": module("y")}], CorruptDataError, "named 'z'"),
    ([{"op": "module_added", "path": "z", "index": 9, "state": module("z")}], CorruptDataError, "out of range"),
    ([{"op": "module_added", "path": "m.z", "index": 0, "state": module("z")}], CorruptDataError, "no modules"),
    ([{"op": "module_added", "path": "a.", "index": 0, "state": module("")}], CorruptDataError, "name a module"),
    ([{"op": "module_removed", "path": ""}], CorruptDataError, "root cannot be removed"),
    ([{"op": "module_removed", "path": "m"}, {"op": "module_removed", "path": "m"}], UnknownModuleError, "edit 1"),
    ([{"op": "program_created", "path": "m", "state": {}}], CorruptDataError, "must be ''"),
    ([{"op": "program_created", "path": "", "state": []}], CorruptDataError, "state must be a dict"),
    ([{"op": "explode", "path": ""}], CorruptDataError, "unknown op 'explode'"),
    ([{"path": ""}], CorruptDataError, "unknown op None"),
    ([{"op": "metadata_set", "path": 3, "value": {}}], CorruptDataError, "path must be a str"),
    ([["op", "metadata_set"]], CorruptDataError, "not a dict"),
]


@impl_param
@pytest.mark.parametrize(("edits", "error", "text"), BAD_EDITS, ids=[str(i) for i in range(len(BAD_EDITS))])
def test_edits_that_do_not_fit_raise_clear_errors(
    impl: ModuleType, edits: list[Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=None) as info:
        impl.apply_edits(copy.deepcopy(BASE), edits)
    assert text in str(info.value)
    assert info.value.hint  # says what to do


@both_needed
@pytest.mark.parametrize(("edits", "error", "text"), BAD_EDITS, ids=[str(i) for i in range(len(BAD_EDITS))])
def test_rust_and_python_raise_the_same_errors(edits: list[Any], error: type[Exception], text: str) -> None:
    messages = []
    for impl in IMPLS:
        with pytest.raises(error) as info:
            impl.apply_edits(copy.deepcopy(BASE), edits)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@impl_param
def test_bad_arguments(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.diff_states({}, [])
    with pytest.raises(TypeError):
        impl.diff_states([], {})
    with pytest.raises(TypeError):
        impl.apply_edits([], [])
    with pytest.raises(TypeError):
        impl.apply_edits({}, ({"op": "metadata_set"},))
    with pytest.raises(SerializationError):
        impl.diff_states(program(module("m", [{"q": 1}])), program(module("m", [{"q": {1, 2}}])))

    def nest(levels: int) -> Any:
        deep: Any = {}
        for _ in range(levels):
            deep = {"x": deep}
        return deep

    deep = nest(600)
    with pytest.raises(SerializationError, match="deeper"):
        impl.diff_states({**program(), "metadata": deep}, {**program(), "metadata": nest(600)})
    with pytest.raises(SerializationError, match="deeper"):
        impl.apply_edits(program(), [{"op": "metadata_set", "path": "", "value": deep}])


# ------------------------------------------------------------------ adversarial

OPS = [
    "program_created", "module_added", "module_removed", "signature_set", "demo_added", "demo_removed",
    "demos_reordered", "parameter_set", "parameter_unset", "metadata_set", "configuration_set",
    "custom_data_set", "bogus",
]  # fmt: skip

junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=6), st.binary(max_size=4)),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6,
)
edit_strategy = st.fixed_dictionaries(
    {"op": st.sampled_from(OPS), "path": st.sampled_from(["", "m", "sub", "sub.inner", "m.x", "a..b", "z"])},
    optional={
        "index": st.one_of(st.integers(-3, 4), junk),
        "order": st.one_of(st.permutations([0, 1]), st.lists(st.integers(-1, 3), max_size=3), junk),
        "state": st.one_of(st.just(module("z")), st.just(module("m")), junk),
        "demo": junk,
        "key": st.one_of(st.sampled_from(["t", "u"]), st.text(max_size=3)),
        "value": junk,
        "signature": junk,
    },
)


def outcome(impl: ModuleType, edits: list[Any]) -> Any:
    try:
        return ("ok", exact(impl.apply_edits(copy.deepcopy(BASE), edits)))
    except (DesiruError, TypeError) as exc:
        return (type(exc).__name__, str(exc))


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.one_of(edit_strategy, junk), max_size=4))
def test_random_edits_never_crash_and_both_agree(edits: list[Any]) -> None:
    results = [outcome(impl, edits) for impl in IMPLS]
    assert all(r == results[0] for r in results)


@settings(max_examples=150, deadline=None)
@given(old=junk, new=junk)
def test_random_trees_never_crash(old: Any, new: Any) -> None:
    for impl in IMPLS:
        for a, b in ((old, new), ({"kind": "program", "junk": old}, {"kind": "program", "junk": new})):
            try:
                edits = impl.diff_states(a, b)
            except (DesiruError, TypeError):
                continue
            start = {} if a is None else copy.deepcopy(a)
            assert_exact(impl.apply_edits(start, edits), b)


def test_engine_seam_exposes_the_diff() -> None:
    from desiru import _engine

    old, new = program(module("m")), program(module("m", t=1))
    assert _engine.diff_states(old, new) == [{"op": "parameter_set", "path": "m", "key": "t", "value": 1}]
    assert _engine.apply_edits(old, _engine.diff_states(old, new)) == new


class _Meddler:
    """A value whose ``__eq__`` mutates the dict being compared: no panic may follow."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.target = target

    def __eq__(self, other: object) -> bool:
        for i in range(20):
            self.target[f"k{i}"] = i
        self.target.clear()
        return True

    __hash__ = object.__hash__


@impl_param
def test_user_code_that_mutates_during_a_diff_cannot_crash(impl: ModuleType) -> None:
    a_params: dict[str, Any] = {}
    b_params: dict[str, Any] = {}
    a_params["x"] = _Meddler(a_params)
    b_params["x"] = _Meddler(b_params)
    old, new = program(module("m", **a_params)), program(module("m", **b_params))
    old["modules"][0]["parameters"] = a_params
    new["modules"][0]["parameters"] = b_params
    # Also inside a dict compared as a whole (metadata), which is walked live.
    a_meta: dict[str, Any] = {"a": 1}
    b_meta: dict[str, Any] = {"a": 1}
    a_meta["x"] = _Meddler(a_meta)
    b_meta["x"] = _Meddler(b_meta)
    old["metadata"], new["metadata"] = a_meta, b_meta
    for _ in range(2):
        try:
            impl.diff_states(old, new)
        except Exception:  # an ordinary error is fine; a PanicException (BaseException) is not
            pass


@impl_param
@settings(max_examples=60, deadline=None)
@given(seed=st.randoms(use_true_random=False), size=st.integers(60, 300))
def test_long_demo_lists(impl: ModuleType, seed: random.Random, size: int) -> None:
    # Longer than the Rust side's suffix block (64), with changes anywhere.
    old_demos = [{"question": f"q{i % 40}", "answer": seed.choice([1, 1.0, True])} for i in range(size)]
    new_demos = copy.deepcopy(old_demos)
    for _ in range(seed.randint(1, 4)):
        roll = seed.random()
        i = seed.randrange(len(new_demos))
        if roll < 0.3:
            new_demos[i] = {"question": "changed", "answer": i}
        elif roll < 0.6:
            del new_demos[i]
        elif roll < 0.8:
            new_demos.insert(i, {"question": f"q{seed.randrange(40)}", "answer": 1})
        else:
            new_demos.insert(seed.randrange(len(new_demos)), new_demos.pop(i))
    old, new = program(module("m", old_demos)), program(module("m", new_demos))
    edits = impl.diff_states(old, new)
    assert_exact(impl.apply_edits(copy.deepcopy(old), edits), new)
    assert exact(edits) == exact(pure.diff_states(old, new))


@pytest.mark.parametrize("impl", implementations(pure, "common_ends"), ids=lambda m: m.__name__)
def test_common_ends_count_identical_items_not_equal_ones(impl: ModuleType) -> None:
    x, y, z, w = {"q": "x"}, {"q": "y"}, {"q": "z"}, {"q": "w"}
    a = [x, y, z]
    assert impl.common_ends(a, a) == (3, 0) and impl.common_ends(a, list(a)) == (3, 0)
    assert impl.common_ends([], []) == (0, 0) and impl.common_ends(a, []) == (0, 0)
    assert impl.common_ends(a, [{"q": "x"}, {"q": "y"}, {"q": "z"}]) == (0, 0)  # equal, not the same objects
    assert impl.common_ends(a, [x, w, z]) == (1, 1)  # one replaced in the middle
    assert impl.common_ends(a, [x, y, w, z]) == (2, 1)  # one inserted
    assert impl.common_ends(a, [x, z]) == (1, 1) and impl.common_ends([x, x], [x]) == (1, 0)  # never overlap
    assert impl.common_ends(a, [w, y, z]) == (0, 2)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_shared_demo_lists_and_modules_diff_to_nothing_and_changes_still_show(impl: ModuleType) -> None:
    demos = [{"question": f"q{i}"} for i in range(50)]
    module = {"kind": "module", "class": "desiru.Predict", "signature": {}, "demos": demos, "parameters": {},
              "metadata": {}}
    old = {"kind": "program", "class": "desiru.Program", "modules": [{"name": "a", **module}, {"name": "b", **module}],
           "configuration": {}, "custom_data": None, "metadata": {}}
    new = copy.deepcopy(old)
    new["modules"][0] = old["modules"][0]  # the very same module node
    new["modules"][1]["demos"] = demos  # the very same demo list
    assert impl.diff_states(old, new) == []
    new["modules"][1]["parameters"]["t"] = 1
    assert impl.diff_states(old, new) == [{"op": "parameter_set", "path": "b", "key": "t", "value": 1}]
