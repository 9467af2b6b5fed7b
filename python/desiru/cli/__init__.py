"""The ``desiru`` command line: inspect, diff, convert, replay and repair files and journals.

``main`` is the console-script entry point (pyproject.toml) and ``python -m desiru``.
Each command group lives in its own module and registers itself on the click group
in :mod:`desiru.cli.app` when imported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from desiru.cli import (  # noqa: F401  (importing registers the commands)
    convert,
    copy_cmd,
    demo_cmd,
    diff,
    inspect,
    journal_cmds,
    maintenance,
    modules,
    report_cmd,
    runs_cmds,
)
from desiru.cli.app import cli


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``desiru`` with ``argv`` (default: the process arguments) and exit with its code."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="desiru")


__all__ = ["cli", "main"]
