"""Type stub of the Rust extension ``desiru._native`` (hand-written; checked with
``python -m mypy.stubtest desiru._native``). Code above ``desiru._engine``
never imports this module directly."""

from typing import Any, final

__all__ = [
    "FRAME_HEADER_LEN",
    "MAX_RECORD",
    "StreamWriter",
    "apply_edits",
    "common_ends",
    "content_hash",
    "diff_states",
    "frame_encode",
    "frame_scan",
    "packb",
    "sha256",
    "size_at_least",
    "unpackb",
    "xxh3_128",
]

# --- codec (rust/src/py/codec.rs) ---------------------------------------------

def packb(obj: Any, canonical: bool = False) -> bytes:
    """msgpack of a state tree, byte-identical to ``msgpack.packb(obj, use_bin_type=True)``;
    ``canonical`` sorts map keys. Raises desiru.SerializationError naming the path."""

def unpackb(data: bytes | bytearray | memoryview, *, max_depth: int = 512) -> Any:
    """Decode one msgpack value; raises desiru.CorruptDataError with ``offset``."""

def content_hash(obj: Any) -> bytes:
    """xxh3-128 (16 big-endian bytes) of ``packb(obj, canonical=True)``."""

def sha256(data: bytes | bytearray | memoryview) -> bytes:
    """sha256 of bytes (32 bytes); releases the GIL for large inputs."""

def xxh3_128(data: bytes | bytearray | memoryview) -> bytes:
    """xxh3-128 of bytes (16 big-endian bytes); releases the GIL for large inputs."""

# --- frame (rust/src/py/frame.rs) ---------------------------------------------

#: Largest payload of one record (256 MiB); see docs/FORMAT.md "Record framing".
MAX_RECORD: int
#: Size of a record header in bytes.
FRAME_HEADER_LEN: int

def frame_encode(payload: bytes | bytearray | memoryview, seq: int, salt: int) -> bytes:
    """One record: 24-byte header (length, seq, xxh3 payload and header checksums) + payload."""

def frame_scan(
    buf: bytes | bytearray | memoryview, salt: int, offset: int = 0, max_record: int = 268435456
) -> tuple[list[tuple[int, int, bytes]], int, tuple[int, str] | None]:
    """Scan records from ``offset``: ``(records as (seq, offset, payload), good_end, fault)``;
    ``fault`` is ``(offset, reason)`` of the first torn or corrupt record, or None."""

# --- diff (rust/src/py/diff.rs) -----------------------------------------------

def diff_states(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """The edits (docs/STATE.md) that turn ``old`` into ``new``; ``[program_created]`` if old is None."""

def common_ends(a: list[Any], b: list[Any]) -> tuple[int, int]:
    """``(p, q)``: ``a[:p]`` and ``b[:p]`` are the very same objects, and so are their last ``q``
    (``p + q <= min(len(a), len(b))``)."""

def apply_edits(state: dict[str, Any], edits: list[dict[str, Any]], own: dict[int, Any] | None = None
                ) -> dict[str, Any]:
    """Apply ``edits`` to ``state`` and return the result: ``state`` changed in place, or with ``own``
    (id -> object the caller owns) a copy on write sharing what the edits do not change; raises
    desiru.CorruptDataError or desiru.UnknownModuleError at the first edit that does not fit."""

# --- file writer (rust/src/py/filewrite.rs; unix only) -----------------------

@final
class StreamWriter:
    """Writes pieces of a document's state to a duplicate of ``fd`` from ``offset`` on, on a Rust
    thread that hashes them (XXH3-128) and starts their writeback; see serialization/stream_write.py."""

    def __new__(cls, fd: int, offset: int) -> StreamWriter: ...
    def put(self, data: bytes, role: int) -> None:
        """Write ``data`` next; ``role``: 0 outside the modules' span, 1 inside it, 2 a module."""
    def put_module(self, obj: Any) -> int:
        """Encode ``obj`` canonically into a reused buffer and write it next as a module; its length."""
    def finish(self) -> tuple[int, bytes, bytes, list[bytes]]:
        """Wait: ``(bytes, whole, rest, [module, ...])``, or the first write error as an OSError."""
    def close(self) -> None:
        """Stop after what is queued and wait, discarding any error."""

def size_at_least(obj: Any, need: int) -> bool:
    """Whether ``packb(obj)`` is surely at least ``need`` bytes long (a lower bound walked until it
    reaches ``need``)."""
