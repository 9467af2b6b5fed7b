"""The one seam between desiru's Python layers and its byte engines.

Everything above this module calls these functions and never imports
``desiru._native`` or ``desiru._pure`` directly. The Rust extension is used
when it is importable, unless ``DESIRU_PURE_PYTHON=1`` forces the pure-Python
twins (built on the ``msgpack`` and ``xxhash`` packages), which produce the
same bytes and the same results.
"""

from __future__ import annotations

import os
from typing import Any

_FORCE_PURE = os.environ.get("DESIRU_PURE_PYTHON", "") not in ("", "0")

if not _FORCE_PURE:
    try:
        from desiru import _native as _impl  # type: ignore[attr-defined]

        BACKEND = "rust"
    except ImportError:  # the extension is absent (e.g. a source checkout without a build)
        _FORCE_PURE = True

if _FORCE_PURE:
    from desiru._pure import backend as _impl  # type: ignore[no-redef]

    BACKEND = "python"

#: msgpack encode of a state tree; ``canonical=True`` sorts map keys.
packb: Any = _impl.packb
#: msgpack decode with bounded depth and allocation.
unpackb: Any = _impl.unpackb
#: xxh3-128 of the canonical encoding of a state tree, as 16 bytes.
content_hash: Any = _impl.content_hash
#: sha256 of bytes, as 32 bytes.
sha256: Any = _impl.sha256
#: xxh3-128 of bytes, as 16 bytes.
xxh3_128: Any = _impl.xxh3_128
#: encode one journal record: header + payload.
frame_encode: Any = _impl.frame_encode
#: scan a buffer of records: (records, good_end, fault).
frame_scan: Any = _impl.frame_scan
#: structural diff of two program state trees -> list of edits.
diff_states: Any = _impl.diff_states
#: apply a list of edits to a state tree in place; returns it.
apply_edits: Any = _impl.apply_edits
#: (p, q): how many items two lists share at their start and then at their end, by identity.
common_ends: Any = _impl.common_ends
#: writes a document's state into a file on a second thread while the next module is encoded,
#: hashing it there (serialization/stream_write.py).
StreamWriter: Any = _impl.StreamWriter
#: ``size_at_least(obj, n)``: whether ``packb(obj)`` is surely at least n bytes, from a lower bound
#: walked only until it reaches n.
size_at_least: Any = _impl.size_at_least

__all__ = [
    "BACKEND",
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
