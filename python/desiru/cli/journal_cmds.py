"""Journal commands: log, replay, snapshot, compact, verify and repair (tag, trials, lineage: runs_cmds).

Reading commands open the journal as a reader (no lock, nothing changed), so they
work while an optimization is writing to it; writing commands take the writer's
lock and fail at once with JournalLockedError when another writer holds it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import warnings
from collections.abc import Iterator
from typing import Any

import click
from rich.markup import escape

from desiru.cli import complete, keys, progress, render, runs_cmds, sources
from desiru.cli.app import EXIT_DIFFERENT, Env, cli, cli_hint, env_of
from desiru.cli.convert import output_options, report_saved
from desiru.cli.diff import describe
from desiru.errors import CorruptDataError, DecryptionError, DesiruError, MissingKeyError, UnknownModuleError

#: how often --follow looks for new commits (seconds): quick enough to feel live, light on the disk
FOLLOW_POLL = 0.2


# -- helpers ---------------------------------------------------------------------------------------
def _journal_arg(text: str) -> sources.Source:
    """A journal path (a point such as @tag:x is refused where a whole journal is meant)."""
    src = sources.parse_source(text)
    if src.has_point:
        raise DesiruError(f"{text!r} names a point; this command takes the journal itself",
                          hint=f"use {src.path}")
    return src


def _event_types() -> dict[str, str]:
    """Every spelling of an event type a user may type -> its stored name."""
    from desiru.journal import EVENT_TYPES

    names: dict[str, str] = {}
    for name in EVENT_TYPES:
        names[name.lower()] = name
    return names


def _normalize_type(text: str) -> str:
    known = _event_types()
    key = text.replace("_", "").replace("-", "").lower()
    if key not in known:
        raise DesiruError(f"unknown event type {text!r}", hint=f"known types: {', '.join(sorted(known.values()))}")
    return known[key]


def _point(j: Any, text: str | None, what: str) -> int | None:
    """A seq from ``N`` or ``tag:NAME`` (or a bare tag name)."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    name = text[4:] if text.startswith("tag:") else text
    tags = j.tags()
    if name not in tags:
        raise DesiruError(f"{what} {text!r} is neither a seq nor a tag of this journal", path=j.path,
                          hint=f"known tags: {sorted(tags)}" if tags else "this journal has no tags yet")
    return int(tags[name])


def event_details(event: Any) -> str:
    """What an event did, in a few words."""
    if event.type == "CheckpointTagged":
        extra = {k: v for k, v in event.payload.items() if k not in ("tag", "target", "moved_from")}
        text = f"tag {event.payload.get('tag')!s}" + runs_cmds.tag_target_text(event.payload)
        return text + (f" {render.short(extra, 50)}" if extra else "")
    if event.type == "Committed":
        parent = event.payload.get("parent")
        return f"commit from seq {parent}" if parent else "first commit"
    if event.type == "ResultsRecorded":
        return runs_cmds.results_text(event.payload)
    edit = event.to_edit()
    if edit is None:
        return render.short(dict(event.payload), 70)
    text = describe(edit)[1]
    if event.type == "ModuleImported" and "source" in event.payload:
        text += f" from {event.payload['source']}"
    return text


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# -- log ---------------------------------------------------------------------------------------------
@cli.command("log", short_help="List a journal's events, with filters.")
@click.argument("journal", metavar="JOURNAL")
@click.option("-m", "--module", "modules", multiple=True, metavar="PATH",
              help="Only events of this module (dotted path) and what is inside it. Repeatable.")
@click.option("-t", "--type", "types", multiple=True, metavar="TYPE", shell_complete=complete.event_types,
              help="Only events of this type, e.g. DemoAdded or demo_added. Repeatable.")
@click.option("--from", "start", metavar="SEQ|tag:NAME", shell_complete=complete.tag_names,
              help="First seq to show (a number or a tag).")
@click.option("--to", "stop", metavar="SEQ|tag:NAME", shell_complete=complete.tag_names,
              help="Last seq to show, inclusive (a number or a tag).")
