"""``desiru inspect PATH``: what a document or a journal holds, without writing Python."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from desiru import _engine
from desiru.cli import complete, dspy_view, keys, progress, render, sources
from desiru.cli.app import Env, cli, env_of
from desiru.cli.convert import no_verify_option
from desiru.errors import DesiruError, MissingKeyError
from desiru.serialization import container, lazy
from desiru.serialization.documents import deserialize_document, read_bytes
from desiru.serialization.envelope import Document
from desiru.serialization.version import CURRENT_VERSION, Version


def module_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per module of a program state (or the module itself for a module document)."""
    if state.get("kind") == "module":
        items = [(str(state.get("name", "")), state)]
    else:
        items = list(sources.iter_modules(state))
    return [
        {
            "path": path,
            "class": dspy_view.class_label(state, path, m),
            "signature": sources.signature_text(m),
            "instructions": (m.get("signature") or {}).get("instructions") if isinstance(m.get("signature"), dict)
            else None,
            "demos": m["demos"] if isinstance(m.get("demos"), int) else len(m.get("demos") or []),  # int: an outline
            "parameters": m.get("parameters") or {},
        }
        for path, m in items
    ]


def modules_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    """The modules as a rich table (cells are text, never markup)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("module", style="bold")
    table.add_column("class")
    table.add_column("signature")
    table.add_column("demos", justify="right")
    table.add_column("parameters")
    for r in rows:
        table.add_row(*(Text(str(x)) for x in (r["path"], r["class"], r["signature"], r["demos"],
                                               render.params_text(r["parameters"]))))
    return table


def _fields_table(fields: list[tuple[str, str | Text]]) -> Table:
    """name/value rows; plain strings are shown as text, never parsed as markup."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    for name, value in fields:
        grid.add_row(name, value if isinstance(value, Text) else Text(value))
    return grid


#: a file listed from its module table gets its sha256 computed only up to this size (about 30 ms
#: here): above it, hashing every byte would cost more than the listing (`sha256sum` does it)
SHA256_LIMIT = 64 << 20


def _sha256_if_small(data: Any) -> str | None:
    """The sha256 of a mapped file up to SHA256_LIMIT bytes, else None (not computed)."""
    return hashlib.sha256(data).hexdigest() if len(data) <= SHA256_LIMIT else None


def _from_table(env: Env, path: str, key: str | None) -> tuple[Document, int, list[str], str | None] | None:
    """A program with a module table, shown from its header: the header checksum, the table and the
    program's own fields are checked; each module is listed from its outline in the table (format
    2.3.0), so no module's bytes are read, decompressed or decrypted. A 2.2.0 table has no outlines:
    each module's bytes are then read and checked, its demos counted, not built. Returns the
    document, the file's size, what was checked and the sha256 (of a small file only); None when
    the file has no table."""
    with progress.task(env, f"opening {os.path.basename(path)}"), sources.about(path):
        mapped = lazy.open_mapped(path, key)
        if mapped is None:
            return None
        outlines = mapped.table.outlines
        modules = list(outlines) if outlines is not None else [lazy.outline(mapped, e) for e in mapped.table.entries]
        state = {**mapped.rest_state(), "modules": modules}
    checked = ["header checksum", "module table", "the program's own fields"]
    if outlines is None:
        checked.append("every module's checksum")
    frames = mapped.frames
    encrypted = frames is not None and frames.key is not None
    doc = Document(kind="program", state=state, version=Version.parse(mapped.header["format_version"]),
                   header=dict(mapped.header), format="msgpack", path=path,
                   compression=frames.header.compression if frames is not None else None, encrypted=encrypted,
                   key_id=frames.header.key_id if encrypted and frames is not None else None)
    return doc, len(mapped.data), checked, _sha256_if_small(mapped.data)


