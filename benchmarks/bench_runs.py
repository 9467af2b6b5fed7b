"""Runs: recording scored trials beside Optuna, commits from random parents, queries on 100,000 commits.

    python benchmarks/bench_runs.py            # full run; writes the "Runs" section of docs/benchmarks.md
    python benchmarks/bench_runs.py --quick    # small data, prints only
    python benchmarks/bench_runs.py --profile  # also prints the cProfile of the large commits from random parents

Targets (issue 11, item 10): recording a scored trial (a commit of a one-demo change from a
random earlier parent, with score, metrics and params) at >= 5x Optuna's trials per second at
equal durability; a commit from a random parent in a 10,000-commit run of the large program
(50 modules x 2,000 demos) < 30 ms; trials() and best() on 100,000 commits < 1 s; find() < 10 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import program_state, small_state
from report import durable_verdict, fsync_floor, machine, med_p90, median_time, table, write_section

import desiru as ds
from desiru import _engine
from desiru.journal import Journal, state_hash


class BigProgram(ds.Program):
    """The class benchmarks/data.py names, so replays build a real program."""

    __desiru_name__ = "bench.BigProgram"


#: candidate programs an optimizer holds in bench_large's population loop
POPULATION = 8


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 0.01 else f"{seconds * 1e3:,.1f} ms"


def verdict(ok: bool, text: str) -> str:
    return f"{text}: {'met' if ok else 'MISSED'}"


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


#: (label, function names whose cumulative time makes it) for the breakdown of a commit's time
PARTS = [
    ("the parent's state (kept in memory, or a kept ancestor plus the lineage's events, or a replay from a "
     "snapshot)", ("_state_of",)),
    ("  of which finding the parent's events in the log by seq (frame scans)", ("frame_scan",)),
    ("applying edits (a parent's lineage, and a commit's own edits to the state it keeps)", ("apply_edits",)),
    ("the candidate program to a state tree", ("build",)),
    ("diff against the parent's state", ("diff_states",)),
    ("content hash (the state_hash of the modules a commit changed, and of any it cannot reuse)", ("content_hash",)),
    ("encoding and appending the records", ("append",)),
    ("fsync (fdatasync of the log)", ("fdatasync", "fsync")),
]


def breakdown(prof: cProfile.Profile, total: float) -> list[list[str]]:
    """Rows (what, time, share of ``total``) from a profile of commits, by the functions in PARTS.

    Each name's cumulative time is counted once per function (none of them recurses).
    """
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = []
    for label, names in PARTS:
        spent = sum(v[3] for (_file, _line, fn), v in stats.items()
                    if fn in names or any(fn == f"<built-in method desiru._native.{n}>" for n in names)
                    or any(fn == f"<built-in method posix.{n}>" for n in names))
        rows.append([label, ms(spent), f"{spent / total:.0%}"])
    return rows


def profiled(fn: Any) -> tuple[float, cProfile.Profile]:
    """Run ``fn()`` under cProfile; (seconds, profile)."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    return time.perf_counter() - t0, prof


# -- candidates: one-demo changes of an earlier candidate ---------------------------------------------
def with_changed_demo(state: dict[str, Any], rng: random.Random, tag: int) -> dict[str, Any]:
    """``state`` with one demo's answer rewritten; shares every module it does not touch."""
    modules = list(state["modules"])
    m = rng.randrange(len(modules))
    module = dict(modules[m])
    demos = list(module["demos"])
    i = rng.randrange(len(demos))
    demos[i] = {**demos[i], "answer": f"candidate {tag}: {str(demos[i]['answer'])[:40]}"}
    module["demos"] = demos
    modules[m] = module
    return {**state, "modules": modules}


def trial_values(rng: random.Random, n: int) -> tuple[float, dict[str, float], dict[str, Any]]:
    """Score, metrics and params of trial ``n``: what an optimizer records."""
    score = round(rng.random(), 4)
    metrics = {"exact_match": score, "f1": round(rng.random(), 4), "cost_usd": round(rng.random() / 50, 5)}
    params = {"instruction_idx": rng.randrange(8), "demo_set": rng.randrange(20),
              "temperature": rng.choice([0.0, 0.2, 0.5, 0.7, 1.0]), "trial": n}
    return score, metrics, params


