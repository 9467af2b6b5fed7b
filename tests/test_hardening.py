"""Regressions of the attack campaign (issue 14), one test per class of defect.

Each test runs on both byte engines (the ``engine`` fixture swaps the functions of
``desiru._engine``) and, where they apply, on every fsync mode and document format.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engines import implementations
from programs import sample_program

import desiru as ds
from desiru import _engine
from desiru._pure import backend as pure_backend
from desiru.journal import Journal, JournalWarning
from desiru.journal.file_store import LOG_DIR, SNAPSHOT_DIR

FSYNC_MODES = ["always", "batch", "never"]
_ENGINE_FUNCS = ["packb", "unpackb", "content_hash", "sha256", "xxh3_128", "frame_encode", "frame_scan",
                 "diff_states", "apply_edits"]


@pytest.fixture(params=[impl.__name__.rsplit(".", 1)[-1] for impl in implementations(pure_backend, "frame_scan")])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test on one byte engine: the pure-Python twin ("backend") or Rust ("_native")."""
    impl = next(i for i in implementations(pure_backend, "frame_scan") if i.__name__.endswith(request.param))
    for name in _ENGINE_FUNCS:
        monkeypatch.setattr(_engine, name, getattr(impl, name))
    yield request.param


def _commit(j: Journal, p: ds.Program, step: int, **params: Any) -> int:
    p.metadata = {"step": step}
    for k, v in params.items():
        p.answer.parameters[k] = v
    return j.commit(p).seq


def _segment(path: Path) -> Path:
    return sorted((path / LOG_DIR).iterdir())[-1]


def _quiet_open(path: Path, **kw: Any) -> Journal:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JournalWarning)
        return Journal.open(path, **kw)


# -- 1. a snapshot is used only when it belongs to the log beside it ---------------------------------------
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_snapshot_must_belong_to_its_log(tmp_path: Path, engine: str, fsync: str) -> None:
    path = tmp_path / "run.journal"
    p = sample_program()
    j = Journal.open(path, fsync=fsync)
    _commit(j, p, 1)
    _commit(j, p, 2)
    cut_seq = _commit(j, p, 3, only_in_cut_commit=1)
    j.snapshot()
    j.close()
    stale = (path / SNAPSHOT_DIR / f"{cut_seq:020d}.snap").read_bytes()
    seg = _segment(path)
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF  # damage the last record: the writer cuts it as a torn tail
    seg.write_bytes(bytes(data))
    with pytest.warns(JournalWarning) as caught:
        j = Journal.open(path, fsync=fsync)
    messages = " ".join(str(w.message) for w in caught)
    assert "past the head" in messages and "moved aside" in messages
    assert j.head < cut_seq
    del p.answer.parameters["only_in_cut_commit"]
    want = {}
    for step in (4, 5, 6):
        seq = _commit(j, p, step)
        want[seq] = p.to_state()
    assert max(want) > cut_seq
    for seq, state in want.items():
        assert j.replay_state(seq=seq) == state
    # the same snapshot planted back (a half-copied journal): still never used, never trusted by compact
    (path / SNAPSHOT_DIR / f"{cut_seq:020d}.snap").write_bytes(stale)
    r = Journal.open(path, readonly=True)
    with pytest.warns(JournalWarning, match="does not belong"):
        assert r.replay_state(seq=max(want)) == want[max(want)]
    assert any("does not belong" in f.reason for f in r.verify().faults)
    r.close()
    assert j.compact() == 0  # the only snapshot does not belong: nothing of the log is dropped
    assert j.replay_state(seq=1)["metadata"] == {"step": 1}
    j.close()
    assert any(p.name.endswith(f"snapshot-{cut_seq:020d}.bin") for p in (path / "damaged").iterdir())


def test_snapshot_of_a_log_copied_before_its_snapshots(tmp_path: Path, engine: str) -> None:
    """``cp -r`` of a live journal: log/ copied first, snapshots/ later, the run resumes from the copy."""
    path, copy = tmp_path / "live.journal", tmp_path / "copy.journal"
    p = sample_program()
    j = Journal.open(path, fsync="always")
    _commit(j, p, 1)
    shutil.copytree(path, copy, ignore=shutil.ignore_patterns("lock"))  # log/ and header at seq 2
    _commit(j, p, 2, only_in_original=True)
    j.snapshot()
    j.close()
    shutil.rmtree(copy / SNAPSHOT_DIR)
    shutil.copytree(path / SNAPSHOT_DIR, copy / SNAPSHOT_DIR)  # snapshots/ copied after more commits
    c = _quiet_open(copy, fsync="always")
    assert c.store.snapshot_seqs() == []  # the snapshot past the copy's head was moved aside
    p2 = sample_program()
    for step in (3, 4, 5):
        top = _commit(c, p2, step)
    assert c.replay_state(seq=top) == p2.to_state()
    assert "only_in_original" not in str(c.replay_state(seq=top))
    c.compact()
    assert c.replay_state(seq=top) == p2.to_state()
    c.close()


