"""``desiru export-module`` and ``desiru import-module``: one module in its own file, and back."""

from __future__ import annotations

import os

import click

from desiru import _engine
from desiru.cli import complete, keys, progress, sources
from desiru.cli.app import cli, env_of
from desiru.cli.convert import no_verify_option, output_options, report_saved
from desiru.errors import DesiruError
from desiru.state import copy_tree


@cli.command("export-module", short_help='Write one module to its own file.')
@click.argument("program", metavar="PROGRAM", shell_complete=complete.points)
@click.argument("module", metavar="MODULE")
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False))
@output_options
@keys.key_options
@no_verify_option
@click.pass_context
def export_module_cmd(ctx: click.Context, program: str, module: str, out: str, fmt: str | None,
                      compress: str | None, force: bool, encrypt: bool, out_key_env: str | None, key_env: str | None,
                      ask_key: bool, no_verify: bool) -> None:
    """Write one module (or nested program) of a program to its own file.

    MODULE is a dotted path such as answer or sub.answer. PROGRAM is a document or a
    journal point (PATH@tag:NAME). The output takes the same format, compression and
    encryption options as convert.

    \b
    Examples:
      desiru export-module qa.json answer answer.json
      desiru export-module runs/qa.journal@tag:best answer answer.msgpack.zst
    """
    env = env_of(ctx)
    src = sources.parse_source(program)
    sources.check_output(out, fmt=fmt, compress=compress, force=force)
    in_key = keys.input_key(key_env, ask_key)
    loaded = keys.with_key(lambda k: sources.read_source(src, k, verify=not no_verify), in_key)
    if loaded.kind != "program":
        raise DesiruError(f"{src.text} holds a {loaded.kind}, not a program", path=src.path,
                          hint="export-module takes a program file")
    with sources.about(src.path):
        child = sources.find_child(loaded.state, module)
    state = {"name": module.rpartition(".")[2], **{k: v for k, v in child.items() if k != "name"}}
    out_key = keys.output_key(encrypt, out_key_env, in_key)
    result = sources.write_state(state, out, kind=str(child.get("kind", "module")), fmt=fmt, compress=compress,
                                 key=out_key, force=force)
    report_saved(env, result, f"exported {module} to")


@cli.command("import-module", short_help='Put a module file into a program file.')
@click.argument("program", metavar="PROGRAM", type=click.Path(dir_okay=False))
@click.argument("module_file", metavar="MODULE_FILE", type=click.Path(dir_okay=False))
@click.option("--name", metavar="PATH",
              help="Dotted path to put the module at (default: the name it was exported with). "
              "A module already there is replaced in place.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False),
              help="Write the result here instead of rewriting PROGRAM in place.")
@output_options
@keys.key_options
@click.option("--module-key-env", metavar="VAR", help="Key of an encrypted MODULE_FILE, if not the same key.")
@no_verify_option
@click.pass_context
def import_module_cmd(ctx: click.Context, program: str, module_file: str, name: str | None, out: str | None,
                      fmt: str | None, compress: str | None, force: bool, encrypt: bool, out_key_env: str | None,
                      key_env: str | None, ask_key: bool, module_key_env: str | None, no_verify: bool) -> None:
    """Put a module file into a program file, as a new module or replacing one.

    Without -o, PROGRAM is rewritten in place (atomically) in its own format,
    compression and encryption; with -o, the output options apply as for convert.

    \b
    Examples:
      desiru import-module qa.json answer.json
      desiru import-module qa.json answer.json --name reasoning -o qa2.msgpack.zst
    """
    env = env_of(ctx)
    if out is None and (fmt or compress or encrypt or out_key_env):
        raise DesiruError("--format, --compress and the output key options need -o OUT",
                          hint="without -o the program is rewritten in its own format")
    if out is not None:
        sources.check_output(out, fmt=fmt, compress=compress, force=force)
    in_key = keys.input_key(key_env, ask_key)
    doc, key_used = keys.with_key_used(lambda k: sources.read_document(program, key=k, verify=not no_verify),
                                       in_key)
    if doc.kind != "program":
        raise DesiruError(f"holds a {doc.kind}, not a program", path=program,
                          hint="import-module takes a program file first, then the module file")
    module_key = keys.from_env(module_key_env, option="--module-key-env") if module_key_env else key_used
    mod = keys.with_key(lambda k: sources.read_document(module_file, key=k, verify=not no_verify), module_key,
                        label="Module file key")
    if mod.kind == "program" and not isinstance(mod.state.get("name"), str) and name is None:
        raise DesiruError("this file holds a program, not a module", path=module_file,
                          hint="give a module file (`desiru export-module PROGRAM MODULE OUT` writes one), or "
                               "--name PATH to put this whole program inside as a nested program")
    target = name or mod.state.get("name")
    if not isinstance(target, str) or not all(p.isidentifier() for p in target.split(".")):
        raise DesiruError(f"cannot import under the name {target!r}", path=module_file,
                          hint="give --name some_identifier (or parent.child)")
    parent_path, _, leaf = target.rpartition(".")
    with sources.about(program):
        parent = sources.find_child(doc.state, parent_path) if parent_path else doc.state
    if parent.get("kind") != "program":
        raise DesiruError(f"{parent_path!r} is a module, not a program; cannot put {leaf!r} inside it",
                          path=program)
    siblings = [c.get("name") for c in parent.get("modules") or []]
    new_state = {"name": leaf, **{k: v for k, v in mod.state.items() if k != "name"}}
    # the edit list of docs/STATE.md does the tree surgery, as a journal replay would
    if leaf in siblings:
        index = siblings.index(leaf)
        edits = [{"op": "module_removed", "path": target},
                 {"op": "module_added", "path": target, "index": index, "state": new_state}]
        verb = "replaced"
    else:
        edits = [{"op": "module_added", "path": target, "index": len(siblings), "state": new_state}]
        verb = "added"
    state = _engine.apply_edits(copy_tree(doc.state), edits)
    with progress.task(env, f"writing {os.path.basename(out or program)}"):
        if out is None:
            result = sources.rewrite_document(doc, state, key_used)
        else:
            out_key = keys.output_key(encrypt, out_key_env, key_used)
            result = sources.write_state(state, out, kind="program", fmt=fmt, compress=compress, key=out_key,
                                         force=force)
    report_saved(env, result, f"{verb} module {target}; wrote")
