"""Document migrations: bring files of older format versions to the current one."""

from __future__ import annotations

from typing import Any

from desiru.errors import IncompatibleVersionError
from desiru.serialization.version import CURRENT_VERSION, Version


def upgrade_document(tree: dict[str, Any], version: Version, path: str | None) -> dict[str, Any]:
    """The tree brought to CURRENT_VERSION, or IncompatibleVersionError naming the gap."""
    if version.major == CURRENT_VERSION.major:
        return tree
    raise IncompatibleVersionError(
        f"no migration from format {version} to {CURRENT_VERSION}",
        path=path,
        hint="this file was written by a release whose format this one cannot read",
    )
