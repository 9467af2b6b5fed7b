"""desiru: save, load and journal compiled LM programs.

    import desiru as ds
    program.save("qa.msgpack", compress="zstd")
    program = ds.load("qa.msgpack.zst")
"""

from desiru._version import __version__
from desiru.api import load, load_module
from desiru.errors import (
    CommitFailedError,
    CorruptDataError,
    DecryptionError,
    DesiruError,
    FormatError,
    IncompatibleVersionError,
    JournalLockedError,
    MissingKeyError,
    NotEncryptedError,
    SerializationError,
    UnknownClassError,
    UnknownModuleError,
)
from desiru.example import Example, Prediction
from desiru.interop.dspy import adapter as _dspy_adapter  # noqa: F401  (registers the dspy adapter)
from desiru.journal import CommitResult, Journal
from desiru.lm import ScriptedLM, configure
from desiru.migrate import migrate
from desiru.module import ChainOfThought, Module, Predict
from desiru.program import Program
from desiru.rekey import rekey
from desiru.serialization.documents import SaveResult
from desiru.signature import Field, Signature

__all__ = [
    "ChainOfThought",
    "CommitFailedError",
    "CommitResult",
    "CorruptDataError",
    "DecryptionError",
    "DesiruError",
    "Example",
    "Field",
    "FormatError",
    "IncompatibleVersionError",
    "Journal",
    "JournalLockedError",
    "MissingKeyError",
    "Module",
    "NotEncryptedError",
    "Predict",
    "Prediction",
    "Program",
    "SaveResult",
    "ScriptedLM",
    "SerializationError",
    "Signature",
    "UnknownClassError",
    "UnknownModuleError",
    "__version__",
    "configure",
    "load",
    "load_module",
    "migrate",
    "rekey",
]