@click.option("--tag", metavar="NAME", shell_complete=complete.tag_names,
              help="Only the history up to the point tagged NAME (same as --to tag:NAME).")
@click.option("-n", "--limit", type=click.IntRange(min=1), metavar="N", help="Show at most N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (the stored event records).")
@click.option("-f", "--follow", is_flag=True,
              help="Keep watching: print new events as commits complete (Ctrl-C to stop).")
@click.option("--follow-timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="With --follow, stop after this long without a new event.")
@click.option("--full", is_flag=True, help="Show whole values; rows are otherwise cut to the terminal's width.")
@keys.key_options
@click.pass_context
def log_cmd(ctx: click.Context, journal: str, modules: tuple[str, ...], types: tuple[str, ...], start: str | None,
            stop: str | None, tag: str | None, limit: int | None, as_json: bool, follow: bool,
            follow_timeout: float | None, full: bool, key_env: str | None, ask_key: bool) -> None:
    """List the events of a journal, oldest first, with filters.

    Columns: seq, time (UTC), event type, module path, and what changed.

    \b
    Examples:
      desiru log runs/qa.journal
      desiru log runs/qa.journal --module answer --type DemoAdded --type DemoRemoved
      desiru log runs/qa.journal --from tag:baseline --to tag:best
      desiru log runs/qa.journal --from 100 --limit 20 --json | jq .payload
      desiru log runs/qa.journal --follow --type CheckpointTagged     (watch a running optimization)
    """
    env = env_of(ctx)
    src = _journal_arg(journal)
    wanted = {_normalize_type(t) for t in types}
    if tag is not None and stop is not None:
        raise DesiruError("give --to or --tag, not both")
    if follow and (tag is not None or stop is not None):
        raise DesiruError("--follow shows events as they come; it cannot stop at --to or --tag")
    if follow_timeout is not None and not follow:
        raise DesiruError("--follow-timeout goes with --follow")
    key = keys.input_key(key_env, ask_key)

    def show(k: str | None) -> None:
        with sources.open_journal(src.path, k) as j:
            first = _point(j, start, "--from") or 0
            last = _point(j, f"tag:{tag}" if tag is not None else stop, "--to")
            stop_seq = None if last is None else last + 1
            if modules:
                _check_modules(j, modules)
            shown = 0
            seq_width = max(3, len(str(j.head)))
            columns = runs_cmds.CommitColumns(j)
            if not as_json:
                commit_cols = f"{'parent':>{max(seq_width, 6)}}  {'score':>6}  " if _commit_columns(env) else ""
                env.result(f"[dim]{'seq':>{seq_width}}  {'time (UTC)':<19}  {commit_cols}{'type':<16}  "
                           f"{'module':<16}  change[/]")
            head = j.head
            stream: Iterator[Any] = j.events(first, head + 1 if stop_seq is None else min(stop_seq, head + 1))
            if follow:  # then the events committed from now on, as whole commits complete
                stream = itertools.chain(stream, j.follow(start=max(first, head + 1), timeout=follow_timeout,
                                                          poll=FOLLOW_POLL))
            try:
                for event in stream:
                    if wanted and event.type not in wanted:
                        continue
                    if modules and not any(event.path == m or event.path.startswith(m + ".") for m in modules):
                        continue
                    if as_json:
                        click.echo(json.dumps(render.to_json(event.to_record()), ensure_ascii=False))
                    else:
                        _row(env, event, seq_width, columns.cells(event.seq))
                    shown += 1
                    if limit is not None and shown >= limit:
                        break
            except KeyboardInterrupt:
                if not follow:
                    raise  # Ctrl-C is how a --follow ends; otherwise it aborts
            if not as_json and not env.quiet:
                env.err.print(f"{shown:,} event{'s' if shown != 1 else ''} shown; head is seq {j.head:,}",
                              style="dim")

    with render.whole_values(full):
        keys.with_key(show, key)


def _check_modules(j: Any, modules: tuple[str, ...]) -> None:
    """Refuse a --module that no event of the journal is about (a typo would otherwise show nothing)."""
    seen: set[str] = set()
    for event in j.events(j.first_replayable()):
        if event.path:
            seen.add(event.path)
    if j.head:  # modules no event touched since the program was created are known too
        seen.update(path for path, _ in sources.iter_modules(j.replay_state()))
    unknown = [m for m in modules if not any(p == m or p.startswith(m + ".") for p in seen)]
    if unknown:
        raise UnknownModuleError(f"no module {', '.join(map(repr, unknown))} in this journal",
                                 path=j.path, hint=f"known modules: {', '.join(sorted(seen)) or 'none'}")


#: below this terminal width, log leaves out the parent and score columns (the change keeps its room)
COMMIT_COLUMNS_WIDTH = 100


def _commit_columns(env: Env) -> bool:
    width = env.row_width()
    return width is None or width >= COMMIT_COLUMNS_WIDTH


def _row(env: Env, event: Any, seq_width: int, commit: tuple[str, str]) -> None:
    colour = {"Added": "green", "Removed": "red", "Imported": "green", "Tagged": "cyan", "Recorded": "cyan",
              "Committed": "dim"}
    style = next((c for suffix, c in colour.items() if event.type.endswith(suffix)), "yellow")
    path = event.path or "(program)"
    width = env.row_width()  # on a terminal, the change is cut so that the row is one line
    parent_width = max(seq_width, 6)
    cols = f"{commit[0]:>{parent_width}}  {commit[1]:>6}  " if _commit_columns(env) else ""
    room = None if width is None else max(width - (seq_width + 2 + 19 + 2 + len(cols)
                                                   + max(16, len(event.type)) + 2 + max(16, len(path)) + 2), 10)
    env.result(f"{event.seq:>{seq_width}}  {_when(event.timestamp)}  {cols}"
               f"[{style}]{event.type:<16}[/]  "
               f"[bold]{escape(path):<16}[/]  {escape(render.cut(event_details(event), room))}",
               soft_wrap=True)


# -- replay ------------------------------------------------------------------------------------------
@cli.command("replay", short_help='Write a journal point (tag or seq) to a document.')
@click.argument("journal", metavar="JOURNAL", shell_complete=complete.points)
@click.option("--tag", metavar="NAME", shell_complete=complete.tag_names, help="Replay to the point tagged NAME.")
@click.option("--seq", type=click.IntRange(min=1), metavar="N", help="Replay to seq N.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="The document to write (format and compression from the suffix or the options).")
@output_options
@keys.key_options
@click.pass_context
def replay_cmd(ctx: click.Context, journal: str, tag: str | None, seq: int | None, out: str, fmt: str | None,
               compress: str | None, force: bool, encrypt: bool, out_key_env: str | None, key_env: str | None,
               ask_key: bool) -> None:
    """Write the program as it was at a tag or seq of a journal (default: its head) to a document.

    \b
    Examples:
      desiru replay runs/qa.journal --tag best -o best.json
      desiru replay runs/qa.journal --seq 1200 -o at-1200.msgpack.zst
      desiru replay runs/qa.journal@tag:best -o best.yaml
    """
    env = env_of(ctx)
    src = sources.parse_source(journal)
    if tag is not None or seq is not None:
        if src.has_point or (tag is not None and seq is not None):
            raise DesiruError("give one point: --tag, --seq or JOURNAL@tag:NAME")
        src = sources.Source(src.text, src.path, tag=tag, seq=seq)
    if not sources.is_journal(src.path):
        if not os.path.exists(src.path):
            raise DesiruError("no such journal", path=src.path, hint="check the path")
        raise DesiruError("not a desiru journal", path=src.path,
                          hint="replay reads a journal; to rewrite a document use `desiru convert`")
    sources.check_output(out, fmt=fmt, compress=compress, force=force)
    in_key = keys.input_key(key_env, ask_key)
    with progress.callback(env, f"replaying {os.path.basename(src.path)}") as report:
        loaded, used = keys.with_key_used(lambda k: sources.read_source(src, k, progress=report), in_key)
    out_key = keys.output_key(encrypt, out_key_env, used)
    with progress.task(env, f"writing {os.path.basename(out)}"):
        result = sources.write_state(loaded.state, out, kind="program", fmt=fmt, compress=compress, key=out_key,
                                     force=force)
    point = f"tag {src.tag}" if src.tag else f"seq {src.seq}" if src.seq is not None else "head"
    report_saved(env, result, f"replayed {point} of {src.path}; wrote")


# -- snapshot / compact (tag: runs_cmds) --------------------------------------------------------------------------
@cli.command("snapshot", short_help="Snapshot a journal's head.")
@click.argument("journal", metavar="JOURNAL")
@keys.key_options
@click.pass_context
def snapshot_cmd(ctx: click.Context, journal: str, key_env: str | None, ask_key: bool) -> None:
    """Write a full snapshot of the head, so replays start from it instead of the first event.

    \b
    Example:
      desiru snapshot runs/qa.journal
    """
    env = env_of(ctx)
    src = _journal_arg(journal)

    def snap(k: str | None) -> tuple[int, int]:
        with sources.open_journal(src.path, k, write=True) as j:
            with progress.task(env, "writing the snapshot"):
                seq = j.snapshot()
            return seq, j.size()

    seq, size = keys.with_key(snap, keys.input_key(key_env, ask_key))
    env.say(f"snapshot at seq {seq:,}; the journal takes {render.human_size(size)}")


@cli.command("compact", short_help='Drop history before the newest snapshot.')
@click.argument("journal", metavar="JOURNAL")
@click.option("--snapshot", "take_snapshot", is_flag=True,
              help="Snapshot the head first, so everything before the head is dropped.")
@click.option("--force", is_flag=True, help="Also drop tagged commits before the cut (kept by default).")
@keys.key_options
@click.pass_context
def compact_cmd(ctx: click.Context, journal: str, take_snapshot: bool, force: bool, key_env: str | None,
                ask_key: bool) -> None:
    """Drop the events and snapshots before the newest snapshot, to free space.

    Every seq from that snapshot on replays exactly as before. Tagged commits, the
    lineage of the 10 best trials and the head keep a snapshot of their own and still
    replay; other older commits can no longer be replayed, but stay in `desiru trials`
    with their scores. --force also lets tagged commits before the cut go.

    \b
    Examples:
      desiru compact runs/qa.journal
      desiru compact runs/qa.journal --snapshot
      desiru replay runs/qa.journal --tag baseline -o baseline.json && desiru compact runs/qa.journal --force
    """
    env = env_of(ctx)
    src = _journal_arg(journal)

    def compact(k: str | None) -> dict[str, Any]:
        with sources.open_journal(src.path, k, write=True) as j:
            before = j.size()
            if take_snapshot and j.head > 0:
                with progress.task(env, "writing the snapshot"):
                    j.snapshot()
            with progress.callback(env, "compacting") as report:
                freed = j.compact(keep_tags=not force, progress=report)
            return {"before": before, "after": j.size(), "freed": freed, "first": j.first_replayable(),
                    "head": j.head, "snapshots": list(j.store.snapshot_seqs())}

    r = keys.with_key(compact, keys.input_key(key_env, ask_key))
    if r["freed"] == 0 and r["before"] == r["after"]:
        if not r["snapshots"]:
            env.say("nothing freed: there is no snapshot yet, and compaction drops what comes before the "
                    "newest one (pass --snapshot to take one at the head first)")
        elif r["first"] >= r["snapshots"][-1]:
            env.say(f"nothing freed: the journal is already compacted to its newest snapshot "
                    f"(seq {r['snapshots'][-1]:,}); replayable from seq {r['first']:,} to {r['head']:,}")
        else:
            again = "compact again after the next commit" if take_snapshot else \
                "pass --snapshot, or compact after the next commit"
            env.say(f"nothing freed: the events up to the newest snapshot (seq {r['snapshots'][-1]:,}) are still "
                    f"in the log file the head is written to; {again}")
        return
    env.say(f"freed {render.human_size(r['freed'])}: {render.human_size(r['before'])} -> "
            f"{render.human_size(r['after'])}; replayable from seq {r['first']:,} to {r['head']:,}")


# -- verify / repair -----------------------------------------------------------------------------------
@cli.command("verify", short_help='Check every byte; exit 1 naming each fault.')
@click.argument("path")
@keys.key_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def verify_cmd(ctx: click.Context, path: str, key_env: str | None, ask_key: bool, as_json: bool) -> None:
    """Check every byte of a journal or document; exit 1 naming each fault, 0 when sound.

    For a journal: every record's framing, decryption and decoding, every snapshot, and
    that each snapshot equals what the events replay to. For a document: format, version,
    decryption and content checksum. Verifying changes nothing (see `desiru repair`).

    \b
    Examples:
      desiru verify runs/qa.journal
      desiru verify best.msgpack.zst && deploy best.msgpack.zst
    """
    env = env_of(ctx)
    src = _journal_arg(path)
    key = keys.input_key(key_env, ask_key)
    if sources.is_journal(src.path):
        report, faults = _verify_journal(env, src, key)
    else:
        report, faults = _verify_document(env, src, key)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for fault in faults:
            env.result(f"[red]fault:[/] {escape(fault)}", soft_wrap=True)
        env.result(escape(report["summary"]), soft_wrap=True)
    if faults:
        ctx.exit(EXIT_DIFFERENT)


def _verify_journal(env: Env, src: sources.Source, key: str | None) -> tuple[dict[str, Any], list[str]]:
    problem = sources.header_problem(src.path)
    if problem is not None:  # nothing past a bad header can be read; repair cannot rebuild it
        faults = [f"{src.path}: {problem}"]
        return {"path": str(src.path), "kind": "journal", "ok": False, "faults": faults,
                "summary": f"{src.path}: 1 fault; {sources.HEADER_HINT}"}, faults
    def check(k: str | None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the report names the damage a reader warns of
            with sources.open_journal(src.path, k) as j, progress.callback(env, "verifying") as report:
                return j.verify(progress=report)

    try:
        report = keys.with_key(check, key)
    except CorruptDataError as exc:  # damage found before verify could even start
        exc.hint = None  # the summary line says what to do
        faults = [exc._render()]
        return {"path": str(src.path), "kind": "journal", "ok": False, "faults": faults,
                "summary": f"{src.path}: 1 fault; try `desiru repair {src.path}`"}, faults
    faults = [str(f) for f in report.faults]
    summary = (f"{src.path}: ok: {report.records:,} records, {report.snapshots} snapshot"
               f"{'s' if report.snapshots != 1 else ''}, head seq {report.head:,}"
               if not faults else
               f"{src.path}: {len(faults)} fault{'s' if len(faults) != 1 else ''} in {report.records:,} records; "
               f"`desiru repair {src.path}` cuts the journal before the first damaged record, keeping the cut bytes")
    return {"path": str(src.path), "kind": "journal", "ok": not faults, "head": report.head,
            "records": report.records, "snapshots": report.snapshots, "faults": faults,
            "summary": summary}, faults


def _verify_document(env: Env, src: sources.Source, key: str | None) -> tuple[dict[str, Any], list[str]]:
    try:
        with progress.task(env, "verifying"):
            doc = keys.with_key(lambda k: sources.read_document(src.path, key=k), key)
    except (CorruptDataError, DecryptionError) as exc:
        if isinstance(exc, MissingKeyError) or "key id" in exc.message:
            raise  # a key problem, not damage: an error, not a fault
        cli_hint(exc)
        faults = [exc._render()]
        return {"path": str(src.path), "kind": "document", "ok": False, "faults": faults,
                "summary": f"{src.path}: damaged; restore it from a backup"}, faults
    checksum = doc.header.get("checksum")
    return {"path": str(src.path), "kind": "document", "ok": True, "checksum": checksum, "faults": [],
            "summary": f"{src.path}: ok: {doc.kind} document, format {doc.version}, {doc.format}, "
                       f"checksum {checksum} verified"}, []


@cli.command("repair", short_help='Cut a journal before its damage, keeping the bytes.')
@click.argument("journal", metavar="JOURNAL")
@click.option("--force", is_flag=True, help="Repair even if that drops tags (they are named first).")
@keys.key_options
@click.pass_context
def repair_cmd(ctx: click.Context, journal: str, force: bool, key_env: str | None, ask_key: bool) -> None:
    """Cut a journal before its first damaged record (a torn tail, a flipped byte), keeping the cut bytes.

    Everything before the first damaged record stays and replays as before; the cut
    bytes are moved aside to JOURNAL/damaged/, never deleted. Records after the damage
    are kept (renumbered) when a snapshot after it anchors them. A repair that would drop
    a tag is refused, naming the tags, unless --force is given. Run `desiru verify` afterwards.

    \b
    Examples:
      desiru verify runs/qa.journal || desiru repair runs/qa.journal
    """
    from desiru import journal as journal_pkg

    env = env_of(ctx)
    src = _journal_arg(journal)
    if sources.is_postgres(src.path):
        raise DesiruError("a journal in PostgreSQL needs no repair: each commit is one transaction, so nothing is "
                          "ever torn", path=src.path, hint="`desiru verify` checks every record")
    if not sources.is_journal(src.path):
        if not os.path.exists(src.path):
            raise DesiruError("no such journal", path=src.path, hint="check the path")
        raise DesiruError("not a desiru journal", path=src.path,
                          hint="repair works on journals; a damaged document must be restored from a backup")
    problem = sources.header_problem(src.path)
    if problem is not None:
        raise DesiruError(f"cannot repair this journal: {problem}; repair cuts damaged records, it cannot "
                          f"rebuild a header", path=src.path, hint="restore the journal from a copy")
    with progress.task(env, "repairing"):
        report = keys.with_key(lambda k: journal_pkg.repair(src.path, key=k, force=force),
                               keys.input_key(key_env, ask_key))
    _print_repair(env, report)


def _print_repair(env: Env, report: Any) -> None:
    """Say what repair found and did, from its RepairReport."""
    if not report.changed:
        env.result(f"{report.path}: nothing to repair; head is seq {report.head:,}", markup=False)
        for fault in report.faults:  # e.g. damage only a key could confirm
            env.result(f"[yellow]note:[/] {escape(str(fault))}")
        return
    for fault in report.faults:
        env.result(f"[red]fault:[/] {escape(str(fault))}")
    for cut in report.cuts:
        seqs = f" (seqs {cut.seqs[0]}..{cut.seqs[-1]})" if cut.seqs else ""
        env.result(f"cut {cut.nbytes:,} bytes after seq {cut.after_seq:,}{seqs}: {cut.reason}; "
                   f"kept in {cut.kept_in}", markup=False)
    for seq in report.snapshots_removed:
        env.result(f"moved the snapshot at seq {seq:,} aside (damaged or past the new head)")
    if report.kept_after_damage:
        env.result(f"kept {report.kept_after_damage:,} records after the damage (renumbered after one commit "
                   f"that stands in for the lost ones)")
    if report.lm_answers_kept:
        env.result(f"kept {report.lm_answers_kept:,} recorded LM answers read after the damage (appended again)")
    for tag, (old, new) in sorted(report.tags_moved.items()):
        env.result(f"tag {escape(tag)} moved from seq {old:,} to seq {new:,} (same commit, renumbered)")
    for tag, old in sorted(report.tags_dropped.items()):
        env.result(f"[yellow]tag {escape(tag)} dropped[/] (it named seq {old:,}, which was cut)")
    env.result(f"{report.path}: repaired; head is now seq {report.head:,}. Check it with `desiru verify`.",
               markup=False)
