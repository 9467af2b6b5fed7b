"""Top-level functions: ``ds.load``."""

from __future__ import annotations

import os

from desiru.errors import DesiruError
from desiru.module import Module
from desiru.program import Program
from desiru.serialization.documents import load_document


def load(path: str | os.PathLike[str], key: bytes | str | None = None, *, cls: type | None = None,
         verify: bool = True, any_class: bool = False) -> Program | Module:
    """Load a document as the registered class it names (a Program, or a Module file).

    ``cls=Triage`` loads it as that class instead of looking the name up, so a file saved
    from a script (class ``__main__.Triage``) loads in another script that imports Triage.
    The file must hold that class (or a plain desiru.Program) unless ``any_class=True``.
    ``verify=False`` skips the content checksum: unsafe, only to rescue a hand-edited file.
    """
    doc = load_document(path, key=key, verify=verify)
    if doc.kind == "module":
        target = cls if isinstance(cls, type) and issubclass(cls, Module) else Module
        return target.from_state(doc.state, path=os.fspath(path), copy=False)
    target_program = cls if cls is not None else Program
    if not (isinstance(target_program, type) and issubclass(target_program, Program)):
        raise DesiruError(f"cls= takes a Program subclass for a program file, got {cls!r}", path=os.fspath(path),
                          hint="pass the class itself, e.g. ds.load(path, cls=Triage)")
    return target_program.from_document(doc, any_class=any_class)
