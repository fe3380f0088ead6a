"""The same sweep through mesa.batch_run with the reference model and through the sweep runner.

The sweep is an experiment spec (:func:`sweep_spec`: a Sobol' sample of :data:`SWEPT` over their
registry bounds, 2,000 clients per run). Each side runs on ``processes`` worker processes started
with "spawn" (the start method ``import mesa`` sets), and each is timed the way a user runs it:

* the runner: :func:`experiments.runner.run_experiment` on a process pool, exactly what
  ``python -m experiments run`` does, with its pool's start, the workers' imports, the chunk files
  and the manifest timed (the indices are left out: batch_run computes none). The headline ratio;
* mesa.batch_run with :class:`benchmarks.reference_model.ReferenceTherapyModel` on the same
  parameter sets (it starts its own ``multiprocessing.Pool``, timed too);
* for reference, the engine alone on a pool started and warmed before the clock starts (what a
  long sweep's pool costs per chunk once it runs).

The runner pays a fixed ~0.9 s per sweep on this machine (spawning its workers, their imports of
numpy, numba and scipy.special, loading the compiled kernel, joining the pool), which batch_run's
per-run cost dwarfs only on a sweep of realistic size: hence 2,048 parameter sets by default
(``--N 64`` gives a quicker, smaller sweep and a smaller ratio).

The numba kernel is compiled into its disk cache before any timing, as it is once per
installation. Run ``python -m benchmarks.compare_batch_run`` (or ``python benchmarks/compare_batch_run.py``)
to print the figures; ``--help`` lists the sizes.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sim.parameters import REGISTRY, resolve
from sim.scenario import load_scenario

SWEPT = (
    "therapist_empathy_mean",
    "therapist_humility_mean",
    "client_minority_share",
    "rupture_rate",
    "repair_rate",
    "improvement_rate",
)
"""The parameters the sweep varies, each uniformly over its registry bounds."""


def sweep(n_sets: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n_sets`` complete parameter sets: baseline, with :data:`SWEPT` drawn from registry bounds."""
    rng = np.random.default_rng(seed)
    base = load_scenario("baseline").overrides
    sets = []
    for _ in range(n_sets):
        drawn = {name: float(rng.uniform(REGISTRY[name].low, REGISTRY[name].high)) for name in SWEPT}
        sets.append(resolve({**base, **drawn}))
    return sets


def sweep_spec(N: int = 256, n_clients: int = 2000, seed: int = 1):
    """The benchmark sweep as an experiment spec: N x (6 + 2) parameter sets of ``n_clients`` clients."""
    from experiments.spec import from_dict

    data = {
        "name": "batch_run_comparison",
        "method": "sobol",
        "scenario": "baseline",
        "N": N,
        "clients": n_clients,  # therapists follow at the baseline's caseload (20)
        "seed": seed,
        "chunk_size": 16,
        "outputs": ["dropout_rate", "mean_sessions"],
        "options": {"calc_second_order": False},
        "parameters": {name: {} for name in SWEPT},
    }
    return from_dict(data, "benchmarks/compare_batch_run.py")


def spec_sets(spec) -> list[dict[str, Any]]:
    """The complete parameter sets of a spec's sample, in sample order."""
    from experiments.sampling import sample

    names = [f.name for f in spec.factors]
    values = sample(spec)[names].to_numpy(dtype=float)
    return [{**spec.base, **dict(zip(names, map(float, row), strict=True))} for row in values]


def time_runner(spec, processes: int) -> tuple[float, dict[str, np.ndarray]]:
    """Wall time and outputs (in set order) of the spec through the runner on a fresh process pool."""
    import pandas as pd

    from experiments.runner import run_experiment

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_experiment(spec, Path(out), "processes", workers=processes, progress=False, analyse=False)
        seconds = time.perf_counter() - start
        outputs = pd.read_parquet(Path(out) / "chunks").sort_values("set")
    return seconds, {name: outputs[name].to_numpy() for name in outputs.columns}


def _engine_chunk(param_sets: list[dict], n_clients: int, n_therapists: int, seed: int) -> dict[str, list[float]]:
    """One worker's share of the sweep through the batched engine (module level, for spawn)."""
    from sim.run import batch_metrics

    return {k: v.tolist() for k, v in batch_metrics(param_sets, n_clients, n_therapists, seed).items()}


def _warm_worker() -> None:
    """Worker initializer: import the engine and load its compiled kernel, as a runner's pool has."""
    from sim.run import batch_metrics

    batch_metrics([resolve()], 10, 1, 0)


def _ready() -> int:
    return 0


def time_engine(sets: list[dict], n_clients: int, n_therapists: int, seed: int, processes: int, repeats: int = 1):
    """Wall time and metrics of the sweep through the engine on a warm pool of ``processes``.

    The pool is started and every worker has imported the engine and loaded its kernel before the
    clock starts (what a long sweep's pool costs per chunk once it runs), and the sweep is timed
    ``repeats`` times on that pool; the median is returned (the times are short, so one moment of
    load on a shared machine would otherwise weigh heavily).

    Returns:
        The wall time in seconds, the metrics of every set (lists in set order), and all timings.
    """
    chunks = [list(c) for c in np.array_split(np.array(sets, dtype=object), processes) if len(c)]
    context = multiprocessing.get_context("spawn")
    timings = []
    with ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=_warm_worker) as pool:
        # Each submission while no worker is idle starts another worker: all start and warm up.
        for f in [pool.submit(_ready) for _ in range(processes)]:
            f.result()
        for _ in range(repeats):
            start = time.perf_counter()
            futures = [pool.submit(_engine_chunk, chunk, n_clients, n_therapists, seed) for chunk in chunks]
            parts = [f.result() for f in futures]
            timings.append(time.perf_counter() - start)
    metrics = {k: [x for part in parts for x in part[k]] for k in parts[0]}
    return float(np.median(timings)), metrics, timings


