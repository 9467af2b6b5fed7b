"""Type stub of the Rust extension ``desiru._native`` (hand-written; checked with
``python -m mypy.stubtest desiru._native``). Code above ``desiru._engine``
never imports this module directly."""

from typing import Any

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

# --- diff (rust/src/py/diff.rs) -----------------------------------------------
