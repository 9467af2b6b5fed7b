"""The one place where every error a desiru user can meet is defined.

Each error says what went wrong, where (path, offset or seq) and what to do.
The Rust extension raises these same classes (it imports them), so callers
only ever need ``except desiru.DesiruError``.
"""

from __future__ import annotations

import os


class DesiruError(Exception):
    """Base of every error desiru raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        offset: int | None = None,
        seq: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.offset = offset
        self.seq = seq
        self.hint = hint
        super().__init__(self._render())

    def locate(self, path: str | os.PathLike[str] | None) -> DesiruError:
        """Fill in the file path when the raiser did not know it (decoders see only bytes)."""
        if self.path is None and path is not None:
            self.path = os.fspath(path)
            self.args = (self._render(),)
        return self

    def within(self, context: str) -> DesiruError:
        """Prefix the message with where in the program it happened, e.g. "module 'qa.answer'"."""
        self.message = f"{context}: {self.message}"
        self.args = (self._render(),)
        return self

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        text = self.message
        if where:
            text = f"{', '.join(where)}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return text


class FormatError(DesiruError):
    """The format is unknown, unsupported, or cannot be detected from the bytes."""


class CorruptDataError(DesiruError):
    """Bytes fail a checksum, are truncated, or are malformed."""


class IncompatibleVersionError(DesiruError):
    """A file's format or event version cannot be brought to the current one."""


class DecryptionError(DesiruError):
    """Encrypted data could not be authenticated: wrong key or tampered bytes."""


class MissingKeyError(DecryptionError):
    """The data is encrypted and no key was given."""


class NotEncryptedError(DecryptionError):
    """A key was given for data that is not encrypted (refused: it could be a planted plaintext)."""


class UnknownClassError(DesiruError):
    """A file names a Program or Module class that is not in the registry."""


class UnknownModuleError(DesiruError):
    """A module path does not name a module of the program."""


class JournalLockedError(DesiruError):
    """Another writer holds the journal's lock."""


class CommitFailedError(DesiruError):
    """A commit did not happen (nothing of it was stored); the writer may go on and commit again."""


class SerializationError(DesiruError):
    """A value in a program cannot be written (it is not part of a state tree)."""


__all__ = [
    "CommitFailedError",
    "CorruptDataError",
    "DecryptionError",
    "DesiruError",
    "FormatError",
    "IncompatibleVersionError",
    "JournalLockedError",
    "MissingKeyError",
    "NotEncryptedError",
    "SerializationError",
    "UnknownClassError",
    "UnknownModuleError",
]