def test_snapshots_without_binding_still_serve_old_journals(tmp_path: Path, engine: str) -> None:
    """A snapshot written before the binding is checked by its head record's timestamp."""
    src = Path(__file__).parent / "vectors" / "documents" / "journal_2_0_0.journal"
    path = tmp_path / "old.journal"
    shutil.copytree(src, path)
    r = Journal.open(path, readonly=True)
    snaps = r.store.snapshot_seqs()
    assert snaps
    meta = r._codec.snapshot_meta(snaps[0], r.store.get_snapshot(snaps[0]))  # checked, no error
    assert "record_hash" not in meta
    assert r.verify().ok
    r.close()


# -- 2. good records after damage, however far, mean damage, never a torn tail ------------------------------
def _events_journal(path: Path, n: int, fsync: str = "never") -> None:
    from desiru.journal import ParameterSet

    with Journal.open(path, fsync=fsync) as j:
        j.commit(sample_program())
        j.append_many([ParameterSet(path="answer", payload={"key": "k", "value": i}) for i in range(n)])


@pytest.mark.parametrize("fsync", FSYNC_MODES)
@pytest.mark.parametrize("hole", [64 * 1024, 300_000])
def test_damage_is_never_taken_for_a_torn_tail(tmp_path: Path, engine: str, fsync: str, hole: int) -> None:
    path = tmp_path / "big.journal"
    _events_journal(path, 6000)
    seg = _segment(path)
    data = bytearray(seg.read_bytes())
    mid = len(data) // 3
    data[mid: mid + hole] = bytes(hole)  # zeros over hundreds of records, good ones after
    seg.write_bytes(bytes(data))
    before = seg.read_bytes()
    with pytest.raises(ds.CorruptDataError) as err:
        Journal.open(path, fsync=fsync)
    assert err.value.seq is not None and err.value.offset is not None and err.value.offset <= mid
    assert seg.read_bytes() == before  # nothing was cut
    with pytest.warns(JournalWarning, match="damaged record"):
        r = Journal.open(path, readonly=True)
    assert r.head < err.value.seq
    report = r.verify()
    assert not report.ok and any(f.seq == err.value.seq for f in report.faults)
    r.close()


def test_a_torn_tail_of_zeros_is_still_a_tail(tmp_path: Path, engine: str) -> None:
    path = tmp_path / "tail.journal"
    _events_journal(path, 50)
    with Journal.open(path, readonly=True) as r:
        head = r.head
    seg = _segment(path)
    with open(seg, "ab") as f:
        f.write(bytes(2 * 1024 * 1024))  # a hole a power loss left after the last record
    with pytest.warns(JournalWarning, match="torn or corrupt tail"):
        j = Journal.open(path)
    assert j.head == head
    j.close()


# -- 3. a writer used across fork() is refused, and the parent's journal is unharmed ------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_writer_refuses_a_forked_process(tmp_path: Path, engine: str, fsync: str) -> None:
    from desiru.journal import ParameterSet

    path = tmp_path / "fork.journal"
    p = sample_program()
    j = Journal.open(path, fsync=fsync)
    _commit(j, p, 1)
    result = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # the child: every write path must refuse, closing must not touch the parent's lock
        code = 0
        try:
            lines = []
            attempts = {
                "commit": lambda: j.commit(sample_program(), tag="child"),
                "append": lambda: j.append(ParameterSet(path="answer", payload={"key": "c", "value": 1})),
                "snapshot": j.snapshot, "compact": j.compact, "flush": j.flush,
            }
            for name, fn in attempts.items():
                try:
                    fn()
                    lines.append(f"{name}: accepted")
                except ds.DesiruError as exc:
                    lines.append(f"{name}: {'open the journal in the child' in str(exc)}")
            j.close()
            result.write_text("\n".join(lines))
        except BaseException as exc:  # report anything to the parent
            result.write_text(repr(exc))
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, result.read_text()
    assert result.read_text().splitlines() == [f"{n}: True" for n in
                                               ("commit", "append", "snapshot", "compact", "flush")]
    assert f"pid {os.getpid()}" in (path / "lock").read_text()  # the holder's note survived the child
    with pytest.raises(ds.JournalLockedError):
        Journal.open(path)  # the parent still holds the lock
    seq = _commit(j, p, 2)
    j.close()
    with Journal.open(path, readonly=True) as r:
        assert r.verify().ok and r.head == seq and r.tags() == {}
        assert r.replay_state() == p.to_state()


