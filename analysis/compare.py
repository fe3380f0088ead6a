"""Statistics for comparing scenarios: retention, alliance by session, dropout causes, outcome rates.

Pure functions over the stacked tables of :class:`sim.comparison.ComparisonResult` (a ``scenario``
and a ``replicate`` column in front of the usual output columns). Intervals are over replicates
(:func:`analysis.estimators.mean_ci`), except the Kaplan-Meier band, which is Greenwood's over the
clients of all replicates pooled (independent cohorts of one population).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.estimators import kaplan_meier, mean_ci
from sim.dynamics import DROPOUT_CAUSES
from sim.outcomes import METRICS
from sim.reasons import CATEGORIES

CAUSES = DROPOUT_CAUSES[1:]
CAUSE_PREFIX = "dropout_cause:"
CATEGORY_PREFIX = "dropout_category:"
TABLE_COLUMNS = ["metric", "scenario", "mean", "ci_low", "ci_high"]
OUTCOME_BARS = ("recovery_rate", "reliable_improvement_rate", "reliable_deterioration_rate")


def _scenarios(table: pd.DataFrame) -> list[str]:
    column = table["scenario"]
    return list(column.cat.categories) if isinstance(column.dtype, pd.CategoricalDtype) else list(column.unique())


def _interval(values, low: float = -np.inf, high: float = np.inf) -> dict[str, float]:
    """Mean over replicates with its t interval, the interval cut at the values the metric can take.

    A share near 0 over few replicates gets a t interval reaching below 0 (0.1% [-0.0%, 0.1%]);
    no replicate can give such a value, so the interval ends at the bound.
    """
    ci = mean_ci(np.asarray(values, dtype=float))
    return {"mean": ci.mean, "ci_low": max(ci.low, low), "ci_high": min(ci.high, high)}


def cause_shares(clients: pd.DataFrame, column: str = "dropout_cause", values=CAUSES) -> pd.DataFrame:
    """Share of all clients who dropped out with each main reason, per scenario and replicate.

    Args:
        clients: the stacked clients table.
        column: ``dropout_cause`` (the main reason) or ``dropout_category`` (its category).
        values: the reasons (:data:`CAUSES`) or the categories (:data:`sim.reasons.CATEGORIES`).

    Returns:
        One row per scenario and replicate, one column per value (0-1).
    """
    keys = ["scenario", "replicate"]
    size = clients.groupby(keys, observed=True).size()
    dropped = clients[clients["end_type"] == "dropout"]
    counts = dropped.groupby([*keys, column], observed=True).size()
    counts = counts.unstack(column) if len(counts) else pd.DataFrame(index=size.index)
    counts = counts.reindex(index=size.index, columns=list(values)).fillna(0)
    return counts.div(size, axis=0)


def summary_table(metrics: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """Each cohort metric and dropout cause share per scenario, mean over replicates with 95% CI.

    Args:
        metrics: one row per scenario and replicate with the :data:`sim.outcomes.METRICS` columns.
        clients: the stacked clients table (for the dropout causes).

    Returns:
        Columns ``metric, scenario, mean, ci_low, ci_high``; metrics in :data:`METRICS` order, then
        ``dropout_cause:<reason>`` and ``dropout_category:<category>`` rows (share of all clients
        who dropped out with that main reason, or a main reason of that category).
    """
    rows = []
    names = _scenarios(metrics)
    for m in METRICS:
        for name in names:
            values = metrics.loc[metrics["scenario"] == name, m.name]
            rows.append({"metric": m.name, "scenario": name, **_interval(values, m.low, m.high)})
    for prefix, column, values in (
        (CAUSE_PREFIX, "dropout_cause", CAUSES),
        (CATEGORY_PREFIX, "dropout_category", CATEGORIES),
    ):
        shares = cause_shares(clients, column, values)
        for value in values:
            for name in names:
                share = _interval(shares.loc[name, value], 0.0, 1.0)
                rows.append({"metric": prefix + value, "scenario": name, **share})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def paired_differences(metrics: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each scenario minus ``reference``, paired by replicate (common random numbers), with 95% CI.

    Pairing removes the variation the scenarios share, so these intervals are much narrower than
    the difference of two independent intervals.

    Returns:
        Columns ``metric, scenario, mean, ci_low, ci_high`` for every scenario but the reference.
    """
    wide = metrics.set_index(["scenario", "replicate"])
    base = wide.loc[reference]
    rows = []
    for m in METRICS:
        for name in _scenarios(metrics):
            if name != reference:
                diff = wide.loc[name, m.name] - base[m.name]
                rows.append({"metric": m.name, "scenario": name, **_interval(diff)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def retention_curves(clients: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier retention per scenario: dropout is the event, other endings are censored.

    Returns:
        Columns ``scenario, session, survival, ci_low, ci_high``: the step function from session 0
        (everyone retained) with its pointwise band, clients of all replicates pooled.
    """
    frames = []
    for name in _scenarios(clients):
        rows = clients[clients["scenario"] == name]
        km = kaplan_meier(rows["end_session"], rows["end_type"] == "dropout", level=level)
        frames.append(
            pd.DataFrame(
                {
                    "scenario": name,
                    "session": np.concatenate([[0.0], km.times]),
                    "survival": np.concatenate([[1.0], km.survival]),
                    "ci_low": np.concatenate([[1.0], km.ci_low]),
                    "ci_high": np.concatenate([[1.0], km.ci_high]),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def alliance_curves(sessions: pd.DataFrame) -> pd.DataFrame:
    """Mean alliance at attended sessions and rupture rate, per scenario and weekly slot.

    Returns:
        Columns ``scenario, session, mean, ci_low, ci_high`` (WAI-SR 12-60, interval over
        replicates of the replicate means) and ``ruptures_per_100`` (ruptures per 100 clients in
        therapy that week, mean over replicates).
    """
    keys = ["scenario", "replicate", "session"]
    alliance = sessions[sessions["attended"]].groupby(keys, observed=True)["alliance"].mean()
    ruptures = 100.0 * sessions.groupby(keys, observed=True)["rupture"].mean()
    frames = []
    for name in _scenarios(sessions):
        by_week = alliance.loc[name].unstack("session")  # (replicates, weeks)
        ci = mean_ci(by_week.to_numpy(), axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "scenario": name,
                    "session": by_week.columns.to_numpy(),
                    "mean": ci.mean,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                    "ruptures_per_100": ruptures.loc[name]
                    .groupby("session")
                    .mean()
                    .reindex(by_week.columns)
                    .to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _reason_label(metric: str) -> str:
    if metric.startswith(CATEGORY_PREFIX):
        return "dropout, " + metric.removeprefix(CATEGORY_PREFIX)
    return "dropout: " + metric.removeprefix(CAUSE_PREFIX).replace("_", " ")


def format_table(table: pd.DataFrame, differences: pd.DataFrame | None = None, replicates: int | None = None) -> str:
    """The comparison as text: one line per metric, each scenario's mean [95% CI over replicates].

    Args:
        table: as from :func:`summary_table`; dropout causes that no scenario shows are left out.
        differences: as from :func:`paired_differences`, printed below, or None.
        replicates: the number of replicates, for the heading.
    """
    labels = {m.name: (m.label, m.unit) for m in METRICS}

    def cell(row) -> str:
        metric, mean, low, high = row["metric"], row["mean"], row["ci_low"], row["ci_high"]
        share = metric.startswith((CAUSE_PREFIX, CATEGORY_PREFIX)) or "share" in labels.get(metric, ("", ""))[1]
        if share:
            fmt = lambda v: f"{100 * v:.1f}%"  # noqa: E731
        else:
            fmt = lambda v: f"{v:.2f}"  # noqa: E731
        if not np.isfinite(mean):
            return "n/a"
        interval = f" [{fmt(low)}, {fmt(high)}]" if np.isfinite(low) else ""
        return fmt(mean) + interval

    def block(frame: pd.DataFrame, heading: str) -> list[str]:
        names = _scenarios(frame)
        text = frame.assign(cell=frame.apply(cell, axis=1))
        wide = text.pivot(index="metric", columns="scenario", values="cell").reindex(frame["metric"].unique())
        wide = wide[names]
        metric_labels = [labels[m][0] if m in labels else _reason_label(m) for m in wide.index]
        width = max(len(x) for x in metric_labels) + 2
        cols = [max(len(n), *(len(v) for v in wide[n])) + 2 for n in names]
        lines = [heading, " " * width + "".join(n.rjust(w) for n, w in zip(names, cols, strict=True))]
        for label, (_, row) in zip(metric_labels, wide.iterrows(), strict=True):
            lines.append(label.ljust(width) + "".join(str(v).rjust(w) for v, w in zip(row, cols, strict=True)))
        return lines

    never = table.groupby("metric", sort=False)["mean"].apply(lambda m: bool((m == 0).all()))
    reasons = table["metric"].str.startswith((CAUSE_PREFIX, CATEGORY_PREFIX))
    table = table[~(reasons & table["metric"].map(never))]  # reasons never seen
    over = f" over {replicates} replicates" if replicates else ""
    lines = block(table, f"mean [95% CI{over}]")
    if differences is not None and len(differences):
        reference = table["scenario"].iloc[0]
        lines += ["", *block(differences, f"difference from {reference}, paired by replicate [95% CI]")]
    return "\n".join(lines)
