"""The commit-time state builder gives exactly ``program.to_state()``, however the program changes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from programs import Outer, modules, sample_program

import desiru as ds
from desiru.journal.state_builder import StateBuilder


class Custom(ds.Predict):
    """A module with its own to_state: always asked directly."""

    def to_state(self, *, copy: bool = True) -> dict[str, Any]:
        state = super().to_state(copy=copy)
        state["metadata"] = {**state["metadata"], "custom": True}
        return state


def test_builder_equals_to_state_through_changes() -> None:
    b = StateBuilder()
    p = Outer()
    p.qa.answer.demos = [ds.Example(question=str(i), answer=str(i)) for i in range(50)]
    assert b.build(p) == p.to_state()
    first = b.build(p)
    second = b.build(p)
    assert second == p.to_state()
    # unchanged demos: the very same list object comes back (the diff skips it by identity)
    assert second["modules"][1]["modules"][1]["demos"] is first["modules"][1]["modules"][1]["demos"]
    p.qa.answer.demos[3] = ds.Example(question="changed", answer="x")
    assert b.build(p) == p.to_state()
    p.qa.answer.demos.append(ds.Example(question="new", answer="y"))
    assert b.build(p) == p.to_state()
    p.qa.answer.demos.reverse()
    assert b.build(p) == p.to_state()
    p.qa.answer = ds.Predict("question -> answer")  # a new module object at the same path
    assert b.build(p) == p.to_state()
    p.custom = Custom("a -> b")
    assert b.build(p) == p.to_state() and b.build(p)["modules"][-1]["metadata"]["custom"]


def test_demos_with_mutable_values_are_never_reused() -> None:
    b = StateBuilder()
    p = sample_program()
    tags: list[str] = ["a"]
    p.answer.demos = [ds.Example(question="q", tags=tags)]
    assert b.build(p) == p.to_state()
    tags.append("b")  # changed inside the same Example object
    built = b.build(p)
    assert built == p.to_state() and built["modules"][1]["demos"][0]["tags"] == ["a", "b"]


@given(st.lists(modules(), min_size=1, max_size=4), st.data())
def test_builder_equals_to_state_for_random_programs(mods: list[ds.Module], data: st.DataObject) -> None:
    p = ds.Program()
    for i, m in enumerate(mods):
        setattr(p, f"m{i}", m)
    b = StateBuilder()
    assert b.build(p) == p.to_state()
    for _ in range(3):
        m = mods[data.draw(st.integers(0, len(mods) - 1))]
        action = data.draw(st.sampled_from(["add", "remove", "replace", "params"]))
        if action == "add":
            m.demos.insert(0, ds.Example(x=data.draw(st.text(max_size=5))))
        elif action == "remove" and m.demos:
            m.demos.pop()
        elif action == "replace" and m.demos:
            m.demos[-1] = ds.Example(y=1)
        else:
            m.parameters["k"] = data.draw(st.integers())
        assert b.build(p) == p.to_state()


def test_every_field_a_module_state_reads_is_seen_after_the_first_build() -> None:
    """A module's state but its demos is built once and reused while what it reads is the same objects:
    each way of changing those, in place or by assignment, shows in the next build."""
    from desiru.signature import Field

    b = StateBuilder()
    p = sample_program()
    m = p.answer
    b.build(p)
    first = b.build(p)
    assert b.build(p)["modules"][1]["signature"] is first["modules"][1]["signature"]  # reused
    changes = [
        lambda: m.parameters.__setitem__("temperature", 0.9),   # inside the module's own dict
        lambda: setattr(m, "parameters", {"new": 1}),           # a new dict
        lambda: m.metadata.__setitem__("note", "x"),
        lambda: setattr(m, "metadata", {"other": [1, 2]}),
        lambda: setattr(m.signature, "instructions", "Answer in French."),
        lambda: m.signature.inputs.__setitem__("hint", Field("hint")),  # a field added in place
        lambda: m.signature.outputs.pop("answer"),
        lambda: setattr(m, "signature", ds.Signature("a, b -> c")),
        lambda: object.__setattr__(m, "__class__", ds.Predict),  # another class, same object
        lambda: setattr(m, "_unknown", {"future_field": 1}),             # fields of a newer minor
        lambda: m._unknown.__setitem__("future_field", 2),               # never reused: read every time
    ]
    for change in changes:
        change()
        assert b.build(p) == p.to_state()
        assert b.build(p) == p.to_state()  # and on the build after (a reused state is still right)


def test_every_field_a_program_state_reads_is_seen_after_the_first_build() -> None:
    """The same for a program's own fields, at the root and in a nested program; its custom data is
    copied by a hook, so a change inside it shows although the dict is the same object."""
    b = StateBuilder()
    p = Outer()
    inner = p.qa
    b.build(p)
    changes = [
        lambda: p.configuration.__setitem__("lm", "gpt"),
        lambda: setattr(p, "configuration", {"lm": "other"}),
        lambda: p.metadata.__setitem__("run", 3),
        lambda: setattr(p, "metadata", {}),
        lambda: setattr(p, "custom_data", {"seen": [1]}),
        lambda: p.custom_data["seen"].append(2),               # inside the same dict
        lambda: inner.configuration.__setitem__("depth", 2),   # the nested program
        lambda: inner.metadata.__setitem__("x", None),
        lambda: object.__setattr__(inner, "__class__", ds.Program),
        lambda: object.__setattr__(p, "_unknown", {"future_field": 1}),
        lambda: p._unknown.__setitem__("future_field", 2),
        lambda: delattr(p, "qa"),                               # a nested program gone (its shell dropped)
    ]
    for change in changes:
        change()
        assert b.build(p) == p.to_state()
        assert b.build(p) == p.to_state()
    assert "qa." not in b._shells


def test_a_state_built_earlier_is_never_changed_by_a_later_build() -> None:
    """Each build returns new dicts (the reused parts are copied into them), so a state a caller holds
    stays what it was built as."""
    import copy

    b = StateBuilder()
    p = sample_program()
    first = b.build(p)
    kept = copy.deepcopy(first)
    p.extra = ds.Predict("a -> b")
    p.answer.demos.append(ds.Example(question="q", answer="a"))
    second = b.build(p)
    assert second is not first and second["modules"][1] is not first["modules"][1]
    assert first == kept
    assert second == p.to_state()


class SeesChildren(ds.Program):
    """Custom data computed from the children: must be asked with the children in place."""

    __desiru_name__ = "tests.SeesChildren"

    def __init__(self) -> None:
        super().__init__()
        self.m = ds.Predict("a -> b")

    def custom_serialization(self) -> Any:
        return sorted(self._children())


def test_custom_data_is_asked_with_the_children_in_place(tmp_path: Any) -> None:
    p = SeesChildren()
    b = StateBuilder()
    assert b.build(p) == p.to_state() and b.build(p)["custom_data"] == ["m"]
    from desiru.journal import Journal

    with Journal.open(tmp_path / "j.journal") as j:
        j.commit(p)
        assert j.commit(p).events == ()  # nothing changed: nothing written


class ComputedParameters(ds.Predict):
    """``parameters`` is a property: what it gives can change with no dict of it changing."""

    __desiru_name__ = "tests.ComputedParameters"

    @property  # type: ignore[override]
    def parameters(self) -> dict[str, Any]:
        return {"temperature": self.__dict__.get("t", 0.0)}

    @parameters.setter
    def parameters(self, value: dict[str, Any]) -> None:
        self.__dict__["parameters"] = value


def test_a_class_that_computes_what_to_state_reads_is_asked_every_time() -> None:
    p = ds.Program()
    p.m = ComputedParameters("a -> b")
    b = StateBuilder()
    assert b.build(p) == p.to_state()
    p.m.__dict__["t"] = 0.5
    assert b.build(p) == p.to_state()
    # a registered name changed on the class: the class is the same object, its name is not
    p.n = ds.Predict("c -> d")
    b.build(p)

    class Renamed(ds.Predict):
        __desiru_name__ = "tests.Renamed"

    p.n.__class__ = Renamed
    assert b.build(p) == p.to_state()
    Renamed.__desiru_name__ = "tests.RenamedAgain"
    assert b.build(p) == p.to_state()
