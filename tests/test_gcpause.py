"""desiru.gcpause: the cyclic collector is off while a large tree is built, and comes back as it was."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import desiru as ds
from desiru import gcpause


def test_paused_restores_an_enabled_collector_and_nests() -> None:
    assert gc.isenabled()
    with gcpause.paused():
        assert not gc.isenabled()
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_paused_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with gcpause.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_inside_still_restores_the_collector() -> None:
    try:
        with gcpause.paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_end_with_the_collector_on() -> None:
    inside = threading.Barrier(4)

    def work() -> None:
        with gcpause.paused():
            inside.wait(timeout=10)
            assert not gc.isenabled()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled()


def test_a_load_runs_with_the_collector_paused_and_restores_it(tmp_path: Path) -> None:
    program = ds.Program(answer=ds.Predict("question -> answer",
                                           demos=[{"question": str(i), "answer": str(i)} for i in range(3000)]))
    program.save(tmp_path / "p.msgpack")
    before = gc.get_stats()[0]["collections"]
    loaded = ds.load(tmp_path / "p.msgpack")
    # 3,000 demos (lists and Example objects) trigger several generation-0 collections unpaused; paused,
    # one runs as the collector comes back
    assert gc.get_stats()[0]["collections"] - before <= 1
    assert loaded == program and gc.isenabled()
    gc.disable()
    try:  # the same load unpaused, by hand: the check above can fail
        before = gc.get_stats()[0]["collections"]
        gc.enable()
        program.from_state(program.to_state())
        assert gc.get_stats()[0]["collections"] - before > 1
    finally:
        gc.enable()
