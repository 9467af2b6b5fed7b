"""Open a decoded document tree: normalize legacy keys, check the version, migrate, verify.

Above ``envelope`` (the layout and its checks), ``legacy`` (the original design's layout) and
``migrations`` (the chain of steps), so that none of those imports another in a circle.
"""

from __future__ import annotations

from typing import Any

import xxhash

from desiru.errors import CorruptDataError, FormatError
from desiru.serialization import envelope, legacy, migrations


def open_tree(
    tree: Any, path: str | None = None, *, verify: bool = True, raw_state: bytes | memoryview | None = None
) -> envelope.Document:
    """Check version, shape and checksum of a decoded document tree; returns its Document.

    ``raw_state``: the bytes of the encoded state as found in a msgpack file; when they are
    the canonical encoding (as desiru writes them) the checksum is checked on them directly.
    """
    tree = legacy.normalize_keys(tree)  # Ruby's yaml writes ":version"; read it as "version"
    version = envelope.header_version(tree, path)
    envelope.check_newer(version, path)
    if verify and tree.get("format") == envelope.FORMAT_NAME:
        envelope.check_header(tree, version, path)  # before any migration rewrites the header
    if version != envelope.CURRENT_VERSION:
        tree = migrations.upgrade_document(tree, version, path, verify=verify)
        raw_state = None  # the state was rewritten: only a re-encode can check it
    if tree.get("format") != envelope.FORMAT_NAME:
        raise FormatError("not a desiru document", path=path)
    kind = tree.get("kind")
    if kind not in envelope.KINDS:
        raise CorruptDataError(f"unknown document kind {kind!r}", path=path,
                               hint="desiru documents hold a 'program' or a 'module'; the file is damaged")
    state = tree.get("state")
    if not isinstance(state, dict):
        raise CorruptDataError("the document has no state", path=path,
                               hint="the file is damaged or was not written by desiru; restore it from a backup")
    if verify:
        want = tree.get("checksum")
        if not isinstance(want, str) or not want.startswith(f"{envelope.CHECKSUM_ALGORITHM}:"):
            raise CorruptDataError(
                f"the document has no valid checksum (found {want!r})",
                path=path,
                hint="every desiru document carries one; the file was altered or damaged, restore it from a backup",
            )
        # the xxhash package reads a memoryview in place (the abi3 extension would copy it)
        algorithm = envelope.CHECKSUM_ALGORITHM
        fast = f"{algorithm}:{xxhash.xxh3_128_hexdigest(raw_state)}" if raw_state is not None else None
        got = fast if fast is not None and fast == want else envelope.checksum_of(state)
        if want != got:
            raise CorruptDataError(
                f"content checksum mismatch: the file says {want}, its content hashes to {got}",
                path=path,
                hint="the file was altered or damaged; restore it from a backup (or, if you edited it by hand, "
                     "load it with verify=False: unsafe, nothing checks the content)",
            )
    header = {k: v for k, v in tree.items() if k != "state"}
    return envelope.Document(kind=kind, state=state, version=version, header=header)


__all__ = ["open_tree"]
