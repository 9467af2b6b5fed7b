"""``desiru diff A B``: what changed between two programs, as readable lines or JSON.

The edits come from the library's structural diff (``diff_states``, docs/STATE.md);
this module only describes them, looking up each old value in a copy of A that the
edits are applied to one by one (indices refer to the state as each edit applies).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import click
from rich.markup import escape

from desiru import _engine
from desiru.cli import complete, keys, progress, render, sources
from desiru.cli.app import EXIT_DIFFERENT, Env, cli, env_of
from desiru.cli.convert import no_verify_option
from desiru.errors import DesiruError
from desiru.state import copy_tree

#: op -> (one, many) for the summary line
WHAT = {
    "program_created": ("program replaced", "programs replaced"),
    "module_added": ("module added", "modules added"),
    "module_removed": ("module removed", "modules removed"),
    "signature_set": ("signature set", "signatures set"),
    "demo_added": ("demo added", "demos added"),
    "demo_removed": ("demo removed", "demos removed"),
    "demos_reordered": ("demo order changed", "demo orders changed"),
    "parameter_set": ("parameter set", "parameters set"),
    "parameter_unset": ("parameter unset", "parameters unset"),
    "metadata_set": ("metadata set", "metadata set"),
    "configuration_set": ("configuration set", "configurations set"),
    "custom_data_set": ("custom data set", "custom data set"),
}


def _node(state: dict[str, Any] | None, path: str) -> dict[str, Any] | None:
    if state is None:
        return None
    if not path:
        return state
    try:
        return sources.find_child(state, path)
    except DesiruError:
        return None


def _dict_change(old: Any, new: Any) -> str:
    """``score 0.5 -> 0.7, +seed 3, -note`` for two dicts."""
    old = old if isinstance(old, dict) else {}
    new = new if isinstance(new, dict) else {}
    parts = []
    for k, v in new.items():
        if k not in old:
            parts.append(f"+{k} {render.short(v, 30)}")
        elif old[k] != v:
            parts.append(f"{k} {render.short(old[k], 30)} -> {render.short(v, 30)}")
    parts.extend(f"-{k}" for k in old if k not in new)
    return ", ".join(parts) or "(same)"


def _signature_change(old: Any, new: Any) -> str:
    new = new if isinstance(new, dict) else {}
    if not isinstance(old, dict):  # no earlier state at hand (the log): say what it became
        text = sources.signature_text({"signature": new})
        return f"{text}; instructions {render.short(new.get('instructions'), 60)}"
    parts = []
    for side in ("inputs", "outputs"):
        a = [f.get("name") for f in old.get(side) or [] if isinstance(f, dict)]
        b = [f.get("name") for f in new.get(side) or [] if isinstance(f, dict)]
        if a != b:
            parts.append(f"{side} {', '.join(map(str, a))} -> {', '.join(map(str, b))}")
        elif old.get(side) != new.get(side):
            parts.append(f"{side} descriptions or prefixes changed")
    if old.get("instructions") != new.get("instructions"):
        parts.append(f"instructions {render.short(old.get('instructions'), 100)} -> "
                     f"{render.short(new.get('instructions'), 100)}")
    return "; ".join(parts) or "(same)"


def describe(edit: dict[str, Any], before: dict[str, Any] | None = None) -> tuple[str, str]:
    """(sign, text) for one edit; ``before`` is the whole state just before it applies, when known."""
    op = edit.get("op")
    path = str(edit.get("path", ""))
    node = _node(before, path)
    if op == "program_created":
        state = edit.get("state") or {}
        n = len(list(sources.iter_modules(state)))
        if before:  # a diff: the root class changed, so the whole program is replaced
            return "~", (f"replaced: class {before.get('class')} -> {state.get('class')}, "
                         f"now {render.plural(n, 'module')}")
        return "~", f"program {state.get('class')} with {render.plural(n, 'module')}"
    if op == "module_added":
        state = edit.get("state") or {}
        demos = len(state.get("demos") or [])
        return "+", f"{state.get('kind', 'module')} {state.get('class')} at #{edit.get('index')}, {demos} demos"
    if op == "module_removed":
        if node is None:
            return "-", "module removed"
        return "-", f"{node.get('kind', 'module')} {node.get('class')}, {len(node.get('demos') or [])} demos"
    if op == "signature_set":
        return "~", "signature: " + _signature_change(node.get("signature") if node else None, edit.get("signature"))
    if op == "demo_added":
        return "+", f"demo #{edit.get('index')}: {render.short(edit.get('demo'), 100)}"
    if op == "demo_removed":
        index = edit.get("index")
        demos = (node or {}).get("demos") or []
        if isinstance(index, int) and 0 <= index < len(demos):
            return "-", f"demo #{index}: {render.short(demos[index], 100)}"
        return "-", f"demo #{index}"
    if op == "demos_reordered":
        order = edit.get("order") or []
        return "~", f"demos reordered: {render.short(order, 60)}"
    if op == "parameter_set":
        key = edit.get("key")
        params = (node or {}).get("parameters") or {}
        if node is not None and key in params:
            return "~", f"parameter {key}: {render.short(params[key], 30)} -> {render.short(edit.get('value'), 30)}"
        return "+", f"parameter {key} = {render.short(edit.get('value'), 40)}"
    if op == "parameter_unset":
        key = edit.get("key")
        params = (node or {}).get("parameters") or {}
        was = f" (was {render.short(params[key], 30)})" if key in params else ""
        return "-", f"parameter {key}{was}"
    if op in ("metadata_set", "configuration_set"):
        field = "metadata" if op == "metadata_set" else "configuration"
        if node is None:
            return "~", f"{field} = {render.short(edit.get('value'), 70)}"
        return "~", f"{field}: {_dict_change(node.get(field), edit.get('value'))}"
    if op == "custom_data_set":
        return "~", f"custom data = {render.short(edit.get('value'), 70)}"
    return "?", f"{op}: {render.short({k: v for k, v in edit.items() if k not in ('op', 'path')}, 70)}"


def _as_program(state: dict[str, Any], name: str) -> dict[str, Any]:
    """A module state wrapped as the one module of a plain program, so diff_states can compare it."""
    inner = {"name": name, **{k: v for k, v in state.items() if k != "name"}}
    return {"kind": "program", "class": "desiru.Program", "modules": [inner], "configuration": {},
            "custom_data": None, "metadata": {}}


def compute(a: sources.Loaded, b: sources.Loaded) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The two program states compared and the edits that turn A into B."""
    if a.kind != b.kind:
        raise DesiruError(f"cannot compare a {a.kind} ({a.label}) with a {b.kind} ({b.label})",
                          hint="diff two programs or two module files")
    sa, sb = a.state, b.state
    if a.kind == "module":
        name = str(sa.get("name") or sb.get("name") or "module")
        sa, sb = _as_program(sa, name), _as_program(sb, name)
    return sa, sb, list(_engine.diff_states(sa, sb))


