"""``desiru convert`` and the output options every writing command shares."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.markup import escape

from desiru.cli import complete, keys, progress, render, sources
from desiru.cli.app import Env, cli, env_of
from desiru.errors import DesiruError, FormatError
from desiru.serialization.documents import SaveResult

F = TypeVar("F", bound=Callable[..., Any])

FORMAT_CHOICE = click.Choice(["json", "yaml", "msgpack"], case_sensitive=False)
COMPRESS_CHOICE = click.Choice(["zstd", "gzip", "none"], case_sensitive=False)


def output_options(f: F) -> F:
    """``--format``, ``--compress``, ``--force`` and the output encryption options."""
    f = keys.output_key_options(f)
    f = click.option("--force", is_flag=True, help="Replace the output if it exists.")(f)
    f = click.option("--compress", type=COMPRESS_CHOICE,
                     help="Compression of the output (default: from the suffix .zst/.gz, else none).")(f)
    f = click.option("--format", "fmt", type=FORMAT_CHOICE,
                     help="Format of the output (default: from the suffix .json/.yaml/.msgpack, else msgpack).")(f)
    return f


def no_verify_option(f: F) -> F:
    """``--no-verify``: read a document whose content checksum does not match (unsafe)."""
    return click.option("--no-verify", is_flag=True,
                        help="Do not check documents' content checksums (UNSAFE: only to rescue a file you "
                        "edited by hand; nothing then tells damage from your edit).")(f)


def report_saved(env: Env, result: SaveResult, what: str = "wrote") -> None:
    """One line saying what was written, where, and how."""
    layers = [result.format, result.compression or "", "encrypted" if result.encrypted else ""]
    how = ", ".join(x for x in layers if x)
    size = f"{result.size:,} bytes" + (f", {render.human_size(result.size)}" if result.size >= 1000 else "")
    env.say(f"{escape(what)} [bold]{escape(str(result.path))}[/] ({how}, {size})")


@cli.command("convert", short_help='Rewrite a document: format, compression, key.')
@click.argument("source", metavar="IN", shell_complete=complete.points)
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False))
@output_options
@click.option("--to", "to", type=click.Choice(["desiru", "dspy"], case_sensitive=False), default="desiru",
              show_default=True, help="Write a desiru document, or a DSPy JSON save (module.load reads it).")
@click.option("--dspy-version", metavar="VERSION",
              help="With --to dspy: the dspy release to write for (default: the installed one).")
@keys.key_options
@no_verify_option
@click.pass_context
def convert_cmd(ctx: click.Context, source: str, out: str, fmt: str | None, compress: str | None, force: bool,
                encrypt: bool, out_key_env: str | None, to: str, dspy_version: str | None,
                key_env: str | None, ask_key: bool, no_verify: bool) -> None:
    """Rewrite a document in another format, compression or encryption.

    IN is a document, or a journal point (PATH@tag:NAME, PATH@seq:N, PATH@head), which
    is replayed and written as a document. Format and compression come from the options,
    else from OUT's suffix (.json .yaml .msgpack, then .zst or .gz). The content is
    verified on the way in and its checksum carried over unchanged. A DSPy save file
    (module.save("x.json")) is read too and written as a desiru document.

    With --to dspy, IN may also be a DSPy JSON save of any dspy release, and OUT is
    the DSPy save for --dspy-version (default: the installed dspy), in that
    release's layout; every change made is listed (docs/dspy.md).

    \b
    Examples:
      desiru convert qa.json qa.msgpack.zst
      desiru convert qa.msgpack qa.yaml
      desiru convert qa.json qa.bin --format msgpack --compress zstd --out-key-env PROD_KEY
      desiru convert secret.bin plain.json --key-env PROD_KEY
      desiru convert runs/qa.journal@tag:best best.json
      desiru convert old_dspy_2_4.json new.json --to dspy --dspy-version 2.6
      desiru convert qa.json qa.msgpack.zst --force       (replace an existing output)
    """
    env = env_of(ctx)
    src = sources.parse_source(source)
    sources.check_output(out, fmt=fmt, compress=compress, force=force)  # before any key is asked or work done
    in_key = keys.input_key(key_env, ask_key)
    if to.lower() == "dspy":
        _to_dspy(env, src, out, dspy_version, in_key)
        return
    if dspy_version is not None:
        raise DesiruError("--dspy-version is for --to dspy", hint="add --to dspy, or drop --dspy-version")
    unit = "events" if sources.is_journal(src.path) else "bytes"
    with progress.callback(env, f"reading {os.path.basename(src.text)}", unit=unit) as report:
        try:
            loaded = keys.with_key(lambda k: sources.read_source(src, k, verify=not no_verify, progress=report),
                                   in_key)
        except FormatError:
            if src.has_point or not sources.is_dspy_save(src.path):
                raise
            loaded = sources.read_dspy_save(src)
    out_key = keys.output_key(encrypt, out_key_env, in_key)
    sources.check_output(out, fmt=fmt, compress=compress, force=force)
    with progress.task(env, f"encoding {os.path.basename(out)}"):
        encoded = sources.encode_state(loaded.state, out, kind=loaded.kind, fmt=fmt, compress=compress, key=out_key)
    with progress.callback(env, f"writing {os.path.basename(out)}", unit="bytes") as report:
        result = sources.write_encoded(encoded, out, progress=report)
    report_saved(env, result)


def _to_dspy(env: Env, src: sources.Source, out: str, dspy_version: str | None, in_key: Any) -> None:
    """``convert --to dspy``: a DSPy save or a desiru program, written as a DSPy save."""
    from desiru.interop import dspy as dd
    from desiru.program import Program

    with progress.task(env, f"reading {os.path.basename(src.text)}"):
        try:
            loaded = keys.with_key(lambda k: sources.read_source(src, k), in_key)
        except FormatError:
            # not a desiru document: a DSPy save is JSON without desiru's envelope
            if src.has_point or src.path.suffix.lower() != ".json":
                raise
            program = dd.read_dspy_save(src.path)
        else:
            if loaded.kind != "program":
                raise DesiruError("a DSPy save holds a program; this is a single module", path=src.path,
                                  hint="convert the program the module belongs to")
            program = Program.from_state(sources.with_known_classes(loaded.state), path=str(src.path))
    with progress.task(env, f"writing {os.path.basename(out)}"):
        changes = dd.dspy_document(program, dspy_version)[1]
        result = dd.write_dspy_save(program, out, dspy_version=dspy_version)
    for change in changes:
        env.say(f"changed: {escape(change)}")
    if not changes:
        env.say("changed: nothing")
    report_saved(env, result)
