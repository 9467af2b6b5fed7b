"""The demo run behind ``desiru demo``: an optimization streamed into a journal, end to end.

It builds a realistic multi-module QA program (query rewriting, retrieval, chain-of-
thought answering and a nested verifier), then runs a simulated optimization in the
style of a random search over few-shot demos, instructions and LM parameters. The LM is
:class:`desiru.ScriptedLM`: it answers from a small knowledge base and gets more answers
right when the program has better instructions, relevant demos and a lower temperature, so
the metric has something real to optimize and the run is deterministic for a seed.
Every trial is committed to a journal; the best trial is tagged, replayed from the
journal, saved as json and as msgpack+zstd, loaded back and run.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import desiru as ds
from desiru.errors import DesiruError
from desiru.lm import current_lm

JOURNAL_NAME = "qa.journal"

# -- the program -----------------------------------------------------------------------------------


class Verifier(ds.Program):
    """A nested program: checks an answer against the context and cites the supporting line."""

    __desiru_name__ = "desiru.demo.Verifier"

    def __init__(self) -> None:
        super().__init__()
        self.check = ds.Predict("question, context, answer -> verdict", temperature=0.0)
        self.cite = ds.Predict("context, answer -> citation", temperature=0.0, max_tokens=64)

    def forward(self, question: str, context: str, answer: str) -> ds.Prediction:
        verdict = self.check(question=question, context=context, answer=answer).verdict
        citation = self.cite(context=context, answer=answer).citation
        return ds.Prediction(verdict=verdict, citation=citation)


class ResearchQA(ds.Program):
    """Rewrite the question into a search query, retrieve context, reason to an answer, verify it."""

    __desiru_name__ = "desiru.demo.ResearchQA"

    def __init__(self) -> None:
        super().__init__()
        self.rewrite = ds.Predict(ds.Signature("question -> search_query",
                                               "Rewrite the question as a short search query."),
                                  temperature=0.0, max_tokens=64)
        self.retrieve = ds.Predict(ds.Signature("search_query -> context",
                                                "Return the passage that answers the query."),
                                   temperature=0.0, k=3)
        self.answer = ds.ChainOfThought(ds.Signature("question, context -> answer", INSTRUCTIONS[0][0]),
                                        temperature=1.0, max_tokens=256)
        self.verify = Verifier()
        self.configuration = {"optimizer": "random-search", "metric": "exact_match"}

    def forward(self, question: str) -> ds.Prediction:
        query = self.rewrite(question=question).search_query
        context = self.retrieve(search_query=query).context
        pred = self.answer(question=question, context=context)
        check = self.verify(question=question, context=context, answer=pred.answer)
        return ds.Prediction(answer=pred.answer, reasoning=pred.reasoning, context=context,
                             verdict=check.verdict, citation=check.citation)


#: candidate instructions for the answer step, with how much they help the simulated LM
INSTRUCTIONS: list[tuple[str, float]] = [
    ("Answer the question.", 0.00),
    ("Answer the question using the context.", 0.06),
    ("Read the context carefully, then answer with a single word or number.", 0.12),
    ("Think step by step: find the sentence of the context that answers the question, "
     "then give only the answer, with no extra words.", 0.18),
    ("Answer from memory; the context may be wrong.", -0.10),
    ("Use the context. If the question asks for a capital, answer with the city name; for a sum, the number; "
     "for a symbol, the chemical symbol.", 0.22),
]
TEMPERATURES = [0.0, 0.2, 0.5, 0.7, 1.0]
MAX_TOKENS = [128, 256, 512]

# -- the data ----------------------------------------------------------------------------------------
CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
    "Norway": "Oslo", "Egypt": "Cairo", "Chile": "Santiago", "Vietnam": "Hanoi", "Poland": "Warsaw",
    "Ghana": "Accra", "Cuba": "Havana", "Nepal": "Kathmandu", "Spain": "Madrid", "Italy": "Rome",
    "Greece": "Athens", "Austria": "Vienna", "Ireland": "Dublin", "Portugal": "Lisbon", "Hungary": "Budapest",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Turkey": "Ankara", "Iran": "Tehran", "Mongolia": "Ulaanbaatar",
    "Senegal": "Dakar", "Bolivia": "Sucre", "Australia": "Canberra", "Thailand": "Bangkok", "Morocco": "Rabat",
}
SYMBOLS = {
    "gold": "Au", "silver": "Ag", "iron": "Fe", "sodium": "Na", "potassium": "K", "lead": "Pb", "tin": "Sn",
    "copper": "Cu", "mercury": "Hg", "tungsten": "W", "helium": "He", "neon": "Ne", "carbon": "C",
    "oxygen": "O", "zinc": "Zn", "nickel": "Ni", "calcium": "Ca", "silicon": "Si", "sulfur": "S", "argon": "Ar",
}


def make_dataset(n: int, rng: random.Random) -> list[ds.Example]:
    """``n`` questions with gold answers: capitals, chemical symbols and sums."""
    out = []
    for _ in range(n):
        kind = rng.randrange(3)
        if kind == 0:
            country = rng.choice(sorted(CAPITALS))
            q, a = f"What is the capital of {country}?", CAPITALS[country]
            context = f"{CAPITALS[country]} is the capital of {country}."
        elif kind == 1:
            element = rng.choice(sorted(SYMBOLS))
            q, a = f"What is the chemical symbol of {element}?", SYMBOLS[element]
            context = f"The chemical symbol of {element} is {SYMBOLS[element]}."
        else:
            x, y = rng.randrange(2, 99), rng.randrange(2, 99)
            q, a = f"What is {x} + {y}?", str(x + y)
            context = f"{x} plus {y} equals {x + y}."
        out.append(ds.Example(question=q, context=context, answer=a).with_inputs("question"))
    return out


# -- the simulated LM ------------------------------------------------------------------------------
_FIELD = re.compile(r"^([A-Z][A-Za-z ]*): (.*)$", re.MULTILINE)


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from its arguments (the LM's 'dice')."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _lookup(text: str) -> tuple[str, str] | None:
    """(context sentence, answer) for a question or query the knowledge base knows."""
    for country, city in CAPITALS.items():
        if country.lower() in text.lower():
            return f"{city} is the capital of {country}.", city
    for element, symbol in SYMBOLS.items():
        if re.search(rf"\b{element}\b", text.lower()):
            return f"The chemical symbol of {element} is {symbol}.", symbol
    m = re.search(r"(\d+)\s*(?:\+|plus)\s*(\d+)", text)
    if m:
        x, y = int(m.group(1)), int(m.group(2))
        return f"{x} plus {y} equals {x + y}.", str(x + y)
    return None


def _wrong(answer: str, salt: str) -> str:
    """A plausible wrong answer of the same kind."""
    if answer.isdigit():
        return str(int(answer) + (1 if _unit(salt) < 0.5 else -1) * (1 + int(_unit(salt, 2) * 9)))
    pool = sorted(CAPITALS.values()) if answer in CAPITALS.values() else sorted(SYMBOLS.values())
    return pool[int(_unit(salt) * len(pool)) % len(pool)] if pool else answer


def _kind(text: str) -> str:
    """Which kind of question a prompt section is about."""
    if "capital of" in text:
        return "capital"
    if "chemical symbol" in text:
        return "symbol"
    return "sum"


def simulated_lm(prompt: str, **params: Any) -> str:
    """Reply like an LM would to a desiru prompt; accuracy depends on instructions, demos and temperature."""
    sections = prompt.split("\n\n---\n\n")
    instructions, current = sections[0], sections[-1]
    n_demos = max(0, len(sections) - 3)
    inputs = dict(_FIELD.findall(current))
    if current.rstrip().endswith("Search Query:"):
        q = inputs.get("Question", "")
        return re.sub(r"^(what|who|which) is (the )?", "", q.lower()).rstrip("?")
    if current.rstrip().endswith("Context:"):
        found = _lookup(inputs.get("Search Query", ""))
        return found[0] if found else "No passage found."
    if "Let's think step by step" in current.rsplit("\n", 1)[-1]:
        question, context = inputs.get("Question", ""), inputs.get("Context", "")
        found = _lookup(question)
        gold = found[1] if found else "unknown"
        # demos of the same kind of question help most; instructions and a low temperature help too
        kinds = [_kind(section) for section in sections[2:-1]]
        relevant = min(3, kinds.count(_kind(current)))
        bonus = dict(INSTRUCTIONS).get(instructions, 0.0)
        temperature = float(params.get("temperature", 0.0) or 0.0)
        skill = (0.34 + bonus + 0.09 * relevant + 0.01 * min(len(kinds) - relevant, 5) - 0.2 * temperature
                 + (0.05 if gold in context else -0.15))
        right = _unit(question, instructions, n_demos, temperature) < min(skill, 0.97)
        answer = gold if right else _wrong(gold, question + instructions)
        return f"the context says: {context} So the answer is {answer}.\nAnswer: {answer}"
    if current.rstrip().endswith("Verdict:"):
        supported = inputs.get("Answer", "") and inputs.get("Answer", "") in inputs.get("Context", "")
        return "supported" if supported else "unsupported"
    if current.rstrip().endswith("Citation:"):
        return inputs.get("Context", "")
    raise DesiruError("the demo's simulated LM met a prompt it does not know", hint=current[-200:])


def scripted_lm() -> ds.ScriptedLM:
    """A ScriptedLM running :func:`simulated_lm`, which also sees the call's parameters (temperature)."""
    lm: ds.ScriptedLM

    def script(prompt: str) -> str:
        return simulated_lm(prompt, **lm.calls[-1][1])  # ScriptedLM records the call before replying

    lm = ds.ScriptedLM(script)
    return lm


