"""Many worker processes recording scored trials into one file journal, beside Optuna's JournalFileBackend.

    python benchmarks/bench_shared.py            # full run; writes the "Shared file journal" section
    python benchmarks/bench_shared.py --quick    # fewer trials and runs, prints only

With 1, 4 and 8 worker processes, the same trials (same params, same values) are recorded
into one fresh file journal by desiru writers opened with ``shared=True`` (a commit of a
one-demo change with score and params, ``fsync="always"``), and into one Optuna journal
file by ``JournalStorage(JournalFileBackend(path))`` with the same processes (Optuna's
``add_trial``, its cheapest path, and ask/tell with a RandomSampler). Both fsync every
trial: Optuna's backend fsyncs each append under its lock file, desiru's "always" mode
fsyncs each commit. Target (issue 12): >= 5x Optuna's trials/s at every worker count.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_postgres import (
    WORKERS,
    _base_program,
    _silence_optuna,
    desiru_worker,
    parse_args,
    ratio_rows,
    record_trials,
    run_workers,
    trial_params,
)
from report import durable_verdict, fsync_floor, machine, med_p90, table, write_section


def setup_desiru(path: str) -> None:
    from desiru.journal import Journal

    with Journal.open(path) as j:
        j.commit(_base_program(), tag="base")


def check_desiru(path: str, n_trials: int) -> None:
    """Every trial landed once, with its score and params, and the journal verifies."""
    from desiru.journal import Journal

    with Journal.open(path, readonly=True) as j:
        got = sorted((t.params["trial"], t.score) for t in j.trials()[1:])
        if got != [(k, trial_params(k)[1]) for k in range(n_trials)] or not j.verify().ok:
            raise RuntimeError(f"desiru journal {path} does not hold every trial once")


def _optuna_storage(path: str) -> Any:
    optuna = _silence_optuna()
    from optuna.storages.journal import JournalFileBackend

    return optuna, optuna.storages.JournalStorage(JournalFileBackend(path))


def setup_optuna(path: str) -> None:
    optuna, storage = _optuna_storage(path)
    optuna.create_study(study_name="bench", storage=storage, direction="maximize")


def optuna_worker(path: str, trials: list[int], start: Any, out: Any, mode: str) -> None:
    optuna, storage = _optuna_storage(path)
    record_trials(optuna, storage, "bench", trials, start, out, mode)


def main() -> None:
    args, runs, n_trials = parse_args(__doc__ or "")
    import optuna

    results: dict[tuple[str, int], list[float]] = {}
    floor: list[float] = []
    with tempfile.TemporaryDirectory(prefix="desiru-bench-shared-") as tmp:
        for run in range(runs):
            floor += fsync_floor(Path(tmp), calls=n_trials // 2)
            for workers in WORKERS:
                journal = f"{tmp}/d-r{run}w{workers}.journal"
                setup_desiru(journal)
                results.setdefault(("desiru", workers), []).append(
                    run_workers(desiru_worker, (journal, None), n_trials, workers))
                check_desiru(journal, n_trials)
                for mode in ("add_trial", "ask/tell"):
                    path = f"{tmp}/o-{mode.replace('/', '')}-r{run}w{workers}.log"
                    setup_optuna(path)
                    results.setdefault((mode, workers), []).append(
                        run_workers(optuna_worker, (path,), n_trials, workers, (mode,)))
                print(f"run {run + 1}/{runs}, {workers} workers: " + ", ".join(
                    f"{k} {results[(k, workers)][-1]:,.0f}/s" for k in ("desiru", "add_trial", "ask/tell")),
                    flush=True)

    rows, worst = ratio_rows(results)
    floor_med, floor_p90 = med_p90(floor)
    per_worker = {w: statistics.median(results[("desiru", w)]) / statistics.median(results[("add_trial", w)])
                  for w in WORKERS}
    one_peer = 1 / statistics.median(results[("add_trial", 1)])
    lines = [durable_verdict(per_worker[w], 5, one_peer if w == 1 else float("inf"), floor_med,
                             f"{w} worker{'s' if w > 1 else ''}: desiru records {per_worker[w]:.2f}x the trials/s "
                             f"of Optuna add_trial (target >= 5x)") for w in WORKERS]
    command = "python benchmarks/bench_shared.py" + (" --quick" if args.quick else "")
    body = "\n".join([
        f"`{command}`; {runs} runs of {n_trials:,} trials per worker count, trials/s as median (and p90 over "
        f"the runs). Machine: {machine()}. Peer: optuna {optuna.__version__} `JournalStorage(JournalFileBackend)` "
        "on the same disk, with the same processes.",
        "",
        "Each trial is the same for all three: params `instruction_idx`, `demo_set` and a value. desiru: "
        "`Journal.commit(program, parent=..., score=..., params=...)` of a one-demo change, each worker a "
        "writer opened with `shared=True, fsync=\"always\"` (one fsync per commit; Optuna's backend also "
        "fsyncs each append). Optuna: `study.add_trial` or ask, two `suggest_int`, tell (RandomSampler).",
        "",
        table(["workers", "desiru trials/s", "Optuna add_trial", "Optuna ask/tell", "desiru / add_trial",
               "desiru / ask/tell"], rows),
        "",
        f"Target: >= 5x Optuna's trials/s at every worker count: the lowest ratio here (against add_trial) is "
        f"{worst:.1f}x; {'met' if worst >= 5 else 'not met'}. The disk's floor, measured in the same runs: the "
        f"cheapest durable write (a pwrite of 300 bytes into blocks written beforehand + fdatasync, from one "
        f"process, nothing else) takes "
        f"{floor_med * 1e6:,.0f} us (p90 {floor_p90 * 1e6:,.0f} us), {1 / floor_med:,.0f} per second.",
        "",
        "\n".join(f"- {line}" for line in lines),
    ])
    print(body)
    if not args.quick:
        write_section("Shared file journal", body)


if __name__ == "__main__":
    main()
