"""Executors: where the chunks of a sweep run (this process, a local process pool, or Dask).

Each executor is a context manager whose :meth:`imap_unordered` calls a module-level function on each
task and yields the results as they finish. Only a few tasks are in flight at a time (twice the
workers), so memory grows with the chunk size, not with the sweep. Since the engine's results
depend only on the parameter set, seed and replicate, the executor cannot change any output.
``workers`` is the largest number of workers seen, for the manifest.

A worker that dies (killed, out of memory) surfaces as :class:`WorkerDied`; a Dask scheduler address
that is not one, or a scheduler that cannot be reached, as :class:`ExecutorError`; a Dask cluster
left without any worker for ``worker_timeout`` seconds (every worker died, or none ever started), or
a scheduler that goes away mid-sweep, as :class:`ClusterLost`. The command line reports each in one
paragraph; finished chunks are on disk by then, and the same command resumes.

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
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any

from sim.userfiles import clean_text

EXECUTORS = ("serial", "processes", "dask")
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")  # the transports a Dask scheduler listens on
WORKER_TIMEOUT = 120.0  # seconds a Dask cluster may have no worker before the run ends (resumable)
POLL = 1.0  # seconds between checks of a Dask cluster's workers while chunks run


class ExecutorError(RuntimeError):
    """An executor that cannot start (an unreachable scheduler); the message says what to check."""


class WorkerDied(RuntimeError):
    """A worker process died mid-chunk; the chunks finished before it are stored."""


class ClusterLost(RuntimeError):
    """A Dask cluster with no worker for too long, or a scheduler that went away; the message says which."""


def check_address(address: str) -> str:
    """A Dask scheduler address (``tcp://host:port``; ``host:port`` means tcp), or ExecutorError saying why not."""
    shown = clean_text(repr(address), 80)
    scheme, sep, rest = address.strip().partition("://")
    if not sep:
        scheme, rest = "tcp", address.strip()
    if scheme not in SCHEMES:
        raise ExecutorError(
            f"--scheduler {shown}: {clean_text(scheme, 20)}:// is not a Dask transport; give the address the scheduler "
            "prints, e.g. tcp://10.0.0.5:8786 (or tls://...)."
        )
    if scheme == "inproc":
        return address.strip()
    host, colon, port = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address is written [::1]:8786
    bad_host = not host or any(c.isspace() or c in "/?#@[]" for c in host)
    if not colon or bad_host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ExecutorError(
            f"--scheduler {shown} is not a scheduler address: give host and port as the scheduler prints them, "
            "e.g. tcp://10.0.0.5:8786."
        )
    return address.strip()


def add_arguments(parser, what: str = "chunks") -> None:
    """The options of every command that runs on the executors: --executor, --workers, --scheduler, --worker-timeout.

    Args:
        parser: an argparse parser (or subparser).
        what: what runs on the executor, for the help text ("chunks", "trials").
    """
    from sim.cli import positive_float, positive_int

    parser.add_argument(
        "--executor", choices=EXECUTORS, default="processes", help=f"where {what} run (default processes)"
    )
    parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    parser.add_argument(
        "--worker-timeout",
        type=positive_float,
        default=WORKER_TIMEOUT,
        metavar="SECONDS",
        help=f"end a Dask run whose cluster has had no worker this long (default {WORKER_TIMEOUT:g}; raise it for "
        "a batch queue that starts workers slowly)",
    )


def check_arguments(args) -> None:
    """Refuse a --scheduler without --executor dask, or one that is not an address, before anything runs.

    Raises:
        ExecutorError: with a message naming the option.
    """
    if args.scheduler is not None:
        if args.executor != "dask":
            raise ExecutorError(f"--scheduler {clean_text(args.scheduler)} needs --executor dask.")
        check_address(args.scheduler)


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


def _indexed(task: tuple[int, Callable, Any]) -> tuple[int, Any]:
    from sim.memory import release_freed_memory

    release_freed_memory()  # what the worker kept from the sweep's chunks is of no use to this work
    index, fn, item = task
    try:
        return index, fn(item)
    finally:  # nor what this task kept (a bootstrap's arrays, a figure's buffers) to whatever comes next
        release_freed_memory()


def ordered_map(pool, fn: Callable, items: Iterable) -> list[Any]:
    """``[fn(item) for item in items]`` on an entered executor's workers, in the items' order.

    For work after a sweep's chunks (the analysis of each output, its figures) on the pool that ran
    them, whose workers are already started and have the model's modules loaded.
    """
    results = dict(pool.imap_unordered(_indexed, ((i, fn, item) for i, item in enumerate(items))))
    return [results[i] for i in range(len(results))]


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

    def __init__(
        self, workers: int | None = None, scheduler: str | None = None, worker_timeout: float = WORKER_TIMEOUT
    ):
        self.workers = workers or available_cores()
        self.scheduler = check_address(scheduler) if scheduler else None
        self.worker_timeout = worker_timeout

    def __enter__(self) -> DaskExecutor:
        from dask.distributed import Client, LocalCluster

        self._cluster = None
        if self.scheduler:
            try:
                self._client = Client(self.scheduler)
            except (OSError, TimeoutError, ValueError, TypeError) as err:  # OSError on a connect timeout
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {self.scheduler} ({clean_text(err, 200)}). Check the "
                    "address (tcp://host:port, as the scheduler prints it) and that the scheduler is running and "
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

        Workers can join (or leave) at any time on a batch-queue cluster, so the threads are counted
        again after each finished chunk (and every :data:`POLL` seconds) and the tasks in flight
        topped up to twice that. A cluster without any worker for ``worker_timeout`` seconds ends
        the run with :class:`ClusterLost` rather than wait for ever.

        Raises:
            WorkerDied: the scheduler gave up on a chunk whose workers kept dying.
            ClusterLost: no worker for ``worker_timeout`` seconds, or the scheduler went away.
        """
        from dask.distributed import KilledWorker
        from dask.distributed import wait as dask_wait

        tasks = iter(tasks)
        pending: set = set()
        idle_since: float | None = None

        def top_up() -> int:
            threads = self._threads()
            self.workers = max(self.workers, threads)
            for t in islice(tasks, max(max(2 * threads, 2) - len(pending), 0)):
                pending.add(self._client.submit(fn, t, pure=False))
            return threads

        def lost(err: BaseException) -> ClusterLost:
            return ClusterLost(
                f"lost the connection to the Dask scheduler at {self._address()} ({clean_text(err, 120)}); check "
                "that it is still running"
            )

        def checked(call: Callable, *args, **kwargs) -> Any:
            """A call to the scheduler; a dropped connection (CommClosedError is an OSError) as ClusterLost."""
            try:
                return call(*args, **kwargs)
            except TimeoutError:  # an OSError too, but only the wait's timeout: nothing finished yet
                raise
            except (OSError, CancelledError) as err:
                raise lost(err) from None

        checked(top_up)
        while pending:
            try:
                done = checked(dask_wait, list(pending), timeout=POLL, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            for future in done:
                pending.discard(future)
                try:
                    result = future.result()
                except KilledWorker as err:  # the scheduler gave up on a chunk whose workers kept dying
                    raise WorkerDied(str(err)) from err
                except CancelledError as err:  # the scheduler dropped it: it went away
                    raise lost(err) from None
                future.release()
                yield result
            if checked(top_up):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.worker_timeout:
                raise ClusterLost(
                    f"the Dask cluster at {self._address()} has had no worker for {self.worker_timeout:g} s "
                    "(every worker died, or none started); start workers (or check the cluster's batch jobs)"
                )

    def _address(self) -> str:
        return self.scheduler or "(local cluster)"


def make_executor(
    name: str, workers: int | None = None, scheduler: str | None = None, worker_timeout: float = WORKER_TIMEOUT
):
    """The executor called ``name`` (one of :data:`EXECUTORS`), not yet entered."""
    if name == "serial":
        return SerialExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "dask":
        return DaskExecutor(workers, scheduler, worker_timeout)
    raise ValueError(f"executor {name!r} is not known: use one of {', '.join(EXECUTORS)}.")
