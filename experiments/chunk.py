"""One chunk of a sweep: the task a worker receives and the function it runs.

Kept apart from the runner so a worker process imports only numpy and the engine. ``run_chunk`` is
module level, as the spawn start method (set by ``import mesa``) and Dask need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.outputs import Store, evaluate
from sim.memory import keep_freed_memory
from sim.run import batch_metrics

Evaluator = Callable[..., dict[str, np.ndarray]]
SCENARIO_FACTOR = "scenario"
"""The factor whose levels are named scenarios (not a registry parameter)."""


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
        replicate_params: parameters set per replicate (posterior draws), under the factors' values;
            empty: every replicate runs the same sets.
        store: what each run stores besides the cohort metrics (:mod:`experiments.outputs`); when it
            asks for anything, the engine runs through :func:`experiments.outputs.evaluate`.
        scenarios: for a ``scenario`` factor, each level's parameter overrides, set on ``base``.
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
    replicate_params: tuple[dict[str, Any], ...] = ()
    store: Store = field(default_factory=Store)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)

    def param_sets(self, replicate: int) -> list[dict[str, Any]]:
        """The complete parameter sets of ``replicate``: base, posterior draw, scenario level, factor values."""
        per_replicate = self.replicate_params[replicate] if self.replicate_params else {}
        sets = []
        for row in self.rows:
            values = dict(zip(self.names, row, strict=True))
            level = self.scenarios[values.pop(SCENARIO_FACTOR)] if SCENARIO_FACTOR in values else {}
            sets.append({**self.base, **per_replicate, **level, **values})
        return sets


def run_chunk(task: ChunkTask) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Run every replicate of one chunk.

    Returns:
        The chunk index; its outputs as columns ``set``, ``replicate`` and one per output, each
        shape (n_sets * replicates,), ordered by set, then replicate; and, when the store asks for
        curves, the curves table (columns ``set``, ``replicate``, ``session`` and the curves), ordered
        the same way, else None.
    """
    keep_freed_memory()  # in every worker, whatever started it (a process pool or Dask)
    n, reps = len(task.rows), task.replicates
    by_replicate, curves = [], []
    for r in range(reps):
        sets = task.param_sets(r)
        if task.store:
            scalars, table = evaluate(sets, task.clients, task.therapists, task.seed, r, task.store)
            by_replicate.append(scalars)
            curves.append(table)
        else:
            by_replicate.append(task.evaluator(sets, task.clients, task.therapists, task.seed, r))
    columns = {
        "set": np.repeat(np.arange(task.first_set, task.first_set + n, dtype=np.int64), reps),
        "replicate": np.tile(np.arange(reps, dtype=np.int64), n),
    }
    for name in by_replicate[0]:
        stacked = np.stack([np.asarray(out[name], dtype=np.float64) for out in by_replicate], axis=1)  # (n, reps)
        columns[name] = stacked.reshape(-1)
    return task.index, columns, _stack_curves(curves, task.first_set) if task.store.curves else None


def _stack_curves(tables: list[dict[str, np.ndarray]], first_set: int) -> dict[str, np.ndarray]:
    """The replicates' curves tables as one, ordered by set, then replicate, then session."""
    parts = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    replicate = np.concatenate([np.full(len(t["set"]), r, dtype=np.int64) for r, t in enumerate(tables)])
    order = np.lexsort((parts["session"], replicate, parts["set"]))
    out = {"set": parts["set"][order] + first_set, "replicate": replicate[order]}
    return out | {k: v[order] for k, v in parts.items() if k != "set"}