def exact_match(example: ds.Example, pred: ds.Prediction) -> float:
    """1.0 when the predicted answer equals the gold answer, ignoring case and spaces."""
    return float(str(pred.answer).strip().lower() == str(example.answer).strip().lower())


def evaluate(program: ResearchQA, devset: list[ds.Example]) -> float:
    """Mean exact match of ``program`` over ``devset``."""
    return sum(exact_match(ex, program(question=ex.question)) for ex in devset) / max(1, len(devset))


# -- the optimizer ---------------------------------------------------------------------------------
def _answer_demo(ex: ds.Example) -> dict[str, Any]:
    return {"question": ex.question, "context": ex.context,
            "reasoning": f"the context says: {ex.context} So the answer is {ex.answer}.", "answer": ex.answer}


def mutate(program: ResearchQA, trainset: list[ds.Example], rng: random.Random, trial: int) -> list[str]:
    """Change a copy of the best program the way optimizers do; returns what was changed."""
    changes = []
    for _ in range(rng.randint(1, 3)):
        move = rng.choices(["add", "drop", "instructions", "temperature", "max_tokens", "rewrite_demo", "shuffle"],
                           weights=[5, 2, 2, 2, 1, 1, 1])[0]
        answer = program.answer
        if move == "add" and len(answer.demos) < 8:
            ex = rng.choice(trainset)
            answer.demos.insert(rng.randint(0, len(answer.demos)), ds.Example(_answer_demo(ex)))
            changes.append("answer: +demo")
        elif move == "drop" and answer.demos:
            del answer.demos[rng.randrange(len(answer.demos))]
            changes.append("answer: -demo")
        elif move == "instructions":
            text = rng.choice(INSTRUCTIONS)[0]
            answer.signature = answer.signature.with_instructions(text)
            changes.append("answer: instructions")
        elif move == "temperature":
            answer.parameters["temperature"] = rng.choice(TEMPERATURES)
            changes.append(f"answer: temperature={answer.parameters['temperature']}")
        elif move == "max_tokens":
            answer.parameters["max_tokens"] = rng.choice(MAX_TOKENS)
            changes.append(f"answer: max_tokens={answer.parameters['max_tokens']}")
        elif move == "rewrite_demo" and len(program.rewrite.demos) < 4:
            ex = rng.choice(trainset)
            program.rewrite.demos.append(ds.Example(question=ex.question,
                                                    search_query=ex.question.lower().rstrip("?")))
            changes.append("rewrite: +demo")
        elif move == "shuffle" and len(answer.demos) > 1:
            rng.shuffle(answer.demos)
            changes.append("answer: demos reordered")
    return changes or ["no change"]


