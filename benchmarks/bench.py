"""Speed figures for docs/performance.md: ``make bench`` (or ``python benchmarks/bench.py``).

Every figure is measured in this run, after a warm-up that loads the compiled kernel, and printed
with the ratio to its target. Client-sessions are clients x weekly session slots simulated.

    python benchmarks/bench.py            # engine figures and the batch_run comparison
    python benchmarks/bench.py --quick    # engine figures only
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.engine import Cohort  # noqa: E402
from sim.run import run_batch  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402

SESSIONS = 16


def _params():
    # Exactly 16 weekly slots: 16 planned sessions and no extra weeks.
    return {**load_scenario("baseline").params, "planned_sessions": SESSIONS, "extra_weeks": 0}


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_cohort(n_clients: int = 100_000, n_therapists: int = 5_000, repeats: int = 3) -> float:
    """Seconds for one cohort of ``n_clients`` x 16 sessions on one core (best of ``repeats``)."""
    params = _params()
    Cohort(params, 1_000, 50, seed=0).run()  # warm-up: load the compiled kernel
    return _best_of(lambda: Cohort(params, n_clients, n_therapists, seed=1).run(), repeats)


def _half_batch(args) -> float:
    n_sets, n_clients, seed = args
    sets = [_params()] * n_sets
    run_batch(sets[:2], n_clients, 10, seed)  # warm-up inside the worker
    start = time.perf_counter()
    run_batch(sets, n_clients, 10, seed)
    return time.perf_counter() - start


def bench_batch(n_sets: int = 2_000, n_clients: int = 200, processes: int = 2) -> dict[str, float]:
    """Client-sessions per second for a batch of ``n_sets`` parameter sets, on 1 and ``processes`` cores."""
    work = n_sets * n_clients * SESSIONS
    one = _half_batch((n_sets, n_clients, 1))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        list(pool.map(_half_batch, [(2, n_clients, 1)] * processes))  # start and warm the workers
        start = time.perf_counter()
        list(pool.map(_half_batch, [(n_sets // processes, n_clients, 1)] * processes))
        many = time.perf_counter() - start
    return {"one_core_s": one, "one_core_rate": work / one, f"{processes}_cores_s": many, "parallel_rate": work / many}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the mesa.batch_run comparison")
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")

    seconds = bench_cohort()
    rate = 100_000 * SESSIONS / seconds
    print(f"cohort 100,000 clients x {SESSIONS} sessions, one core: {seconds:.2f} s ({rate / 1e6:.1f} M/s)")
    print(f"  target < 2 s: {2.0 / seconds:.1f}x under the target")

    batch = bench_batch()
    print(
        f"batch 2,000 sets x 200 clients x {SESSIONS} sessions: one core {batch['one_core_s']:.2f} s "
        f"({batch['one_core_rate'] / 1e6:.1f} M/s); two processes {batch['2_cores_s']:.2f} s "
        f"({batch['parallel_rate'] / 1e6:.1f} M/s)"
    )
    print(f"  target >= 20 M client-sessions/s on 2 cores: {batch['parallel_rate'] / 20e6:.2f}x the target")

    if not args.quick:
        from benchmarks.compare_batch_run import compare

        result = compare()
        print("same sweep, 2 processes each: mesa.batch_run with the per-agent reference model vs the engine")
        for key, value in result.items():
            print(f"  {key}: {value:,.3f}" if isinstance(value, float) else f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
