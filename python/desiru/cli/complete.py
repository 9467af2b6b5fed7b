"""Shell completion of what only desiru knows: event types, a journal's tags and journal points.

click completes commands, options and file names by itself once the shell is set up
(docs/cli.md, "Shell completion"); these callbacks add the values. They never raise:
a journal that cannot be read simply completes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import click
from click.shell_completion import CompletionItem


def event_types(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``--type``: every event type, e.g. DemoAdded."""
    from desiru.journal import EVENT_TYPES

    return [CompletionItem(name) for name in EVENT_TYPES if name.lower().startswith(incomplete.lower())]


def _tags(path: str | None) -> dict[str, int]:
    """The tags of the journal at ``path`` (read from its index, without a lock), or none."""
    from desiru.cli import sources

    if not path or not sources.is_journal(path):
        return {}
    try:
        with sources.open_journal(path) as j:
            return dict(j.tags())
    except Exception:  # completion must never break the shell: an unreadable journal completes nothing
        return {}


def _journal_in_words() -> str | None:
    """The first journal among the words being completed (click's shell scripts pass them in
    COMP_WORDS): click parses no argument while an option still waits for its value."""
    import shlex

    from desiru.cli import sources

    try:
        words = shlex.split(os.environ.get("COMP_WORDS", ""))
    except ValueError:
        return None
    for word in words[1:]:
        path = word.rpartition("@")[0] if "@" in word and not os.path.exists(word) else word
        if not word.startswith("-") and sources.is_journal(path):
            return path
    return None


def tag_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``--tag NAME`` (and ``--from``/``--to``): the tags of the command's JOURNAL argument."""
    journal: Any = ctx.params.get("journal") or _journal_in_words()
    prefix = "tag:" if param.name in ("start", "stop") and incomplete.startswith("tag:") else ""
    name = incomplete[len(prefix):]
    return [CompletionItem(prefix + tag) for tag in _tags(os.fspath(journal) if journal else None)
            if tag.startswith(name)]


def points(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A document or journal point: files as the shell completes them, and after ``JOURNAL@``
    the journal's ``@head`` and ``@tag:NAME`` points."""
    base, at, selector = incomplete.rpartition("@")
    if not at:
        return [CompletionItem(incomplete, type="file")]
    out = [CompletionItem(f"{base}@head")] if "head".startswith(selector) else []
    want = selector[4:] if selector.startswith("tag:") else "" if "tag:".startswith(selector) else None
    if want is not None:
        out += [CompletionItem(f"{base}@tag:{tag}") for tag in _tags(base) if tag.startswith(want)]
    return out
