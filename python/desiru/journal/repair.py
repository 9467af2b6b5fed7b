"""Repair a damaged journal: keep the longest sound history, and what after the damage can be kept.

Nothing is deleted: cut bytes and damaged snapshots go to the journal's damaged/
folder. What remains opens, replays and accepts appends.

The log is cut before its first damaged record (at the start of the commit that
holds it). Records after the damage are kept when a snapshot after it anchors
them: the snapshot is bound to its record (docs/FORMAT.md, "Snapshots"), so the
state there is known exactly; one commit that turns the state before the damage
into that state stands in for the lost commits, and the records after the
snapshot follow it, renumbered (their tags move with them). A repair that would
drop a tag (its commit is lost) is refused unless ``force=True``; the report names
every tag dropped or moved. Recorded LM answers (``LMResponseRecorded``, which name no
commit) that can still be read after the damage but are not kept with those records
are appended after them, so a resumed dspy run still replays them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError
from desiru.journal.codec import R_FIRST, R_LAST, R_PAYLOAD, R_TIMESTAMP, R_TYPE, RecordCodec
from desiru.journal.events import CheckpointTagged, LMResponseRecorded, event_from_edit
from desiru.journal.file_store import FileStore, HeaderMismatchError, is_file_journal
from desiru.journal.snapshot_binding import RECORD_HASH
from desiru.journal.store import CutReport, Fault
from desiru.journal.warning import JournalWarning


@dataclass(frozen=True)
class RepairReport:
    """What repair found and did: faults, cuts, snapshots moved aside, tags dropped or moved, records kept."""

    path: str
    head: int
    faults: tuple[Fault, ...] = field(default=())
    cuts: tuple[CutReport, ...] = field(default=())
    snapshots_removed: tuple[int, ...] = field(default=())
    #: tag -> the seq it named, for tags whose commit was cut
    tags_dropped: dict[str, int] = field(default_factory=dict)
    #: tag -> (old seq, new seq), for tags whose commit was kept under a new seq
    tags_moved: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: records after the damage kept (renumbered after the commit that stands in for the lost ones)
    kept_after_damage: int = 0
    #: recorded LM answers read after the damage and appended again (beyond those kept with the records)
    lm_answers_kept: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.cuts or self.snapshots_removed or self.kept_after_damage or self.lm_answers_kept)


def is_journal(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a desiru journal (a directory whose header has the journal magic)."""
    return is_file_journal(path)


def _codec(meta: dict[str, Any], key: Any, name: str) -> RecordCodec | None:
    enc = meta.get("encryption")
    if enc is None:
        return RecordCodec(meta.get("journal_id", b""), None, name)
    if key is None:
        return None  # without the key only the framing can be checked
    from desiru import crypto

    k = crypto.Key.from_user(key, enc.get("kdf"))
    crypto.check_key_id(k, enc.get("key_id", ""), path=name)
    return RecordCodec(meta.get("journal_id", b""), k, name)


def _first_bad(store: FileStore, codec: RecordCodec | None, faults: list[Fault], name: str) -> int | None:
    """The first damaged seq: framing (from ``faults``), seq order, decryption or decoding."""
    log_faults = [f for f in faults if not f.reason.startswith("snapshot") and f.seq is not None]
    bad = min((f.seq for f in log_faults if f.seq is not None), default=None)
    if codec is None:
        return bad
    stop = bad if bad is not None else store.last_seq() + 1
    try:
        for seq, payload in store.read(0, stop):
            try:
                codec.event(codec.decode(seq, payload))
            except DesiruError as exc:
                faults.append(Fault(exc.message, seq=seq, file=name))
                return seq
    except DesiruError as exc:
        if exc.seq is not None:
            bad = exc.seq if bad is None else min(bad, exc.seq)
    return bad


#: payload keys that hold the seq of another commit, per event type (they move with a renumbering)
SEQ_FIELDS = {"Committed": ("parent",), "ResultsRecorded": ("commit",), CheckpointTagged.type: ("target", "moved_from")}


def _tag_events(records: list[list[Any]]) -> list[tuple[str, int, int]]:
    """(tag, the seq it names, the event's seq) of the CheckpointTagged events among decoded record arrays."""
    out = []
    for rec in records:
        if rec[R_TYPE] == CheckpointTagged.type and isinstance(rec[R_PAYLOAD].get("tag"), str):
            target = rec[R_PAYLOAD].get("target")
            out.append((rec[R_PAYLOAD]["tag"], target if isinstance(target, int) else rec[2], rec[2]))
    return out


