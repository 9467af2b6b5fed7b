"""Documents on disk and in memory: the full pipeline in both directions.

save: state -> envelope -> format bytes -> compress -> encrypt -> atomic write.
load: read -> decrypt -> decompress -> detect format -> check version -> decode ->
migrate -> verify checksum -> state.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import xxhash

from desiru import gcpause
from desiru.atomic import atomic_write
from desiru.errors import CorruptDataError, DesiruError
from desiru.persistence import SaveResult
from desiru.progress import ProgressCallback, Ticker
from desiru.serialization import container, envelope, formats, framed, opening, stream_write, streamed, table
from desiru.serialization.envelope import Document


def serialize_document(
    state: dict[str, Any],
    *,
    kind: str = "program",
    format: str | None = None,
    compress: bool | str | None = None,
    key: Any = None,
    extra: dict[str, Any] | None = None,
) -> tuple[bytes, str, str | None]:
    """Bytes of a document holding ``state``; returns (bytes, format, compression)."""
    chunks, fmt, method, _ = encode_document(state, kind=kind, format=format, compress=compress, key=key, extra=extra)
    return b"".join(chunks), fmt, method


def encode_document(
    state: dict[str, Any],
    *,
    kind: str = "program",
    format: str | None = None,
    compress: bool | str | None = None,
    key: Any = None,
    extra: dict[str, Any] | None = None,
) -> tuple[list[bytes], str, str | None, str]:
    """A document holding ``state`` as chunks to write one after the other (never joined here), its
    format, compression, and the content checksum its header records (``"xxh3-128:<hex>"``)."""
    fmt = formats.normalize_format(format) or formats.DEFAULT_FORMAT
    method = container.normalize_compression(compress)
    if fmt == "msgpack":
        chunks, start, module_table, checksum = msgpack_parts(state, kind, extra)
        if module_table is not None and (method is not None or key is not None):
            return framed.framed_document(chunks, start, module_table, method, key), fmt, method, checksum
        if method is None and key is None:
            return chunks, fmt, method, checksum
        doc = b"".join(chunks)
    else:
        tree = envelope.build(state, kind, extra=extra)
        checksum = tree["checksum"]
        doc = formats.encode(tree, fmt)
    return [container.seal(doc, fmt=fmt, compression=method, key=key)], fmt, method, checksum


def msgpack_parts(state: dict[str, Any], kind: str, extra: dict[str, Any] | None
                  ) -> tuple[list[bytes], int, dict[str, Any] | None, str]:
    """A msgpack document as chunks: the header map entries, then the canonical state (from the
    chunk at the index returned second); third, the module table of a program (else None);
    fourth, the content checksum the header records.

    The state is encoded once, canonically, and its checksum is XXH3 of those very bytes,
    so neither saving nor loading walks the tree a second time (docs/FORMAT.md). A program
    also gets its module table (``table.state_chunks``), which makes it open lazily.
    """
    body, module_table = table.state_chunks(state, kind)
    whole = xxhash.xxh3_128()
    for chunk in body:
        whole.update(chunk)
    checksum = f"{envelope.CHECKSUM_ALGORITHM}:{whole.hexdigest()}"
    head = table.header_chunks(envelope.build(state, kind, extra=extra, checksum=checksum, module_table=module_table))
    return [*head, *body], len(head), module_table, checksum


def deserialize_document(
    data: bytes, *, key: Any = None, path: str | None = None, format: str = "auto", verify: bool = True,
    max_size: int | None = None,
) -> Document:
    """The Document in ``data``, whatever its format, compression and encryption.

    ``max_size`` bounds the decompressed size (default: ``container.decompression_limit``).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DesiruError(f"expected bytes, got {type(data).__name__}")
    raw, layers = framed.unseal(bytes(data), key=key, path=path, max_size=max_size)
    fmt = formats.detect(raw, path) if format is None or format.lower() == "auto" else formats.normalize_format(format)
    assert fmt is not None
    early, state_offset = envelope.scan_header(raw) if fmt == "msgpack" else (None, None)
    if early is not None:
        envelope.check_newer(early, path)
    try:
        with gcpause.paused():  # a large tree of fresh dicts and lists, none in a cycle
            tree = formats.decode(raw, fmt, path)
    except CorruptDataError:
        if verify and early is not None and table.has_table(early):
            _name_damaged_module(raw, path)
        raise
    if verify and state_offset is not None and early is not None and table.has_table(early) \
            and isinstance(tree, dict) and table.TABLE_KEY in tree:
        envelope.check_header(tree, early, path)  # the table is trusted once the header checksum holds
        table.check_table(raw, state_offset, tree, path)  # a damaged module is named, before the whole checksum
    raw_state = memoryview(raw)[state_offset:] if verify and state_offset is not None else None
    doc = opening.open_tree(tree, path, verify=verify, raw_state=raw_state)
    if verify and table.TABLE_KEY in doc.header and early is not None and table.has_table(early):
        table.check_outlines(doc.header, doc.state, path)
    doc.format, doc.compression, doc.encrypted, doc.path, doc.key_id = (
        fmt, layers.compression, layers.encrypted, path, layers.key_id)
    return doc