def inspect_document(env: Env, path: str, key: str | None, as_json: bool, verify: bool = True) -> None:
    """Show a document's header, layers and modules (from its module table when it has one)."""
    found = None
    if verify:
        try:
            found = keys.with_key(lambda k: _from_table(env, path, k), key, prompt=False)
        except MissingKeyError:
            found = None  # an encrypted program in frames: the full read below shows its container
    checked: list[str] | None = None
    sha: str | None = None
    if found is not None:
        doc, size, checked, sha = found
    else:
        with progress.task(env, f"reading {os.path.basename(path)}"):
            data = read_bytes(path)
            size = len(data)
            sha = _engine.sha256(data).hex()
        try:
            with progress.task(env, f"opening {os.path.basename(path)}"), sources.about(path):
                doc = keys.with_key(lambda k: deserialize_document(data, key=k, path=path, verify=verify), key,
                                    prompt=False)
                sources.check_shape(doc.state, doc.kind, path)
        except MissingKeyError:
            if not data.startswith(container.CONTAINER_MAGIC):
                raise
            _encrypted_summary(env, path, data, sha, as_json)
            return
    header = doc.header
    rows = module_rows(doc.state)
    info = {
        "path": path,
        "kind": f"{doc.kind} document",
        "format": doc.format,
        "format_version": str(doc.version),
        "compression": doc.compression,
        "encrypted": doc.encrypted,
        "key_id": doc.key_id,
        "size": size,
        "sha256": sha,  # None: not computed (a file over SHA256_LIMIT listed from its module table)
        "checksum": header.get("checksum"),
        # load_document verified it, or raised; None: not checked (--no-verify, or listed from the table)
        "checksum_ok": True if verify and checked is None else None,
        "checked": checked or (["every byte (a full, verifying read)"] if verify else []),
        "not_checked": f"the modules' bytes and the whole content checksum: `desiru verify {path}` checks them"
        if checked is not None else None,
        "class": doc.state.get("class"),
        "library_version": header.get("library_version"),
        "created_at": header.get("created_at"),
        "modules": rows,
        "demos": sum(r["demos"] for r in rows),
    }
    if doc.kind == "program":
        info["configuration"] = doc.state.get("configuration") or {}
        info["metadata"] = doc.state.get("metadata") or {}
    if as_json:
        click.echo(render.dumps(info))
        return
    layers = [doc.format or "?", doc.compression or "not compressed",
              f"encrypted (key id {doc.key_id})" if doc.encrypted else "not encrypted"]
    fields = [
        ("kind", info["kind"]),
        ("format", ", ".join(layers)),
        ("version", f"format {doc.version}, written by desiru {header.get('library_version') or '(unknown)'} "
                    f"at {header.get('created_at') or '(unknown)'}"),
        ("size", _size_text(size)),
        ("sha256", sha or f"not computed (over {SHA256_LIMIT >> 20} MiB, listed from the module table; "
                          f"`sha256sum {path}` computes it)"),
        ("checksum", Text.assemble(f"{header.get('checksum')} ", ("verified", "green") if verify and checked is None
                                   else ("not checked here", "yellow") if checked is not None
                                   else ("NOT verified (--no-verify)", "bold red"))),
        ("class", str(doc.state.get("class"))),
        ("modules", f"{len(rows)} with {render.plural(info['demos'], 'demo')} in all"),
    ]
    if checked is not None:
        fields.insert(6, ("checked", f"{', '.join(checked)}; not the modules' bytes: `desiru verify {path}` "
                                     f"checks every byte"))
    if doc.version < CURRENT_VERSION:
        fields.insert(3, ("upgrade", f"an older format: it loads as it is; `desiru migrate {path}` rewrites it "
                                     f"at format {CURRENT_VERSION}"))
    if doc.kind == "program":
        if info["configuration"]:
            fields.append(("configuration", render.short(info["configuration"], 90)))
        if info["metadata"]:
            fields.append(("metadata", render.short(info["metadata"], 90)))
    env.result(f"[bold]{escape(path)}[/]")
    env.result(_fields_table(fields))
    if rows:
        env.result()
        env.result(modules_table(rows))


