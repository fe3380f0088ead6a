"""Speed figures for docs/performance.md: ``make bench`` (or ``python benchmarks/bench.py``).

Every figure is measured in this run, after a warm-up that loads the compiled kernel, and printed
beside its goal (issue 15) with the ratio. Client-sessions are clients x weekly session slots simulated.

    python benchmarks/bench.py            # every goal: engine, start-up, Sobol study, memory, batch_run
    python benchmarks/bench.py --quick    # engine and start-up only
    python benchmarks/bench.py --no-batch-run   # every goal but the 17-minute mesa.batch_run comparison
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.engine import Cohort  # noqa: E402
from sim.memory import keep_freed_memory  # noqa: E402
from sim.run import batch_metrics  # noqa: E402
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


def bench_interpreted(n_clients: int = 5_000) -> dict[str, float]:
    """Seconds for one cohort of ``n_clients`` x 16 sessions, the kernel compiled and interpreted.

    The interpreted figure runs the same kernel as plain Python (``NUMBA_DISABLE_JIT=1``, in a
    child process): what the compiler buys.
    """
    params = _params()
    Cohort(params, 100, 5, seed=0).run()  # warm-up: load the compiled kernel
    compiled = _best_of(lambda: Cohort(params, n_clients, n_clients // 20, seed=1).run(), 3)
    code = (
        "import time; from benchmarks.bench import _params; from sim.engine import Cohort; "
        f"start = time.perf_counter(); Cohort(_params(), {n_clients}, {n_clients // 20}, seed=1).run(); "
        "print(time.perf_counter() - start)"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    return {"compiled_s": compiled, "interpreted_s": float(done.stdout.split()[-1])}


def _batch_sets(n_sets: int) -> list[dict]:
    """``n_sets`` distinct parameter sets, as a sensitivity sample gives."""
    from benchmarks.compare_batch_run import sweep

    return [{**s, "planned_sessions": SESSIONS, "extra_weeks": 0} for s in sweep(n_sets)]


def _timed_batch(args) -> float:
    """Seconds of one ``batch_metrics`` call on ``sets`` (module level, for spawn)."""
    sets, n_clients = args
    keep_freed_memory()  # as the sweep runner's workers do
    start = time.perf_counter()
    batch_metrics(sets, n_clients, n_clients // 20, seed=1)
    return time.perf_counter() - start


def bench_batch(n_sets: int = 2_000, n_clients: int = 200, processes: int = 2) -> dict[str, float]:
    """Client-sessions per second for a batch of ``n_sets`` distinct parameter sets, on 1 and ``processes`` cores.

    The parallel figure is the wall time from handing each warm worker its share of the sets to
    the last result (sending the sets included), the way a sweep runner's pool works through chunks.
    Each figure is the best of three.
    """
    work = n_sets * n_clients * SESSIONS
    sets = _batch_sets(n_sets)
    _timed_batch((sets[:2], n_clients))  # warm-up: load the compiled kernel
    one = min(_timed_batch((sets, n_clients)) for _ in range(3))
    share = -(-n_sets // processes)
    shares = [(sets[j : j + share], n_clients) for j in range(0, n_sets, share)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        list(pool.map(_timed_batch, [(sets[:2], n_clients)] * processes))  # start and warm the workers
        walls = []
        for _ in range(3):
            start = time.perf_counter()
            list(pool.map(_timed_batch, shares))
            walls.append(time.perf_counter() - start)
    many = min(walls)
    return {"one_core_s": one, "one_core_rate": work / one, "parallel_s": many, "parallel_rate": work / many}


class PeakMemory:
    """Peak memory of this process (unless ``include_self`` is False) and all its descendants, together.

    Two sums are kept. ``peak`` is the proportional set size (PSS): each page a process holds,
    divided by the number of processes sharing it, so a shared library or a page shared since a
    fork counts once over all of them; the sum is the memory the processes take from the machine.
    ``peak_rss`` is the resident set size (RSS) summed, which counts every shared page once per
    process that maps it (the libraries of numba and LLVM, numpy's, Python's own): an upper bound.
    """

    def __init__(self, interval: float = 0.1, include_self: bool = True):
        self.interval, self.include_self = interval, include_self
        self.peak = self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            pss = rss = 0
            for proc in [me] * self.include_self + me.children(recursive=True):
                try:
                    info = proc.memory_full_info()  # /proc/PID/smaps_rollup: about a millisecond a process
                except psutil.Error:  # a worker that exited between listing and reading
                    continue
                pss, rss = pss + info.pss, rss + info.rss
            self.peak, self.peak_rss = max(self.peak, pss), max(self.peak_rss, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def sweep_client_sessions(spec) -> int:
    """Client-sessions a sweep simulates: runs x clients x the weekly slots of its scenario."""
    from experiments.sampling import sample

    params = load_scenario(spec.scenario).params
    weeks = params["planned_sessions"] + params["extra_weeks"]  # no factor of the shipped specs changes them
    return len(sample(spec)) * spec.replicates * spec.clients * weeks


_SWEEP = """
import dataclasses, json, sys, tempfile, time
from pathlib import Path
from sim.process import modules_loading
with modules_loading():  # as `python -m experiments` loads them
    from experiments.runner import run_experiment
    from experiments.spec import load_spec
    from sim.memory import keep_freed_memory

