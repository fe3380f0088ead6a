"""The same sweep through mesa.batch_run with the reference model and through the batched engine.

Both sides run on ``processes`` worker processes started with "spawn" (the start method
``import mesa`` sets). ``mesa.batch_run`` starts its own ``multiprocessing.Pool`` (timed: it cannot
be started ahead). The engine side gives each worker of a ``ProcessPoolExecutor`` one call of
:func:`sim.run.run_batch` on its share of the parameter sets, timed twice: on a pool started and
warmed before the clock starts (how a sweep runner's pool serves a long sweep; the headline ratio)
and on a cold pool (its start, imports and kernel loading timed too, which at this sweep's size are
most of the engine's time). The numba kernel is compiled into its disk cache before any timing, as
it is once per installation.

Run ``python -m benchmarks.compare_batch_run`` to print the figures.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
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

CLIENTS_PER_THERAPIST = 20  # as in the baseline scenario


def sweep(n_sets: int, seed: int = 1) -> list[dict[str, Any]]:
    """``n_sets`` complete parameter sets: baseline, with :data:`SWEPT` drawn from registry bounds."""
    rng = np.random.default_rng(seed)
    base = load_scenario("baseline").overrides
    sets = []
    for _ in range(n_sets):
        drawn = {name: float(rng.uniform(REGISTRY[name].low, REGISTRY[name].high)) for name in SWEPT}
        sets.append(resolve({**base, **drawn}))
    return sets


def _engine_chunk(param_sets: list[dict], n_clients: int, n_therapists: int, seed: int) -> dict[str, list[float]]:
    """One worker's share of the sweep through the batched engine (module level, for spawn)."""
    from sim.run import run_batch

    return {k: v.tolist() for k, v in run_batch(param_sets, n_clients, n_therapists, seed).items()}


def _warm_worker() -> None:
    """Worker initializer: import the engine and load its compiled kernel, as a runner's pool has."""
    from sim.run import run_batch

    run_batch([resolve()], 10, 1, 0)


def _ready() -> int:
    return 0


def time_engine(
    sets: list[dict], n_clients: int, n_therapists: int, seed: int, processes: int, warm: bool, repeats: int = 1
):
    """Wall time and metrics of the sweep through the engine on ``processes`` spawned processes.

    With ``warm``, the pool is started and every worker has imported the engine and loaded its
    kernel before the clock starts (a sweep's runner starts its pool once), and the sweep is timed
    ``repeats`` times on that pool; the median is returned (the times are short, so one moment of
    load on a shared machine would otherwise weigh heavily). Otherwise starting the pool is timed too.

    Returns:
        The wall time in seconds, the metrics of every set (lists in set order), and all timings.
    """
    chunks = [list(c) for c in np.array_split(np.array(sets, dtype=object), processes) if len(c)]
    context = multiprocessing.get_context("spawn")
    timings = []
    start = time.perf_counter()
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=context, initializer=_warm_worker if warm else None
    ) as pool:
        if warm:
            # Each submission while no worker is idle starts another worker: all start and warm up.
            for f in [pool.submit(_ready) for _ in range(processes)]:
                f.result()
        for _ in range(repeats if warm else 1):
            if warm:
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


def compare(
    n_sets: int = 24, n_clients: int = 2000, processes: int = 2, seed: int = 1, repeats: int = 5
) -> dict[str, Any]:
    """Time one sweep both ways and return the figures.

    Args:
        n_sets: parameter sets in the sweep (:func:`sweep`).
        n_clients: clients per run; therapists are one per 20 clients.
        processes: worker processes on each side.
        seed: seed of the sweep's sample and of every run.
        repeats: timings of the sweep on the warm engine pool (the median counts).

    Returns:
        Wall times in seconds: ``batch_run_seconds`` (mesa.batch_run, its pool's start included),
        ``engine_seconds`` (a started, warmed pool, as a sweep runner has; the median of
        ``repeats`` timings, all in ``engine_timings``) and
        ``engine_cold_seconds`` (the pool's start and imports timed too); client-sessions per
        second (sessions attended, summed over the sweep, per second of wall time) for each;
        ``ratio`` (batch_run over warm engine) and ``ratio_cold``; and the mean absolute
        difference in dropout rate between the two sides (same rules, different draws).
    """
    from sim.run import run_batch

    sets = sweep(n_sets, seed)
    n_therapists = max(1, n_clients // CLIENTS_PER_THERAPIST)
    run_batch(sets[:1], 10, 1, seed)  # compile the numba kernel into its disk cache, outside the timing

    engine_cold_s, _, _ = time_engine(sets, n_clients, n_therapists, seed, processes, warm=False)
    engine_s, engine, engine_timings = time_engine(sets, n_clients, n_therapists, seed, processes, True, repeats)
    mesa_s, rows = time_batch_run(sets, n_clients, n_therapists, seed, processes)

    engine_sessions = float(np.sum(engine["mean_sessions"]) * n_clients)
    mesa_sessions = float(sum(row["mean_sessions"] for row in rows) * n_clients)
    mesa_dropout = [row["dropout_rate"] for row in sorted(rows, key=lambda row: row["RunId"])]  # RunId = set
    return {
        "n_sets": n_sets,
        "n_clients": n_clients,
        "n_therapists": n_therapists,
        "processes": processes,
        "batch_run_seconds": mesa_s,
        "engine_seconds": engine_s,
        "engine_cold_seconds": engine_cold_s,
        "engine_timings": engine_timings,
        "ratio": mesa_s / engine_s,
        "ratio_cold": mesa_s / engine_cold_s,
        "batch_run_client_sessions_per_second": mesa_sessions / mesa_s,
        "engine_client_sessions_per_second": engine_sessions / engine_s,
        "engine_cold_client_sessions_per_second": engine_sessions / engine_cold_s,
        "mean_abs_dropout_difference": float(np.mean(np.abs(np.array(mesa_dropout) - engine["dropout_rate"]))),
    }


if __name__ == "__main__":
    from benchmarks.compare_batch_run import compare as _compare  # workers then import this module by name

    figures = _compare()
    print(
        f"sweep: {figures['n_sets']} parameter sets x {figures['n_clients']} clients "
        f"({figures['n_therapists']} therapists), {figures['processes']} processes each side"
    )
    print(
        f"mesa.batch_run, reference model: {figures['batch_run_seconds']:8.2f} s "
        f"{figures['batch_run_client_sessions_per_second']:14,.0f} client-sessions/s"
    )
    print(
        f"engine (run_batch):              {figures['engine_seconds']:8.2f} s "
        f"{figures['engine_client_sessions_per_second']:14,.0f} client-sessions/s"
    )
    print(
        f"engine, pool start timed too:    {figures['engine_cold_seconds']:8.2f} s "
        f"{figures['engine_cold_client_sessions_per_second']:14,.0f} client-sessions/s"
    )
    print(f"warm engine timings (s): {', '.join(f'{t:.3f}' for t in figures['engine_timings'])}")
    print(f"ratio (batch_run / engine): {figures['ratio']:.1f}x warm pool, {figures['ratio_cold']:.1f}x cold pool")
    print(f"mean |dropout difference| between the two: {figures['mean_abs_dropout_difference']:.4f}")
