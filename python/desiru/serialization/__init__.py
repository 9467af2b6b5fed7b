"""Serialization: documents, versions, encryption and incremental checkpoints."""

from desiru.serialization.documents import SaveResult
from desiru.serialization.encrypted import EncryptedSerializer
from desiru.serialization.incremental import IncrementalSerializer
from desiru.serialization.serializer import Serializer
from desiru.serialization.version import CURRENT_VERSION, Version

__all__ = ["CURRENT_VERSION", "EncryptedSerializer", "IncrementalSerializer", "SaveResult", "Serializer", "Version"]
