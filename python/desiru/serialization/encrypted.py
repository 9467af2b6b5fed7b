"""``EncryptedSerializer``: a Serializer that always encrypts, and only accepts encrypted bytes.

Refusing plaintext on the way in matters: a caller who holds a key expects the bytes to be
authentic, and an attacker who can replace them must not get a forged program loaded
simply by writing it unencrypted.
"""

from __future__ import annotations

from typing import Any, TypeVar

from desiru import crypto
from desiru.errors import DecryptionError, DesiruError
from desiru.program import Program
from desiru.serialization.serializer import Serializer

P = TypeVar("P", bound=Program)


class EncryptedSerializer(Serializer):
    """Programs to AES-256-GCM encrypted document bytes and back (json, yaml or msgpack; compressed or not).

    ``key`` is 32 raw bytes, 64 hex characters, the base64 of 32 bytes, a passphrase, or a
    ``desiru.crypto.Key``. A passphrase is stretched with scrypt once here, so every
    ``serialize`` call reuses the derived key and its salt instead of paying scrypt again.
    """

    def __init__(
        self, key: crypto.Key | bytes | str, format: str = "msgpack", compress: bool | str | None = None
    ) -> None:
        if key is None:
            raise DesiruError(
                "EncryptedSerializer needs a key", hint="pass 32 bytes, 64 hex characters or a passphrase"
            )
        super().__init__(format=format, compress=compress, key=crypto.Key.from_user(key))

    @property
    def key_id(self) -> str:
        """The id of the key written into every header (never the key itself)."""
        assert isinstance(self.key, crypto.Key)
        return self.key.key_id

    def serialize(
        self,
        program: Program,
        format: str | None = None,
        *,
        compress: bool | str | None = None,
        key: Any = None,
    ) -> bytes:
        """The encrypted document bytes of ``program`` (a fresh nonce each call)."""
        return super().serialize(program, format, compress=compress, key=key)

    def deserialize(self, data: bytes, format: str = "auto", *, key: Any = None, cls: type[P] | None = None) -> Program:
        """The program in encrypted ``data``; unencrypted bytes are refused with DecryptionError."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DesiruError(f"expected bytes, got {type(data).__name__}")
        if not crypto.is_encrypted(data):
            raise DecryptionError(
                "these bytes are not encrypted; EncryptedSerializer only accepts data sealed with a key",
                hint="use Serializer to read unencrypted documents",
            )
        return super().deserialize(bytes(data), format, key=key, cls=cls)


__all__ = ["EncryptedSerializer"]
