"""The ``desiru`` click group: global options, the output consoles and the one error handler.

Every command gets the invocation's :class:`Env` with ``env_of(ctx)``. Errors desiru raises on
purpose print one line (what, where, what to do) and exit non-zero; a traceback is
shown only with ``--debug``, because users meet files, not stack frames.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from desiru._version import __version__
from desiru.errors import DesiruError, MissingKeyError

#: exit codes, as documented in docs/cli.md
EXIT_OK = 0
#: ``diff`` found differences; ``verify`` found a fault
EXIT_DIFFERENT = 1
#: an error desiru reports on purpose (missing file, bad bytes, wrong key, ...), or bad usage
EXIT_ERROR = 2
#: a bug in desiru: please report it with the --debug traceback
EXIT_INTERNAL = 3
#: interrupted by Ctrl-C (128 + SIGINT, as shells report it); no output file is left half-written
EXIT_INTERRUPTED = 130
#: stdout was closed by its reader (128 + SIGPIPE, as shells report a writer killed by the pipe)
EXIT_BROKEN_PIPE = 141

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


#: the width of piped output: wide enough for a table row of a real program on one line
WIDE = 160


class _Console(Console):
    """A rich console that leaves like the rest of desiru when its reader closes the pipe."""

    def on_broken_pipe(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(EXIT_BROKEN_PIPE)


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout or stderr; piped output gets a wide fixed width so tables are not folded."""
    probe = Console(stderr=stderr)
    if probe.is_terminal or "COLUMNS" in os.environ:
        return _Console(stderr=stderr, highlight=False)
    return _Console(stderr=stderr, highlight=False, width=WIDE)


@dataclass
class Env:
    """Settings shared by every command of one invocation."""

    quiet: bool = False
    debug: bool = False
    out: Console = field(default_factory=make_console)
    err: Console = field(default_factory=lambda: make_console(stderr=True))

    def row_width(self) -> int | None:
        """The width a row of ``log``/``diff`` is cut to: the terminal's (or $COLUMNS), else None
        (piped output stays whole, for grep and copy)."""
        if self.out.is_terminal or "COLUMNS" in os.environ:
            return max(self.out.width, 40)
        return None

    def say(self, text: Any = "", **kwargs: Any) -> None:
        """Print a line of human output (rich markup allowed) unless --quiet."""
        if not self.quiet:
            self.result(text, **kwargs)

    def result(self, text: Any = "", **kwargs: Any) -> None:
        """Print output that is the answer of the command; --quiet does not hide it.

        Lines of text are never folded (paths and messages stay whole for copy and grep);
        tables fit the width.
        """
        if isinstance(text, str):
            kwargs.setdefault("soft_wrap", True)
        self.out.print(text, **kwargs)


#: library hints that name a Python call, and what a command-line user types instead
_CLI_HINTS = (
    ("repair(path, force=True)", "replay what you need from them first (`desiru replay JOURNAL --tag NAME -o "
                                 "FILE`), then run `desiru repair JOURNAL --force`; nothing was changed"),
    ("journal.repair(", "`desiru verify JOURNAL` lists every fault; `desiru repair JOURNAL` cuts the journal "
                        "before the damage, keeping the cut bytes"),
    ("journal.verify()", "`desiru verify JOURNAL` lists every fault"),
    ("migrate_journal(", "run `desiru migrate JOURNAL` with a release that reads both versions"),
    ("key_id_of(", "check the key in your --key-env variable; `desiru inspect FILE` shows the key id the file needs"),
    ("Journal.open(", "check the path: journal commands take the journal directory"),
    ("rekey_journal(", "drop --key-env, or encrypt it with `desiru rekey JOURNAL --new-key-env VAR`"),
    ("or open with readonly=True", "close the other writer first; the reading commands (inspect, log, diff, "
                                   "replay, verify) work while it writes"),
    ("verify=False", "the file was altered or damaged; restore it from a backup (or, if you edited it by hand, "
                     "--no-verify reads it anyway: unsafe, nothing checks the content; `desiru convert IN OUT "
                     "--no-verify` writes it with a fresh checksum)"),
    ("readonly=True on this platform", "only the reading commands (inspect, log, diff, replay, verify) work "
                                       "on this platform"),
)


def cli_hint(exc: DesiruError, command: str | None = None) -> None:
    """Rewrite library hints that speak Python into what a command-line user types.

    A hint that sends the user to the very ``command`` that failed is replaced by what to do instead.
    """
    if isinstance(exc, MissingKeyError):
        exc.hint = "give the key with --key-env VAR (the name of an environment variable) or --ask-key"
        return
    for needle, text in _CLI_HINTS:
        if exc.hint and needle in exc.hint:
            exc.hint = text
            break
    else:
        if exc.hint and exc.hint.startswith("pass key="):
            exc.hint = "give the key with --key-env VAR or --ask-key"
    if command == "inspect" and exc.hint and "`desiru inspect" in exc.hint:
        exc.hint = re.sub(r"`desiru inspect[^`]*` shows the key id( the file needs)?",
                          "run `desiru inspect` without --key-env/--ask-key to see the key id the file needs",
                          exc.hint)
        exc.hint = re.sub(r"[;,]? *`desiru inspect[^`]*` shows what [^;)]*", "", exc.hint) or None


