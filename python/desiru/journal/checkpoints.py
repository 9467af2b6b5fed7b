"""``IncrementalSerializer``: numbered checkpoints of a program, stored as a journal.

A thin facade: each ``save_checkpoint`` is a journal commit (only what changed is
written) followed by a CheckpointTagged event carrying the checkpoint's version
number and optional tag; loading replays the journal to that event.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from desiru import adapters
from desiru.errors import DesiruError
from desiru.journal.journal import Checkpoint, Journal
from desiru.program import Program

#: name of the journal directory inside the base path
JOURNAL_NAME = "checkpoints.journal"


class IncrementalSerializer:
    """Checkpoints under ``base_path`` (a folder; the journal is ``base_path/checkpoints.journal``).

    The writer journal stays open between saves (so a save diffs against the state in
    memory); ``close()`` or a ``with`` block releases it.
    """

    def __init__(self, base_path: str | os.PathLike[str], *, key: Any = None, fsync: str = "batch",
                 snapshot_every: int | None = None) -> None:
        self.base_path = Path(base_path)
        self.path = self.base_path / JOURNAL_NAME
        self._key = key
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._writer: Journal | None = None

    def _journal(self) -> Journal:
        if self._writer is None:
            self.base_path.mkdir(parents=True, exist_ok=True)
            self._writer = Journal.open(self.path, key=self._key, fsync=self._fsync,
                                        snapshot_every=self._snapshot_every)
        return self._writer

    def _reader(self) -> Journal:
        if self._writer is not None:
            return self._writer
        if not self.path.exists():
            raise DesiruError("no checkpoints saved yet", path=self.path, hint="call save_checkpoint() first")
        return Journal.open(self.path, key=self._key, readonly=True)

    def save_checkpoint(self, program: Program, tag: str | None = None) -> Checkpoint:
        """Record ``program`` as the next checkpoint (version 1, 2, ...), optionally tagged."""
        if not isinstance(program, Program):  # a live object of another library (dspy), through its adapter
            program = adapters.to_program(program, "checkpoint")
        journal = self._journal()
        existing = journal.checkpoints()
        version = existing[-1].version + 1 if existing else 1
        result = journal._commit_state(journal._builder.build(program), tag, extra={"checkpoint": version},
                                       force_tag=True)
        marker = result.events[-1]
        return Checkpoint(version, tag, marker.seq, marker.timestamp)

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint still stored, oldest first."""
        if self._writer is None and not self.path.exists():
            return []
        journal = self._reader()
        try:
            return journal.checkpoints()
        finally:
            if journal is not self._writer:
                journal.close()

    def load_checkpoint(self, version: int | None = None, tag: str | None = None) -> Program:
        """The program of checkpoint ``version`` or ``tag`` (default: the latest checkpoint)."""
        if version is not None and tag is not None:
            raise DesiruError("give version= or tag=, not both")
        journal = self._reader()
        try:
            points = journal.checkpoints()
            if not points:
                raise DesiruError("no checkpoints saved yet", path=self.path)
            if version is not None:
                match = [c for c in points if c.version == version]
            elif tag is not None:
                match = [c for c in points if c.tag == tag]
            else:
                match = points[-1:]
            if not match:
                known = [c.version for c in points] if tag is None else sorted({c.tag for c in points if c.tag})
                what = f"version {version}" if tag is None else f"tag {tag!r}"
                raise DesiruError(f"no checkpoint with {what}", path=self.path, hint=f"known: {known}")
            return journal.replay(seq=match[-1].seq)
        finally:
            if journal is not self._writer:
                journal.close()

    def close(self) -> None:
        """Release the journal (flushing pending writes)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> IncrementalSerializer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Checkpoint", "IncrementalSerializer"]