def time_batch_run(sets: list[dict], n_clients: int, n_therapists: int, seed: int, processes: int):
    """Wall time and final rows of the sweep through mesa.batch_run with the reference model."""
    import mesa

    from benchmarks.reference_model import ReferenceTherapyModel

    parameters = {"parameters": sets, "n_clients": n_clients, "n_therapists": n_therapists, "seed": seed}
    start = time.perf_counter()
    rows = mesa.batch_run(
        ReferenceTherapyModel, parameters, number_processes=processes, max_steps=1000, display_progress=False
    )
    return time.perf_counter() - start, rows


def compare(N: int = 256, n_clients: int = 2000, processes: int = 2, seed: int = 1, repeats: int = 3) -> dict[str, Any]:
    """Time one sweep through the runner, the warm engine and mesa.batch_run; return the figures.

    Args:
        N: Sobol' base sample size; the sweep has N x 8 parameter sets (:func:`sweep_spec`).
        n_clients: clients per run; therapists are one per 20 clients.
        processes: worker processes on each side.
        seed: seed of the sweep's sample and of every run.
        repeats: timings of the sweep on the warm engine pool (the median counts).

    Returns:
        Wall times in seconds: ``runner_seconds`` (the runner, its pool's start included),
        ``batch_run_seconds`` (mesa.batch_run, its pool's start included) and ``engine_seconds``
        (a started, warmed pool; the median of ``repeats`` timings); client-sessions per second
        (sessions attended, summed over the sweep, per second of wall time) for each; ``ratio``
        (batch_run over runner) and ``ratio_warm`` (batch_run over warm engine); whether the
        runner's outputs equal the engine's bit for bit; and the mean absolute difference in
        dropout rate between the engine and the reference model (same rules, different draws).
    """
    from sim.run import batch_metrics

    spec = sweep_spec(N, n_clients, seed)
    sets = spec_sets(spec)
    n_therapists = spec.therapists
    batch_metrics(sets[:1], 10, 1, seed)  # compile the numba kernel into its disk cache, outside the timing

    runner_s, runner = time_runner(spec, processes)
    engine_s, engine, engine_timings = time_engine(sets, n_clients, n_therapists, seed, processes, repeats)
    mesa_s, rows = time_batch_run(sets, n_clients, n_therapists, seed, processes)

    sessions = float(np.sum(engine["mean_sessions"]) * n_clients)
    mesa_sessions = float(sum(row["mean_sessions"] for row in rows) * n_clients)
    mesa_dropout = [row["dropout_rate"] for row in sorted(rows, key=lambda row: row["RunId"])]  # RunId = set
    same = all(np.array_equal(runner[k], np.asarray(engine[k]), equal_nan=True) for k in engine)
    return {
        "n_sets": len(sets),
        "n_clients": n_clients,
        "n_therapists": n_therapists,
        "processes": processes,
        "runner_seconds": runner_s,
        "batch_run_seconds": mesa_s,
        "engine_seconds": engine_s,
        "engine_timings": engine_timings,
        "ratio": mesa_s / runner_s,
        "ratio_warm": mesa_s / engine_s,
        "runner_client_sessions_per_second": sessions / runner_s,
        "batch_run_client_sessions_per_second": mesa_sessions / mesa_s,
        "engine_client_sessions_per_second": sessions / engine_s,
        "runner_matches_engine": same,
        "mean_abs_dropout_difference": float(np.mean(np.abs(np.array(mesa_dropout) - engine["dropout_rate"]))),
    }


if __name__ == "__main__":
    import argparse
    import sys

    # Run as a script (python benchmarks/compare_batch_run.py), the repository root is not on the path;
    # spawned workers inherit the path, and import this module by name.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.compare_batch_run import compare as _compare

    cli = argparse.ArgumentParser(description="mesa.batch_run with the reference model against the sweep runner.")
    cli.add_argument("--N", type=int, default=256, help="Sobol' base sample size; N x 8 parameter sets (256)")
    cli.add_argument("--clients", type=int, default=2000, help="clients per run (2000)")
    cli.add_argument("--processes", type=int, default=2, help="worker processes on each side (2)")
    args = cli.parse_args()
    figures = _compare(args.N, args.clients, args.processes)
    print(
        f"sweep: {figures['n_sets']} parameter sets x {figures['n_clients']} clients "
        f"({figures['n_therapists']} therapists), {figures['processes']} processes each side"
    )
    for label, key in (
        ("mesa.batch_run, reference model", "batch_run"),
        ("sweep runner (pool start timed)", "runner"),
        ("engine on a warm pool", "engine"),
    ):
        print(f"{label:34} {figures[key + '_seconds']:8.2f} s {figures[key + '_client_sessions_per_second']:14,.0f} /s")
    print(f"ratio (batch_run / runner): {figures['ratio']:.1f}x; batch_run / warm engine: {figures['ratio_warm']:.1f}x")
    print(f"runner outputs equal the engine's: {figures['runner_matches_engine']}")
    print(f"mean |dropout difference| between the two models: {figures['mean_abs_dropout_difference']:.4f}")
