"""What a sweep's runs store beyond the cohort metrics, chosen in the spec's ``[store]`` and ``[metrics]``.

Every run always stores the cohort metrics of :data:`sim.outcomes.METRICS` (the alliance-dropout d
among them). A spec can ask for more, each off by default so a sweep that does not ask pays nothing:

- ``reasons = true``: why clients left. ``reason_<reason>``, the mean over dropouts of each reason's
  Shapley share of their chance of leaving (the ``share_<reason>`` columns of clients.csv;
  :mod:`sim.reasons`), and ``category_<category>``, the share of dropouts whose main reason falls in
  each category of the client surveys (improvement, circumstances, dissatisfaction, other);
- ``retention = [4, 8, 12]``: ``retention_<k>``, the share of clients who had not dropped out by the
  end of session slot (week) k (``true`` gives 4, 8 and 12);
- ``curves = true``: a long table, one row per (set, replicate, session): the share of clients whose
  course is still running, the share retained (not dropped out), the share attending, and the mean
  WAI-SR alliance and PHQ-9 of those attending. Stored beside the chunks in ``curves/``;
- ``[metrics.NAME]``: a user metric, a statistic (mean, median or sd) of an expression over the
  columns of clients.csv, over the clients another expression selects. Expressions are checked by
  :mod:`sim.expressions` (no Python is ever run) and tried on a small cohort when the spec is loaded.

This module runs in sweep workers: it imports the engine and numpy only, and evaluates on the
per-client arrays of every parameter set at once (no pandas).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from sim import dynamics
from sim.engine import Cohort
from sim.expressions import Expression, ExpressionError, parse
from sim.outcomes import METRICS, Metric, cohort_metrics
from sim.reasons import CATEGORIES, CATEGORY_OF, CATEGORY_TEXT, REASON_TEXT, REASONS
from sim.run import client_outcomes

DEFAULT_RETENTION = (4, 8, 12)
STATISTICS = ("mean", "median", "sd")
# Columns of clients.csv that need a recorded run (every week's scores kept): a sweep's runs are not
# recorded, so a user metric cannot read them; sudden_gain_events counts the same gains as they happen.
RECORDED_ONLY = {
    "sudden_gain": "sudden_gain_events (sudden gains as they happened)",
    "sudden_gain_reversed": "sudden_gain_events",
}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # a user metric's name: a column name in every table
CURVE_COLUMNS = {
    "in_therapy": ("clients whose course is still running", "share of clients"),
    "retained": ("clients not dropped out by the end of the session", "share of clients"),
    "attended": ("clients attending the session", "share of clients"),
    "alliance": ("mean alliance of those attending", "WAI-SR 12-60"),
    "phq9": ("mean PHQ-9 of those attending", "PHQ-9 points"),
}
"""The per-session columns of the curves table: label and unit."""


@dataclass(frozen=True)
class UserMetric:
    """A metric a spec defines: ``statistic`` of ``y`` over the clients ``clients`` selects.

    Attributes:
        name: the output's name (an identifier).
        y: expression over the columns of clients.csv giving one number (or truth value) per client.
        clients: expression selecting the clients it is about; empty for all clients.
        statistic: "mean" (of a truth value: a share), "median" or "sd" (sample SD), over the
            selected clients where ``y`` has a value.
        label, unit: how reports and figures name it.
    """

    name: str
    y: str
    clients: str = ""
    statistic: str = "mean"
    label: str = ""
    unit: str = ""

    def metric(self) -> Metric:
        """Its description as a :class:`sim.outcomes.Metric`."""
        return Metric(self.name, self.label or self.name.replace("_", " "), self.unit or "user metric")


@dataclass(frozen=True)
class Store:
    """What each run stores besides the cohort metrics (see the module docstring); empty by default."""

    reasons: bool = False
    retention: tuple[int, ...] = ()
    curves: bool = False
    metrics: tuple[UserMetric, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.reasons or self.retention or self.curves or self.metrics)

    def outputs(self) -> tuple[Metric, ...]:
        """The scalar outputs it adds, in the order they are stored."""
        extra: list[Metric] = []
        if self.reasons:
            extra += [
                Metric(f"reason_{r}", f"dropout put down to {REASON_TEXT[r]}", "mean share over dropouts", 0.0, 1.0)
                for r in REASONS
            ]
            extra += [
                Metric(f"category_{c}", f"dropouts mainly for {CATEGORY_TEXT[c]}", "share of dropouts", 0.0, 1.0)
                for c in CATEGORIES
            ]
        extra += [
            Metric(f"retention_{k}", f"not dropped out by the end of session {k}", "share of clients", 0.0, 1.0)
            for k in self.retention
        ]
        return tuple(extra) + tuple(m.metric() for m in self.metrics)


def metric_table(store: Store) -> dict[str, dict[str, Any]]:
    """Label, unit and the reason a value can be missing, of every stored output (for the manifest)."""
    from sim.outcomes import undefined_reason

    table = {m.name: {"label": m.label, "unit": m.unit, "undefined": undefined_reason(m.name)} for m in METRICS}
    for m in store.outputs():
        if m.name.startswith(("reason_", "category_")):
            why = "no client dropped out"
        elif m.name.startswith("retention_"):
            why = "never: every cohort has clients"
        else:
            why = "no selected client has a value"
        table[m.name] = {"label": m.label, "unit": m.unit, "undefined": why}
    return table


@cache
def _parsed(text: str) -> Expression | None:
    return parse(text) if text.strip() else None


def user_columns(store: Store) -> set[str]:
    """The clients.csv columns the user metrics read."""
    names: set[str] = set()
    for m in store.metrics:
        for text in (m.y, m.clients):
            expression = _parsed(text)
            if expression is not None:
                names |= expression.names
    return names


class MetricError(ValueError):
    """A user metric that cannot be evaluated; ``key`` names the setting at fault (y or clients)."""

    def __init__(self, name: str, key: str, message: str):
        super().__init__(message)
        self.name, self.key = name, key


def _statistic(values: np.ndarray, selected: np.ndarray, statistic: str) -> np.ndarray:
    """``statistic`` of ``values`` over ``selected`` clients with a value, per set; shape (n_sets,)."""
    if values.dtype.kind not in "biuf":
        what = "text" if values.dtype.kind in "USO" else f"{values.dtype} values"
        raise TypeError(f'y gives {what}, not numbers or true/false; compare text, e.g. end_type == "dropout"')
    x = np.where(selected, values.astype(float), np.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # sets with no selected value give NaN
        if statistic == "mean":
            return np.nanmean(x, axis=-1)
        if statistic == "median":
            return np.nanmedian(x, axis=-1)
        return np.nanstd(x, axis=-1, ddof=1)


def user_metrics(cohort: Cohort, outcomes: dict[str, np.ndarray], store: Store) -> dict[str, np.ndarray]:
    """Each user metric per parameter set, shape (n_sets,), from the per-client arrays of every set at once."""
    if not store.metrics:
        return {}
    from sim.records import client_columns  # imports pandas: only in workers of sweeps with user metrics

    columns = client_columns(cohort, outcomes, user_columns(store))
    shape = cohort.state.active.shape
    out = {}
    for m in store.metrics:
        y = np.broadcast_to(_parsed(m.y)(columns), shape)
        if y.dtype.kind not in "biuf":
            raise MetricError(
                m.name, "y", 'it gives text, not numbers or true/false; compare it, e.g. end_type == "dropout".'
            )
        where = _parsed(m.clients)
        selected = np.ones(shape, bool) if where is None else np.broadcast_to(where(columns), shape)
        if selected.dtype != bool:
            raise MetricError(
                m.name, "clients", "clients must give true or false for each client, e.g. finished_course."
            )
        out[m.name] = _statistic(y, selected, m.statistic)
    return out


def extra_metrics(cohort: Cohort, outcomes: dict[str, np.ndarray], store: Store) -> dict[str, np.ndarray]:
    """The scalar outputs of ``store`` per parameter set, each shape (n_sets,)."""
    out: dict[str, np.ndarray] = {}
    dropped = outcomes["end_type"] == dynamics.END_TYPES.index("dropout")
    n_dropped = dropped.sum(axis=-1)
    if store.reasons:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (outcomes["reason_shares"] * dropped[..., None]).sum(axis=1) / n_dropped[:, None]
            for j, reason in enumerate(REASONS):
                out[f"reason_{reason}"] = means[:, j]
            category = np.asarray([CATEGORY_OF[r] for r in REASONS])
            main = outcomes["dropout_cause"] - 1  # index into REASONS for dropouts
            for c in CATEGORIES:
                hit = dropped & np.isin(main, np.flatnonzero(category == c))
                out[f"category_{c}"] = hit.sum(axis=-1) / n_dropped
    for k in store.retention:
        out[f"retention_{k}"] = 1.0 - (dropped & (outcomes["end_session"] <= k)).mean(axis=-1)
    return out | user_metrics(cohort, outcomes, store)


def _curves(cohort: Cohort) -> dict[str, list[np.ndarray]]:
    """Step ``cohort`` week by week, keeping the means of those attending; shape (n_weeks, n_sets) each."""
    sums: dict[str, list[np.ndarray]] = {"attended": [], "alliance": [], "phq9": []}
    while not cohort.done:
        events = cohort.step()
        attended = (events & dynamics.ATTENDED) > 0
        n = attended.sum(axis=-1)
        s = cohort.state
        with np.errstate(invalid="ignore", divide="ignore"):
            sums["attended"].append(n / attended.shape[-1])
            sums["alliance"].append(np.where(attended, dynamics.wai_sr(s.bond, s.goal, s.task), 0.0).sum(-1) / n)
            sums["phq9"].append(np.where(attended, s.phq9, 0.0).sum(-1) / n)
    return sums


def curve_table(cohort: Cohort, weekly: dict[str, list[np.ndarray]], outcomes: dict[str, np.ndarray]):
    """The long curves table of one replicate: columns set (0-based in the batch), session and CURVE_COLUMNS.

    Each set has rows for its own session slots (1 to its planned sessions plus extra weeks), so a
    set's rows do not depend on the other sets of its batch.
    """
    n_sets = cohort.n_sets
    last = cohort.p["last_week"][:, 0].astype(int)
    weeks = np.arange(1, cohort.n_weeks + 1)
    ends = outcomes["end_session"][:, None, :]  # (n_sets, 1, n_clients)
    dropped = (outcomes["end_type"] == dynamics.END_TYPES.index("dropout"))[:, None, :]
    full = {
        "in_therapy": (ends >= weeks[None, :, None]).mean(axis=-1),  # (n_sets, n_weeks)
        "retained": 1.0 - (dropped & (ends <= weeks[None, :, None])).mean(axis=-1),
    }
    for name, rows in weekly.items():
        full[name] = np.stack(rows, axis=1) if rows else np.zeros((n_sets, 0))
    keep = weeks[None, :] <= last[:, None]  # (n_sets, n_weeks)
    sets, week_index = np.nonzero(keep)
    table = {"set": sets.astype(np.int64), "session": weeks[week_index].astype(np.int64)}
    for name in CURVE_COLUMNS:
        table[name] = full[name][sets, week_index].astype(np.float64)
    return table


def evaluate(
    param_sets: list[dict[str, Any]], n_clients: int, n_therapists: int, seed: int, replicate: int, store: Store
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """The cohort metrics and the outputs of ``store`` for each parameter set, and the curves if asked.

    The engine call of :func:`sim.run.batch_metrics` with more kept: the metrics are the same numbers
    bit for bit (stepping week by week for the curves gives exactly the state of one pass).

    Returns:
        Scalars, each shape (n_sets,), and the curves table (columns of :func:`curve_table`) or None.
    """
    cohort = Cohort(param_sets, n_clients, n_therapists, seed, replicate)
    weekly = _curves(cohort) if store.curves else None
    cohort.run()
    outcomes = client_outcomes(cohort)
    scalars = cohort_metrics(outcomes) | extra_metrics(cohort, outcomes, store)
    return scalars, (curve_table(cohort, weekly, outcomes) if weekly is not None else None)


def check_user_metrics(store: Store, base: dict[str, Any]) -> None:
    """Parse every user metric against the columns of clients.csv and evaluate it on a small cohort of ``base``.

    A sweep's mistake in an expression is so reported before any run, not by every worker.

    Raises:
        MetricError: an expression that is not allowed, names a column clients.csv does not have (or
            that an unrecorded run cannot give), or cannot be evaluated.
    """
    if not store.metrics:
        return
    from sim.records import client_columns

    cohort = Cohort(base, 200, 10, 0).run()  # clients.csv's columns, with values of the sweep's world
    outcomes = client_outcomes(cohort)
    columns = [name for name in client_columns(cohort, outcomes) if name not in RECORDED_ONLY]
    for m in store.metrics:
        for key in ("y", "clients"):
            text = getattr(m, key)
            if key == "clients" and not text.strip():
                continue
            try:
                recorded = sorted(parse(text).names & set(RECORDED_ONLY))
                if recorded:
                    raise ExpressionError(
                        f"{recorded[0]} needs every session's scores, which a sweep does not keep; use "
                        f"{RECORDED_ONLY[recorded[0]]} instead."
                    )
                parse(text, columns)
            except ExpressionError as err:
                raise MetricError(m.name, key, str(err)) from None
        try:
            user_metrics(cohort, outcomes, Store(metrics=(m,)))
        except MetricError:
            raise
        except (TypeError, ValueError) as err:  # values that cannot be combined (text against numbers, ...)
            raise MetricError(m.name, "y", f"cannot be evaluated on a small cohort: {str(err).rstrip('.')}.") from None
