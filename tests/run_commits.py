"""A run's commit written straight through ``JournalStore.append_new``, as a shared writer does.

The events are those ``Journal.commit(program, parent=..., score=..., params=...)`` writes
(Committed, the diff against the parent's state, ResultsRecorded), built inside the
store's transaction because they are sealed with the seqs it hands out. Used by the
many-writer tests and benchmarks/bench_postgres.py until a Journal shares a store.
"""

from __future__ import annotations

import time
from typing import Any

from desiru import _engine
from desiru.journal.codec import RecordCodec
from desiru.journal.events import Committed, ResultsRecorded, event_from_edit
from desiru.journal.runs import results_payload
from desiru.journal.state_hash import state_hash
from desiru.journal.store import JournalStore


def commit_run(store: JournalStore, codec: RecordCodec, *, parent: int, parent_state: dict[str, Any] | None,
               state: dict[str, Any], writer: str, score: float | None = None,
               params: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """Append one commit of ``state`` derived from commit ``parent``; (its seq, its content hash)."""
    edits = _engine.diff_states(parent_state, state)
    digest = state_hash(state)
    results = results_payload(score, None, params)

    def make(last: int) -> list[tuple[int, bytes]]:
        ts = time.time()
        events: list[Any] = [Committed(payload={"parent": parent, "hash": digest, "writer": writer}, seq=last + 1,
                                       timestamp=ts)]
        events += [event_from_edit(e, last + 2 + i, ts) for i, e in enumerate(edits)]
        if results is not None:
            events.append(ResultsRecorded(payload=results, seq=last + 1 + len(events), timestamp=ts))
        first, end = events[0].seq, events[-1].seq
        return [(ev.seq, codec.encode_event(ev, first, end)) for ev in events]

    records = store.append_new(make)
    return records[-1][0], digest