# -- 5. a seq inside a multi-event commit replays to the end of that commit --------------------------------
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_replay_never_shows_half_a_commit(tmp_path: Path, engine: str, fsync: str) -> None:
    from click.testing import CliRunner

    from desiru.cli import cli

    path = tmp_path / "half.journal"
    p = sample_program()
    with Journal.open(path, fsync=fsync) as j:
        j.commit(p)
        p.metadata = {"step": 2}
        p.answer.parameters["temperature"] = 0.9
        p.retrieve.demos = []
        r = j.commit(p, tag="two")
        assert len(r.events) >= 3
        full = p.to_state()
        first, last = r.events[0].seq, r.events[-1].seq
        for seq in range(first, last + 1):  # every seq of the commit: the whole commit, never a part
            assert j.replay_state(seq=seq) == full
        assert j.replay_state(seq=first - 1) != full
    runner = CliRunner()
    for seq in range(first, last + 1):
        out = tmp_path / f"at{seq}.json"
        res = runner.invoke(cli, ["replay", str(path), "--seq", str(seq), "-o", str(out)])
        assert res.exit_code == 0, res.output
        assert ds.load(out).to_state() == full
        res = runner.invoke(cli, ["diff", f"{path}@seq:{seq}", f"{path}@tag:two"])
        assert res.exit_code == 0 and "equal" in res.output, res.output