def _encrypted_summary(env: Env, path: str, data: bytes, sha: str, as_json: bool) -> None:
    """What can be said about an encrypted document without its key: its container header."""
    from desiru import crypto

    header = crypto.read_header(data, path=path)
    key_kind = "passphrase (scrypt)" if header.kdf else "raw key"
    hint = "give the key with --key-env VAR or --ask-key to see inside"
    info = {"path": path, "kind": "encrypted document", "encrypted": True, "key_id": header.key_id,
            "key_kind": key_kind, "size": len(data), "sha256": sha, "note": hint}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    env.result(f"[bold]{escape(path)}[/]")
    env.result(_fields_table([("kind", "encrypted document (AES-256-GCM)"),
                              ("key", f"key id {header.key_id}, {key_kind}"),
                              ("size", _size_text(len(data))),
                              ("sha256", sha), ("note", hint)]))


def _size_text(n: int) -> str:
    return f"{n:,} bytes" + (f" ({render.human_size(n)})" if n >= 1000 else "")


#: how many tags inspect lists without --all (the newest ones)
TAGS_SHOWN = 5


def tags_text(tags: dict[str, int], show_all: bool) -> str:
    """``best@373, final@630`` for a few tags; for many, the count and the newest few (``--all``: every one)."""
    items = sorted(tags.items(), key=lambda kv: kv[1])
    if not items:
        return "none"
    if show_all or len(items) <= TAGS_SHOWN:
        return ", ".join(f"{name}@{seq}" for name, seq in items)
    newest = ", ".join(f"{name}@{seq}" for name, seq in items[-TAGS_SHOWN:])
    return f"{len(items):,} tags; the newest {TAGS_SHOWN}: {newest} (--all lists every one)"


