"""The seam between the program model and the files it is saved in.

``Program.save``/``load`` and friends are the public API, but saving and loading live above the
model (``desiru.files``, on top of serialization). The model reaches them only through the
``Persistence`` set here by ``desiru.files`` when ``desiru`` is imported, so no import runs from
the model upward (docs/ARCHITECTURE.md). ``SaveResult`` is defined here, at the bottom, because
both sides name it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from desiru.errors import DesiruError


@dataclass(frozen=True)
class SaveResult:
    """What a save wrote: where, how many bytes, its checksum, and how.

    ``checksum`` is the content checksum the document records in its header
    (``"xxh3-128:<hex>"``, what loading and ``desiru verify`` check; docs/FORMAT.md); a file
    that records none (a DSPy JSON state file) has the sha256 hex of its bytes there.
    ``sha256`` is the sha256 hex of the file's bytes when it was asked for (``save(...,
    sha256=True)``) or computed anyway, else None.
    """

    path: Path
    size: int
    checksum: str
    format: str
    compression: str | None
    encrypted: bool
    sha256: str | None = None


class LoadedDocument(Protocol):
    """What a loaded document offers the model: its kind, state tree, header and file."""

    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> dict[str, Any]: ...
    @property
    def header(self) -> Mapping[str, Any]: ...
    @property
    def path(self) -> str | None: ...


@dataclass(frozen=True)
class Persistence:
    """The operations of ``desiru.files`` the model delegates to (each takes the object first)."""

    save: Callable[..., SaveResult]
    load: Callable[..., Any]
    load_module: Callable[..., Any]
    from_document: Callable[..., Any]
    export_module: Callable[..., SaveResult]
    import_module: Callable[..., Any]


_USED: Persistence | None = None


def use(persistence: Persistence) -> None:
    """Install the implementation (``desiru.files`` does, once, on import)."""
    global _USED
    _USED = persistence


def get() -> Persistence:
    """The installed implementation; a DesiruError when desiru's file layer was never imported."""
    if _USED is None:
        raise DesiruError("saving and loading are not set up: desiru.files was never imported",
                          hint="import desiru (the package) before saving or loading programs")
    return _USED


__all__ = ["LoadedDocument", "Persistence", "SaveResult", "get", "use"]
