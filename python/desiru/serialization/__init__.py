"""Serialization: state trees to document bytes and back (formats, container, versions, migrations).

This package's own modules work on state trees and never import the journal or the layers
above. For the public contract (DESIGN.md) it also names ``IncrementalSerializer``, which
keeps checkpoints in a journal and so lives in ``desiru.journal.checkpoints``: that one name
is resolved when first asked for (PEP 562), so importing serialization never imports the
journal (docs/ARCHITECTURE.md).
"""

from typing import Any

from desiru.serialization.documents import SaveResult
from desiru.serialization.encrypted import EncryptedSerializer
from desiru.serialization.serializer import Serializer
from desiru.serialization.version import CURRENT_VERSION, Version


def __getattr__(name: str) -> Any:
    if name == "IncrementalSerializer":
        from desiru.journal.checkpoints import IncrementalSerializer

        return IncrementalSerializer
    raise AttributeError(f"module 'desiru.serialization' has no attribute {name!r}")


__all__ = ["CURRENT_VERSION", "EncryptedSerializer", "IncrementalSerializer", "SaveResult", "Serializer", "Version"]