def candidates(n: int, seed: int) -> list[tuple[int, ds.Program, float, dict[str, float], dict[str, Any]]]:
    """(parent index, program, score, metrics, params) for ``n`` trials; index 0 is the first commit."""
    rng = random.Random(seed)
    states = [small_state()]
    out = [(-1, ds.Program.from_state(states[0]), *trial_values(rng, 0))]
    for k in range(1, n + 1):
        parent = rng.randrange(k)
        state = with_changed_demo(states[parent], rng, k)
        states.append(state)
        out.append((parent, ds.Program.from_state(state), *trial_values(rng, k)))
    return out


# -- (a) recording a scored trial, beside Optuna ----------------------------------------------------
def time_desiru(folder: Path, trials: list[Any], mode: str, profile: bool = False) -> tuple[float, Any]:
    """Seconds to commit every trial after the first (and the profile of it when ``profile``)."""
    path = folder / f"d-{uuid.uuid4().hex}.journal"
    with Journal.open(path, fsync=mode) as j:
        _, program, score, metrics, params = trials[0]
        results = [j.commit(program, score=score, metrics=metrics, params=params)]

        def commit_all() -> None:
            for parent, program, score, metrics, params in trials[1:]:
                results.append(j.commit(program, parent=results[parent], score=score, metrics=metrics,
                                        params=params))

        if profile:
            elapsed, prof = profiled(commit_all)
        else:
            t0 = time.perf_counter()
            commit_all()
            elapsed, prof = time.perf_counter() - t0, None
    shutil.rmtree(path)
    return elapsed, prof


def optuna_trials(trials: list[Any]) -> list[Any]:
    """The same trials as Optuna FrozenTrials (params with their distributions, metrics as user attrs)."""
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    dists = {"instruction_idx": IntDistribution(0, 7), "demo_set": IntDistribution(0, 19),
             "temperature": FloatDistribution(0.0, 1.0), "trial": IntDistribution(0, len(trials))}
    return [optuna.trial.create_trial(params=params, distributions=dists, value=score, user_attrs=metrics)
            for _parent, _program, score, metrics, params in trials]


def time_optuna(folder: Path, frozen: list[Any], backend: str) -> float:
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if backend == "journal":
        path = folder / f"o-{uuid.uuid4().hex}.log"
        storage: Any = JournalStorage(JournalFileBackend(str(path)))
    else:
        path = folder / f"o-{uuid.uuid4().hex}.sqlite"
        storage = RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, direction="maximize")
    study.add_trial(frozen[0])
    t0 = time.perf_counter()
    for ft in frozen[1:]:
        study.add_trial(ft)
    elapsed = time.perf_counter() - t0
    if backend != "journal":
        storage.engine.dispose()
    path.unlink()
    return elapsed