def _keepable(records: list[list[Any]], cut_at: int, anchor: int) -> list[list[Any]]:
    """The prefix of ``records`` (after the anchor) whose references to other commits survive the repair:
    a commit, result or tag that names a commit lost in the cut (other than the anchor) ends it."""
    out: list[list[Any]] = []
    for rec in records:
        for key in SEQ_FIELDS.get(rec[R_TYPE], ()):
            ref = rec[R_PAYLOAD].get(key)
            if isinstance(ref, int) and cut_at <= ref < anchor:
                return _whole_commits(out)
        out.append(rec)
    return out


def _decoded(codec: RecordCodec, pairs: list[tuple[int, bytes]]) -> list[list[Any]]:
    """The decodable prefix of ``pairs``, contiguous, as record arrays."""
    out: list[list[Any]] = []
    for seq, payload in pairs:
        if out and seq != out[-1][2] + 1:
            break
        try:
            rec = codec.decode_array(seq, payload)
            codec.event_of(rec)
        except DesiruError:
            break
        out.append(rec)
    return out


def _lm_answers(codec: RecordCodec, records: dict[int, bytes], known: set[str]
                ) -> list[tuple[int, float, dict[str, Any]]]:
    """The LM answers among ``records`` that still decode, one per request key not in ``known``."""
    out: list[tuple[int, float, dict[str, Any]]] = []
    seen = set(known)
    for seq, payload in sorted(records.items()):
        try:
            rec = codec.decode_array(seq, payload)
        except DesiruError:
            continue
        key = rec[R_PAYLOAD].get("key")
        if rec[R_TYPE] == LMResponseRecorded.type and isinstance(key, str) and key not in seen:
            seen.add(key)
            out.append((seq, float(rec[R_TIMESTAMP]), rec[R_PAYLOAD]))
    return out


def _append_lm_answers(store: FileStore, codec: RecordCodec, plan: _Plan) -> int:
    """Append the LM answers read after the damage that the kept records do not hold; how many."""
    kept = {r[2] for r in plan.kept}
    held = {r[R_PAYLOAD].get("key") for r in plan.kept if r[R_TYPE] == LMResponseRecorded.type}
    records: list[tuple[int, bytes]] = []
    seq = store.last_seq()
    for old, ts, payload in plan.lm_after:
        if old in kept or payload.get("key") in held:
            continue
        seq += 1
        ev = LMResponseRecorded(payload=payload, seq=seq, timestamp=ts)
        records.append((seq, codec.encode_event(ev, seq, seq)))  # sealed for its new seq
    if records:
        store.append(records)
        store.sync()
    return len(records)


def _whole_commits(records: list[list[Any]]) -> list[list[Any]]:
    """``records`` without a commit at the end that is not whole."""
    while records and records[-1][R_LAST] > records[-1][2]:
        first = records[-1][R_FIRST]
        records = [r for r in records if r[2] < first]
    return records


class _Plan:
    """What a repair will do, worked out before anything is changed."""

    def __init__(self) -> None:
        self.cut_at: int | None = None  # first seq removed from the log
        self.anchor: int | None = None  # seq of the snapshot that anchors the kept records
        self.anchor_state: dict[str, Any] | None = None
        self.anchor_ts = 0.0
        self.kept: list[list[Any]] = []  # decoded records after the anchor, kept (renumbered)
        self.tag_events: list[tuple[str, int, int]] = []  # every tag event the log holds, before and after the damage
        self.before_state: dict[str, Any] | None = None  # the state just before the cut
        self.bridge: list[dict[str, Any]] = []  # edits from before_state to the anchor's state
        self.lm_keys: set[str] = set()  # request keys of the LM answers before the cut
        self.lm_after: list[tuple[int, float, dict[str, Any]]] = []  # (seq, timestamp, payload) read after it


def _state_before(name: str, key: Any, seq: int) -> dict[str, Any] | None:
    """The state at ``seq`` (None for 0), read by a reader of the damaged journal."""
    if seq < 1:
        return None
    from desiru.journal.journal import Journal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JournalWarning)
        j = Journal(FileStore(name, readonly=True), key=key, readonly=True)
    try:
        return j.replay_state(seq=seq)
    finally:
        j.close()


