"""File access inside a journal directory that never follows a symbolic link.

A link planted inside a journal (``lock -> victim``, ``log/<seq>.log -> victim``,
``damaged -> elsewhere``) would make a writer truncate, overwrite or fill a file
outside the journal. A journal holds no links: opening one refuses it
(``refuse_links``), and every file is opened with O_NOFOLLOW and every folder
checked to be a real directory before it is written into, so a link planted
after the open check is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from desiru.errors import DesiruError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: open flag refusing a symlink as the last path component (0 where the OS has none)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_HINT = "a journal holds no symbolic links: remove the link (or put the real file there) and open it again"


@contextlib.contextmanager
def os_errors(what: str, journal: str | None, hint: str) -> Iterator[None]:
    """Turn an OSError raised inside into DesiruError("<what> failed: <reason>") naming the journal."""
    try:
        yield
    except OSError as exc:
        raise DesiruError(f"{what} failed: {exc.strerror or exc}", path=journal, hint=hint) from exc


def link_error(path: str | os.PathLike[str], journal: str | None) -> DesiruError:
    """The error for a symbolic link (or other non-regular entry) found inside a journal."""
    return DesiruError(f"{os.fspath(path)!r} inside the journal is a symbolic link or not a regular file; "
                       f"desiru refuses to follow it", path=journal, hint=_HINT)


def open_file(path: str | os.PathLike[str], flags: int, mode: int = 0o644, *, journal: str | None = None) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (DesiruError); other OSErrors pass through."""
    try:
        return os.open(path, flags | O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_error(path, journal) from None
        raise


def read_file(path: str | os.PathLike[str], *, journal: str | None = None) -> bytes:
    """The bytes of the regular file at ``path``, never through a symbolic link."""
    fd = open_file(path, os.O_RDONLY, journal=journal)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        while True:
            chunk = os.read(fd, max(size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def real_dir(path: str | os.PathLike[str], *, journal: str | None = None, create: int | None = None) -> Path:
    """``path``, checked to be a real directory (not a link to one); made first with mode ``create`` if given."""
    p = Path(path)
    if create is not None:
        try:
            p.mkdir()
            os.chmod(p, create)
        except FileExistsError:
            pass
    st = os.lstat(p)
    if not stat.S_ISDIR(st.st_mode):
        raise link_error(p, journal)
    return p


def refuse_links(root: Path, files: Iterable[str], folders: Iterable[str], journal: str) -> None:
    """DesiruError if any of ``root``'s ``files``/``folders``, or any entry of those folders, is a link."""
    for name in files:
        try:
            st = os.lstat(root / name)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise link_error(root / name, journal)
    for name in folders:
        try:
            real_dir(root / name, journal=journal)
        except FileNotFoundError:
            continue
        with os.scandir(root / name) as entries:
            bad = next((e.path for e in entries if e.is_symlink()), None)
        if bad is not None:
            raise link_error(bad, journal)


def hold_temporary(folder: Path) -> int:
    """Lock a folder being built (flock on its descriptor) so that ``remove_stale_temporaries`` leaves it be."""
    fd = os.open(folder, os.O_RDONLY | O_NOFOLLOW)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_stale_temporaries(root: Path) -> list[str]:
    """Remove the folders a crash left beside the journal at ``root`` while creating or rewriting it.

    They are named ``.<name>.<12 hex>.tmp`` (a creation) and ``.<name>.<12 hex>.rewrite``
    (a rekey or migration). A creation in progress holds an flock on its folder and is
    left alone; a rewrite runs under the journal's writer lock, which the caller holds.
    Never a link, never anything else.
    """
    import re
    import shutil

    pattern = re.compile(rf"^\.{re.escape(root.name)}\.[0-9a-f]{{12}}\.(tmp|rewrite)$")
    removed = []
    try:
        with os.scandir(root.parent) as entries:
            candidates = [e for e in entries if pattern.match(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for entry in candidates:
        try:
            fd = os.open(entry.path, os.O_RDONLY | O_NOFOLLOW)
        except OSError:
            continue
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # someone is building it right now
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
        finally:
            os.close(fd)
    return removed


__all__ = [
    "O_NOFOLLOW",
    "hold_temporary",
    "link_error",
    "open_file",
    "os_errors",
    "read_file",
    "real_dir",
    "refuse_links",
    "remove_stale_temporaries",
]
