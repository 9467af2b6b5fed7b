"""Pure-Python twin of ``desiru._native``: same functions, same bytes."""

from desiru._pure.codec import content_hash, packb, sha256, unpackb, xxh3_128
from desiru._pure.diff import apply_edits, common_ends, diff_states
from desiru._pure.filewrite import StreamWriter, size_at_least
from desiru._pure.frame import frame_encode, frame_scan

__all__ = [
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