def report_error(env: Env | None, exc: BaseException, command: str | None = None) -> int:
    """Print one clear line for ``exc`` (raised by ``command``) on stderr and return the exit code."""
    err = env.err if env is not None else make_console(stderr=True)
    if isinstance(exc, DesiruError):
        cli_hint(exc, command)
        text = exc._render()
        code = EXIT_ERROR
    elif isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        text = f"{where}{exc.strerror or exc}"
        code = EXIT_ERROR
    else:
        text = f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback and report it)"
        code = EXIT_INTERNAL
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    return code


#: the order --help lists commands in: first steps, documents, journals, upkeep
ORDER = ("demo", "inspect", "diff", "convert", "export-module", "import-module", "log", "trials", "lineage",
         "replay", "tag", "snapshot", "compact", "verify", "repair", "migrate", "rekey", "copy", "report")


class DesiruGroup(click.Group):
    """A click group whose invoke turns any error into one line and an exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Accept -q/--quiet after the command name too (``desiru verify J -q``), as users type it."""
        for i, arg in enumerate(args):
            if arg in self.commands:
                rest = args[i + 1:]
                stop = rest.index("--") if "--" in rest else len(rest)
                quiet = [a for a in rest[:stop] if a in ("-q", "--quiet")]
                if quiet:
                    kept = [a for a in rest[:stop] if a not in ("-q", "--quiet")] + rest[stop:]
                    args = ["--quiet", *args[:i + 1], *kept]
                break
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))

    def invoke(self, ctx: click.Context) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            # library warnings (e.g. a torn tail cut on open) become "warning:" lines, not Python noise
            warnings.simplefilter("always", UserWarning)
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.ClickException):
                raise
            except (KeyboardInterrupt, click.exceptions.Abort):
                # Ctrl-C (also at a key prompt): one line, no traceback, the shell's code for SIGINT;
                # writes are atomic, so nothing half-written is left behind
                env = ctx.obj if isinstance(ctx.obj, Env) else Env()
                env.err.print("interrupted", style="bold red")
                ctx.exit(EXIT_INTERRUPTED)
            except BrokenPipeError:
                # the reader went away (`desiru log J | head`): stop quietly, as a killed pipe writer would
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                ctx.exit(EXIT_BROKEN_PIPE)
            except Exception as exc:
                env = ctx.obj if isinstance(ctx.obj, Env) else None
                if env is not None and env.debug:
                    raise
                ctx.exit(report_error(env, exc, ctx.invoked_subcommand))
            finally:
                _show_warnings(ctx, caught)


def cli_text(text: str) -> str:
    """A library warning with its Python-speaking hint, e.g. "(run journal.verify() ...)",
    replaced by the command to type."""
    for needle, hint in _CLI_HINTS:
        if needle in text:
            return re.sub(r" \((?:run|pass|call|create) [^;]*\)(?=;|$)", lambda _, h=hint: f" ({h})", text,
                          count=1)
    return text


def _show_warnings(ctx: click.Context, caught: list[warnings.WarningMessage]) -> None:
    env = ctx.obj if isinstance(ctx.obj, Env) else Env()
    seen = set()
    for w in caught:
        if not issubclass(w.category, UserWarning):
            continue
        text = cli_text(str(w.message))
        if text not in seen:
            seen.add(text)
            env.err.print(f"[bold yellow]warning:[/] {escape(text)}", soft_wrap=True)


def _debug_default() -> bool:
    return os.environ.get("DESIRU_DEBUG", "") not in ("", "0")


@click.group(cls=DesiruGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no chatter; results and errors only.")
@click.option("--debug", is_flag=True, default=_debug_default,
              help="Show the full traceback of an error (also DESIRU_DEBUG=1).")
@click.version_option(__version__, "-V", "--version", prog_name="desiru")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, debug: bool) -> None:
    """Look inside, compare, convert and repair desiru program files and journals.

    \b
    Start here:
      desiru demo                          run an optimization into a journal, replay and save the best
      desiru inspect qa.msgpack.zst        what is in a file or journal
      desiru log runs/qa.journal --module answer
      desiru trials runs/qa.journal --top 5     the best trials of a run: score, params, tags
      desiru diff runs/qa.journal@tag:baseline runs/qa.journal@tag:best
      desiru replay runs/qa.journal --tag best -o best.json

    A journal point is written PATH@tag:NAME, PATH@seq:N or PATH@head. Keys are never
    given as values on the command line: use --key-env VAR or --ask-key.
    Exit codes: 0 ok, 1 diff found differences / verify found a fault, 2 error, 3 bug,
    130 interrupted (Ctrl-C).
    """
    ctx.obj = Env(quiet=quiet, debug=debug)


def env_of(ctx: click.Context) -> Env:
    """The Env of this invocation (a default one when a command is invoked on its own)."""
    obj = ctx.find_object(Env)
    return obj if obj is not None else Env()