@dataclass
class Trial:
    """One candidate of the search."""

    number: int
    seq: int
    score: float
    best: bool
    changes: list[str]


@dataclass
class DemoReport:
    """What the demo did: the journal, the trials, the files it wrote and how long each step took."""

    directory: Path
    journal: Path
    trials: list[Trial] = field(default_factory=list)
    #: the best trials as the journal's run index lists them (desiru.journal.Trial, best first)
    top: list[Any] = field(default_factory=list)
    baseline_score: float = 0.0
    best_score: float = 0.0
    best_trial: int = 0
    best_seq: int = 0
    events: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    answers: list[tuple[str, str, str]] = field(default_factory=list)
    lm_calls: int = 0
    commits: int = 0
    journal_ok: bool = False
    replay_matches: bool = False
    loads_match: bool = False


def _timed(report: DemoReport, name: str) -> Callable[[], None]:
    start = time.perf_counter()

    def done() -> None:
        report.timings[name] = time.perf_counter() - start

    return done


def check_folder(directory: str | os.PathLike[str], *, force: bool = False) -> None:
    """Raise, before any work, when ``directory`` holds an earlier demo (without ``force``) or a
    ``qa.journal`` that is not a journal (never removed)."""
    from desiru.journal import is_journal

    journal_path = Path(directory) / JOURNAL_NAME
    if os.path.lexists(journal_path):
        if not force:
            raise DesiruError("a demo journal is already here", path=journal_path,
                              hint="pass --force to start over, or give another folder")
        if not is_journal(journal_path):
            raise DesiruError("exists and is not a desiru journal; not removing it", path=journal_path)