def _find_anchor(store: FileStore, codec: RecordCodec, plan: _Plan, after: dict[int, bytes]) -> None:
    """The newest snapshot past the cut whose record survives and matches it, with the records after it."""
    for s in reversed([s for s in store.snapshot_seqs() if plan.cut_at is not None and s >= plan.cut_at]):
        payload = after.get(s)
        if payload is None:
            continue
        try:
            blob = store.get_snapshot(s)
            unbound = RecordCodec(codec.journal_id, codec.key, codec.name)
            meta = unbound.snapshot_meta(s, blob)
            rec = codec.decode_array(s, payload)
            want = meta.get(RECORD_HASH)
            ok = (bytes(_engine.xxh3_128(payload)) == want if isinstance(want, bytes)
                  else float(rec[R_TIMESTAMP]) == float(meta.get("timestamp", -1.0)))
            if not ok or rec[R_LAST] != s:
                continue
            state = unbound.snapshot_state(s, blob)
        except DesiruError:
            continue
        plan.anchor, plan.anchor_state = s, state
        plan.anchor_ts = float(rec[R_TIMESTAMP])
        plan.kept = _keepable(_whole_commits(_decoded(codec, [(q, p) for q, p in sorted(after.items()) if q > s])),
                              plan.cut_at, s)
        if plan.kept and plan.kept[0][2] != s + 1:
            plan.kept = []
        return


def repair(path: str | os.PathLike[str], key: Any = None, *, force: bool = False) -> RepairReport:
    """Cut the journal at its first damaged record, keeping what after it can be kept (see the module doc).

    Takes the writer lock (JournalLockedError if a writer is open). Without the key,
    an encrypted journal is checked by its framing only. A repair that would drop a
    tag raises DesiruError naming them, and changes nothing, unless ``force=True``.
    """
    name = os.fspath(path)
    if not is_journal(name):
        raise DesiruError("not a desiru journal", path=name, hint="give the journal directory")
    store = FileStore(name)
    meta = store.open()
    store.lock()
    try:
        if isinstance(store.damage, HeaderMismatchError):
            raise store.damage  # the header is not the log's: cutting would throw the whole log away
        cuts: list[CutReport] = []
        if store.damage is None:  # otherwise the cut below starts at the damage
            cut = store.recover()
            if cut is not None:
                cuts.append(cut)
        _count, faults = store.check()
        codec = _codec(meta, key, name)
        if codec is not None:
            codec.bind(store)
        bad = _first_bad(store, codec, faults, name)
        plan = _plan(store, codec, name, key, bad)
        last_event = {name: (target, at) for name, target, at in plan.tag_events}  # the last one wins
        dropped: dict[str, int] = {}
        moved: dict[str, tuple[int, int]] = {}
        for name, (target, at) in last_event.items():
            new_at, new_target = _moved_to(plan, at), _moved_to(plan, target)
            if new_at is None or new_target is None:  # the tag's event or its commit is cut
                dropped[name] = target
            elif new_target != target:
                moved[name] = (target, new_target)
        if dropped and not force:
            names = ", ".join(f"{t!r}@{s}" for t, s in sorted(dropped.items(), key=lambda kv: kv[1]))
            raise DesiruError(f"repair would drop the tag{'s' if len(dropped) > 1 else ''} {names}: the commits "
                              f"they name are damaged or follow the damage and cannot be kept", path=name,
                              seq=plan.cut_at, hint="replay what you need from them first, then call "
                              "repair(path, force=True); nothing was changed")
        if plan.cut_at is not None:
            why = f"repair: damage at seq {bad}" if bad is not None else "repair: a commit left half written"
            cut = store.cut_after(plan.cut_at - 1, why)
            if cut is not None:
                cuts.append(cut)
        kept = _append_kept(store, codec, plan, key, name) if codec is not None and plan.anchor else 0
        answers = _append_lm_answers(store, codec, plan) if codec is not None else 0
        head = store.last_seq()
        removed = _set_aside_snapshots(store, codec, head, faults, name)
        for hi in store.index_seqs():  # run index checkpoints are a cache of the log: rebuilt on first use
            store.delete_index(hi)
        return RepairReport(name, head, tuple(faults), tuple(cuts), tuple(removed), dropped, moved, kept,
                            answers)
    finally:
        store.close()


def _moved_to(plan: _Plan, seq: int) -> int | None:
    """Where the record at ``seq`` ends up (None: cut)."""
    if plan.cut_at is None or seq < plan.cut_at:
        return seq
    if plan.anchor is None or not plan.kept or seq > plan.kept[-1][2]:
        return None
    if seq == plan.anchor:  # the anchor's commit survives as the stand-in commit
        return plan.cut_at + len(plan.bridge) - 1
    return seq + _delta(plan) if seq > plan.anchor else None


