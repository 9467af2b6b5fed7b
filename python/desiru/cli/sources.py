"""What commands read and write: documents and journal points, as state trees.

The command line works on state trees (docs/STATE.md), not on Program objects,
so that it can open any file whatever class it names: the classes of a user's
program are not imported by ``desiru``, and loading never imports what a file names.

A *source* is ``PATH`` (a document, or a journal at its head) or a journal point:
``PATH@tag:NAME``, ``PATH@seq:N`` or ``PATH@head``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desiru.atomic import atomic_write
from desiru.errors import CorruptDataError, DesiruError, UnknownModuleError
from desiru.serialization import container, formats
from desiru.serialization.documents import (
    Document,
    SaveResult,
    encode_document,
    load_document,
)

_SEQ = re.compile(r"^seq:(\d+)$")
SELECTOR_HINT = "write PATH@tag:NAME, PATH@seq:N or PATH@head"


@dataclass(frozen=True)
class Source:
    """A file, optionally with a point in it (only journals have points)."""

    text: str
    path: Path
    tag: str | None = None
    seq: int | None = None
    head: bool = False

    @property
    def has_point(self) -> bool:
        """True when a tag, a seq or @head was given."""
        return self.tag is not None or self.seq is not None or self.head


def is_postgres(text: Any) -> bool:
    """Whether ``text`` is a PostgreSQL journal location (postgresql://...#NAME or pg:NAME)."""
    from desiru.journal.locate import is_postgres as check

    return check(text)


def parse_source(text: str) -> Source:
    """Split ``PATH@tag:NAME`` / ``PATH@seq:N`` / ``PATH@head``; a path that exists is taken whole.

    A PostgreSQL location (``postgresql://USER@HOST/DB#NAME``, ``pg:NAME``) takes a point
    after its journal name (``...#NAME@tag:best``); its ``path`` is the location string.
    """
    if is_postgres(text):
        head, hash_, name = text.partition("#") if not text.startswith("pg:") else ("", "", text)
        if "@" not in name:
            return Source(text, text)  # type: ignore[arg-type]
        base_name, _, selector = name.rpartition("@")
        base = head + hash_ + base_name
        parsed = parse_source(f"x@{selector}")
        return Source(text, base, tag=parsed.tag, seq=parsed.seq, head=parsed.head)  # type: ignore[arg-type]
    if "@" not in text or os.path.exists(text):
        return Source(text, Path(text))
    base, _, selector = text.rpartition("@")
    if not base:
        raise DesiruError(f"{text!r} has no path before '@'", hint=SELECTOR_HINT)
    if selector == "head":
        return Source(text, Path(base), head=True)
    if selector.startswith("tag:") and len(selector) > 4:
        return Source(text, Path(base), tag=selector[4:])
    match = _SEQ.match(selector)
    if match:
        return Source(text, Path(base), seq=int(match.group(1)))
    raise DesiruError(f"cannot read the journal point {selector!r} in {text!r}", hint=SELECTOR_HINT)


#: what to do about a journal whose header is damaged or gone
HEADER_HINT = "desiru cannot rebuild a journal's header; restore the journal from a copy"


def is_journal(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a desiru journal, sound or not: the journal package recognises it, or
    it is a folder holding a ``header`` file or a ``log/`` folder (a journal whose header is damaged
    or missing is still a journal, to verify and report, not "a folder")."""
    from desiru import journal
    from desiru.journal.file_store import HEADER_FILE, LOG_DIR

    if is_postgres(path):
        return True  # opening it says whether the database holds it
    if journal.is_journal(path):
        return True
    p = Path(path)
    return p.is_dir() and ((p / HEADER_FILE).exists() or (p / LOG_DIR).is_dir())


def header_problem(path: str | os.PathLike[str]) -> str | None:
    """``"header: missing"`` / ``"header: damaged (...)"`` for a journal folder whose header cannot be
    read, else None."""
    from desiru.journal.file_store import HEADER_FILE, decode_header

    if is_postgres(path):
        return None  # no header file: the database keeps the meta
    header = Path(path) / HEADER_FILE
    try:
        data = header.read_bytes()
    except FileNotFoundError:
        return "header: missing (the journal folder has no header file)"
    except OSError as exc:
        return f"header: unreadable ({exc.strerror or exc})"
    try:
        decode_header(data, os.fspath(path), check_version=False)
    except DesiruError as exc:
        where = f" at offset {exc.offset}" if exc.offset is not None else ""
        return f"header: damaged{where} ({exc.message})"
    return None


@contextmanager
def open_journal(path: str | os.PathLike[str], key: Any = None, *, write: bool = False,
                 **options: Any) -> Iterator[Any]:
    """An existing journal, opened and closed again; never creates one.

    Readers (the default) take no lock and never cut a torn tail, so looking at a
    journal changes nothing and works while an optimization is writing to it.
    """
    from desiru import journal

    if is_postgres(path):
        if key is not None and not journal_encrypted(path):
            key = None
        with journal.Journal.open(path, key=key, create=False, readonly=not write, **options) as j:
            yield j
        return
    if not os.path.exists(path):
        raise DesiruError("no such journal", path=path, hint="check the path")
    if not is_journal(path):
        raise DesiruError("not a desiru journal", path=path,
                          hint="journal commands take a journal directory; `desiru inspect` shows what this is")
    problem = header_problem(path)
    if problem is not None:
        raise CorruptDataError(problem, path=path, hint=HEADER_HINT)
    if key is not None and not journal_encrypted(path):
        key = None  # one --key-env may serve several inputs (diff A B); a plain journal needs none
    with journal.Journal.open(path, key=key, create=False, readonly=not write, **options) as j:
        yield j


def journal_header(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """(format version, meta) from a journal's header alone: cheap, checksummed, needs no key."""
    from desiru.journal.file_store import HEADER_FILE, decode_header

    if is_postgres(path):
        from desiru.journal.locate import store_for

        store = store_for(os.fspath(path), readonly=True)
        try:
            meta = store.open()
            return str(store.version), dict(meta)  # type: ignore[attr-defined]
        finally:
            store.close()
    data = (Path(path) / HEADER_FILE).read_bytes()
    version, body = decode_header(data, os.fspath(path), check_version=False)
    return str(version), dict(body.get("meta") or {})


def journal_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether a journal's records are encrypted, from its header."""
    try:
        return journal_header(path)[1].get("encryption") is not None
    except OSError:
        return True  # let opening the journal report the problem


@contextmanager
def about(path: str | os.PathLike[str]) -> Iterator[None]:
    """Name ``path`` in any DesiruError raised inside that does not say which file it is about."""
    try:
        yield
    except DesiruError as exc:
        if exc.path is None:
            exc.path = os.fspath(path)
            exc.args = (exc._render(),)
        raise


def with_known_classes(node: Any) -> Any:
    """A copy of a state tree where every class name the registry does not know is replaced by
    the base class (Program or Module), so the library can build it without the user's code."""
    from desiru import registry

    if not isinstance(node, dict):
        return node
    out = dict(node)
    name = out.get("class")
    base = "desiru.Program" if out.get("kind") == "program" else "desiru.Module"
    if isinstance(name, str) and name not in registry.registered():
        try:
            registry.resolve(name, base=object)
        except DesiruError:
            out["class"] = base
    if isinstance(out.get("modules"), list):
        out["modules"] = [with_known_classes(m) for m in out["modules"]]
    return out


def check_shape(state: Any, kind: str, path: str | os.PathLike[str] | None = None) -> None:
    """Build the program (or module) through the library, raising CorruptDataError when the tree
    has a shape it would refuse to load (e.g. a module's demos that are not a list).

    A class the registry does not know is not a fault here: the command line never imports
    a user's classes, so such nodes are built as the base class instead.
    """
    from desiru.module import Module
    from desiru.program import Program

    where = os.fspath(path) if path is not None else None
    tree = with_known_classes(state)
    if kind == "module":
        Module.from_state(tree, path=where)
    else:
        Program.from_state(tree, path=where)


def read_document(path: str | os.PathLike[str], key: Any = None, *, verify: bool = True,
                  progress: Any = None) -> Document:
    """``load_document``, naming the file in every error; a document whose state the library
    would refuse to build is a CorruptDataError here too. ``verify=False`` (--no-verify) skips
    the content checksum: unsafe, for a file edited by hand. ``progress`` is told the bytes read."""
    with about(path):
        doc = load_document(path, key=key, verify=verify, progress=progress)
        check_shape(doc.state, doc.kind, path)
        return doc


@dataclass
class Loaded:
    """A state tree read from a source, with what is known about where it came from."""

    state: dict[str, Any]
    kind: str
    label: str
    document: Document | None = None


def read_source(src: Source, key: Any = None, *, verify: bool = True, progress: Any = None) -> Loaded:
    """The state tree at ``src``: a whole document, or a journal replayed to its point.

    ``verify=False`` skips a document's content checksum (journals check every record anyway);
    ``progress`` is a desiru.progress callback told how far a journal's replay has got (events),
    or how many bytes of a document were read.
    """
    if is_journal(src.path):
        with about(src.path), open_journal(src.path, key) as j:
            state = j.replay_state(seq=src.seq, tag=src.tag, progress=progress)
        return Loaded(state, "program", src.text)
    if src.has_point and not os.path.exists(src.path):
        raise DesiruError("no such file or journal", path=src.path, hint="check the path")
    if src.has_point:
        raise DesiruError(f"{src.path} is a document, not a journal; only journals have points such as "
                          f"@tag:NAME", path=src.path, hint=f"use the path alone: {src.path}")
    doc = read_document(src.path, key=key, verify=verify, progress=progress)
    return Loaded(doc.state, doc.kind, src.text, doc)


def is_dspy_save(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is the JSON state file dspy's ``module.save("x.json")`` writes."""
    import json

    from desiru.serialization.envelope import looks_like_dspy_save

    try:
        with open(path, "rb") as f:
            return looks_like_dspy_save(json.loads(f.read()))
    except (OSError, ValueError, RecursionError):
        return False


def read_dspy_save(src: Source) -> Loaded:
    """A DSPy save file read through desiru.interop.dspy (dspy itself is not needed)."""
    from desiru.interop.dspy import read_dspy_save as read

    with about(src.path):
        return Loaded(read(src.path).to_state(), "program", src.text)


# -- writing -------------------------------------------------------------------------------------
_SUFFIX_COMPRESSION = {suffix: method for method, suffix in container.SUFFIX.items()}
_SUFFIX_COMPRESSION[".zstd"] = "zstd"


def compression_for(path: str | os.PathLike[str], option: str | None) -> str | None:
    """Compression asked for by ``--compress`` ("none" turns it off) or else by the suffix.

    An option the file name contradicts (gzip into ``x.zst``, zstd into ``x.json``) is refused:
    the name is what people and tools go by.
    """
    ext = os.path.splitext(os.fspath(path).lower())[1]
    by_name = _SUFFIX_COMPRESSION.get(ext)
    if option is None:
        return by_name
    wanted = None if option == "none" else container.normalize_compression(option)
    if wanted != by_name and (by_name is not None or ext in formats.SUFFIXES):
        says = f"{by_name}-compressed" if by_name else "not compressed"
        ending = f"ending in {container.SUFFIX[wanted]}" if wanted else "without .zst/.gz"
        raise DesiruError(f"--compress {option} contradicts the output's name, which says {says} ({ext})",
                          path=path, hint=f"drop --compress (the suffix decides), or give a name {ending}")
    return wanted


def format_for(path: str | os.PathLike[str], option: str | None) -> str:
    """Format asked for by ``--format`` or else by the suffix (msgpack when neither says);
    an option the suffix contradicts (``--format json`` into ``x.msgpack``) is refused."""
    by_name = formats.format_from_suffix(path)
    wanted = formats.normalize_format(option)
    if wanted and by_name and wanted != by_name:
        raise DesiruError(f"--format {option} contradicts the output's name, which says {by_name}", path=path,
                          hint="drop --format (the suffix decides), or give the file a matching suffix")
    return wanted or by_name or formats.DEFAULT_FORMAT


def refuse_overwrite(out: str | os.PathLike[str], force: bool) -> None:
    """Refuse to replace an existing output unless --force (as `desiru demo` does)."""
    if not force and os.path.lexists(out):
        raise DesiruError("the output exists", path=out, hint="pass --force to replace it, or give another name")


def check_output(out: str | os.PathLike[str], *, fmt: str | None = None, compress: str | None = None,
                 force: bool = False) -> None:
    """Everything that can be said against an output before any work is done: a journal or folder,
    an existing file without --force, options its name contradicts."""
    if os.fspath(out).rstrip("/\\").endswith(".journal") or os.path.isdir(out):
        raise DesiruError("this command writes a document, and the output looks like a journal or folder",
                          path=out, hint="give a file name such as out.json or out.msgpack.zst")
    refuse_overwrite(out, force)
    format_for(out, fmt)
    compression_for(out, compress)


def write_state(state: dict[str, Any], out: str | os.PathLike[str], *, kind: str, fmt: str | None = None,
                compress: str | None = None, key: Any = None, force: bool = False) -> SaveResult:
    """Save a state tree as a document at exactly ``out`` (atomically), as its options and suffix ask.

    Unlike ``Program.save``, no .zst/.gz is appended: on the command line the user names the file.
    An existing ``out`` is replaced only with ``force`` (commands check first with ``check_output``).
    """
    check_output(out, fmt=fmt, compress=compress, force=force)
    return write_encoded(encode_state(state, out, kind=kind, fmt=fmt, compress=compress, key=key), out)


@dataclass
class Encoded:
    """A document's bytes, ready to be written, and how they were made."""

    data: bytes
    format: str
    compression: str | None
    encrypted: bool
    checksum: str = ""  # the content checksum the document records


def encode_state(state: dict[str, Any], out: str | os.PathLike[str], *, kind: str, fmt: str | None = None,
                 compress: str | None = None, key: Any = None) -> Encoded:
    """The bytes ``write_state`` writes (format and compression from the options, else ``out``'s suffix)."""
    chunks, fmt_used, method, checksum = encode_document(state, kind=kind, format=format_for(out, fmt),
                                                         compress=compression_for(out, compress), key=key)
    return Encoded(b"".join(chunks), fmt_used, method, key is not None, checksum)


def write_encoded(encoded: Encoded, out: str | os.PathLike[str], *, progress: Any = None) -> SaveResult:
    """Write encoded bytes at exactly ``out``, atomically (``progress`` is told the bytes written)."""
    size = atomic_write(out, encoded.data, progress=progress)
    return SaveResult(Path(out), size, encoded.checksum, encoded.format, encoded.compression, encoded.encrypted)


def rewrite_document(doc: Document, state: dict[str, Any], key: Any = None) -> SaveResult:
    """Replace a loaded document in place with ``state``, keeping its path, format, compression
    and encryption (``key`` is the key that opened it)."""
    assert doc.path is not None
    chunks, fmt, method, checksum = encode_document(state, kind=doc.kind, format=doc.format,
                                                    compress=doc.compression, key=key if doc.encrypted else None)
    size = atomic_write(doc.path, chunks)
    return SaveResult(Path(doc.path), size, checksum, fmt, method, doc.encrypted)


# -- walking a state tree --------------------------------------------------------------------------
def iter_modules(state: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every module state in a program state as (dotted path, state), depth first, in order."""
    for child in state.get("modules") or []:
        if not isinstance(child, dict):
            continue
        path = f"{prefix}{child.get('name', '?')}"
        if child.get("kind") == "program":
            yield from iter_modules(child, path + ".")
        else:
            yield path, child


def find_child(state: dict[str, Any], path: str) -> dict[str, Any]:
    """The module or nested program state at a dotted path."""
    node = state
    for part in path.split("."):
        match = None
        if node.get("kind") == "program":
            match = next((c for c in node.get("modules") or [] if isinstance(c, dict) and c.get("name") == part),
                         None)
        if match is None:
            known = [p for p, _ in iter_modules(state)]
            raise UnknownModuleError(f"no module {path!r} in this program", hint=f"known modules: {known}")
        node = match
    return node


def signature_text(module: dict[str, Any]) -> str:
    """``"question, context -> reasoning, answer"`` from a module state."""
    sig = module.get("signature") or {}
    if isinstance(sig, str):
        return sig

    def names(side: str) -> str:
        return ", ".join(str(f.get("name")) for f in sig.get(side) or [] if isinstance(f, dict))

    return f"{names('inputs')} -> {names('outputs')}"
