"""Executors: where the chunks of a sweep run (this process, a local process pool, or Dask).

Each executor is a context manager whose :meth:`imap_unordered` calls a module-level function on each
task and yields the results as they finish. Only a few tasks are in flight at a time (twice the
workers), so memory grows with the chunk size, not with the sweep. Since the engine's results
depend only on the parameter set, seed and replicate, the executor cannot change any output.

``import mesa`` sets multiprocessing's start method to "spawn" for the whole process, so the pool
uses a spawn context explicitly and the task functions must be importable (module level), never
closures or lambdas.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from itertools import islice
from typing import Any

EXECUTORS = ("serial", "processes", "dask")


def available_cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs every task in this process, in order."""

    name = "serial"
    workers = 1

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator[Any]:
        """Yield ``fn(task)`` for each task."""
        for task in tasks:
            yield fn(task)


class ProcessExecutor:
    """A local pool of ``workers`` processes, started with the spawn method."""

    name = "processes"

    def __init__(self, workers: int | None = None):
        self.workers = workers or available_cores()

    def __enter__(self) -> ProcessExecutor:
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self._pool.shutdown(wait=True)
            return
        # Interrupted or failed: finished chunks are already on disk, so stop the workers now
        # rather than wait for chunks whose results would be thrown away.
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator[Any]:
        """Yield ``fn(task)`` for each task, as the workers finish them."""
        tasks = iter(tasks)
        pending = {self._pool.submit(fn, t) for t in islice(tasks, 2 * self.workers)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                pending |= {self._pool.submit(fn, t) for t in islice(tasks, 1)}


class DaskExecutor:
    """A Dask cluster: the scheduler at ``scheduler`` or, without one, a LocalCluster of ``workers`` processes.

    A dask-jobqueue cluster (SLURM, PBS, ...) is used through its scheduler address; see
    docs/experiments.md.
    """

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        self.workers = workers or available_cores()
        self.scheduler = scheduler

    def __enter__(self) -> DaskExecutor:
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if self.scheduler:
            self._client = Client(self.scheduler)
            self.workers = max(sum(self._client.nthreads().values()), 1)
        else:
            self._cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self._client = Client(self._cluster)
        return self

    def __exit__(self, *exc) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator[Any]:
        """Yield ``fn(task)`` for each task, as the Dask workers finish them."""
        from dask.distributed import as_completed

        tasks = iter(tasks)
        futures = as_completed([self._client.submit(fn, t, pure=False) for t in islice(tasks, 2 * self.workers)])
        for future in futures:
            result = future.result()
            future.release()
            yield result
            for t in islice(tasks, 1):
                futures.add(self._client.submit(fn, t, pure=False))


def make_executor(name: str, workers: int | None = None, scheduler: str | None = None):
    """The executor called ``name`` (one of :data:`EXECUTORS`), not yet entered."""
    if name == "serial":
        return SerialExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(workers, scheduler)
    raise ValueError(f"executor {name!r} is not known: use one of {', '.join(EXECUTORS)}.")
