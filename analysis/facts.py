"""Published facts computed from simulated cohorts, for many parameter sets and replicates at once.

Validation and calibration share this one path from parameters to facts, so the numbers a fit
reaches are the numbers ``make validate`` reports for the same seed. Per replicate, every parameter
set (and, for facts with overrides such as a share of feedback-using therapists, every set with
those overrides applied) runs in one :class:`sim.engine.Cohort`: the sets share their random draws
(common random numbers). The per-client tables are those of ``clients.csv``
(:func:`sim.records.clients_table`), stacked over sets, and every fact is evaluated on the stack at
once by :func:`compute_batch`, which gives what :meth:`analysis.targets.Target.compute` gives set by
set (tests/test_validate.py checks that), only faster.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis import estimators as est
from analysis.targets import Target
from sim import parameters, records
from sim.engine import Cohort
from sim.run import client_outcomes
from sim.scenario import Scenario

SET_COLUMN = "param_set"


def override_groups(targets: Sequence[Target]) -> list[dict[str, Any]]:
    """The distinct ``overrides`` of ``targets``, the empty one (the scenario as it is) first."""
    groups: list[dict[str, Any]] = [{}]
    for t in targets:
        if t.overrides and t.overrides not in groups:
            groups.append(dict(t.overrides))
    return groups


def _columns_used(targets: Sequence[Target]) -> set[str]:
    text = " ".join(" ".join((t.clients, t.x, t.y, t.group)) for t in targets)
    return set(re.findall(r"[A-Za-z_]\w*", text))


def stacked_table(cohort: Cohort, columns: set[str] | None = None) -> pd.DataFrame:
    """The clients.csv tables of every parameter set of ``cohort``, stacked in set order.

    Args:
        cohort: a finished cohort; sudden gains need a recorded one (``record=True``).
        columns: keep only these columns (and the set column); None keeps all.

    Returns:
        One row per (set, client), n_sets * n_clients rows, with a ``param_set`` column.
    """
    table = records.client_columns(cohort, client_outcomes(cohort), columns)
    sets = np.repeat(np.arange(cohort.n_sets), cohort.n_clients)
    return pd.DataFrame({k: np.asarray(v).reshape(-1) for k, v in table.items()} | {SET_COLUMN: sets})


def compute_batch(target: Target, table: pd.DataFrame, n_sets: int) -> np.ndarray:
    """``target`` on each parameter set of a stacked table at once, shape (n_sets,).

    Gives what :meth:`Target.compute` gives on each set's own table; an undefined statistic (e.g.
    no clients selected, or an ICC without two therapists) is NaN instead of an error, so that a
    calibration can step through extreme parameter values.

    Args:
        target: the fact.
        table: from :func:`stacked_table`, n_sets blocks of equally many clients, in set order.
        n_sets: the number of blocks.
    """
    shape = (n_sets, len(table) // n_sets)

    def ev(expr: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(table.eval(expr)).reshape(shape)

    selected = ev(target.clients).astype(bool) if target.clients else np.ones(shape, dtype=bool)

    def masked(expr: str) -> np.ndarray:
        return np.where(selected, ev(expr).astype(float), np.nan)

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # empty selections give NaN, as documented
        match target.statistic:
            case "share":
                hits = (ev(target.y).astype(bool) & selected).sum(axis=1)
                return hits / selected.sum(axis=1)
            case "mean":
                return np.nanmean(masked(target.y), axis=1)
            case "pearson_r":
                return np.asarray(est.pearson_r(masked(target.x), masked(target.y), axis=-1), dtype=float)
            case "point_biserial":
                group = np.where(selected, ev(target.group).astype(float), np.nan)
                return np.asarray(est.point_biserial(group, masked(target.y), axis=-1), dtype=float)
            case "cohens_d":
                group, y = ev(target.group).astype(bool), masked(target.y)
                a, b = np.where(group, y, np.nan), np.where(~group, y, np.nan)
                return np.asarray(est.cohens_d(a, b, axis=-1), dtype=float)
            case "share_within_first":
                return np.asarray(est.share_within_first(masked(target.y), target.k, axis=-1), dtype=float)
            case "icc" | "icc_latent" | "odds_ratio":
                y, group = ev(target.y), ev(target.group)
                return np.array([_per_set(target, y[s][selected[s]], group[s][selected[s]]) for s in range(n_sets)])
    raise ValueError(f"{target.id}: unknown statistic {target.statistic!r}")


def _per_set(target: Target, y: np.ndarray, group: np.ndarray) -> float:
    if target.statistic == "odds_ratio":
        return est.odds_ratio(y.astype(bool), group.astype(bool))
    try:
        if target.statistic == "icc_latent":
            return est.icc_latent_binary(y.astype(bool), group)
        return est.icc_random_intercept(y, group)
    except ValueError:
        return float("nan")


def simulate_facts(
    targets: Sequence[Target],
    param_sets: Sequence[dict[str, Any]],
    n_clients: int,
    n_therapists: int,
    seed: int,
    replicates: int | Sequence[int],
) -> np.ndarray:
    """Every fact for every parameter set and replicate, shape (n_replicates, n_sets, n_facts).

    Args:
        targets: the facts; each is computed on the set with its ``overrides`` applied.
        param_sets: complete, validated parameter dicts (e.g. ``scenario.params``).
        n_clients, n_therapists: cohort size per set.
        seed: the seed; replicate ``r`` is ``Cohort(..., seed, replicate=r)``.
        replicates: how many (replicates 0..R-1), or which replicates.
    """
    reps = range(replicates) if isinstance(replicates, int) else list(replicates)
    groups = override_groups(targets)
    batch = [{**p, **parameters.validate(g, "targets.toml overrides")} for g in groups for p in param_sets]
    which = [groups.index(t.overrides or {}) for t in targets]
    columns = _columns_used(targets)
    # sudden gains and their reversal are read from the recorded session scores
    record = bool(columns & {"sudden_gain", "sudden_gain_reversed"})
    n = len(param_sets)
    out = np.empty((len(reps), n, len(targets)))
    for i, rep in enumerate(reps):
        cohort = Cohort(batch, n_clients, n_therapists, seed, replicate=rep, record=record).run()
        table = stacked_table(cohort, columns)
        blocks = {g: table.iloc[g * n * n_clients : (g + 1) * n * n_clients] for g in set(which)}
        for j, target in enumerate(targets):
            out[i, :, j] = compute_batch(target, blocks[which[j]], n)
    return out


def cohort_therapists(scenario: Scenario, clients: int) -> int:
    """Therapists for ``clients`` at the scenario's caseload (as ``--clients`` alone gives), at least two.

    Two at least: the therapist ICC and the feedback facts (half the therapists use feedback) need
    more than one therapist.
    """
    return max(2, scenario.with_settings(clients=clients).therapists)