def _name_damaged_module(raw: bytes, path: str | None) -> None:
    """After a failed decode: CorruptDataError naming the module whose bytes fail the module table,
    when the header and the table are intact (otherwise the decoder's own error stands)."""
    found = table.read_header(raw)
    if found is None or table.TABLE_KEY not in found[0]:
        return
    header, offset = found
    try:
        envelope.check_header(header, envelope.header_version(header, path), path)
        table.parse(header[table.TABLE_KEY], len(raw) - offset, path)
    except DesiruError:
        return
    table.check_table(raw, offset, header, path)


def compression_from_suffix(path: str | os.PathLike[str]) -> str | None:
    """The compression a file name asks for: ".zst"/".zstd" -> zstd, ".gz" -> gzip."""
    name = os.fspath(path).lower()
    if name.endswith((".zst", ".zstd")):
        return "zstd"
    return "gzip" if name.endswith(".gz") else None


def target_path(path: str | os.PathLike[str], compression: str | None, *, encrypted: bool = False) -> Path:
    """``path`` with .zst/.gz added when compressing and not already there.

    An encrypted file is a desiru container whatever it holds, so no suffix is added to it.
    """
    p = Path(path)
    if compression is not None and not encrypted:
        suffix = container.SUFFIX[compression]
        if not p.name.lower().endswith((suffix, ".zstd") if compression == "zstd" else (suffix,)):
            p = p.with_name(p.name + suffix)
    return p


def save_document(
    state: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    kind: str = "program",
    format: str | None = None,
    compress: bool | str | None = None,
    key: Any = None,
    extra: dict[str, Any] | None = None,
    sha256: bool = False,
) -> SaveResult:
    """Write a document atomically and durably; the format comes from ``format=`` or the suffix.

    The result's checksum is the content checksum the header records (computed once, as the
    bytes are encoded); ``sha256=True`` also hashes the file's bytes with sha256 (a second pass,
    on a second thread while writing). A large plain msgpack program is written while it is
    encoded (``stream_write``).
    """
    fmt = formats.normalize_format(format) or formats.format_from_suffix(path) or formats.DEFAULT_FORMAT
    method = container.normalize_compression(compress) if compress is not None else compression_from_suffix(path)
    target = target_path(path, method, encrypted=key is not None)
    big = stream_write.plan(state, kind) if fmt == "msgpack" and method is None and key is None and not sha256 \
        else None
    if big is not None:
        try:
            size, checksum = stream_write.save(state, kind, extra, target, big)
            return SaveResult(target, size, checksum, fmt, None, False)
        except stream_write.Misfit:
            pass  # a module of 4 GiB or more: written below, the header before the state
    chunks, fmt, method, checksum = encode_document(state, kind=kind, format=fmt, compress=method, key=key,
                                                    extra=extra)
    digest = None
    if sha256 and sum(map(len, chunks)) >= PARALLEL_HASH_BYTES:
        # hashlib and file writes both release the GIL: hash on a second core while writing
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_sha256_hex, chunks)
            size = atomic_write(target, chunks)
            digest = pending.result()
    else:
        size = atomic_write(target, chunks)
        digest = _sha256_hex(chunks) if sha256 else None
    return SaveResult(target, size, checksum, fmt, method, key is not None, digest)


#: above this size a save asked for sha256 hashes its bytes in a second thread while writing them
PARALLEL_HASH_BYTES = 4 << 20


def _sha256_hex(chunks: list[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file, with a clear error when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DesiruError("no such file", path=path, hint="check the path") from None
    except IsADirectoryError:
        raise DesiruError("this is a folder, not a file", path=path) from None
    except OSError as exc:
        raise DesiruError(f"cannot read the file: {exc.strerror or exc}", path=path) from None


def load_document(path: str | os.PathLike[str], *, key: Any = None, verify: bool = True,
                  max_size: int | None = None, progress: ProgressCallback | None = None) -> Document:
    """Read and open the document at ``path`` (``max_size``: see ``deserialize_document``).

    A large plain program with a module table is read module by module from a map
    (``streamed``: no whole-file buffer); ``progress(done, total)`` is told the bytes read.
    """
    if key is None and verify:
        with gcpause.paused():
            doc = streamed.read(path, progress=progress)
        if doc is not None:
            return doc
    data = read_bytes(path)
    tick = Ticker(progress, len(data))
    try:
        doc = deserialize_document(data, key=key, path=os.fspath(path), verify=verify, max_size=max_size)
        tick.end()
        return doc
    except RecursionError:
        raise CorruptDataError("the document is nested too deeply", path=path) from None
    except DesiruError as exc:
        exc.locate(path)
        raise
