"""``Serializer``: programs to bytes and back, without touching the disk."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from desiru.errors import DesiruError
from desiru.program import Program
from desiru.serialization.documents import deserialize_document, serialize_document
from desiru.serialization.version import CURRENT_VERSION, Version

P = TypeVar("P", bound=Program)


class Serializer:
    """Turn programs into document bytes (json, yaml, msgpack; compressed; encrypted) and back."""

    CURRENT_VERSION: ClassVar[Version] = CURRENT_VERSION

    def __init__(self, format: str = "msgpack", compress: bool | str | None = None, key: Any = None) -> None:
        self.format = format
        self.compress = compress
        self.key = key

    def serialize(
        self, program: Program, format: str | None = None, *, compress: bool | str | None = None, key: Any = None
    ) -> bytes:
        """The document bytes of ``program``."""
        if not isinstance(program, Program):
            raise DesiruError(f"serialize() takes a Program, got {type(program).__name__}")
        data, _, _ = serialize_document(
            program.to_state(copy=False),
            extra=program.__dict__.get("_unknown_header"),
            kind="program",
            format=format or self.format,
            compress=self.compress if compress is None else compress,
            key=self.key if key is None else key,
        )
        return data

    def deserialize(
        self, data: bytes, format: str = "auto", *, key: Any = None, cls: type[P] | None = None
    ) -> Program:
        """The program in ``data``: the registered class it names, or ``cls``."""
        doc = deserialize_document(data, key=self.key if key is None else key, format=format)
        return (cls or Program).from_document(doc)
