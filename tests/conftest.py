"""Shared helpers: run parameter sets on common random numbers and read per-client outcomes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from sim import parameters, records
from sim.dynamics import DROPOUT_CAUSES, END_TYPES
from sim.engine import Cohort
from sim.outcomes import classify
from sim.parameters import REGISTRY
from sim.run import client_outcomes

SEEDS = (11, 12, 13)


def _value(p):
    if p.kind == "choice":
        return st.sampled_from(p.choices)
    if p.kind == "int":
        return st.integers(int(p.low), int(p.high))
    return st.floats(p.low, p.high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


PARAM_VECTORS = st.fixed_dictionaries({name: _value(p) for name, p in REGISTRY.items()})
"""Every parameter drawn over its whole registry range, course lengths included (a hypothesis strategy)."""


def run_sets(
    overrides: Sequence[dict[str, Any]],
    n_clients: int = 2000,
    n_therapists: int = 100,
    seed: int = 11,
    replicate: int = 0,
    record: bool = False,
) -> tuple[dict[str, np.ndarray], Cohort]:
    """Run every override dict (on top of the defaults) as one batch; return outcomes and cohort."""
    sets = [parameters.resolve(o) for o in overrides]
    cohort = Cohort(sets, n_clients, n_therapists, seed, replicate=replicate, record=record).run()
    return client_outcomes(cohort), cohort


Metric = Callable[[dict[str, np.ndarray], Cohort, int], float]


def pooled(
    metric: Metric,
    overrides: Sequence[dict[str, Any]],
    seeds: Sequence[int] = SEEDS,
    **kwargs,
) -> np.ndarray:
    """``metric(outcomes, cohort, s)`` for every set ``s``, averaged over seeds; shape (n_sets,)."""
    values = []
    for seed in seeds:
        out, cohort = run_sets(overrides, seed=seed, **kwargs)
        values.append([metric(out, cohort, s) for s in range(len(overrides))])
    return np.asarray(values).mean(axis=0)


def end_share(end_type: str) -> Metric:
    """Share of clients whose course ended this way."""
    code = END_TYPES.index(end_type)
    return lambda o, c, s: float((o["end_type"][s] == code).mean())


def cause_share(cause: str) -> Metric:
    """Share of clients who dropped out with this dominant cause."""
    code = DROPOUT_CAUSES.index(cause)
    return lambda o, c, s: float((o["dropout_cause"][s] == code).mean())


def mean_of(key: str, mask: Callable[[dict, Cohort, int], np.ndarray] | None = None) -> Metric:
    """Mean (ignoring NaN) of a per-client outcome, optionally over a mask of clients."""

    def metric(o, c, s):
        x = np.asarray(o[key][s], dtype=float)
        if mask is not None:
            x = x[mask(o, c, s)]
        return float(np.nanmean(x))

    return metric


def flags(o: dict[str, np.ndarray], s: int) -> dict[str, np.ndarray]:
    """Outcome flags (reliable change, recovery, ...) of parameter set ``s``."""
    return classify(o["intake_phq9"][s], o["final_phq9"][s], o["sessions_attended"][s])


def style_is(style: int) -> Callable[[dict, Cohort, int], np.ndarray]:
    """Mask of clients with this attachment style (index into ATTACHMENT_STYLES)."""
    return lambda o, c, s: np.broadcast_to(c.clients.attachment_style, o["end_type"].shape)[s] == style


def events_of(cohort: Cohort, s: int, event: str, cause: str | None = None):
    """Rows of the events table (the output contract) of set ``s`` with this event (and cause)."""
    table = records.events_table(cohort, s)
    rows = table[table["event"] == event]
    if cause is not None:
        rows = rows[rows["cause"] == cause]
    return rows


def fmt(values: Sequence[float]) -> str:
    """Two values as 'a -> b' for assertion messages."""
    return " -> ".join(f"{v:.4g}" for v in values)


def pytest_terminal_summary(terminalreporter) -> None:
    """After the fuzz tests (tests/test_fuzz.py): how many bad inputs were made, and how they ended."""
    from tests.fuzzing import TALLY

    inputs = {k.removeprefix("inputs "): v for k, v in TALLY.items() if k.startswith("inputs ")}
    if not inputs:
        return
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(inputs.items()))
    terminalreporter.write_line(
        f"fuzz: {sum(inputs.values()):,} generated bad inputs ({kinds}); {TALLY['refused']:,} refused with exit 2 "
        f"in one paragraph; {TALLY['tracebacks']} tracebacks; {TALLY['accepted']} accepted"
    )