def run_demo(
    directory: str | os.PathLike[str],
    *,
    trials: int = 200,
    train: int = 64,
    dev: int = 24,
    seed: int = 0,
    force: bool = False,
    on_trial: Callable[[Trial], None] | None = None,
) -> DemoReport:
    """Run the whole demo in ``directory`` and return what it did (nothing is printed here)."""

    if trials < 1 or dev < 1 or train < 1:
        raise DesiruError("trials, train and dev must be at least 1")
    check_folder(directory, force=force)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    journal_path = folder / JOURNAL_NAME
    if journal_path.exists():
        import shutil

        shutil.rmtree(journal_path)
    try:  # the demo configures its own LM; the caller's comes back when it is done
        previous: tuple[Any, dict[str, Any]] | None = current_lm()
    except DesiruError:
        previous = None
    lm = scripted_lm()
    ds.configure(lm=lm)
    try:
        return _run(folder, journal_path, lm, trials=trials, train=train, dev=dev, seed=seed, on_trial=on_trial)
    finally:
        if previous is None:
            ds.configure(lm=None)
        else:
            ds.configure(previous[0], **previous[1])


def _run(folder: Path, journal_path: Path, lm: ds.ScriptedLM, *, trials: int, train: int, dev: int, seed: int,
         on_trial: Callable[[Trial], None] | None) -> DemoReport:
    from desiru.journal import Journal

    report = DemoReport(folder, journal_path)
    rng = random.Random(seed)
    trainset, devset = make_dataset(train, rng), make_dataset(dev, rng)

    done = _timed(report, "optimize")
    program = ResearchQA()
    best, best_score = program, evaluate(program, devset)
    report.baseline_score = best_score
    commit_time = 0.0
    with Journal.open(journal_path, fsync="batch") as j:
        # every trial is a commit derived from the best so far, its score and choices stored beside it
        # (never in the program); "best" moves to each better trial
        base = j.commit(program, tag="baseline", score=best_score, params={"trial": 0})
        j.tag("best", base)
        report.best_seq = base.seq
        report.commits = 1
        for n in range(1, trials + 1):
            candidate = best.copy()
            changes = mutate(candidate, trainset, rng, n)
            score = evaluate(candidate, devset)
            better = score > best_score
            t0 = time.perf_counter()
            result = j.commit(candidate, parent=report.best_seq, score=score,
                              params={"trial": n, "changes": list(changes)})
            if better:
                j.tag("best", result, move=True)
            commit_time += time.perf_counter() - t0
            report.commits += 1
            if better:
                best, best_score = candidate, score
                report.best_trial, report.best_seq = n, result.seq
            report.lm_calls += len(lm.calls)
            lm.calls.clear()  # the scripted LM records every prompt; keep memory flat
            trial = Trial(n, result.seq, score, better, changes)
            report.trials.append(trial)
            if on_trial is not None:
                on_trial(trial)
        report.events = j.head
    report.best_score = best_score
    done()
    report.timings["of which journal commits"] = commit_time

    done = _timed(report, "replay")
    with Journal.open(journal_path, readonly=True) as j:
        replayed = j.replay(tag="best")
    done()
    report.replay_matches = replayed == best

    done = _timed(report, "save json")
    saved = replayed.save(folder / "best.json")
    done()
    report.files["json"], report.sizes["json"] = saved.path, saved.size
    done = _timed(report, "save msgpack+zstd")
    saved = replayed.save(folder / "best.msgpack", compress="zstd")
    done()
    report.files["msgpack+zstd"], report.sizes["msgpack+zstd"] = saved.path, saved.size

    done = _timed(report, "load json")
    from_json = ResearchQA.load(report.files["json"])
    done()
    done = _timed(report, "load msgpack+zstd")
    from_msgpack = ds.load(report.files["msgpack+zstd"])
    done()
    report.loads_match = from_json == replayed and from_msgpack == replayed

    done = _timed(report, "forward")
    for ex in devset[:3]:
        pred = from_msgpack(question=ex.question)
        report.answers.append((ex.question, str(pred.answer), str(ex.answer)))
    done()
    done = _timed(report, "verify journal")
    with Journal.open(journal_path, readonly=True) as j:
        report.journal_ok = j.verify().ok
        report.sizes["journal"] = j.size()
    done()
    with Journal.open(journal_path, readonly=True) as j:
        report.top = j.best(k=5)
    return report