# -- 4. repair keeps what can be kept after the damage, and never drops a tag silently ----------------------
def _flip_record(path: Path, seq: int, key: Any = None) -> None:
    """Flip one payload byte of the record at ``seq`` (found through the framing)."""
    from desiru.journal.file_store import RECORD_HEADER, FileStore

    store = FileStore(path, readonly=True)
    store.open()
    for seg in sorted((path / LOG_DIR).iterdir()):
        for s, off, payload in store._scan_segment(int(seg.name.split(".")[0]), tail_ok=True):
            if s == seq:
                data = bytearray(seg.read_bytes())
                data[off + RECORD_HEADER + len(payload) // 2] ^= 0x10
                seg.write_bytes(bytes(data))
                return
    raise AssertionError(f"no record {seq}")


def _tree(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("fsync", FSYNC_MODES)
@pytest.mark.parametrize("key", [None, "correct horse battery staple"])
def test_repair_keeps_records_after_damage_and_names_tags(tmp_path: Path, engine: str, fsync: str,
                                                          key: Any) -> None:
    path = tmp_path / "rep.journal"
    p = sample_program()
    states: dict[str, dict[str, Any]] = {}
    with Journal.open(path, key=key, fsync=fsync) as j:
        for i in range(60):
            p.metadata = {"step": i}
            tag = {5: "best", 25: "middle", 58: "last"}.get(i)
            seq = j.commit(p, tag=tag).seq
            if i == 55:
                j.tag("best", seq, move=True)  # the name moves on: repair must keep it where it is now
            if tag or i == 55:
                states[tag or "best"] = p.to_state()
            if i == 20:
                damaged_seq = seq - 1
            if i == 40:
                anchor = j.snapshot()
        head_before = j.head
        tags_before = j.tags()
    _flip_record(path, damaged_seq)
    pristine = _tree(path)
    with pytest.raises(ds.DesiruError, match="would drop the tag 'middle'") as err:
        ds.journal.repair(path, key=key)
    assert "force=True" in (err.value.hint or "")
    assert _tree(path) == pristine  # refused: nothing changed
    report = ds.journal.repair(path, key=key, force=True)
    assert report.tags_dropped == {"middle": tags_before["middle"]}
    assert set(report.tags_moved) == {"best", "last"}
    assert report.kept_after_damage == head_before - anchor
    assert any("damaged" in c.kept_in for c in report.cuts)  # the cut bytes stay in damaged/
    with Journal.open(path, key=key, fsync=fsync) as j:
        assert j.verify().ok
        assert j.head == report.head == report.tags_moved["last"][1] + 1  # one untagged commit after it
        assert j.tags() == {"best": report.tags_moved["best"][1], "last": report.tags_moved["last"][1]}
        assert j.replay_state(tag="best") == states["best"]  # the kept commits replay exactly
        assert j.replay_state(tag="last") == states["last"]
        assert j.replay_state(seq=damaged_seq - 2)["metadata"]["step"] < 20
        p.metadata = {"step": 99}
        j.commit(p)  # and it accepts appends
    from click.testing import CliRunner

    from desiru.cli import cli

    assert CliRunner().invoke(cli, ["verify", str(path)] + (["--key-env", "K"] if key else []),
                              env={"K": key} if key else {}).exit_code == 0


def test_repair_without_an_anchor_needs_force_to_drop_tags(tmp_path: Path, engine: str) -> None:
    from click.testing import CliRunner

    from desiru.cli import cli

    path = tmp_path / "rep.journal"
    p = sample_program()
    with Journal.open(path) as j:
        for i in range(30):
            p.metadata = {"step": i}
            seq = j.commit(p, tag="best" if i == 3 else None).seq
            if i == 25:
                j.tag("best", seq, move=True)
            if i == 10:
                damaged_seq = seq
    _flip_record(path, damaged_seq)
    pristine = _tree(path)
    res = CliRunner().invoke(cli, ["repair", str(path)])
    assert res.exit_code != 0 and "would drop the tag 'best'" in res.output and "--force" in res.output
    assert "internal error" not in res.output
    assert _tree(path) == pristine
    res = CliRunner().invoke(cli, ["repair", str(path), "--force"])
    assert res.exit_code == 0, res.output
    assert "tag best dropped" in res.output
    with Journal.open(path, readonly=True) as r:
        assert r.head == damaged_seq - 1 and r.tags() == {"best": 5}


# -- 6. a journal holds no symbolic links: none is ever followed --------------------------------------------
def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious data outside the journal\n" * 100)
    return victim


def _plant(link: Path, target: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)


@pytest.mark.parametrize("fsync", FSYNC_MODES)
@pytest.mark.parametrize("where", ["lock", "header", "segment", "snapshot", "damaged", "snapshots"])
def test_symlinks_inside_journal_are_refused(tmp_path: Path, engine: str, fsync: str, where: str) -> None:
    path = tmp_path / "j.journal"
    victim = _victim(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with Journal.open(path, fsync=fsync) as j:
        _commit(j, sample_program(), 1)
        j.snapshot()
    seg = _segment(path)
    with open(seg, "ab") as f:
        f.write(b"\x01torn")  # a torn tail: a writer would cut it into damaged/
    links = {"lock": (path / "lock", victim), "header": (path / "header", victim),
             "segment": (seg, victim), "snapshot": (next((path / SNAPSHOT_DIR).iterdir()), victim),
             "damaged": (path / "damaged", elsewhere), "snapshots": (path / SNAPSHOT_DIR, elsewhere)}
    link, target = links[where]
    _plant(link, target)
    before = victim.read_bytes()
    for readonly in (False, True):
        with pytest.raises(ds.DesiruError, match="symbolic link") as err:
            Journal.open(path, fsync=fsync, readonly=readonly)
        assert "remove the link" in (err.value.hint or "")
    with pytest.raises(ds.DesiruError, match="symbolic link|not a desiru journal"):
        ds.journal.repair(path)  # a linked header is not even taken for a journal
    assert victim.read_bytes() == before and list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_symlinks_planted_after_open_are_never_followed(tmp_path: Path, engine: str, fsync: str) -> None:
    path = tmp_path / "j.journal"
    victim = _victim(tmp_path)
    before = victim.read_bytes()
    p = sample_program()
    j = Journal.open(path, fsync=fsync)
    _commit(j, p, 1)
    head = j.snapshot()  # the next append starts the segment named after head + 1
    _plant(path / LOG_DIR / f"{head + 1:020d}.log", victim)
    with pytest.raises(ds.DesiruError, match="symbolic link"):
        _commit(j, p, 2)
    j.close()
    assert victim.read_bytes() == before
    (path / LOG_DIR / f"{head + 1:020d}.log").unlink()
    with _quiet_open(path, fsync=fsync) as j:  # the journal itself is unharmed
        assert j.head == head and j.verify().ok
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _plant(path / "damaged", elsewhere)
        _plant(path / SNAPSHOT_DIR, elsewhere)
        with pytest.raises(ds.DesiruError, match="symbolic link"):
            j.snapshot()
        assert list(elsewhere.iterdir()) == []


# -- 10. a writer that cannot create or open its files gets a DesiruError ---------------------------------
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_writer_os_errors_are_desiru_errors(tmp_path: Path, engine: str, fsync: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    path = tmp_path / "ro.journal"
    with Journal.open(path, fsync=fsync) as j:
        _commit(j, sample_program(), 1)
    (path / "lock").unlink()
    real_open = os.open

    def denied(p: Any, flags: int, *a: Any, **kw: Any) -> int:
        if str(p).endswith("lock") or (flags & os.O_WRONLY and str(p).endswith(".log")):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, flags, *a, **kw)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ds.DesiruError, match="Permission denied") as err:
        Journal.open(path, fsync=fsync)
    assert not isinstance(err.value, OSError) and "readonly=True" in (err.value.hint or "")
    with Journal.open(path, readonly=True) as r:  # reading needs no lock
        assert r.head == 2 or r.head >= 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_writer_in_a_read_only_folder_is_a_desiru_error(tmp_path: Path, engine: str) -> None:
    path = tmp_path / "ro.journal"
    with Journal.open(path) as j:
        _commit(j, sample_program(), 1)
    (path / "lock").unlink()
    path.chmod(0o555)
    try:
        with pytest.raises(ds.DesiruError, match="lock"):
            Journal.open(path)
    finally:
        path.chmod(0o755)


# -- 7. rebuilding a journal (rekey, migrate, repair) or writing into it never widens its modes --------------
def _modes(path: Path) -> dict[str, int]:
    out = {".": path.stat().st_mode & 0o777}
    for f in path.rglob("*"):
        out[str(f.relative_to(path))] = f.lstat().st_mode & 0o777
    return out


@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_journal_rewrites_keep_modes(tmp_path: Path, engine: str, fsync: str) -> None:
    from desiru.journal import migrate_journal

    path = tmp_path / "private.journal"
    key = "a passphrase nobody else knows"
    p = sample_program()
    with Journal.open(path, key=key, fsync=fsync) as j:
        _commit(j, p, 1)
        j.snapshot()
        _commit(j, p, 2)
    for f in [path, *path.rglob("*")]:
        f.chmod(0o700 if f.is_dir() else 0o600)
    ds.rekey(path, key, None)  # decrypted: the demo text is plaintext now, it must stay private
    assert set(_modes(path).values()) <= {0o700, 0o600}
    migrate_journal(path)
    with Journal.open(path, fsync=fsync) as j:
        j.snapshot()
        _commit(j, p, 3)  # a new segment after the snapshot
    with open(_segment(path), "ab") as f:
        f.write(b"\x07torn tail")
    assert ds.journal.repair(path).cuts  # damaged/ and the cut bytes in it
    modes = _modes(path)
    assert any(k.startswith("damaged/") for k in modes) and len([k for k in modes if k.startswith("log/")]) >= 2
    assert {k: m for k, m in modes.items() if m not in (0o700, 0o600)} == {}
    assert all(m == 0o700 for k, m in modes.items() if (path / k).is_dir())


def test_new_journals_follow_the_umask(tmp_path: Path, engine: str) -> None:
    old = os.umask(0o077)
    try:
        with Journal.open(tmp_path / "new.journal") as j:
            _commit(j, sample_program(), 1)
            j.snapshot()
            _commit(j, sample_program(), 2)
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "new.journal")
    assert {k: m for k, m in modes.items() if m & 0o077} == {}


# -- 8. decompression is bounded: a bomb is refused before it takes the memory ------------------------------
def _zstd_rle_bomb(blocks: int) -> bytes:
    """A zstd frame with no content size, made of RLE blocks of 128 KiB each (4 bytes per block)."""
    out = bytearray(b"\x28\xb5\x2f\xfd" + bytes([0x00, 0x38]))  # no FCS, a 128 KiB window
    rle = ((128 * 1024) << 3 | 1 << 1).to_bytes(3, "little") + b"A"
    out += rle * (blocks - 1)
    out += ((128 * 1024) << 3 | 1 << 1 | 1).to_bytes(3, "little") + b"A"  # the last block
    return bytes(out)


@functools.lru_cache(maxsize=1)
def _gzip_bomb() -> bytes:
    import zlib

    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([z.compress(zeros) for _ in range(200)] + [z.flush()])


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_decompression_is_bounded(tmp_path: Path, engine: str, kind: str) -> None:
    import tracemalloc

    from click.testing import CliRunner

    from desiru.cli import cli
    from desiru.serialization import container

    if kind == "zstd":
        bomb = _zstd_rle_bomb(8192)  # 32 KiB that would become 1 GiB
        target = tmp_path / "bomb.msgpack.zst"
    else:
        bomb = _gzip_bomb()  # ~200 KiB that would become 200 MiB
        target = tmp_path / "bomb.json.gz"
    target.write_bytes(bomb)
    limit = container.decompression_limit(len(bomb))
    tracemalloc.start()
    try:
        with pytest.raises(ds.CorruptDataError, match="decompression bomb") as err:
            ds.load(target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.path == str(target) and "max_size" in (err.value.hint or "")
    assert peak < 2 * limit + (32 << 20), peak  # bounded by the limit, not by what the stream claims
    res = CliRunner().invoke(cli, ["inspect", str(target)])
    assert res.exit_code not in (0, 3) and "internal error" not in res.output
    with pytest.raises(ds.CorruptDataError):  # a caller can raise the limit; a still-smaller one refuses
        container.decompress(bomb, kind, max_size=1 << 20)


def test_a_declared_size_over_the_limit_is_refused(engine: str) -> None:
    import zstandard

    from desiru.serialization import container

    data = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(100 << 20))
    with pytest.raises(ds.CorruptDataError, match="decompression bomb"):
        container.decompress(data, "zstd")
    assert len(container.decompress(data, "zstd", max_size=100 << 20)) == 100 << 20


# -- 13a. bytes after a document (a second document joined to it) are refused in every format ---------------
@pytest.mark.parametrize("fmt", ["json", "yaml", "msgpack"])
@pytest.mark.parametrize("compress", [None, "zstd", "gzip"])
def test_trailing_bytes_after_a_document_are_refused(tmp_path: Path, engine: str, fmt: str,
                                                     compress: str | None) -> None:
    first = sample_program().save(tmp_path / f"a.{fmt}", compress=compress).path
    other = sample_program()
    other.metadata = {"planted": True}
    second = other.save(tmp_path / f"b.{fmt}", compress=compress).path
    joined = tmp_path / f"joined{first.name[1:]}"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    with pytest.raises(ds.CorruptDataError) as err:
        ds.load(joined)
    assert err.value.path == str(joined)


# -- 9. a number past CPython's digit limit is a CorruptDataError, never a raw ValueError -------------------
@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("compress", [None, "zstd"])
def test_huge_numbers_in_documents_are_corrupt_data(tmp_path: Path, engine: str, fmt: str,
                                                    compress: str | None) -> None:
    from click.testing import CliRunner

    from desiru.cli import cli
    from desiru.serialization import container

    plain = sample_program().save(tmp_path / f"p.{fmt}").path
    text = plain.read_text()
    needle = '"temperature": 0.2' if fmt == "json" else "temperature: 0.2"
    assert needle in text
    bad = text.replace(needle, needle.replace("0.2", "9" * 5000)).encode()
    target = tmp_path / (f"big.{fmt}" + (".zst" if compress else ""))
    target.write_bytes(container.compress(bad, compress))
    with pytest.raises(ds.CorruptDataError) as err:
        ds.load(target)
    assert err.value.path == str(target)
    res = CliRunner().invoke(cli, ["inspect", str(target)])
    assert res.exit_code not in (0, 3) and "internal error" not in res.output and "big." in res.output


# -- 11. every field of a journal header is checked before it is used ---------------------------------------
def _rewrite_header(path: Path, change: Any) -> None:
    from desiru.journal.file_store import decode_header, encode_header

    version, body = decode_header((path / "header").read_bytes())
    change(body)
    (path / "header").write_bytes(encode_header(body["salt"], body["meta"], version))  # checksum recomputed


_HEADER_ATTACKS = {
    "encryption is an int": lambda b: b["meta"].__setitem__("encryption", 5),
    "kdf is an int": lambda b: b["meta"]["encryption"].__setitem__("kdf", 5),
    "kdf asks for terabytes": lambda b: b["meta"]["encryption"]["kdf"].__setitem__("n", 2 ** 40),
    "journal_id is a str": lambda b: b["meta"].__setitem__("journal_id", "abc"),
    "salt is negative": lambda b: b.__setitem__("salt", -5),
    "salt is a str": lambda b: b.__setitem__("salt", "salt"),
    "cipher is unknown": lambda b: b["meta"]["encryption"].__setitem__("cipher", "ROT13"),
    "salt was changed": lambda b: b.__setitem__("salt", (b["salt"] + 1) % (1 << 64)),
}


@pytest.mark.parametrize("fsync", FSYNC_MODES)
@pytest.mark.parametrize("attack", list(_HEADER_ATTACKS))
def test_journal_header_fields_are_checked(tmp_path: Path, engine: str, fsync: str, attack: str) -> None:
    from click.testing import CliRunner

    from desiru.cli import cli

    path = tmp_path / "h.journal"
    key = "a passphrase for the header test"
    with Journal.open(path, key=key, fsync=fsync) as j:
        for step in range(3):
            _commit(j, sample_program(), step)
    _rewrite_header(path, _HEADER_ATTACKS[attack])
    before = _tree(path)
    with pytest.raises(ds.CorruptDataError) as err:
        Journal.open(path, key=key, fsync=fsync)
    assert err.value.path is not None and "header" in str(err.value) and "restore" in (err.value.hint or "")
    with warnings.catch_warnings(record=True) as caught:  # a reader never shows an empty journal silently
        warnings.simplefilter("always")
        try:
            with Journal.open(path, key=key, readonly=True) as r:
                r.head  # noqa: B018 - the look itself is the test
        except ds.CorruptDataError:
            pass
        else:
            assert any("salt" in str(w.message) for w in caught)
    with pytest.raises(ds.CorruptDataError):
        ds.journal.repair(path, key=key, force=True)  # repair never cuts a log its header does not fit
    assert _tree(path) == before  # nothing was cut or rewritten
    res = CliRunner().invoke(cli, ["log", str(path), "--key-env", "K"], env={"K": key})
    assert "internal error" not in res.output


# -- 12. encoding a snapshot never holds back the batch mode's fsync ---------------------------------------
@pytest.mark.parametrize("how", ["snapshot()", "snapshot_every"])
def test_batch_fsync_bound_holds_during_a_snapshot(tmp_path: Path, engine: str, how: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from desiru.journal.codec import RecordCodec
    from desiru.journal.durability import BATCH_MAX_DELAY

    p = sample_program()
    p.answer.demos = [ds.Example(question=f"q{i}", answer=f"a{i}") for i in range(150_000)]
    j = Journal.open(tmp_path / "big.journal", fsync="batch", snapshot_every=None)
    j.commit(p)
    j.flush()
    j.tags()  # the writer's tag index is built once, on first use (a scan of the log under the lock)
    syncs: list[float] = []
    real_sync = j._sync._sync  # what the sync policy calls: the store's fdatasync
    monkeypatch.setattr(j._sync, "_sync", lambda: (syncs.append(time.monotonic()), real_sync())[1])
    encoding = threading.Event()
    real_encode = RecordCodec.encode_snapshot

    def slow_encode(self: RecordCodec, *a: Any, **kw: Any) -> bytes:
        encoding.set()
        time.sleep(0.4)  # as long as a much larger program takes; the sync thread must not wait for it
        return real_encode(self, *a, **kw)

    monkeypatch.setattr(RecordCodec, "encode_snapshot", slow_encode)
    appended: list[float] = []  # when the commit's records were handed to the OS: the bound starts there
    real_appended = j._sync.appended
    monkeypatch.setattr(j._sync, "appended", lambda n: (appended.append(time.monotonic()), real_appended(n))[1])
    p.metadata = {"changed": True}
    if how == "snapshot_every":
        j.snapshot_every = 1
        j.commit(p)  # its automatic snapshot runs after the commit's records are in the log
    else:
        j.commit(p)
        j.snapshot()
    assert encoding.is_set() and appended
    t0 = appended[-1]
    first = min(t for t in syncs if t >= t0)
    assert first - t0 < BATCH_MAX_DELAY + 0.25, first - t0  # well before the 0.4 s encode ended
    j.close()
    with Journal.open(tmp_path / "big.journal", readonly=True) as r:
        assert r.replay_state() == p.to_state() and r.store.snapshot_seqs() == [r.head]


# -- 14b. the two engines agree on argument handling, not only on bytes -------------------------------------
_REC = pure_backend.frame_encode(b"hello", 1, 7)
_ARG_CASES: dict[str, Any] = {
    "packb canonical=1": lambda m: m.packb({"b": 1, "a": 2}, canonical=1),
    "packb canonical=None": lambda m: m.packb({"b": 1}, canonical=None),
    "packb canonical=True": lambda m: m.packb({"b": 1, "a": 2}, canonical=True),
    "sha256 strided": lambda m: m.sha256(memoryview(b"abcdefgh")[::2]),
    "xxh3 strided": lambda m: m.xxh3_128(memoryview(b"abcdefgh")[::3]),
    "sha256 str": lambda m: m.sha256("abc"),
    "unpackb strided": lambda m: m.unpackb(memoryview(b"\x92\x00\x01\x00\x02")[::2]),
    "unpackb max_depth=2**70": lambda m: m.unpackb(b"\x91\x01", max_depth=2 ** 70),
    "unpackb max_depth=-1": lambda m: m.unpackb(b"\x91\x01", max_depth=-1),
    "unpackb max_depth=3.0": lambda m: m.unpackb(b"\x91\x01", max_depth=3.0),
    "unpackb max_depth='3'": lambda m: m.unpackb(b"\x91\x01", max_depth="3"),
    "unpackb max_depth=True": lambda m: m.unpackb(b"\x91\x01", max_depth=True),
    "unpackb positional": lambda m: m.unpackb(b"\x01", 5),
    "frame_encode salt=-1": lambda m: m.frame_encode(b"x", 1, -1),
    "frame_encode seq=2**64": lambda m: m.frame_encode(b"x", 2 ** 64, 0),
    "frame_encode str": lambda m: m.frame_encode("abc", 1, 7),
    "frame_scan offset past end": lambda m: m.frame_scan(_REC, 7, len(_REC) + 1),
    "frame_scan offset=-1": lambda m: m.frame_scan(_REC, 7, -1),
    "frame_scan max_record=2**70": lambda m: m.frame_scan(_REC, 7, 0, 2 ** 70),
    "frame_scan salt=1.0": lambda m: m.frame_scan(_REC, 1.0),
    "content_hash int key": lambda m: m.content_hash({1: 2}),
    "diff_states int": lambda m: m.diff_states(5, {}),
    "apply_edits int": lambda m: m.apply_edits({}, 5),
}


@pytest.mark.parametrize("case", list(_ARG_CASES))
def test_engines_agree_on_arguments(case: str) -> None:
    impls = implementations(pure_backend, "frame_scan")
    if len(impls) < 2:
        pytest.skip("the Rust engine is not built or is disabled")
    outcomes = []
    for impl in impls:
        try:
            outcomes.append(("ok", _ARG_CASES[case](impl)))
        except Exception as exc:  # the type is what both engines must agree on
            outcomes.append(("raised", type(exc)))
    assert outcomes[0] == outcomes[1], (case, outcomes)


# -- 14a. a crash while a journal is created or rewritten leaves nothing behind for good --------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("fsync", FSYNC_MODES)
def test_stale_temporaries_of_a_crashed_creation_are_removed(tmp_path: Path, engine: str, fsync: str) -> None:
    from desiru.journal import file_store
    from desiru.journal.safe_fs import hold_temporary

    path = tmp_path / "new.journal"
    pid = os.fork()
    if pid == 0:  # die (as by SIGKILL) in the middle of creating the journal
        file_store.fsync_dir = lambda folder: os._exit(0)
        try:
            Journal.open(path, fsync=fsync)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".new.journal.")]
    assert leftovers and not path.exists()
    busy = tmp_path / ".new.journal.0123456789ab.tmp"  # another process building it right now
    busy.mkdir()
    fd = hold_temporary(busy)
    stale_rewrite = tmp_path / ".new.journal.ba9876543210.rewrite"
    stale_rewrite.mkdir()
    other = tmp_path / ".other.journal.0123456789ab.tmp"  # another journal's: not ours to touch
    other.mkdir()
    try:
        with Journal.open(path, fsync=fsync) as j:
            _commit(j, sample_program(), 1)
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted([busy.name, other.name, path.name])
    finally:
        os.close(fd)
    with Journal.open(path, fsync=fsync):  # the next writer's open: the builder is gone now
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, path.name])


