"""Format versions: MAJOR.MINOR.PATCH, ordered, compatible within one major."""

from __future__ import annotations

import functools
import re
from typing import Any

from desiru.errors import DesiruError

_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


@functools.total_ordering
class Version:
    """A semantic version of a file or journal format."""

    __slots__ = ("major", "minor", "patch")

    def __init__(self, text: str | Version) -> None:
        if isinstance(text, Version):
            self.major, self.minor, self.patch = text.major, text.minor, text.patch
            return
        m = _VERSION.match(text) if isinstance(text, str) else None
        if m is None:
            raise DesiruError(f"invalid version {text!r}",
                              hint="versions look like '2.0.0' (MAJOR.MINOR.PATCH)")
        self.major, self.minor, self.patch = (int(g) for g in m.groups())

    @classmethod
    def parse(cls, text: Any) -> Version:
        """Parse a version; accepts 'X.Y' as 'X.Y.0' since some old files wrote it that way."""
        if isinstance(text, str) and re.fullmatch(r"\d+\.\d+", text):
            text = text + ".0"
        return cls(text)

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Version(other)
            except DesiruError:  # a string that is no version equals no version
                return False
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, (Version, str)):
            return NotImplemented
        return self._key() < Version(other)._key()

    def __hash__(self) -> int:
        # equal to its string form, so it must hash like it too (dict and set lookups)
        return hash(str(self))

    def compatible_with(self, other: Version | str) -> bool:
        """Same major: files of one can be read by the other (newer minors with a warning)."""
        return self.major == Version(other).major

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def __repr__(self) -> str:
        return f"Version({str(self)!r})"


#: the format version this release writes
CURRENT_VERSION = Version("2.3.0")


class NewerFormatWarning(UserWarning):
    """A file was written by a newer minor release of our format: it loads, and the fields
    this release does not know are kept and written back unchanged."""
