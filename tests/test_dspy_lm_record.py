"""track(journal, record_lm=True): LM answers kept in the journal (sealed with it) and replayed on resume.

Real dspy with the rule-based LM of tests/rule_lm.py, which counts the requests it answers.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402
from desiru.interop.dspy.lm_record import plain, request_key  # noqa: E402
from desiru.journal import JournalWarning  # noqa: E402
from desiru.journal.events import LMResponseRecorded  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dspy_runs import VAL, Counter, recorded_keys, run  # noqa: E402
from rule_lm import RuleLM  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "dspy_runs.py"
KEY = bytes(range(32))
pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs through BaseLM:DeprecationWarning")


@pytest.fixture(autouse=True)
def rule_lm() -> Any:
    logging.disable(logging.WARNING)
    lm = RuleLM()
    dspy.configure(lm=lm)
    yield lm
    dspy.configure(lm=None, callbacks=[])
    logging.disable(logging.NOTSET)


def evaluate(program: Any, devset: list[Any] = VAL) -> float:
    return dspy.Evaluate(devset=devset, metric=Counter(), num_threads=1)(program).score


def journal_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file())


# -- the request key -------------------------------------------------------------------------------
def test_request_key_covers_what_changes_the_answer(rule_lm: RuleLM) -> None:
    messages = [{"role": "user", "content": "What is 1 + 2?"}]
    base = request_key(rule_lm, None, messages, {})
    assert base == request_key(rule_lm, None, [dict(reversed(messages[0].items()))], {})  # order of keys
    assert base == request_key(rule_lm, None, messages, {"api_key": "sk-x", "api_base": "http://x", "num_retries": 9})
    assert base == request_key(rule_lm, None, messages, {"temperature": 0.0})  # the LM's own default
    changed = [request_key(rule_lm, None, messages, {"temperature": 0.7}),
               request_key(rule_lm, None, messages, {"n": 3}),
               request_key(rule_lm, None, messages, {"rollout_id": 1}),
               request_key(rule_lm, "What is 1 + 2?", None, {}),
               request_key(rule_lm, None, [{"role": "user", "content": "What is 1 + 3?"}], {}),
               request_key(rule_lm.copy(model="rules/other"), None, messages, {})]
    assert len({base, *changed}) == 1 + len(changed)


def test_plain_accepts_json_values_only() -> None:
    assert plain(["text", {"text": "x", "logprobs": [0.5, None], "ok": True}])
    assert not plain([object()]) and not plain({1: "x"}) and not plain(("a",)) and not plain([b"x"])

    class Score(float):
        """A float subclass (as numpy's floats are): not stored as it is."""

    assert not plain([Score(0.5)])


# -- recording and replay in one process ---------------------------------------------------------------
def test_recorded_answers_replay_on_resume_only(tmp_path: Path, rule_lm: RuleLM) -> None:
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(tmp_path / "run.journal") as j:
        with dd.track(j, run="r", record_lm=True) as tracker:
            first = evaluate(program)
            first_four = evaluate(program, VAL[:4])
        assert rule_lm.calls == len(VAL) + 4 and tracker.stats["lm_calls"] == len(VAL) + 4
        assert tracker.stats["lm_recorded"] == len(VAL)  # the four repeated requests were recorded once
        events = [e for e in j.events() if isinstance(e, LMResponseRecorded)]
        assert len(events) == len(VAL) == len({e.payload["key"] for e in events})
        assert all(e.payload["model"] == "rules/arith" and plain(e.payload["outputs"]) for e in events)
        assert "## completed ##" in events[0].payload["outputs"][0]
        with dd.track(j, run="r", record_lm=True) as tracker:  # not resuming: the LM answers, nothing is added
            assert evaluate(program) == first
        assert rule_lm.calls == 2 * len(VAL) + 4 and tracker.stats["lm_recorded"] == 0
        assert len(recorded_keys(j.path)) == len(VAL)
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            again = dspy.Predict("question -> answer")
            assert evaluate(again, VAL[:4]) == first_four  # its LM answers come from the journal
            assert evaluate(program, VAL[:4]) == first_four  # the same state: the whole evaluation does
            assert program(question="What is 40 + 2?").answer == "43"  # a new request: the LM answers it
        assert rule_lm.calls == 2 * len(VAL) + 5
        assert tracker.stats["lm_replayed"] == 4 and tracker.stats["resumed"] == 1
        assert tracker.stats["lm_recorded"] == 1
        assert tracker.errors == []


def test_without_a_recording_tracker_the_lm_is_called_as_usual(tmp_path: Path, rule_lm: RuleLM) -> None:
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(tmp_path / "run.journal") as j:
        with dd.track(j, run="r", resume=True, record_lm=True):
            evaluate(program, VAL[:3])
        calls = rule_lm.calls
        evaluate(program, VAL[:3])  # the wrapper stays installed, but no tracker is active
        with dd.track(j, run="r", resume=True):  # a tracker that does not record LM answers
            program(question=VAL[0].question)
        assert rule_lm.calls == calls + 4
        assert len(recorded_keys(j.path)) == 3


def test_async_calls_replay_too(tmp_path: Path, rule_lm: RuleLM) -> None:
    prompt = "What is 1 + 3?"
    with ds.Journal.open(tmp_path / "run.journal") as j:
        with dd.track(j, run="r", record_lm=True):
            outputs = rule_lm(prompt)
        assert outputs == ["[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"]
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            assert asyncio.run(rule_lm.acall(prompt)) == outputs  # RuleLM has no async path itself
        assert rule_lm.calls == 1 and tracker.stats["lm_replayed"] == 1


class CountingEngine:
    """A dspy lm15 engine (what dspy.LM(engine=...) calls): echoes the last message, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.calls += 1
        text = f"echo: {request.messages[-1].text}"
        return Response(id=None, model="echo", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=1, output_tokens=2, total_tokens=3))


def test_explicit_lm15_requests_replay_as_responses(tmp_path: Path) -> None:
    from dspy.lm15 import Message, Request, Response

    engine = CountingEngine()
    lm = dspy.LM("echo/model", engine=engine, cache=False)
    request = Request(model="echo/model", messages=(Message.user("hello"),))
    with ds.Journal.open(tmp_path / "run.journal") as j:
        with dd.track(j, run="r", record_lm=True) as tracker:
            first = lm(request)
            lm(Request(model="echo/model", messages=(Message.user("other"),)))
        assert tracker.stats["lm_recorded"] == 2 and engine.calls == 2
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            again = lm(request=request)  # the same request, by keyword
        assert engine.calls == 2 and tracker.stats["lm_replayed"] == 1
        assert isinstance(again, Response) and again == first and again.text == "echo: hello"
        (event, _) = [e for e in j.events() if isinstance(e, LMResponseRecorded)]
        assert plain(event.payload["outputs"]) and "lm15.Response" in event.payload["outputs"]


def test_what_is_not_plain_json_is_left_to_the_lm(tmp_path: Path, rule_lm: RuleLM) -> None:
    class Odd(RuleLM):
        def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
            response = super().forward(prompt=prompt, messages=messages, **kwargs)
            response.choices[0].logprobs = object()  # an answer that is not JSON
            return response

    odd = Odd()
    with ds.Journal.open(tmp_path / "run.journal") as j:
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            for _ in range(2):
                rule_lm("What is 1 + 1?", unserializable=object())  # a request that is not JSON
                odd("What is 1 + 1?", logprobs=True)  # an answer that is not JSON
        assert rule_lm.calls == odd.calls == 2
        assert tracker.stats["lm_unrecorded"] == 4 and tracker.stats["lm_recorded"] == 0
        assert recorded_keys(j.path) == []


def test_journal_errors_leave_the_lm_call_alone(tmp_path: Path, rule_lm: RuleLM) -> None:
    j = ds.Journal.open(tmp_path / "run.journal")
    tracker = dd.track(j, run="r", resume=True, record_lm=True)
    j.close()
    with pytest.warns(JournalWarning, match="could not use recorded LM answers"), tracker:
        answer = dspy.Predict("question -> answer")(question="What is 1 + 1?").answer
    assert answer == "2" and rule_lm.calls == 1
    assert tracker.errors and all(isinstance(e, ds.DesiruError) for e in tracker.errors)


def test_record_lm_takes_a_bool(tmp_path: Path) -> None:
    with ds.Journal.open(tmp_path / "run.journal") as j, pytest.raises(ds.DesiruError, match="record_lm"):
        dd.track(j, record_lm="yes")  # type: ignore[arg-type]


# -- encryption ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_answers_are_sealed_with_the_journal(tmp_path: Path, rule_lm: RuleLM, key: bytes | None) -> None:
    path = tmp_path / "run.journal"
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(path, key=key) as j, dd.track(j, run="r", record_lm=True):
        score = evaluate(program)
    data = journal_bytes(path)
    answer = rule_lm.answer([{"role": "user", "content": VAL[3].question}]).encode()
    words = [b"## completed ##", b"rules/arith", b"LMResponseRecorded"]
    if key is None:  # the check can fail: a plain journal holds the answers as they are
        assert all(w in data for w in words)
    else:
        assert not any(w in data for w in [*words, answer, VAL[3].question.encode()])
        with ds.Journal.open(path, key=key) as j, dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            assert evaluate(dspy.Predict("question -> answer")) == score
        assert tracker.stats["lm_replayed"] == len(VAL) and rule_lm.calls == len(VAL)


# -- resume after SIGKILL --------------------------------------------------------------------------------
def run_script(name: str, journal: Path, kill_at: int = 0) -> dict[str, Any] | None:
    """The tracked run in a fresh process (None: SIGKILLed at metric call ``kill_at``, as asked)."""
    return run([name, str(journal), str(kill_at), "lm"])


@pytest.mark.parametrize("name", ["rs", "mipro", "gepa"])
def test_resumed_run_calls_the_lm_only_for_requests_never_recorded(tmp_path: Path, name: str) -> None:
    full = run_script(name, tmp_path / "full.journal")
    assert full is not None
    everything = recorded_keys(tmp_path / "full.journal")
    # each distinct request went to the LM once and was recorded once (a repeat is answered from the journal)
    assert full["lm_calls"] == full["stats"]["lm_recorded"] == len(everything) == len(set(everything))
    crashed = tmp_path / "crashed.journal"
    run_script(name, crashed, kill_at=full["metric_calls"] // 2)  # SIGKILL in the middle of the run
    before = recorded_keys(crashed)
    assert 0 < len(before) < len(everything) and set(before) <= set(everything)
    resumed = run_script(name, crashed)
    assert resumed is not None
    # the LM answered exactly the requests the crashed run never recorded; the rest came from the journal
    assert resumed["lm_calls"] == len(set(everything) - set(before)) == resumed["stats"]["lm_recorded"]
    assert resumed["stats"]["lm_replayed"] > 0
    assert set(recorded_keys(crashed)) == set(everything)
    # and the run ends as the uninterrupted one did
    assert (resumed["best_score"], resumed["best_hash"]) == (full["best_score"], full["best_hash"])
    assert resumed["best_is_compiled"]
    again = run_script(name, crashed)  # everything recorded: the LM is not called at all
    assert again is not None and again["lm_calls"] == 0
    assert (again["best_score"], again["best_hash"]) == (full["best_score"], full["best_hash"])


# -- compaction and the other rewrites keep the answers ---------------------------------------------------
def commit_program(j: ds.Journal, program: Any, n: int) -> None:
    """``n`` commits of ``program`` (a changed demo each), so a snapshot can be taken after them."""
    for _ in range(n):
        i = len(program.demos) + 1
        program.demos = [*program.demos, dspy.Example(question=f"What is {i} + 1?", answer=str(i + 1))]
        j.commit(program)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_answers_survive_compaction_and_replay_after_reopen(tmp_path: Path, rule_lm: RuleLM,
                                                            key: bytes | None) -> None:
    path = tmp_path / "run.journal"
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(path, key=key) as j:
        commit_program(j, program, 2)
        with dd.track(j, run="r", record_lm=True):
            score = evaluate(dspy.Predict("question -> answer"))
        commit_program(j, program, 2)
        floor = j.snapshot()
        assert j.compact() > 0
        assert j.store.first_seq() > floor  # the log before the snapshot is gone
    assert rule_lm.calls == len(VAL)
    if key is not None:  # carried over sealed as before: nothing of them in the journal's bytes
        data = journal_bytes(path)
        assert not any(w in data for w in [b"## completed ##", b"rules/arith", b"LMResponseRecorded"])
    with ds.Journal.open(path, key=key) as j, dd.track(j, run="r", resume=True, record_lm=True) as tracker:
        assert evaluate(dspy.Predict("question -> answer")) == score
    assert rule_lm.calls == len(VAL), "the resumed run asked the LM again for answers it had recorded"
    assert tracker.stats["lm_replayed"] == len(VAL) and tracker.errors == []
    keys = recorded_keys_with(path, key)
    assert len(keys) == len(set(keys)) == len(VAL)  # each answer once


def recorded_keys_with(path: Path, key: bytes | None) -> list[str]:
    with ds.Journal.open(path, key=key, readonly=True) as j:
        return [e.payload["key"] for e in j.events() if e.type == "LMResponseRecorded"]


def answers(program: Any) -> list[str]:
    """The program's answers to VAL, asked one by one (not through Evaluate, which a resumed tracker
    may answer from its recorded score without running the program)."""
    return [program(question=e.question).answer for e in VAL]


def test_a_live_tracker_finds_its_answers_after_compaction(tmp_path: Path, rule_lm: RuleLM) -> None:
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(tmp_path / "run.journal") as j:
        commit_program(j, program, 1)
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            first = answers(dspy.Predict("question -> answer"))
            commit_program(j, program, 1)
            j.snapshot()
            assert j.compact() > 0  # under the tracker's index, built before
            assert answers(dspy.Predict("question -> answer")) == first
            commit_program(j, program, 1)
            j.snapshot()
            assert j.compact() > 0  # again: the answers moved once are moved once more, not doubled
            assert answers(dspy.Predict("question -> answer")) == first
        assert rule_lm.calls == len(VAL) and tracker.stats["lm_replayed"] == 2 * len(VAL)
        assert tracker.stats["lm_recorded"] == len(VAL) and tracker.errors == []
        keys = [e.payload["key"] for e in j.events() if isinstance(e, LMResponseRecorded)]
        assert len(keys) == len(set(keys)) == len(VAL)


def test_a_crash_between_carrying_and_dropping_leaves_each_answer_once_more(tmp_path: Path, rule_lm: RuleLM,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.journal"
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(path) as j:
        commit_program(j, program, 1)
        with dd.track(j, run="r", record_lm=True):
            score = evaluate(dspy.Predict("question -> answer"))
        commit_program(j, program, 1)
        head = j.snapshot()

        def crash(seq: int) -> int:
            raise OSError("simulated crash before the log is dropped")

        monkeypatch.setattr(j.store, "drop_before", crash)
        with pytest.raises(OSError, match="simulated crash"):
            j.compact()
        monkeypatch.undo()
    with ds.Journal.open(path) as j:  # opens; the answers are there twice, the program replays as it was
        keys = [e.payload["key"] for e in j.events() if isinstance(e, LMResponseRecorded)]
        assert len(keys) == 2 * len(VAL) and len(set(keys)) == len(VAL)
        assert j.replay_state(seq=head) is not None
        assert j.compact() > 0  # the copies after the snapshot stand: nothing is carried twice
        keys = [e.payload["key"] for e in j.events() if isinstance(e, LMResponseRecorded)]
        assert len(keys) == len(set(keys)) == len(VAL)
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            assert evaluate(dspy.Predict("question -> answer")) == score
    assert rule_lm.calls == len(VAL) and tracker.stats["lm_replayed"] == len(VAL)


def test_copies_and_rewrites_keep_the_answers(tmp_path: Path, rule_lm: RuleLM) -> None:
    from desiru.journal import rekey_journal
    from desiru.journal.copy import copy_journal

    path = tmp_path / "run.journal"
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(path, key=KEY) as j:
        commit_program(j, program, 1)
        with dd.track(j, run="r", record_lm=True):
            score = evaluate(dspy.Predict("question -> answer"))
        commit_program(j, program, 1)
        j.snapshot()
        j.compact()
    copy_journal(path, tmp_path / "copy.journal")  # records move as their sealed bytes
    rekey_journal(tmp_path / "copy.journal", KEY, bytes(range(1, 33)))  # and are sealed again under a new key
    with ds.Journal.open(tmp_path / "copy.journal", key=bytes(range(1, 33))) as j, \
            dd.track(j, run="r", resume=True, record_lm=True) as tracker:
        assert evaluate(dspy.Predict("question -> answer")) == score
    assert rule_lm.calls == len(VAL) and tracker.stats["lm_replayed"] == len(VAL)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_repair_keeps_the_answers_it_can_read_after_the_damage(tmp_path: Path, rule_lm: RuleLM,
                                                               key: bytes | None) -> None:
    from desiru import _engine
    from desiru.journal.file_store import decode_header
    from desiru.journal.repair import repair

    path = tmp_path / "run.journal"
    program = dspy.Predict("question -> answer")
    with ds.Journal.open(path, key=key) as j:
        commit_program(j, program, 1)
        with dd.track(j, run="r", record_lm=True):
            first = [dspy.Predict("question -> answer")(question=e.question).answer for e in VAL[:6]]
            commit_program(j, program, 1)
            damaged = j.head  # the commit between the two halves of the answers
            first += [dspy.Predict("question -> answer")(question=e.question).answer for e in VAL[6:]]
    salt = decode_header((path / "header").read_bytes())[1]["salt"]
    (segment,) = sorted((path / "log").iterdir())
    records, _, _ = _engine.frame_scan(segment.read_bytes(), salt, 0)
    offset, length = next((off, 24 + len(payload)) for seq, off, payload in records if seq == damaged)
    data = bytearray(segment.read_bytes())
    data[offset + length - 1] ^= 0x10  # the last byte of that commit's record
    segment.write_bytes(bytes(data))
    report = repair(path, key=key)
    assert report.lm_answers_kept == len(VAL) - 6 and report.head < damaged + len(VAL) - 6
    with ds.Journal.open(path, key=key) as j:
        assert j.verify().ok
        with dd.track(j, run="r", resume=True, record_lm=True) as tracker:
            assert answers(dspy.Predict("question -> answer")) == first
    assert rule_lm.calls == len(VAL) and tracker.stats["lm_replayed"] == len(VAL)
    without = repair(path, key=key)
    assert not without.changed  # a sound journal: nothing to do, nothing appended again