# -- 13b. every header field of a document is under a checksum (format 2.1.0) -----------------------------
@pytest.mark.parametrize("fmt", ["json", "yaml", "msgpack"])
@pytest.mark.parametrize("compress", [None, "zstd", "gzip"])
def test_document_header_is_under_checksum(tmp_path: Path, engine: str, fmt: str, compress: str | None) -> None:
    from desiru.serialization import container, formats, framed
    from desiru.serialization.documents import load_document

    saved = sample_program().save(tmp_path / f"p.{fmt}", compress=compress).path
    raw, _ = framed.unseal(saved.read_bytes(), key=None)
    tree = formats.decode(raw, fmt)
    assert load_document(saved).header["header_checksum"] == tree["header_checksum"]
    attacks = {
        "written by": lambda t: t.__setitem__("library_version", "9.9.9"),
        "created_at": lambda t: t.__setitem__("created_at", "1999-01-01T00:00:00.000Z"),
        "python_version": lambda t: t.__setitem__("python_version", "2.7.18"),
        "class": lambda t: t.__setitem__("class", "programs.Outer"),
        "a renamed key": lambda t: t.__setitem__("python_versioN", t.pop("python_version")),
        "an added field": lambda t: t.__setitem__("planted", True),
        "a removed header_checksum": lambda t: t.pop("header_checksum"),
        "a downgraded version": lambda t: t.__setitem__("format_version", "2.0.0"),
    }
    for what, change in attacks.items():
        bad = {k: v for k, v in tree.items()}
        change(bad)
        target = tmp_path / f"bad{saved.name[1:]}"
        target.write_bytes(container.compress(formats.encode(bad, fmt), compress))
        with pytest.raises(ds.CorruptDataError, match="header") as err:
            ds.load(target)
        assert err.value.path == str(target), what


def test_documents_of_format_2_0_0_still_load_and_migrate(tmp_path: Path, engine: str) -> None:
    import json

    from desiru.serialization.documents import load_document

    src = Path(__file__).parent / "vectors" / "documents" / "v2_0_0.json"
    target = tmp_path / "old.json"
    shutil.copy(src, target)
    want = json.loads((src.parent / "v2_0_0.json.expected.json").read_text())
    assert "header_checksum" not in json.loads(target.read_text())
    assert load_document(target).kind == want["kind"]
    res = ds.migrate(target)
    current = str(ds.serialization.CURRENT_VERSION)
    assert (str(res.from_version), str(res.to_version), res.changed) == ("2.0.0", current, True)
    again = json.loads(target.read_text())
    assert again["format_version"] == current and again["header_checksum"].startswith("xxh3-128:")
    assert ds.load(target).to_state() == ds.load(res.backup).to_state()
