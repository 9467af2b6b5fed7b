"""desiru.adapters: objects of another library go through commit, save, checkpoints and replay
without the journal or the model importing that library's adapter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import desiru as ds
from desiru import adapters
from desiru.serialization import IncrementalSerializer


class Recipe:
    """A stand-in for another library's program: named steps, each a list of example dicts."""

    def __init__(self, steps: dict[str, list[dict[str, str]]]) -> None:
        self.steps = steps


def recipe_program(recipe: Recipe) -> ds.Program:
    return ds.Program(**{name: ds.Predict("question -> answer", demos=demos) for name, demos in recipe.steps.items()})


class CountingConverter:
    """Converts a Recipe to a state tree, counting calls (a journal keeps one per adapter)."""

    made = 0

    def __init__(self) -> None:
        CountingConverter.made += 1
        self.calls = 0

    def state(self, obj: Any) -> dict[str, Any]:
        self.calls += 1
        return recipe_program(obj).to_state()


def load_into(program: ds.Program, template: Recipe, *, allow_unsafe_lm_state: bool = False) -> Recipe:
    return Recipe({name: [dict(d) for d in module.demos] for name, module in program.modules.items()})


@pytest.fixture
def recipe_adapter() -> Iterator[adapters.Adapter]:
    adapter = adapters.register(adapters.Adapter(
        name="recipes", label="a recipe", accepts=lambda obj: isinstance(obj, Recipe), to_program=recipe_program,
        converter=CountingConverter, load_into=load_into))
    yield adapter
    adapters._ADAPTERS.pop("recipes", None)


def test_a_journal_commits_an_adapted_object_through_one_converter(tmp_path: Path,
                                                                   recipe_adapter: adapters.Adapter) -> None:
    made = CountingConverter.made
    recipe = Recipe({"answer": [{"question": "2+2", "answer": "4"}]})
    with ds.Journal.open(tmp_path / "r.journal") as j:
        first = j.commit(recipe)
        recipe.steps["answer"].append({"question": "3+3", "answer": "6"})
        second = j.commit(recipe, score=0.5)
        assert CountingConverter.made == made + 1  # one converter for the journal, reused
        assert j.replay(seq=second.seq) == recipe_program(recipe)
        assert len(j.replay(seq=first.seq).get_module("answer").demos) == 1
        assert j.trial(second.seq).score == 0.5
        out = j.replay(seq=second.seq, into=Recipe({}))
        assert isinstance(out, Recipe) and out.steps == recipe.steps


def test_save_and_checkpoints_take_an_adapted_object(tmp_path: Path, recipe_adapter: adapters.Adapter) -> None:
    recipe = Recipe({"answer": [{"question": "q", "answer": "a"}]})
    ds.Program.save(recipe, tmp_path / "r.json")
    assert ds.load(tmp_path / "r.json") == recipe_program(recipe)
    ck = IncrementalSerializer(tmp_path / "ck")
    ck.save_checkpoint(recipe, tag="one")
    assert ck.load_checkpoint(tag="one") == recipe_program(recipe)


def test_an_object_no_adapter_takes_is_refused_with_what_is_accepted(tmp_path: Path,
                                                                     recipe_adapter: adapters.Adapter) -> None:
    with ds.Journal.open(tmp_path / "r.journal") as j:
        with pytest.raises(ds.SerializationError, match=r"cannot commit a builtins\.dict: expected a desiru "
                                                         r"Program or .*a recipe"):
            j.commit({"not": "a program"})
        p = ds.Program(answer=ds.Predict("question -> answer"))
        j.commit(p)
        with pytest.raises(ds.DesiruError, match="into= must be .*a recipe, got a dict"):
            j.replay(into={})
    with pytest.raises(ds.SerializationError, match="cannot save a builtins.int"):
        ds.Program.save(3, tmp_path / "x.json")  # type: ignore[arg-type]
    assert not (tmp_path / "x.json").exists()


def test_register_takes_only_an_adapter() -> None:
    with pytest.raises(ds.DesiruError, match="takes an Adapter"):
        adapters.register("dspy")  # type: ignore[arg-type]


def test_import_desiru_registers_the_dspy_adapter() -> None:
    assert "dspy" in adapters._ADAPTERS and adapters._ADAPTERS["dspy"].label == "a dspy module"
    assert adapters.find(object()) is None