def summary(edits: list[dict[str, Any]]) -> str:
    """``5 changes in 2 modules: 3 demos added, 2 demos removed``."""
    counts = Counter(e.get("op") for e in edits)
    touched = {str(e.get("path", "")) for e in edits}
    parts = [f"{n} {WHAT.get(str(op), (str(op), str(op)))[n != 1]}" for op, n in counts.most_common()]
    modules = len(touched - {""})
    places = [f"{modules} module" + ("s" if modules != 1 else "")] if modules else []
    if "" in touched:
        places.append("the program")
    where = " and ".join(places)
    return f"{len(edits)} change{'s' if len(edits) != 1 else ''} in {where}: " + ", ".join(parts)


def show(env: Env, a_label: str, b_label: str, before: dict[str, Any], edits: list[dict[str, Any]]) -> None:
    """Print one line per edit (sign, module path, what changed), old values looked up as the edits apply.

    Plain lines rather than a table: they are never folded, so they grep and copy whole.
    """
    width = min(30, max(len(str(e.get("path", "")) or "(program)") for e in edits))
    work = copy_tree(before)
    style = {"+": "green", "-": "red", "~": "yellow"}
    env.result(f"[red]--- {escape(a_label)}[/]")
    env.result(f"[green]+++ {escape(b_label)}[/]")
    room = env.row_width()  # on a terminal, each line is cut to fit it (--full: whole values)
    for edit in edits:
        sign, text = describe(edit, work)
        path = str(edit.get("path", "")) or "(program)"
        if room is not None:
            text = render.cut(text, max(room - 2 - max(width, len(path)) - 2, 20))
        env.result(f"[{style.get(sign, '')}]{sign}[/] [bold]{escape(path):<{width}}[/]  {escape(text)}",
                   soft_wrap=True)
        work = _engine.apply_edits(work, [edit])
    env.result(summary(edits))


@cli.command("diff", short_help='What changed between two programs (exit 1 if any).')
@click.argument("a", metavar="A", shell_complete=complete.points)
@click.argument("b", metavar="B", shell_complete=complete.points)
@keys.key_options
@no_verify_option
@click.option("--json", "as_json", is_flag=True, help="Print the edits as JSON (docs/STATE.md edit list).")
@click.option("--full", is_flag=True, help="Show whole values; lines are otherwise cut to the terminal's width.")
@click.pass_context
def diff_cmd(ctx: click.Context, a: str, b: str, key_env: str | None, ask_key: bool, no_verify: bool,
             as_json: bool, full: bool) -> None:
    """Show what changed from A to B; exit 0 when equal, 1 when different.

    A and B are documents, journals (at their head) or journal points:
    PATH@tag:NAME, PATH@seq:N or PATH@head. Any mix works, e.g. a journal point
    against a file. One key (--key-env / --ask-key) opens whichever inputs are encrypted.

    \b
    Output lines read: + added, - removed, ~ changed, then the module path.
    Examples:
      desiru diff old.json new.msgpack.zst
      desiru diff runs/qa.journal@tag:baseline runs/qa.journal@tag:best
      desiru diff runs/qa.journal@seq:12 deployed.json --json
    """
    env = env_of(ctx)
    key = keys.input_key(key_env, ask_key)
    src_a, src_b = sources.parse_source(a), sources.parse_source(b)
    with progress.task(env, "reading"):
        la, key = keys.with_key_used(lambda k: sources.read_source(src_a, k, verify=not no_verify), key)
        lb = keys.with_key(lambda k: sources.read_source(src_b, k, verify=not no_verify), key)
    with progress.task(env, "comparing"):
        sa, _, edits = compute(la, lb)
    if as_json:
        click.echo(render.dumps({"a": a, "b": b, "equal": not edits, "edits": edits}))
    elif not edits:
        env.result(f"equal: {a} and {b} hold the same program", markup=False)
    else:
        with render.whole_values(full):
            show(env, a, b, sa, edits)
    if edits:
        ctx.exit(EXIT_DIFFERENT)