def _delta(plan: _Plan) -> int:
    """How far the kept records move: they follow the stand-in commit after the cut."""
    assert plan.cut_at is not None and plan.anchor is not None
    return plan.cut_at + len(plan.bridge) - (plan.anchor + 1)


def _plan(store: FileStore, codec: RecordCodec | None, name: str, key: Any, bad: int | None) -> _Plan:
    plan = _Plan()
    if bad is None:
        # no damage; a commit a crash left half written is still cut whole
        head = store.last_seq()
        if codec is not None and head:
            for seq, payload in store.read(head, head + 1):
                first, last = codec.decode(seq, payload)["commit"]
                if last > head:
                    plan.cut_at = first
        return plan
    plan.cut_at = bad
    if codec is None:
        return plan
    last: list[Any] | None = None
    for seq, payload in store.read(0, bad):  # streamed: only tags, LM answer keys and the last record are kept
        last = codec.decode_array(seq, payload)
        plan.tag_events.extend(_tag_events([last]))
        if last[R_TYPE] == LMResponseRecorded.type and isinstance(last[R_PAYLOAD].get("key"), str):
            plan.lm_keys.add(last[R_PAYLOAD]["key"])
    # the cut starts at the commit holding the damage
    plan.cut_at = (last[2] + 1 if last[R_LAST] == last[2] else last[R_FIRST]) if last else max(store.first_seq(), 1)
    after = dict(store.salvage(plan.cut_at))
    plan.tag_events.extend(_tag_events(_decoded(codec, sorted(after.items()))))
    plan.lm_after = _lm_answers(codec, after, plan.lm_keys)
    _find_anchor(store, codec, plan, after)
    if plan.anchor is not None:
        try:
            plan.before_state = _state_before(name, key, plan.cut_at - 1)
        except DesiruError:  # the state before the cut cannot be rebuilt (compacted away): keep nothing
            plan.anchor, plan.kept = None, []
            return plan
        plan.bridge = _engine.diff_states(plan.before_state, plan.anchor_state)
    return plan


def _append_kept(store: FileStore, codec: RecordCodec, plan: _Plan, key: Any, name: str) -> int:
    """Append the stand-in commit and the kept records, renumbered after it."""
    assert plan.cut_at is not None
    edits = plan.bridge
    records: list[tuple[int, bytes]] = []
    seq = plan.cut_at - 1
    first, last = plan.cut_at, plan.cut_at + len(edits) - 1
    for edit in edits:
        seq += 1
        ev = event_from_edit(edit, seq, plan.anchor_ts)
        records.append((seq, codec.encode_event(ev, first, last)))
    delta = _delta(plan)
    assert plan.anchor is not None
    for rec in plan.kept:
        new = list(rec)
        new[2] += delta
        new[R_FIRST] += delta
        new[R_LAST] += delta
        payload = dict(new[R_PAYLOAD])
        for key in SEQ_FIELDS.get(new[R_TYPE], ()):
            ref = payload.get(key)
            if isinstance(ref, int) and ref >= plan.anchor:  # the anchor is now the stand-in commit's end
                payload[key] = last if ref == plan.anchor else ref + delta
        new[R_PAYLOAD] = payload
        ev = codec.event_of(new)
        records.append((new[2], codec.encode_event(ev, new[R_FIRST], new[R_LAST])))
    store.append(records)
    store.sync()
    return len(plan.kept)


def _set_aside_snapshots(store: FileStore, codec: RecordCodec | None, head: int, faults: list[Fault],
                         name: str) -> list[int]:
    """Move aside every snapshot past ``head``, damaged, or not belonging to the repaired log."""
    removed = []
    for seq in store.snapshot_seqs():
        ok = seq <= head
        if ok:
            try:
                blob = store.get_snapshot(seq)
                if codec is not None:
                    codec.snapshot_state(seq, blob)  # meta, binding and state
            except CorruptDataError as exc:
                faults.append(Fault(f"snapshot: {exc.message}", seq=seq, file=name))
                ok = False
            except DesiruError as exc:
                faults.append(Fault(f"snapshot: {exc.message}", seq=seq, file=name))
                ok = False
        if not ok:
            store.quarantine_snapshot(seq)
            removed.append(seq)
    return removed


__all__ = ["RepairReport", "is_journal", "repair"]
