"""``desiru demo [DIR]``: the first thing a new user runs (the work itself is desiru.demo)."""

from __future__ import annotations

import os

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from desiru.cli import progress, render, runs_cmds
from desiru.cli.app import cli, env_of
from desiru.errors import DesiruError


@cli.command("demo", short_help='Run the demo: optimize, journal, replay, save.')
@click.argument("directory", metavar="[DIR]", default="desiru-demo", type=click.Path(file_okay=False))
@click.option("--trials", default=200, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Optimization trials (one journal commit each).")
@click.option("--train", default=64, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Training examples the optimizer draws demos from.")
@click.option("--dev", default=24, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Dev examples each trial is scored on (each costs 5 LM calls).")
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed gives the same run.")
@click.option("--force", is_flag=True, help="Replace the journal of an earlier demo in DIR.")
@click.pass_context
def demo_cmd(ctx: click.Context, directory: str, trials: int, train: int, dev: int, seed: int, force: bool) -> None:
    """Run a simulated optimization into a journal, then replay, save, load and run the best program.

    Builds a QA program of five modules (query rewrite, retrieval, chain-of-thought
    answer, and a nested verifier with check and cite), then runs a random search
    over demos, instructions and LM parameters with a scripted LM and an exact-match
    metric. Every trial is committed to DIR/qa.journal; the best is tagged "best",
    replayed from the journal, saved as best.json and best.msgpack.zst, loaded back
    and run. The default size takes a few seconds; no network, no API key.

    \b
    Examples:
      desiru demo
      desiru demo /tmp/run --trials 1000 --dev 50
      desiru demo --force --seed 7
    """
    from desiru.demo import check_folder, run_demo

    env = env_of(ctx)
    check_folder(directory, force=force)  # refuse before the banner and the bar
    env.say(f"[bold]desiru demo[/]: optimizing a 5-module QA program, {render.plural(trials, 'trial')}, "
            f"{dev} dev / {train} train examples, seed {seed}")
    with progress.task(env, "optimizing", total=trials) as bar:
        def on_trial(t: object) -> None:
            from desiru.demo import Trial

            assert isinstance(t, Trial)
            bar.advance()
            if t.best:
                bar.update(description=f"optimizing, best {t.score:.3f}")
                line = (f"  trial {t.number:>5}  seq {t.seq:>6}  score {t.score:.3f}  [green]new best[/]  "
                        f"{escape(', '.join(t.changes))}")
                if bar.shown:
                    bar.log(line)
                else:
                    env.say(line)

        report = run_demo(directory, trials=trials, train=train, dev=dev, seed=seed, force=force,
                          on_trial=on_trial)

    def rel(p: os.PathLike[str] | str) -> str:
        return escape(str(p))

    def yes(flag: bool) -> str:
        return "[green]yes[/]" if flag else "[bold red]NO[/]"

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("journal", f"{rel(report.journal)}: {render.plural(report.events, 'event')} from "
                            f"{render.plural(report.commits, 'commit')}, "
                            f"{render.human_size(report.sizes['journal'])}; verified: {yes(report.journal_ok)}")
    grid.add_row("search", f"{render.plural(len(report.trials), 'trial')}, "
                          f"{render.plural(report.lm_calls, 'call')} to the scripted LM")
    grid.add_row("best", f"trial {report.best_trial} at seq {report.best_seq}: exact match "
                         f"{report.best_score:.3f} (baseline {report.baseline_score:.3f}), tagged 'best'")
    grid.add_row("replayed", f"tag 'best' from the journal; same as the best trial: {yes(report.replay_matches)}")
    for name in ("json", "msgpack+zstd"):
        grid.add_row("saved", f"{rel(report.files[name])} ({name}, {report.sizes[name]:,} bytes)")
    grid.add_row("loaded", f"both files back; same as the replayed program: {yes(report.loads_match)}")
    env.result(grid)
    env.result()
    env.result(runs_cmds.trials_table(report.top, [], title="the best trials, from the journal's run index"))
    env.result()
    answers = Table(title="forward() of the program loaded from msgpack+zstd", title_justify="left",
                    box=box.SIMPLE_HEAD, show_edge=False)
    answers.add_column("question")
    answers.add_column("answer")
    answers.add_column("gold")
    for q, a, gold in report.answers:
        answers.add_row(escape(q), escape(a), escape(gold))
    env.result(answers)
    env.result()
    timings = Table(title="timings", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    timings.add_column("step")
    timings.add_column("time", justify="right")
    for step, seconds in report.timings.items():
        timings.add_row(step, f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s")
    env.result(timings)
    env.say()
    j = rel(report.journal)
    env.say("[bold]next[/], try:")
    env.say(f"  desiru inspect {rel(report.files['msgpack+zstd'])}")
    env.say(f"  desiru trials {j} --top 10")
    env.say(f"  desiru lineage {j}@tag:best")
    env.say(f"  desiru log {j} --type SignatureSet")
    env.say(f"  desiru diff {j}@tag:baseline {j}@tag:best")
    env.say(f"  desiru replay {j} --tag best -o best.yaml")
    if not (report.replay_matches and report.loads_match and report.journal_ok):
        raise DesiruError("the demo's checks failed (see NO above)", path=directory,
                          hint="this is a bug in desiru; please report it with this output")
