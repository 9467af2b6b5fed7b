"""``desiru migrate`` and ``desiru rekey``: rewrite a file or journal in place, safely."""

from __future__ import annotations

import os

import click

from desiru.cli import keys, progress, sources
from desiru.cli.app import cli, env_of
from desiru.errors import DesiruError


@cli.command("migrate", short_help='Upgrade an old file or journal in place.')
@click.argument("path")
@keys.key_options
@click.pass_context
def migrate_cmd(ctx: click.Context, path: str, key_env: str | None, ask_key: bool) -> None:
    """Bring a document or journal written by an older release to the current format, in place.

    The original is kept next to it (PATH.bak-<old version>) and the new file replaces
    it atomically, in the same format, compression and encryption. A file already at
    the current format is left as it is.

    \b
    Examples:
      desiru migrate old-model.json
      desiru migrate runs/qa.journal
    """
    import desiru as ds

    env = env_of(ctx)
    _not_postgres(path, "migrate")
    if not os.path.exists(path):
        raise DesiruError("no such file", path=path, hint="check the path")
    with progress.callback(env, f"migrating {os.path.basename(path)}") as report:
        result = keys.with_key(lambda k: ds.migrate(path, key=k, progress=report), keys.input_key(key_env, ask_key))
    if not result.changed:
        env.result(f"{result.path}: already at format {result.to_version}; unchanged", markup=False)
        return
    kept = f"; the original is kept at {result.backup}" if result.backup else ""
    if result.from_version == result.to_version:  # same format: the events were brought to their schemas
        what = f"rewrote the {result.kind} at format {result.to_version} (every event at its current schema)"
    else:
        what = f"migrated {result.kind} from format {result.from_version} to {result.to_version}"
    env.result(f"{result.path}: {what}{kept}", markup=False)


def _not_postgres(path: str, command: str) -> None:
    """``migrate`` and ``rekey`` rewrite files; a journal in PostgreSQL goes through a directory."""
    if sources.is_postgres(path):
        raise DesiruError(f"{command} works on files and journal directories, not on a journal in PostgreSQL",
                          path=path, hint=f"`desiru copy` it to a directory, {command} it there, and copy it back "
                          "under a new name")


def _encrypted(path: str) -> bool:
    """Whether a document or journal is encrypted, from its first bytes or its header alone."""
    from desiru import crypto

    if sources.is_journal(path):
        return sources.journal_encrypted(path)
    if os.path.isdir(path):
        return True  # not a document: let rekey say what it is
    with open(path, "rb") as f:
        return crypto.is_encrypted(f.read(len(crypto.CONTAINER_MAGIC) + 2))  # a framed file may be unencrypted


def check_key(path: str, key: str) -> None:
    """Raise DecryptionError when ``key`` is not the key an encrypted document or journal needs,
    from its header alone (cheap: nothing is decrypted)."""
    from desiru import crypto

    if sources.is_journal(path):
        enc = sources.journal_header(path)[1].get("encryption") or {}
        kdf, expected = enc.get("kdf"), enc.get("key_id")
    else:
        with open(path, "rb") as f:
            header = crypto.read_header(f.read(1 << 16), path=path)
        kdf, expected = header.kdf, header.key_id
    if expected is not None:
        crypto.check_key_id(crypto.Key.from_user(key, kdf), expected, path=path)


@cli.command("rekey", short_help='Re-encrypt a file or journal under a new key.')
@click.argument("path")
@click.option("--key-env", metavar="VAR", help="The CURRENT key, from environment variable VAR.")
@click.option("--ask-key", is_flag=True, help="Prompt for the current key.")
@click.option("--new-key-env", metavar="VAR", help="The NEW key, from environment variable VAR (else a prompt).")
@click.option("--decrypt", is_flag=True, help="Write the file back unencrypted instead of under a new key.")
@click.pass_context
def rekey_cmd(ctx: click.Context, path: str, key_env: str | None, ask_key: bool, new_key_env: str | None,
              decrypt: bool) -> None:
    """Re-encrypt a document or journal under a new key (or encrypt a plain one), atomically.

    Nothing is written until the current key has opened the data, so a wrong key
    leaves the file exactly as it was. A plain file needs no current key.

    \b
    Examples:
      read -rs OLD && read -rs NEW && export OLD NEW     (typed without echo, kept out of history)
      desiru rekey model.bin --key-env OLD --new-key-env NEW
      desiru rekey runs/qa.journal --ask-key          (prompts for both keys)
      desiru rekey model.json --new-key-env NEW        (encrypt a plain file)
      desiru rekey model.bin --key-env OLD --decrypt
    """
    import desiru as ds

    env = env_of(ctx)
    _not_postgres(path, "rekey")
    if not os.path.exists(path):
        raise DesiruError("no such file", path=path, hint="check the path")
    if decrypt and new_key_env:
        raise DesiruError("give --new-key-env or --decrypt, not both")
    if decrypt and not _encrypted(path):
        raise DesiruError("not encrypted; nothing to decrypt", path=path,
                          hint="the file is already plain; `desiru inspect` shows its layers")
    # the current key first, checked at once: a wrong one is found before the new key is typed twice
    old_key = keys.input_key(key_env, ask_key, label="Current key")
    encrypted = _encrypted(path)
    if encrypted and old_key is None:
        old_key = keys.prompt_key("Current key", hint="give the current key with --key-env VAR or --ask-key")
    if encrypted and old_key is not None:
        check_key(path, old_key)
    if decrypt:
        new_key = None
    elif new_key_env:
        new_key = keys.from_env(new_key_env, option="--new-key-env")
    else:
        new_key = keys.prompt_key("New key", confirm=True, asked=ask_key,
                                  hint="give the new key with --new-key-env VAR")
    with progress.callback(env, f"re-encrypting {os.path.basename(path)}") as report:
        result = keys.with_key(lambda k: ds.rekey(path, k, new_key, progress=report), old_key, label="Current key")
    before = f"key id {result.old_key_id}" if result.old_key_id else "no encryption"
    after = f"key id {result.new_key_id}" if result.new_key_id else "no encryption"
    env.result(f"{result.path}: {result.kind} re-encrypted: {before} -> {after}", markup=False)
