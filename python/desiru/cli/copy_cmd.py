"""``desiru copy``: copy a whole journal between a directory and PostgreSQL."""

from __future__ import annotations

import click

from desiru.cli import progress
from desiru.cli.app import cli, env_of


@cli.command("copy", short_help="Copy a journal between a directory and PostgreSQL.")
@click.argument("src")
@click.argument("dst")
@click.pass_context
def copy_cmd(ctx: click.Context, src: str, dst: str) -> None:
    """Copy the whole journal SRC to a new journal DST, keeping seqs, timestamps, tags and encryption.

    Either side is a journal directory or a PostgreSQL journal, written
    postgresql://USER@HOST:PORT/DB#NAME (a libpq URL; the password comes from
    ~/.pgpass, PGPASSFILE, PGSERVICE or PGPASSWORD) or pg:NAME (the database in
    $DESIRU_PG_URL). Records move as stored bytes: no key is needed, and an encrypted
    journal opens with its key after the copy. DST must not exist yet.

    \b
    Examples:
      desiru copy runs/qa.journal 'postgresql://me@db.lan/runs#qa'
      desiru copy pg:qa runs/qa-copy.journal
    """
    from desiru.journal.copy import copy_journal

    env = env_of(ctx)
    with progress.callback(env, "copying") as report:
        result = copy_journal(src, dst, progress=report)
    snaps = f"{result.snapshots} snapshot{'s' if result.snapshots != 1 else ''}"
    env.result(f"copied {result.records:,} records and {snaps} (head seq {result.head:,}) from {result.src} "
               f"to {result.dst}", markup=False)
