"""desiru: save, load and journal compiled LM programs.

    import desiru as ds
    program.save("qa.msgpack", compress="zstd")
    program = ds.load("qa.msgpack.zst")
"""

__version__ = "0.1.0"

from desiru.errors import (  # noqa: E402
    CorruptDataError,
    DecryptionError,
    DesiruError,
    FormatError,
    IncompatibleVersionError,
    JournalLockedError,
    MissingKeyError,
    SerializationError,
    UnknownClassError,
    UnknownModuleError,
)
from desiru.example import Example, Prediction  # noqa: E402
from desiru.lm import ScriptedLM, configure  # noqa: E402
from desiru.module import ChainOfThought, Module, Predict  # noqa: E402
from desiru.program import Program  # noqa: E402
from desiru.signature import Field, Signature  # noqa: E402
from desiru.api import load  # noqa: E402
from desiru.serialization.documents import SaveResult  # noqa: E402
from desiru.rekey import rekey
from desiru.migrate import migrate  # noqa: E402

__all__ = [
    "ChainOfThought",
    "CorruptDataError",
    "DecryptionError",
    "DesiruError",
    "Example",
    "Field",
    "FormatError",
    "IncompatibleVersionError",
    "JournalLockedError",
    "MissingKeyError",
    "Module",
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
    "rekey",
    "migrate",
]