keep_freed_memory()
spec = dataclasses.replace(load_spec("sobol_dropout"), N=int(sys.argv[1]))
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    manifest = run_experiment(spec, Path(out), "processes", workers=int(sys.argv[2]), progress=False)
    seconds = time.perf_counter() - start
analysis = manifest["sessions"][-1]["analysis_seconds"]
print(json.dumps({"runs": manifest["runs"], "seconds": seconds, "analysis_s": analysis}))
"""


def bench_sweep(n: int, workers: int = 2, watch_memory: bool = True) -> dict[str, float]:
    """Run experiments/sobol_dropout.toml (its shipped replicates) at base sample size ``n`` on ``workers`` processes.

    The sweep runs in a fresh Python process, as ``python -m experiments run`` does, so its memory is
    the study's own (not this benchmark's). Returns the runs, client-sessions, the wall time from
    the sample to the last figure (sampling, runs, chunk files, then indices with bootstrap
    intervals, convergence and figures; the interpreter's start and imports not included), the
    analysis's share of it and, with ``watch_memory``, the peak memory of that process and its
    workers together (:class:`PeakMemory`: proportional set size, and resident set size summed).
    Reading every process's memory ten times a second takes about 5% of the machine, so runs
    that are timed for a goal are not watched.
    """
    from experiments.spec import load_spec

    spec = dataclasses.replace(load_spec("sobol_dropout"), N=n)
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", _SWEEP, str(n), str(workers)]
    with PeakMemory(include_self=False) if watch_memory else nullcontext() as memory:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.splitlines()[-1])
    peaks = {"peak_gb": memory.peak / 1e9, "peak_rss_gb": memory.peak_rss / 1e9} if watch_memory else {}
    return {**figures, "client_sessions": sweep_client_sessions(spec), **peaks}


def bench_startup(repeats: int = 3) -> float:
    """Wall seconds of ``python -m sim run baseline`` (500 clients, its figures and tables), best of ``repeats``.

    A first run, untimed, fills the operating system's file cache and numba's kernel cache.
    """
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "sim", "run", "baseline", "--out", out]
        subprocess.run(command, cwd=root, capture_output=True, check=True)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, cwd=root, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
    return min(times)


def _goal(name: str, value: str, ok: bool, ratio: str) -> None:
    print(f"  goal {name}: {value} -> {ratio} ({'met' if ok else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="engine and start-up only: no sweeps, no batch_run")
    parser.add_argument(
        "--no-batch-run", action="store_true", help="every goal but the comparison with mesa.batch_run (17 minutes)"
    )
    args = parser.parse_args()
    keep_freed_memory()  # as every entry point does (sim/memory.py)
    machine = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average {load:.2f}")

    seconds = bench_cohort()
    rate = 100_000 * SESSIONS / seconds
    print(f"cohort 100,000 clients x {SESSIONS} sessions, one core: {seconds:.2f} s ({rate / 1e6:.1f} M/s)")

    kernel = bench_interpreted()
    print(
        f"cohort 5,000 clients x {SESSIONS} sessions: {kernel['compiled_s'] * 1e3:.1f} ms with the compiled kernel, "
        f"{kernel['interpreted_s']:.2f} s with the same kernel interpreted (NUMBA_DISABLE_JIT=1): "
        f"{kernel['interpreted_s'] / kernel['compiled_s']:.0f}x"
    )

    batch = bench_batch()
    print(
        f"batch 2,000 distinct sets x 200 clients x {SESSIONS} sessions: one core {batch['one_core_s']:.2f} s "
        f"({batch['one_core_rate'] / 1e6:.1f} M/s); two processes {batch['parallel_s']:.2f} s "
        f"({batch['parallel_rate'] / 1e6:.1f} M/s)"
    )
    rate = batch["parallel_rate"]
    _goal(">= 100 M client-sessions/s on 2 cores", f"{rate / 1e6:.1f} M/s", rate >= 100e6, f"{rate / 100e6:.2f}x")

    startup = bench_startup()
    print(f"python -m sim run baseline (500 clients, tables and summary figure): {startup:.2f} s wall")
    _goal("start-up < 1.5 s", f"{startup:.2f} s", startup < 1.5, f"{startup / 1.5:.2f}x the limit")

    if not args.quick:
        # Memory is watched in one run of each size; the shipped size is timed in three runs of its own,
        # unwatched (on a shared machine one run varies by 10 to 20%), and judged on their median.
        watched = {n: bench_sweep(n) for n in (256, 1024, 4096)}
        timed = [bench_sweep(1024, watch_memory=False) for _ in range(3)]
        for n, sweep in [*watched.items(), *((1024, t) for t in timed)]:
            per = sweep["seconds"] / (sweep["client_sessions"] / 1e8)
            memory = (
                f"peak memory of all processes {sweep['peak_gb']:.2f} GB (PSS; {sweep['peak_rss_gb']:.2f} GB as RSS "
                "summed), watched"
                if "peak_gb" in sweep
                else "timed, not watched"
            )
            print(
                f"sobol_dropout N={n}: {sweep['runs']:,} runs of 500 clients "
                f"({sweep['client_sessions'] / 1e8:.2f} x 10^8 client-sessions) on 2 processes in "
                f"{sweep['seconds']:.1f} s ({sweep['analysis_s']:.1f} s of it indices, convergence and figures): "
                f"{per:.2f} s per 10^8 client-sessions; {memory}"
            )
        shipped = sorted(t["seconds"] / (t["client_sessions"] / 1e8) for t in timed)
        per = shipped[len(shipped) // 2]
        _goal(
            "shipped Sobol study < 5 s per 10^8 client-sessions",
            f"{per:.2f} s (median of {len(shipped)}; {shipped[0]:.2f} to {shipped[-1]:.2f})",
            per < 5,
            f"{per / 5:.2f}x the limit",
        )
        peak = max(s["peak_gb"] for s in watched.values())
        rss = max(s["peak_rss_gb"] for s in watched.values())
        _goal("peak memory < 1 GB", f"{peak:.2f} GB (PSS; RSS summed {rss:.2f} GB)", peak < 1, f"{peak:.2f}x the limit")
        small, large = watched[256], watched[4096]
        spread = large["peak_gb"] / small["peak_gb"] - 1
        spread_rss = large["peak_rss_gb"] / small["peak_rss_gb"] - 1
        _goal(
            "memory flat in N (N=4096 vs N=256 within 10%)",
            f"{spread:+.1%} (PSS; RSS summed {spread_rss:+.1%})",
            abs(spread) <= 0.10,
            f"{spread:+.1%}",
        )

    if not (args.quick or args.no_batch_run):
        from benchmarks.compare_batch_run import compare

        # 2,048 sets x 2,000 clients: batch_run takes about 17 minutes of it (the reference model
        # simulates every follow-up week in Python too); --quick and --no-batch-run leave it out.
        r = compare(N=256)
        print(
            f"the same sweep ({r['n_sets']} sets x {r['n_clients']:,} clients) on 2 processes each: "
            f"mesa.batch_run with the per-agent reference model {r['batch_run_seconds']:.1f} s, "
            f"the sweep runner {r['runner_seconds']:.2f} s (pool start included), "
            f"the engine on a warm pool {r['engine_seconds']:.2f} s"
        )
        print(
            f"  batch_run / warm engine: {r['ratio_warm']:.0f}x; runner outputs equal the engine's: "
            f"{r['runner_matches_engine']}; client-sessions/s: batch_run "
            f"{r['batch_run_client_sessions_per_second']:,.0f}, runner {r['runner_client_sessions_per_second']:,.0f}, "
            f"warm engine {r['engine_client_sessions_per_second']:,.0f}; mean |dropout difference| "
            f"{r['mean_abs_dropout_difference']:.4f}"
        )
        _goal("batch_run / runner >= 150x", f"{r['ratio']:.0f}x", r["ratio"] >= 150, f"{r['ratio'] / 150:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