def bench_record(folder: Path, quick: bool, runs: int) -> tuple[str, list[str]]:
    n = 200 if quick else 1000
    trials = candidates(n, seed=11)
    frozen = optuna_trials(trials)
    measured: dict[str, list[float]] = {"always": [], "batch": [], "journal": [], "sqlite": []}
    floor: list[float] = []
    for _ in range(runs):  # interleaved, so a slow spell of the shared disk hits every store alike
        for mode in ("always", "batch"):
            measured[mode].append(time_desiru(folder, trials, mode)[0])
        for backend in ("journal", "sqlite"):
            measured[backend].append(time_optuna(folder, frozen, backend))
        floor += fsync_floor(folder, calls=n // 4)
    med = {k: statistics.median(v) for k, v in measured.items()}
    floor_med, floor_p90 = med_p90(floor)
    names = {
        "always": "desiru commit(parent=, score=, metrics=, params=), fsync=always (an fsync per commit)",
        "batch": "desiru, same, fsync=batch (group commit: an fsync per 1,000 records or 50 ms)",
        "journal": "Optuna add_trial, JournalStorage + JournalFileBackend (an fsync per trial)",
        "sqlite": "Optuna add_trial, RDBStorage on SQLite (a transaction per trial, synchronous=FULL)",
    }
    rows = []
    for key in ("always", "batch", "journal", "sqlite"):
        rate = n / med[key]
        rows.append([names[key], f"{rate:,.0f}", ms(med[key] / n),
                     f"{med[key] / med['always']:.2f}x" if key != "always" else "1.00x"])
    targets = []
    short = {"journal": "Optuna JournalFileBackend", "sqlite": "Optuna RDBStorage on SQLite"}
    for peer in ("journal", "sqlite"):
        ratio = med[peer] / med["always"]
        targets.append(durable_verdict(ratio, 5, med[peer] / n, floor_med,
                                       f"desiru fsync=always records {ratio:.2f}x the trials/s of "
                                       f"{short[peer]} (target >= 5x)"))
    rows.append(["the disk's floor: the cheapest durable write (a pwrite of 300 bytes into blocks written "
                 "beforehand + fdatasync, nothing else)",
                 f"{1 / floor_med:,.0f}", f"{ms(floor_med)} (p90 {ms(floor_p90)})",
                 f"{floor_med * n / med['always']:.2f}x"])
    body = table(["store", "trials/s", "per trial", "its time / desiru fsync=always"], rows)
    total, prof = time_desiru(folder, trials, "always", profile=True)
    parts = table(["where the time of desiru's commits goes (one more run, under cProfile)", "time", "share"],
                  breakdown(prof, total))
    return body + f"\n\n{n:,} trials per run, each from a random earlier trial.\n\n" + parts, targets


# -- (b) a commit from a random parent in a 10,000-commit run of the large program ------------------------
def bench_large(folder: Path, quick: bool, samples: int, profile: bool) -> tuple[str, list[str], dict[str, Any]]:
    n_modules, n_demos, n_commits = (10, 400, 1000) if quick else (50, 2000, 10_000)
    rng = random.Random(5)
    base = program_state(n_modules, n_demos, seed=2)
    program = ds.Program.from_state(base)
    modules = list(program.modules.values())
    path = folder / "large.journal"
    # the run: a line of commits of one program changed in place (one demo replaced each time), each
    # with its results, as an optimizer that refines one program commits it
    changes: list[tuple[int, int, dict[str, Any]]] = []
    line: list[float] = []
    t_first = time.perf_counter()
    with Journal.open(path, fsync="batch") as j:
        results = [j.commit(program, score=0.5)]
        t_first = time.perf_counter() - t_first
        t_build = time.perf_counter()
        for k in range(1, n_commits):
            m = rng.randrange(n_modules)
            i = rng.randrange(n_demos)
            demo = {**base["modules"][m]["demos"][i], "answer": f"revised {k}"}
            changes.append((m, i, demo))
            modules[m].demos[i] = ds.Example(demo)
            score, metrics, params = trial_values(rng, k)
            t0 = time.perf_counter()
            results.append(j.commit(program, score=score, metrics=metrics, params=params))
            line.append(time.perf_counter() - t0)
        j.flush()
        t_build = time.perf_counter() - t_build
        head = j.head
        snaps = len(j.store.snapshot_seqs())

        def state_of(k: int) -> dict[str, Any]:
            """The state of the k-th commit (0-based), from the base and the changes."""
            mods = [dict(mod, demos=list(mod["demos"])) for mod in base["modules"]]
            for m, i, demo in changes[:k]:
                mods[m]["demos"][i] = demo
            return {**base, "modules": mods}

        check = rng.randrange(n_commits)
        assert j.replay_state(seq=results[check].seq) == state_of(check)  # the run holds what we think
        t_hash = median_time(lambda: _engine.content_hash(base), runs=5)

        # (1) the optimizer asks the journal for a random earlier trial's program, changes one demo and
        # commits it with that parent; the replay is timed on its own row
        replays, times = [], []
        prof = cProfile.Profile()
        profiled_time = 0.0
        for s in range(samples + samples // 3):
            k = rng.randrange(n_commits)
            t0 = time.perf_counter()
            cand = j.replay(seq=results[k].seq)
            replays.append(time.perf_counter() - t0)
            module = rng.choice(list(cand.modules.values()))
            i = rng.randrange(len(module.demos))
            module.demos[i] = module.demos[i].copy(answer=f"candidate {s}")
            score, metrics, params = trial_values(rng, n_commits + s)
            on = s >= samples  # the last third runs under cProfile, for the breakdown only
            if on:
                prof.enable()
            t0 = time.perf_counter()
            r = j.commit(cand, parent=results[k], score=score, metrics=metrics, params=params)
            if on:
                prof.disable()
                profiled_time += time.perf_counter() - t0
            else:
                times.append(time.perf_counter() - t0)
            assert r.parent == results[k].seq and len(r.events) == 4  # Committed, the demo out and in, results

        # (3) an optimizer's loop that holds a population of candidate programs (each derived from
        # another by copy() and one changed demo, as MIPROv2- or GEPA-style searches do); the copy is
        # made outside the timing, as the optimizer makes it. It starts from the last program of (1)
        population = [(r, cand)]
        held = []
        for s in range(samples):
            parent_r, parent_program = population[rng.randrange(len(population))]
            cand = parent_program.copy()
            module = rng.choice(list(cand.modules.values()))
            i = rng.randrange(len(module.demos))
            module.demos[i] = module.demos[i].copy(answer=f"population {s}")
            score, metrics, params = trial_values(rng, 300_000 + s)
            t0 = time.perf_counter()
            r = j.commit(cand, parent=parent_r, score=score, metrics=metrics, params=params)
            held.append(time.perf_counter() - t0)
            assert r.parent == parent_r.seq and len(r.events) == 4
            population = [*population, (r, cand)][-POPULATION:]
        # (2) the same, but the candidate is built from the optimizer's own copy of the data (nothing
        # shared with the journal's states: every demo is compared by value, every module hashed)
        foreign = []
        for s in range(samples):
            k = rng.randrange(n_commits)
            cand = ds.Program.from_state(with_changed_demo(state_of(k), rng, 100_000 + s))
            score, metrics, params = trial_values(rng, 2 * n_commits + s)
            t0 = time.perf_counter()
            r = j.commit(cand, parent=results[k], score=score, metrics=metrics, params=params)
            foreign.append(time.perf_counter() - t0)
            assert r.parent == results[k].seq

    parts = table(["where the time of the commits of (1) goes (further samples, under cProfile)", "time", "share"],
                  breakdown(prof, profiled_time))
    profile_text = ""
    if profile:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        profile_text = out.getvalue()
    shutil.rmtree(path)

    def spread(xs: list[float]) -> str:
        return f"median {ms(statistics.median(xs))}, p90 {ms(p90(xs))}"

    def extremes(xs: list[float]) -> str:
        return f"min {ms(min(xs))}, max {ms(max(xs))}"

    rows = [
        ["first commit (the whole program)", ms(t_first), ""],
        [f"build the run: {n_commits - 1:,} more commits of the program changed in place (one demo replaced "
         "each time), with results (fsync=batch)", spread(line),
         f"{ms(t_build / n_commits)} per commit in all; seq {head:,}, {snaps} automatic "
         f"snapshot{'s' if snaps != 1 else ''}"],
        ["for comparison: content_hash() of the whole state", ms(t_hash), ""],
        [f"(1) `replay(seq=k)` of a random earlier commit k ({samples + samples // 3} samples)", spread(replays),
         extremes(replays)],
        [f"(1) commit of that program with one demo changed, parent=k, with results ({samples} samples)",
         spread(times), extremes(times)],
        [f"(2) the same commit, the candidate built from a copy of the data the journal does not hold "
         f"({samples} samples)", spread(foreign), extremes(foreign)],
        [f"(3) commit of a candidate derived from a held program (a population of {POPULATION}, parent random "
         f"among them), one changed demo, with results ({samples} samples)", spread(held), extremes(held)],
    ]
    med = statistics.median(times)
    targets = [
        verdict(med < 0.03, f"(1) commit from a random parent of the {n_modules} x {n_demos} program in a "
                            f"{n_commits:,}-commit run: {spread(times)} (target < 30 ms)"),
        verdict(statistics.median(held) < 0.03, f"(3) commit from a random parent among {POPULATION} held "
                                                f"programs: {spread(held)} (target < 30 ms)"),
        verdict(statistics.median(line) < 0.005, f"one changed demo of the program on the line: {spread(line)} "
                                                 f"(target < 5 ms)"),
        verdict(statistics.median(foreign) < 0.03, f"(2) commit of a candidate sharing nothing with the "
                                                   f"journal: {spread(foreign)} (target < 30 ms)"),
    ]
    info = {"shape": f"{n_modules} x {n_demos}", "commits": n_commits, "profile": profile_text}
    return table(["what", "time", "notes"], rows) + "\n\n" + parts, targets, info


# -- (c) queries on 100,000 commits ------------------------------------------------------------------------
def bench_queries(folder: Path, quick: bool, runs: int) -> tuple[str, list[str], int]:
    n = 10_000 if quick else 100_000
    rng = random.Random(6)
    path = folder / "queries.journal"
    state = small_state()
    recent: list[tuple[Any, dict[str, Any]]] = []
    t_build = time.perf_counter()
    with Journal.open(path, fsync="never") as j:
        recent.append((j.commit(ds.Program.from_state(state), score=0.0), state))
        probe = None
        for k in range(1, n):
            # a tree: each trial derives from one of the 32 latest (whose states the writer keeps in memory)
            parent, parent_state = recent[rng.randrange(max(0, len(recent) - 32), len(recent))]
            state = with_changed_demo(parent_state, rng, k)
            score, metrics, params = trial_values(rng, k)
            program = ds.Program.from_state(state)
            r = j.commit(program, parent=parent, score=score, metrics=metrics, params=params)
            recent.append((r, state))
            if k == n // 2:
                probe = program
            if len(recent) > 64:
                recent = recent[-32:]
        j.flush()
        t_build = time.perf_counter() - t_build
        head = j.head
    assert probe is not None
    probe_hash = state_hash(probe.to_state()).hex()
    rows: list[list[Any]] = [[f"build: {n:,} commits from recent random parents, with results (fsync=never)",
                              ms(t_build / n) + " per commit", f"seq {head:,}"]]
    targets = []

    def fresh_trials() -> None:
        with Journal.open(path, readonly=True) as r:
            assert len(r.trials()) == n

    with Journal.open(path, readonly=True) as r:
        r.trials()  # the index is built; the rows below are the queries on an open reader
        figures = {
            "trials()": median_time(lambda: r.trials(), runs=runs),
            "best()": median_time(lambda: r.best(), runs=runs),
            "best(k=10, metric='f1')": median_time(lambda: r.best(k=10, metric="f1"), runs=runs),
            "find(program)": median_time(lambda: r.find(probe), runs=max(runs, 7)),
            "find(content hash)": median_time(lambda: r.find(probe_hash), runs=max(runs, 7)),
            "lineage(head)": median_time(lambda: r.lineage(r.head), runs=runs),
        }
        assert r.find(probe)[0].content_hash == probe_hash
    t_fresh = median_time(fresh_trials, runs=runs, warmup=0)
    rows.append(["open a reader + trials() (the index is built by one scan of the log)", ms(t_fresh), ""])
    for what, seconds in figures.items():
        rows.append([f"{what} on an open reader", ms(seconds), ""])
    targets.append(verdict(t_fresh < 1, f"trials() on {n:,} commits from a fresh reader (open + index build): "
                                        f"{ms(t_fresh)} (target < 1 s)"))
    targets.append(verdict(figures["trials()"] < 1, f"trials() on {n:,} commits, index built: "
                                                    f"{ms(figures['trials()'])} (target < 1 s)"))
    targets.append(verdict(figures["best()"] < 1, f"best() on {n:,} commits: {ms(figures['best()'])} "
                                                  f"(target < 1 s)"))
    targets.append(verdict(figures["find(program)"] < 0.01,
                           f"find(program) on {n:,} commits: {ms(figures['find(program)'])} (target < 10 ms)"))
    shutil.rmtree(path)
    return table(["what", "time", "notes"], rows), targets, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, prints only (a smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per figure (median reported)")
    parser.add_argument("--samples", type=int, default=None, help="commits from random parents timed in (b)")
    parser.add_argument("--profile", action="store_true", help="also print the cProfile of (b)'s profiled commits")
    parser.add_argument("--dir", default=None, help="where to write the journals (default: a temp dir)")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    samples = args.samples or (10 if args.quick else 30)
    folder = Path(tempfile.mkdtemp(prefix="desiru-bench-runs-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        record, t1 = bench_record(folder, args.quick, runs)
        print(record, *t1, sep="\n", flush=True)
        queries, t3, n_queries = bench_queries(folder, args.quick, runs)
        print(queries, *t3, sep="\n", flush=True)
        large, t2, info = bench_large(folder, args.quick, samples, args.profile)
        print(large, *t2, sep="\n", flush=True)
        if info["profile"]:
            print(info["profile"])
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        import optuna
        import sqlalchemy

        peers = f"optuna {optuna.__version__} (SQLAlchemy {sqlalchemy.__version__})"
    except ImportError:
        peers = "optuna not installed"
    command = "python benchmarks/bench_runs.py" + (" --quick" if args.quick else "")
    body = "\n\n".join([
        f"Command: `{command}`; medians of {runs} runs; engine: {_engine.BACKEND}; took {total:.0f} s. "
        f"Machine: {machine()}. Peers: {peers}.",
        "### Recording a scored trial\n\n"
        "Each trial is a one-demo change of a random earlier trial of the small program (5 modules x 8 demos), "
        "with a score, three metrics and four params. desiru commits it with `parent=`, `score=`, `metrics=` "
        "and `params=` (the diff against that parent, a Committed and a ResultsRecorded event, one append). "
        "Optuna records the same params (with their distributions) and value, the metrics as user attrs, "
        "with `study.add_trial` of a prebuilt FrozenTrial, its cheapest way to record a finished trial "
        "(one storage call; Optuna stores no program, so it has no diff to make). Equal durability: "
        "desiru with fsync=always fsyncs the log once per commit before it returns; Optuna's "
        "JournalFileBackend fsyncs once per `append_logs` (one per trial); RDBStorage on SQLite commits a "
        "transaction per trial with SQLite's default `synchronous=FULL` (rollback journal, fsync on commit). "
        "The fsync=batch row is for reference (durable within 50 ms). Runs are interleaved. The last column "
        "is the row's time divided by desiru fsync=always: above 1x the row is slower than desiru. The "
        "breakdown below the table profiles one more desiru run and sums the time spent in the functions "
        "that do each part (the parts overlap where a line says \"of which\").\n\n" + record,
        "\n".join(f"- {t}" for t in t1),
        f"### Queries on {n_queries:,} commits\n\n"
        "A run of the small program where every commit derives from one of the 32 latest, with a score, "
        "metrics and params. `trials()` from a fresh reader includes opening the journal and building the "
        "run index (one scan of the log that skips the edits of each commit by their first bytes); the "
        "other rows query a reader whose index is built.\n\n" + queries,
        "\n".join(f"- {t}" for t in t3),
        f"### Commits from random parents in a large run ({info['shape']} demos, {info['commits']:,} commits)\n\n"
        "The run is a line of commits of one program changed in place (one demo replaced each time), each "
        "with a score, metrics and params (the default snapshot policy writes a snapshot along a line every "
        "20,000 events). Then three ways an optimizer commits a one-demo change of a random earlier commit "
        "(uniform over the whole run), with results: (1) it asks the journal for that commit's program "
        "(`replay(seq=k)`, timed on its own row), changes one demo and commits it with `parent=k`; "
        "(3) it holds a population of programs (starting from the last of (1)) and derives each candidate "
        "from one of them with `copy()`; (2) it builds the candidate from its own copy of the data, so the "
        "candidate shares no object with the journal's states (every demo is compared by value, and the "
        "parent's modules are hashed unless its commit recorded their hashes). Candidates are made outside the "
        "timing. The time includes the state of the parent (the state of the last replay, a kept state, a "
        "kept ancestor plus the events of its lineage, or a replay from its nearest snapshot). The breakdown "
        "profiles a third as many further samples of (1).\n\n" + large,
        "\n".join(f"- {t}" for t in t2),
    ])
    print(f"\ntotal {total:.0f} s")
    if not args.quick:
        write_section("Runs", body)
        print("wrote the Runs section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
