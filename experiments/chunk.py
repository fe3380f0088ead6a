"""One chunk of a sweep: the task a worker receives and the function it runs.

Kept apart from the runner so a worker process imports only numpy and the engine. ``run_chunk`` is
module level, as the spawn start method (set by ``import mesa``) and Dask need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.memory import keep_freed_memory
from sim.run import batch_metrics

Evaluator = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of parameter sets, with everything a worker needs to run it.

    Attributes:
        index: chunk number.
        first_set: index of the chunk's first parameter set in the sample.
        base: parameter values shared by every set.
        names: the varied parameters.
        rows: each set's values of ``names``.
        clients, therapists, seed, replicates: run settings.
        evaluator: the batched model call, ``evaluate(param_sets, n_clients, n_therapists, seed,
            replicate) -> {output: array (n_sets,)}``, a module-level function.
    """

    index: int
    first_set: int
    base: dict[str, Any]
    names: tuple[str, ...]
    rows: tuple[tuple, ...]
    clients: int
    therapists: int
    seed: int
    replicates: int
    evaluator: Evaluator = batch_metrics


def run_chunk(task: ChunkTask) -> tuple[int, dict[str, np.ndarray]]:
    """Run every replicate of one chunk.

    Returns:
        The chunk index and its outputs as columns ``set``, ``replicate`` and one per output, each
        shape (n_sets * replicates,), ordered by set, then replicate.
    """
    keep_freed_memory()  # in every worker, whatever started it (a process pool or Dask)
    param_sets = [{**task.base, **dict(zip(task.names, row, strict=True))} for row in task.rows]
    n, reps = len(param_sets), task.replicates
    by_replicate = [task.evaluator(param_sets, task.clients, task.therapists, task.seed, r) for r in range(reps)]
    columns = {
        "set": np.repeat(np.arange(task.first_set, task.first_set + n, dtype=np.int64), reps),
        "replicate": np.tile(np.arange(reps, dtype=np.int64), n),
    }
    for name in by_replicate[0]:
        stacked = np.stack([np.asarray(out[name], dtype=np.float64) for out in by_replicate], axis=1)  # (n, reps)
        columns[name] = stacked.reshape(-1)
    return task.index, columns