def inspect_journal(env: Env, src: sources.Source, key: str | None, as_json: bool, show_all: bool = False) -> None:
    """Show a journal's head, tags and the modules of the program at its head (or at the point given)."""
    path = os.fspath(src.path)

    def read(k: str | None) -> dict[str, Any]:
        with sources.open_journal(path, k) as j:
            counts: dict[str, int] = {}
            first = last = None
            start = j.first_replayable()
            with progress.task(env, f"reading {os.path.basename(path)}", total=max(j.head - start, 1)) as bar:
                n = 0
                for n, event in enumerate(j.events(start), 1):  # streamed: journals can hold millions
                    counts[event.type] = counts.get(event.type, 0) + 1
                    first = event.timestamp if first is None else first
                    last = event.timestamp
                    if n % 1024 == 0:
                        bar.update(completed=n)
                bar.update(total=max(n, 1), completed=max(n, 1))
            with progress.callback(env, "replaying") as report:
                state = (j.replay_state(seq=src.seq, tag=src.tag, progress=report) if j.head or src.has_point
                         else None)
            encryption = j.encryption or {}
            version = getattr(j.store, "version", None)
            return {"head": j.head, "tags": dict(j.tags()), "counts": counts, "first": first, "last": last,
                    "state": state, "size": j.size(),
                    "encrypted": bool(encryption), "key_id": encryption.get("key_id"),
                    "format_version": str(version) if version is not None else None,
                    "first_replayable": j.first_replayable()}

    try:
        facts = keys.with_key(read, key, prompt=False)  # without a key: the header, and the key id it needs
    except MissingKeyError:
        _encrypted_journal_summary(env, path, as_json)
        return
    size = facts["size"]
    counts = facts["counts"]
    n_events = sum(counts.values())
    state = facts["state"]
    rows = module_rows(state) if state else []
    first, last = facts["first"], facts["last"]
    info = {
        "path": path, "kind": "journal", "size": size, "format_version": facts["format_version"],
        "encrypted": facts["encrypted"], "key_id": facts["key_id"], "head": facts["head"], "events": n_events,
        "event_types": counts, "tags": facts["tags"], "first_event_at": first, "last_event_at": last,
        "point": src.text if src.has_point else None,
        "class": state.get("class") if state else None, "modules": rows,
        "demos": sum(r["demos"] for r in rows),
    }
    if as_json:
        click.echo(render.dumps(info))
        return
    tags = tags_text(facts["tags"], show_all)
    fields = [
        ("kind", "journal" + (f", format {facts['format_version']}" if facts["format_version"] else "")),
        ("encrypted", f"yes (key id {facts['key_id']})" if facts["encrypted"] else "no"),
        ("size", _size_text(size)),
        ("head", f"seq {facts['head']:,}, {render.plural(n_events, 'event')}"
                 + (f" (replayable from seq {facts['first_replayable']:,})" if facts["first_replayable"] > 1 else "")),
        ("events", ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"),
        ("tags", tags),
    ]
    if first is not None:
        fields.append(("written", f"{_when(first)} .. {_when(last)}"))
    if state:
        fields.append(("class", str(state.get("class"))))
        at = f"tag {src.tag}" if src.tag else f"seq {src.seq}" if src.seq is not None else "head"
        fields.append(("modules", f"{len(rows)} with {render.plural(info['demos'], 'demo')} in all (at {at})"))
    env.result(f"[bold]{escape(path)}[/]")
    env.result(_fields_table(fields))
    if rows:
        env.result()
        env.result(modules_table(rows))


def _encrypted_journal_summary(env: Env, path: str, as_json: bool) -> None:
    """What can be said about an encrypted journal without its key: its header."""
    version, meta = sources.journal_header(path)
    enc = meta.get("encryption") or {}
    key_kind = "passphrase (scrypt)" if enc.get("kdf") else "raw key"
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    hint = "give the key with --key-env VAR or --ask-key to see inside"
    info = {"path": path, "kind": "journal", "format_version": version, "encrypted": True,
            "key_id": enc.get("key_id"), "key_kind": key_kind, "size": size, "note": hint}
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    env.result(f"[bold]{escape(path)}[/]")
    env.result(_fields_table([("kind", f"journal, format {version}"),
                              ("encrypted", f"yes, AES-256-GCM per record; key id {enc.get('key_id')}, {key_kind}"),
                              ("size", _size_text(size)), ("note", hint)]))


def _when(ts: Any) -> str:
    """A timestamp as text (journals store float seconds or ISO text)."""
    if isinstance(ts, (int, float)):
        import datetime as dt

        return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(ts)


def module_detail(env: Env, label: str, path: str, node: dict[str, Any], n_demos: int, as_json: bool) -> None:
    """One module in full: signature fields, instructions, parameters, metadata and its first demos."""
    if as_json:
        click.echo(render.dumps({"source": label, "module": path, **node}))
        return
    sig = node.get("signature") if isinstance(node.get("signature"), dict) else {}
    demos = node.get("demos") or []
    env.result(Text.assemble((path, "bold"), f"  {dspy_view.class_label(None, path, node)}  ({label})"))
    if node.get("kind") == "program":
        env.result(modules_table(module_rows(node)))
        return
    fields: list[tuple[str, str | Text]] = [("instructions", str(sig.get("instructions", "")))]
    all_fields = [f for side in ("inputs", "outputs") for f in sig.get(side) or [] if isinstance(f, dict)]
    width = max((len(str(f.get("name"))) for f in all_fields), default=0)
    for side in ("inputs", "outputs"):
        lines = [f"{f.get('name')!s:<{width}}  {f.get('prefix', '')!s}" + (f"  ({f.get('desc')})" if f.get("desc")
                 else "") for f in sig.get(side) or [] if isinstance(f, dict)]
        fields.append((side, "\n".join(lines) or "none"))
    fields.append(("parameters", render.params_text(node.get("parameters") or {}, 200) or "none"))
    fields.append(("metadata", render.short(node.get("metadata") or {}, 200)))
    fields.append(("demos", f"{len(demos):,}" + (f", the first {min(n_demos, len(demos))} below"
                                                  if demos and n_demos else "")))
    env.result(_fields_table(fields))
    shown = [d for d in demos[:n_demos] if isinstance(d, dict)]
    if shown:
        columns = dspy_view.demo_columns(shown)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("#", justify="right")
        for c in columns:
            table.add_column(c, overflow="fold")
        for i, d in enumerate(shown):
            table.add_row(str(i), *(Text(_cell(d[c]) if c in d else "") for c in columns))
        env.result()
        env.result(table)


def _cell(value: Any, width: int = 60) -> str:
    """A demo value for a table cell: text as it is (cut), anything else in its short form."""
    if isinstance(value, str):
        text = " ".join(value.split())
        return text if len(text) <= width else text[: width - 1] + "…"
    return render.short(value, width)


@cli.command("inspect", short_help="What a document or journal holds.")
@click.argument("path", shell_complete=complete.points)
@click.option("-m", "--module", "module", metavar="PATH",
              help="Show one module in full (dotted path): fields, instructions, parameters, metadata, demos.")
@click.option("--demos", "n_demos", default=5, show_default=True, type=click.IntRange(min=0),
              help="With --module, how many demos to show.")
@keys.key_options
@no_verify_option
@click.option("--all", "show_all", is_flag=True,
              help=f"List every tag of a journal (without it: the count and the newest {TAGS_SHOWN}).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of tables.")
@click.pass_context
def inspect_cmd(ctx: click.Context, path: str, module: str | None, n_demos: int, key_env: str | None,
                ask_key: bool, no_verify: bool, show_all: bool, as_json: bool) -> None:
    """Show what a document or a journal holds.

    For a document: kind, format, version, compression, encryption, size, sha256,
    content checksum (verified), class, and every module with its signature, demo
    count and parameters. A msgpack program with a module table is listed from the
    table: no module is read, the header and the program's own fields are checked
    (`desiru verify` checks every byte). For a journal: head, events by type, tags, and the
    modules of the program at its head, or at a point (PATH@tag:NAME, PATH@seq:N).
    With --module, one module in full.

    \b
    Examples:
      desiru inspect qa.msgpack.zst
      desiru inspect runs/qa.journal --json
      desiru inspect runs/qa.journal@tag:best --module answer --demos 3
      read -rs MYKEY && export MYKEY && desiru inspect secret.bin --key-env MYKEY
      desiru inspect secret.bin --ask-key
    """
    env = env_of(ctx)
    key = keys.input_key(key_env, ask_key)
    src = sources.parse_source(path)
    if module is not None:
        with progress.task(env, f"reading {os.path.basename(src.text)}"):
            loaded = keys.with_key(lambda k: sources.read_source(src, k, verify=not no_verify), key)
        state = loaded.state
        if loaded.kind == "module":  # a module file: its own name, or nothing
            if module not in (state.get("name"), ""):
                raise DesiruError(f"this module file holds {state.get('name')!r}, not {module!r}", path=src.path)
            node = state
        else:
            with sources.about(src.path):
                node = sources.find_child(state, module)
        module_detail(env, src.text, module, node, n_demos, as_json)
    elif sources.is_journal(src.path):
        inspect_journal(env, src, key, as_json, show_all)
    elif src.has_point and not os.path.exists(src.path):
        raise DesiruError("no such file or journal", path=src.path, hint="check the path")
    elif src.has_point:
        raise DesiruError(f"{src.path} is a document, not a journal; only journals have points such as @tag:NAME",
                          path=src.path, hint=f"use the path alone: {src.path}")
    else:
        inspect_document(env, path, key, as_json, verify=not no_verify)
