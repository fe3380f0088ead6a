"""Executors: where the chunks of a sweep run (this process, a local process pool, or Dask).

Each executor is a context manager whose :meth:`imap_unordered` calls a module-level function on each
task and yields the results as they finish. Only a few tasks are in flight at a time (twice the
workers), so memory grows with the chunk size, not with the sweep. Since the engine's results
depend only on the parameter set, seed and replicate, the executor cannot change any output.
``workers`` is the largest number of workers seen, for the manifest.

A worker that dies (killed, out of memory) surfaces as :class:`WorkerDied`, and a Dask scheduler
that cannot be reached as :class:`ExecutorError`, so the command line can report either in one
paragraph; finished chunks are on disk by then.

``import mesa`` sets multiprocessing's start method to "spawn" for the whole process, so the pool
uses a spawn context explicitly and the task functions must be importable (module level), never
closures or lambdas.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any

EXECUTORS = ("serial", "processes", "dask")


class ExecutorError(RuntimeError):
    """An executor that cannot start (an unreachable scheduler); the message says what to check."""


class WorkerDied(RuntimeError):
    """A worker process died mid-chunk; the chunks finished before it are stored."""


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
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=context, initializer=exit_with_parent, initargs=(os.getpid(),)
        )
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self._pool.shutdown(wait=True)
            return
        # Interrupted or failed: finished chunks are already on disk, so stop the workers now
        # rather than wait for chunks whose results would be thrown away.
        processes = list((getattr(self._pool, "_processes", None) or {}).values())  # None once shut down
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator[Any]:
        """Yield ``fn(task)`` for each task, as the workers finish them."""
        tasks = iter(tasks)
        try:  # a dead worker breaks the pool: every later result() and submit() raises
            pending = {self._pool.submit(fn, t) for t in islice(tasks, 2 * self.workers)}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    pending |= {self._pool.submit(fn, t) for t in islice(tasks, 1)}
        except BrokenProcessPool as err:
            raise WorkerDied(str(err)) from err


def exit_with_parent(parent: int) -> None:
    """Pool initializer: end this worker once ``parent`` is gone.

    A SIGKILLed main process cannot stop its pool, and spawn workers blocked on the task queue
    would otherwise live on forever. Orphans are re-parented, so a changed parent pid means the
    main process is gone; polled once a second, a cost no chunk notices.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)  # no clean-up: the parent that would receive results is gone

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
            try:
                self._client = Client(self.scheduler)
            except (OSError, TimeoutError) as err:  # distributed raises OSError on a connect timeout
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {self.scheduler} ({err}). Check the address "
                    "(tcp://host:port, as the scheduler prints it) and that the scheduler is running and "
                    "reachable from this machine."
                ) from None
            # Workers of a batch-queue cluster may not have started yet; counted again as chunks finish.
            self.workers = self._threads()
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

    def _threads(self) -> int:
        return sum(self._client.nthreads().values())

    def imap_unordered(self, fn: Callable, tasks: Iterable) -> Iterator[Any]:
        """Yield ``fn(task)`` for each task, as the Dask workers finish them.

        Workers can join (or leave) at any time on a batch-queue cluster, so after each finished
        chunk the threads are counted again and the tasks in flight topped up to twice that.
        """
        from dask.distributed import KilledWorker, as_completed

        tasks = iter(tasks)
        futures = as_completed()
        in_flight = 0

        def top_up() -> None:
            nonlocal in_flight
            threads = self._threads()
            self.workers = max(self.workers, threads)
            for t in islice(tasks, max(max(2 * threads, 2) - in_flight, 0)):
                futures.add(self._client.submit(fn, t, pure=False))
                in_flight += 1

        top_up()
        for future in futures:
            in_flight -= 1
            try:
                result = future.result()
            except KilledWorker as err:  # the scheduler gave up on a chunk whose workers kept dying
                raise WorkerDied(str(err)) from err
            future.release()
            yield result
            top_up()


def make_executor(name: str, workers: int | None = None, scheduler: str | None = None):
    """The executor called ``name`` (one of :data:`EXECUTORS`), not yet entered."""
    if name == "serial":
        return SerialExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(workers, scheduler)
    raise ValueError(f"executor {name!r} is not known: use one of {', '.join(EXECUTORS)}.")
