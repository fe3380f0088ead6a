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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from experiments import sampling, store
from experiments.chunk import ChunkTask, Evaluator, run_chunk
from experiments.executors import WORKER_TIMEOUT, ProcessExecutor, available_cores, make_executor
from experiments.outputs import metric_table
from experiments.resume import open_store
from experiments.spec import ExperimentSpec
from sim.memory import keep_freed_memory
from sim.run import batch_metrics


def chunk_tasks(
    spec: ExperimentSpec, sample: pd.DataFrame, todo: list[int], evaluator: Evaluator
) -> Iterator[ChunkTask]:
    """The tasks of the chunks in ``todo``, built one at a time."""
    names = tuple(f.name for f in spec.factors)
    values = sample[list(names)]
    for index in todo:
        first = index * spec.chunk_size
        part = values.iloc[first : first + spec.chunk_size]
        # Column by column: tolist() gives Python numbers (as the registry's values are) in one call.
        rows = tuple(zip(*(part[name].tolist() for name in names), strict=True)) if names else ((),) * len(part)
        yield ChunkTask(
            index,
            first,
            spec.base,
            names,
            rows,
            spec.clients,
            spec.therapists,
            spec.seed,
            spec.replicates,
            evaluator,
            spec.replicate_params,
            spec.store,
            spec.scenarios,
        )


def _run_chunks(spec, sample, out, todo, manifest, evaluator, session, progress, pool) -> None:
    """Run the chunks in ``todo`` on the executor, writing each (and its checksum in the manifest) as it finishes."""
    n_sets, n_chunks = len(sample), manifest["n_chunks"]
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
    digest = manifest["spec_hash"]
    with bar:
        try:
            for index, columns, curves in pool.imap_unordered(run_chunk, chunk_tasks(spec, sample, todo, evaluator)):
                frame = pd.DataFrame(columns)
                try:
                    if curves is not None:  # before the chunk: a chunk on disk means its curves are too
                        name = store.chunk_name(index)
                        manifest["curves"][name] = store.write_chunk(
                            out, index, pd.DataFrame(curves), digest, store.CURVES
                        )
                    manifest["chunks"][store.chunk_name(index)] = store.write_chunk(out, index, frame, digest)
                    store.write_json(manifest, out / store.MANIFEST)
                except OSError as err:
                    raise store.StoreError(
                        f"cannot write {store.chunk_path(out, index)} ({err.strerror or err}); the "
                        f"{len(manifest['chunks'])} chunks finished so far are kept in {out}. Free some space "
                        "(or fix the permissions), then run the same command to finish."
                    ) from None
                session["chunks_run"] += 1
                session["runs"] += len(frame)
                bar.update(len(frame))
                bar.set_postfix_str(f"chunks {len(manifest['chunks'])}/{n_chunks}", refresh=False)
        finally:  # read last: a Dask cluster's workers may join after the start
            session["workers"] = pool.workers


def _record(out: Path, manifest: dict[str, Any], session: dict[str, Any], seconds: float) -> None:
    """Complete this session's entry of the manifest with its timings, and write the manifest."""
    session |= {"finished": store.now(), "seconds": round(seconds, 3)}
    session["runs_per_second"] = round(session["runs"] / seconds, 1) if session["runs"] and seconds else None
    manifest["complete"] = len(manifest["chunks"]) == manifest["n_chunks"]
    manifest["seconds_total"] = round(sum(s.get("seconds", 0) for s in manifest["sessions"]), 3)
    store.write_json(manifest, out / store.MANIFEST)


def _start_session(manifest: dict[str, Any], executor: str) -> dict[str, Any]:
    """This session's entry, written at once so that a killed session leaves its trace in the manifest."""
    for earlier in manifest["sessions"]:
        if isinstance(earlier, dict) and "finished" not in earlier and "ended" not in earlier:
            earlier["ended"] = "without a record of its end: the process was killed or the machine stopped"
    session = {
        "started": store.now(),
        "executor": executor,
        "chunks_before": len(manifest["chunks"]),
        "chunks_run": 0,
        "runs": 0,
        "provenance": store.provenance(),
    }
    manifest["sessions"].append(session)
    return session


def _warn_if_code_changed(manifest: dict[str, Any], out: Path) -> None:
    """Resuming with other code may mix engine versions: say so (the sessions record each commit)."""
    first = (manifest.get("provenance") or {}).get("git_commit")
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
    worker_timeout: float = WORKER_TIMEOUT,
    extend: bool = False,
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
        worker_timeout: seconds a Dask cluster may have no worker before the run ends (dask only).
        extend: ``out`` holds this Sobol spec at a smaller N: keep its runs and run only the new sets
            (:mod:`experiments.extend`); ``spec`` carries the larger N (:func:`experiments.spec.with_n`).

    Raises:
        experiments.store.StoreError: ``out`` holds another spec's results or cannot be used.
        experiments.executors.ExecutorError: the Dask scheduler cannot be reached.
        experiments.executors.WorkerDied: a worker process died; finished chunks are stored.
        experiments.executors.ClusterLost: a Dask cluster without workers, or its scheduler gone; finished
            chunks are stored.
        experiments.lock.LockError: another process is using ``out``.
    """
    keep_freed_memory()  # the analysis's bootstrap reuses memory instead of faulting it in again
    if spec.store and evaluator is not batch_metrics:
        raise ValueError("a spec with [store] or [metrics] runs the engine itself; give no evaluator")
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
        "metrics": metric_table(spec.store),
    }
    if extend and not (out / store.MANIFEST).is_file():
        raise store.StoreError(
            f"--extend {spec.N}: {out} holds no run to extend; run the spec first without --extend, or set "
            f"N = {spec.N} in it."
        )
    manifest, lock = open_store(out, spec, sample, extra, extend)
    with lock:  # held until the run, its manifest and its analysis are written
        _warn_if_code_changed(manifest, out)
        todo = [i for i in range(n_chunks) if store.chunk_name(i) not in manifest["chunks"]]
        session = _start_session(manifest, executor)
        store.write_json(manifest, out / store.MANIFEST)
        started = time.perf_counter()
        with ExitStack() as stack:  # a local pool stays open for the analysis: its workers are started
            pool = stack.enter_context(make_executor(executor, workers, scheduler, worker_timeout)) if todo else None
            try:
                if todo:
                    _run_chunks(spec, sample, out, todo, manifest, evaluator, session, progress, pool)
            except BaseException:
                session["interrupted"] = True
                try:
                    _record(out, manifest, session, time.perf_counter() - started)
                except OSError:  # the disk that failed a chunk may fail this too; the chunks are what matters
                    pass
                raise
            _record(out, manifest, session, time.perf_counter() - started)
            if analyse and manifest["complete"]:
                from analysis.sensitivity import analyse_dir

                del sample  # the analysis reads the stored sample: this copy would be N x factors held twice
                started = time.perf_counter()
                local = pool if isinstance(pool, ProcessExecutor) else None  # a Dask cluster's disks may not be ours
                analyse_dir(out, workers=1 if executor == "serial" else workers or available_cores(), pool=local)
                session["analysis_seconds"] = round(time.perf_counter() - started, 3)
                store.write_json(manifest, out / store.MANIFEST)
    return manifest
