"""The event journal: stream every change of a program, replay it to any point.

    with ds.Journal.open("runs/qa.journal", fsync="batch") as j:
        j.commit(program, tag="epoch_1")
        old = j.replay(tag="epoch_1")

See docs/journal.md for durability, the on-disk layout and the store interface.
"""

from desiru.journal.events import (
    EVENT_TYPES,
    CheckpointTagged,
    ConfigurationSet,
    CustomDataSet,
    DemoAdded,
    DemoRemoved,
    DemosReordered,
    Event,
    MetadataSet,
    ModuleAdded,
    ModuleImported,
    ModuleRemoved,
    ParameterSet,
    ParameterUnset,
    ProgramCreated,
    SignatureSet,
    event_from_edit,
    event_from_record,
)
from desiru.journal.file_store import FileStore
from desiru.journal.journal import Checkpoint, CommitResult, Journal, JournalWarning, VerifyReport
from desiru.journal.memory_store import MemoryStore
from desiru.journal.repair import RepairReport, is_journal, repair
from desiru.journal.rewrite import migrate_journal, rekey_journal
from desiru.journal.state_hash import state_hash
from desiru.journal.store import CutReport, Fault, JournalStore

__all__ = [
    "EVENT_TYPES",
    "Checkpoint",
    "CheckpointTagged",
    "CommitResult",
    "ConfigurationSet",
    "CustomDataSet",
    "CutReport",
    "DemoAdded",
    "DemoRemoved",
    "DemosReordered",
    "Event",
    "Fault",
    "FileStore",
    "Journal",
    "JournalStore",
    "JournalWarning",
    "MemoryStore",
    "MetadataSet",
    "ModuleAdded",
    "ModuleImported",
    "ModuleRemoved",
    "ParameterSet",
    "ParameterUnset",
    "ProgramCreated",
    "RepairReport",
    "SignatureSet",
    "VerifyReport",
    "event_from_edit",
    "event_from_record",
    "is_journal",
    "migrate_journal",
    "rekey_journal",
    "repair",
    "state_hash",
]
