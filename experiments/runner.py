"""The sweep runner: sample, cut into chunks, run the missing chunks on an executor, store each one.

Each chunk is a slice of consecutive parameter sets. For each replicate ``r`` the chunk makes one
call of the evaluator (by default :func:`sim.run.batch_metrics`) with the spec's seed and
``replicate=r``. The engine's results depend only on (parameter set, cohort size, seed, replicate),
so chunking, the executor and the worker count cannot change an output, and a resumed run is
bit-identical to an uninterrupted one.

The evaluator is any module-level function with ``batch_metrics``'s signature,
``evaluate(param_sets, n_clients, n_therapists, seed, replicate) -> {output: array (n_sets,)}``;
tests swap in a known function (Ishigami) to check the plumbing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments import sampling, store
from experiments.chunk import ChunkTask, Evaluator, run_chunk
from experiments.executors import make_executor
from experiments.spec import ExperimentSpec
from sim.memory import keep_freed_memory
from sim.outcomes import METRICS
from sim.run import batch_metrics


def _python(value: Any) -> Any:
    """Numpy scalars to Python ones, as the registry's values are."""
    return value.item() if isinstance(value, np.generic) else value


def chunk_tasks(
    spec: ExperimentSpec, sample: pd.DataFrame, todo: list[int], evaluator: Evaluator
) -> Iterator[ChunkTask]:
    """The tasks of the chunks in ``todo``, built one at a time."""
    names = tuple(f.name for f in spec.factors)
    values = sample[list(names)]
    for index in todo:
        first = index * spec.chunk_size
        part = values.iloc[first : first + spec.chunk_size]
        rows = tuple(tuple(_python(v) for v in row) for row in part.itertuples(index=False, name=None))
        yield ChunkTask(
            index, first, spec.base, names, rows, spec.clients, spec.therapists, spec.seed, spec.replicates, evaluator
        )


def _run_chunks(spec, sample, out, todo, n_done, evaluator, session, progress, executor_args) -> None:
    """Run the chunks in ``todo`` on the executor, writing each as it finishes."""
    n_sets, n_chunks = len(sample), -(-len(sample) // spec.chunk_size)
    runs_done = (n_sets - sum(min(spec.chunk_size, n_sets - i * spec.chunk_size) for i in todo)) * spec.replicates
    bar = tqdm(
        total=n_sets * spec.replicates,
        initial=runs_done,
        unit="run",
        desc=spec.name,
        disable=not progress,
        smoothing=0.1,
        dynamic_ncols=True,
    )
    with bar, make_executor(*executor_args) as pool:
        try:
            for index, columns in pool.imap_unordered(run_chunk, chunk_tasks(spec, sample, todo, evaluator)):
                frame = pd.DataFrame(columns)
                store.write_parquet(frame, store.chunk_path(out, index))
                session["chunks_run"] += 1
                session["runs"] += len(frame)
                bar.update(len(frame))
                bar.set_postfix_str(f"chunks {n_done + session['chunks_run']}/{n_chunks}", refresh=False)
        finally:  # read last: a Dask cluster's workers may join after the start
            session["workers"] = pool.workers


def _record(out: Path, session: dict[str, Any], seconds: float, n_chunks: int) -> dict[str, Any]:
    """Add this session's timings to the manifest; return the manifest."""
    session |= {"finished": store.now(), "seconds": round(seconds, 3), "provenance": store.provenance()}
    session["runs_per_second"] = round(session["runs"] / seconds, 1) if session["runs"] and seconds else None
    manifest = store.read_manifest(out)
    manifest["sessions"].append(session)
    manifest["complete"] = len(store.done_chunks(out)) == n_chunks
    manifest["seconds_total"] = round(sum(s.get("seconds", 0) for s in manifest["sessions"]), 3)
    store.write_json(manifest, out / store.MANIFEST)
    return manifest


def _warn_if_code_changed(manifest: dict[str, Any], out: Path) -> None:
    """Resuming with other code may mix engine versions: say so (the sessions record each commit)."""
    first = manifest.get("provenance", {}).get("git_commit")
    now = store.provenance()["git_commit"]
    if manifest.get("sessions") and first and now and first != now:
        print(
            f"warning: {out} was started at commit {first[:10]}, this code is {now[:10]}; if the engine changed "
            "in between, delete the directory and run again.",
            file=sys.stderr,
        )


def run_experiment(
    spec: ExperimentSpec,
    out: Path,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    evaluator: Evaluator = batch_metrics,
    progress: bool = True,
    analyse: bool = True,
) -> dict[str, Any]:
    """Run ``spec`` into ``out``, resuming an earlier run of the same spec; return the manifest.

    Args:
        spec: the experiment.
        out: results directory (see :mod:`experiments.store`).
        executor: "serial", "processes" or "dask".
        workers: worker processes (default: all cores); ignored for serial and a given scheduler.
        scheduler: address of a running Dask scheduler (dask only).
        evaluator: the batched model call; a module-level function (see the module docstring).
        progress: show a tqdm progress bar on stderr.
        analyse: write indices.csv and figures when every chunk is done.

    Raises:
        experiments.store.StoreError: ``out`` holds another spec's results or cannot be used.
        experiments.executors.ExecutorError: the Dask scheduler cannot be reached.
        experiments.executors.WorkerDied: a worker process died; finished chunks are stored.
    """
    keep_freed_memory()  # the analysis's bootstrap reuses memory instead of faulting it in again
    out = Path(out)
    sample = sampling.sample(spec)
    n_sets = len(sample)
    n_chunks = -(-n_sets // spec.chunk_size)
    extra = {
        "method": spec.method,
        "n_sets": n_sets,
        "n_chunks": n_chunks,
        "runs": n_sets * spec.replicates,
        "problem": sampling.problem(spec.factors),
        "metrics": {m.name: {"label": m.label, "unit": m.unit} for m in METRICS},
    }
    manifest = store.open_store(out, spec, sample, extra)
    _warn_if_code_changed(manifest, out)
    done = store.done_chunks(out)
    todo = [i for i in range(n_chunks) if i not in done]
    session = {"started": store.now(), "executor": executor, "chunks_before": len(done), "chunks_run": 0, "runs": 0}
    started = time.perf_counter()
    try:
        if todo:
            _run_chunks(
                spec, sample, out, todo, len(done), evaluator, session, progress, (executor, workers, scheduler)
            )
    except BaseException:
        session["interrupted"] = True
        raise
    finally:
        manifest = _record(out, session, time.perf_counter() - started, n_chunks)
    if analyse and manifest["complete"]:
        from analysis.sensitivity import analyse_dir

        started = time.perf_counter()
        analyse_dir(out)
        manifest["sessions"][-1]["analysis_seconds"] = round(time.perf_counter() - started, 3)
        store.write_json(manifest, out / store.MANIFEST)
    return manifest
