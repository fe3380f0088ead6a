"""Statistics for comparing scenarios: retention, the alliance week by week, dropout causes, outcome rates.

Pure functions over the stacked tables of :class:`sim.comparison.ComparisonResult` (a ``scenario``
and a ``replicate`` column in front of the usual output columns). Intervals are over replicates
(:func:`analysis.estimators.mean_ci`), except the Kaplan-Meier band, which is Greenwood's over the
clients of all replicates pooled (independent cohorts of one population). Differences between
scenarios are paired by replicate: each replicate runs every scenario on the same random draws.
The text table (:func:`format_table`) fits 100 columns whatever the number of scenarios; the CSV
(:func:`csv_table`) gives shares in percent and their differences in percentage points.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from analysis.estimators import kaplan_meier, mean_ci
from sim.display import cause_label
from sim.dynamics import DROPOUT_CAUSES
from sim.outcomes import METRICS
from sim.reasons import CATEGORIES
from sim.weekly import MIN_CLIENTS

CAUSES = tuple(c for c in DROPOUT_CAUSES if c)
CAUSE_PREFIX = "dropout_cause:"
CATEGORY_PREFIX = "dropout_category:"
REASON_PREFIXES = (CAUSE_PREFIX, CATEGORY_PREFIX)
TABLE_COLUMNS = ["metric", "scenario", "mean", "ci_low", "ci_high"]
DIFFERENCE_COLUMNS = ["metric", "scenario", "reference", "difference", "ci_low", "ci_high"]
CSV_COLUMNS = ["metric", "label", "unit", "scenario", "reference", "mean", "difference", "ci_low", "ci_high"]
OUTCOME_BARS = ("recovery_rate", "reliable_improvement_rate", "reliable_deterioration_rate")
TEXT_WIDTH = 100  # a terminal, or a projected slide, of 100 columns
_METRICS = {m.name: m for m in METRICS}


def scenario_names(table: pd.DataFrame) -> list[str]:
    """The scenarios of a stacked table, in the order they were given."""
    column = table["scenario"]
    return list(column.cat.categories) if isinstance(column.dtype, pd.CategoricalDtype) else list(column.unique())


def is_share(metric: str) -> bool:
    """Whether a metric is a share (0-1): shown in percent, its differences in percentage points."""
    return metric.startswith(REASON_PREFIXES) or _METRICS[metric].unit.startswith("share")


def metric_label(metric: str) -> tuple[str, str]:
    """A metric's label and the unit it is shown in: ``("dropout", "% of clients")``."""
    if metric.startswith(CATEGORY_PREFIX):
        return "dropout, " + metric.removeprefix(CATEGORY_PREFIX), "% of clients"
    if metric.startswith(CAUSE_PREFIX):
        return "dropout: " + cause_label(metric.removeprefix(CAUSE_PREFIX)), "% of clients"
    m = _METRICS[metric]
    if not is_share(metric):
        return m.label, m.unit
    return m.label, "%" if m.unit == "share" else "% of " + m.unit.removeprefix("share of ")


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


def replicate_values(metrics: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """Every compared quantity per scenario and replicate: the cohort metrics, then the reason shares.

    Returns:
        Indexed by (scenario, replicate); columns the :data:`sim.outcomes.METRICS` names, then
        ``dropout_cause:<reason>`` for each main reason and ``dropout_category:<category>`` for each
        category of it (shares of all clients).
    """
    wide = metrics.set_index(["scenario", "replicate"])[[m.name for m in METRICS]]
    reasons = cause_shares(clients).add_prefix(CAUSE_PREFIX)
    categories = cause_shares(clients, "dropout_category", CATEGORIES).add_prefix(CATEGORY_PREFIX)
    return wide.join(reasons).join(categories)


def summary_table(metrics: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """Each cohort metric and dropout cause share per scenario, mean over replicates with 95% CI.

    Args:
        metrics: one row per scenario and replicate with the :data:`sim.outcomes.METRICS` columns.
        clients: the stacked clients table (for the dropout causes).

    Returns:
        Columns ``metric, scenario, mean, ci_low, ci_high``; metrics in :data:`METRICS` order, then
        ``dropout_cause:<reason>`` and ``dropout_category:<category>`` rows (share of all clients
        who dropped out with that main reason, or a main reason of that category), shares on 0-1.
    """
    values = replicate_values(metrics, clients)
    rows = []
    for metric in values.columns:
        low, high = (0.0, 1.0) if is_share(metric) else (_METRICS[metric].low, _METRICS[metric].high)
        for name in scenario_names(metrics):
            rows.append({"metric": metric, "scenario": name, **_interval(values.loc[name, metric], low, high)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def comparison_pairs(names: list[str], reference: str | None = None, pairs=None) -> list[tuple[str, str]]:
    """Which differences to report, as (scenario, reference) pairs.

    Args:
        names: the scenarios compared.
        reference: every other scenario is compared with this one (default the first).
        pairs: (reference, scenario) pairs instead, e.g. ``[("cultural_mismatch",
            "cultural_mismatch_humility")]``: each scenario is compared with its own partner.

    Raises:
        ValueError: a name that is not among ``names``, or a scenario paired with itself.
    """
    if pairs:
        out = [(scenario, ref) for ref, scenario in pairs]
    else:
        reference = names[0] if reference is None else reference
        out = [(name, reference) for name in names if name != reference]
    for scenario, ref in out:
        for name in (scenario, ref):
            if name not in names:
                compared = ", ".join(names)
                raise ValueError(f"{name!r} is not one of the scenarios compared ({compared}): name one of them.")
        if scenario == ref:
            raise ValueError(f"{scenario!r} is paired with itself: pair two different scenarios.")
    return out


def paired_differences(values: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Scenario minus reference for every quantity, paired by replicate (common random numbers), with 95% CI.

    Pairing removes the variation the scenarios share (the same clients, therapists and luck), so
    these intervals are much narrower than the difference of two independent intervals.

    Args:
        values: as from :func:`replicate_values` (or the metrics table indexed by scenario and replicate).
        pairs: (scenario, reference) pairs, as from :func:`comparison_pairs`.

    Returns:
        Columns ``metric, scenario, reference, difference, ci_low, ci_high``, on the metrics' own
        scales (shares on 0-1).
    """
    rows = []
    for metric in values.columns:
        for scenario, reference in pairs:
            diff = values.loc[scenario, metric] - values.loc[reference, metric]
            ci = _interval(diff)
            rows.append(
                {"metric": metric, "scenario": scenario, "reference": reference, "difference": ci["mean"]}
                | {"ci_low": ci["ci_low"], "ci_high": ci["ci_high"]}
            )
    return pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)


def csv_table(table: pd.DataFrame, differences: pd.DataFrame) -> pd.DataFrame:
    """The comparison in long format, as compare.csv holds it.

    One row per metric and scenario with its mean (``reference`` empty), then one row per metric
    and compared pair with the paired difference (``mean`` empty). Shares are in percent and their
    differences in percentage points; ``unit`` says which. ``ci_low`` and ``ci_high`` bound the
    row's estimate (95% over replicates).
    """
    frames = []
    for frame, kind in ((table, "mean"), (differences, "difference")):
        frame = frame.copy()
        scale = np.where(frame["metric"].map(is_share), 100.0, 1.0)
        for col in (kind, "ci_low", "ci_high"):
            frame[col] = frame[col] * scale
        labels = frame["metric"].map(metric_label)
        frame["label"] = labels.str[0]
        frame["unit"] = labels.str[1]
        if kind == "difference":
            frame.loc[frame["metric"].map(is_share), "unit"] = "percentage points"
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["reference"] = out["reference"].fillna("")
    return out.reindex(columns=CSV_COLUMNS)


def retention_curves(clients: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier retention per scenario: dropout is the event, other endings are censored.

    Returns:
        Columns ``scenario, session, survival, ci_low, ci_high``: the step function from session 0
        (everyone retained) with its pointwise band, clients of all replicates pooled.
    """
    frames = []
    for name in scenario_names(clients):
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


def alliance_curves(weekly: pd.DataFrame, min_clients: int = MIN_CLIENTS) -> pd.DataFrame:
    """Mean alliance of the clients attending, ruptures and attendance, per scenario and week.

    Args:
        weekly: one row per scenario, replicate and week with the :func:`sim.weekly.weekly_curves`
            columns (:attr:`sim.comparison.ComparisonResult.weekly`).
        min_clients: fewest clients attending per cohort, on average over replicates, for a mean.

    Returns:
        Columns ``scenario, week, mean, ci_low, ci_high`` (WAI-SR 12-60: the mean over replicates
        of each cohort's mean over the clients attending, with its 95% interval; NaN where fewer
        than ``min_clients`` attended), ``attending`` (clients attending per cohort, mean over
        replicates; NaN in a holiday and after the last course ended), ``ruptures_per_100``
        (ruptures per 100 clients attending) and ``holiday``.
    """
    frames = []
    for name in scenario_names(weekly):
        rows = weekly[weekly["scenario"] == name]
        by_week = rows.pivot(index="replicate", columns="week", values="alliance")
        ci = mean_ci(by_week.to_numpy(), axis=0)
        per_week = rows.groupby("week")
        # No line through a holiday (nobody is seen) or past the end of a scenario's courses.
        held = (per_week["in_therapy"].sum() > 0) & ~per_week["holiday"].any()
        attending = per_week["attending"].mean().where(held)
        with np.errstate(invalid="ignore", divide="ignore"):
            ruptures = 100.0 * per_week["ruptures"].sum() / per_week["attending"].sum()
        sparse = ~(attending >= min_clients).to_numpy()
        frames.append(
            pd.DataFrame(
                {
                    "scenario": name,
                    "week": by_week.columns.to_numpy(),
                    "mean": np.where(sparse, np.nan, ci.mean),
                    "ci_low": np.where(sparse, np.nan, ci.low),
                    "ci_high": np.where(sparse, np.nan, ci.high),
                    "attending": attending.to_numpy(),
                    "ruptures_per_100": np.where(sparse, np.nan, ruptures.to_numpy()),
                    "holiday": per_week["holiday"].any().to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# ── the table as text ────────────────────────────────────────────────────────────────────────────


def wrap_name(name: str, width: int) -> list[str]:
    """A scenario name in lines of at most ``width``, broken before its underscores where it can."""
    lines: list[str] = []
    for i, part in enumerate(name.split("_")):
        piece = f"_{part}" if i else part
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines += textwrap.wrap(piece, width, break_on_hyphens=False) or [piece]
    return lines


# Units as the text table writes them after a label (the label already says "sessions", "ruptures").
TEXT_UNITS = {"mean_sessions": "", "mean_alliance": "WAI-SR", "alliance_outcome_r": "", "mean_change": "points"}
TEXT_DIGITS = {"alliance_outcome_r": 2, "ruptures_per_client": 2}  # one decimal otherwise
SHARE_NOTE = (
    "Shares: dropout, its main reasons and their categories of all clients; recovery of finished courses at "
    "caseness at intake; reliable improvement and deterioration of finished courses (2 or more sessions)."
)


def _text_label(metric: str, share_unit: str) -> str:
    if is_share(metric):
        return f"{metric_label(metric)[0]} ({share_unit})"
    unit = TEXT_UNITS.get(metric, metric_label(metric)[1])
    return f"{metric_label(metric)[0]} ({unit})" if unit else metric_label(metric)[0]


def _cell(metric: str, estimate: float, low: float, high: float, signed: bool) -> str:
    """``22.2 [17.0, 27.5]``; signed: ``+5.9 [1.2, 10.6]`` (the sign on the estimate alone)."""
    if not np.isfinite(estimate):
        return "n/a"
    scale = 100.0 if is_share(metric) else 1.0
    digits = TEXT_DIGITS.get(metric, 1)
    text = f"{scale * estimate:{'+' if signed else ''}.{digits}f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return text


def _grid(labels: list[str], headers: list[tuple[str, ...]], cells: list[list[str]], width: int) -> list[str]:
    """Rows of labels by columns of cells, in as many blocks of columns as ``width`` needs.

    Each header is one or more names, wrapped to the column; a second name reads "minus <name>".
    """
    col_width = max(12, *(len(c) for column in cells for c in column)) + 2
    # Labels as long as three columns per block allow (never below 26 characters); longer ones wrap.
    label_width = min(max(len(x) for x in labels) + 2, max(26, width - 3 * col_width), max(12, width - col_width))
    per_block = max(1, (width - label_width) // col_width)
    lines: list[str] = []
    for start in range(0, len(headers), per_block):
        block = range(start, min(start + per_block, len(headers)))
        heads = [
            [line for k, name in enumerate(headers[j]) for line in wrap_name("minus " * (k > 0) + name, col_width - 2)]
            for j in block
        ]
        depth = max(len(h) for h in heads)
        if start:
            lines.append("")
        for k in range(depth):
            lines.append(" " * label_width + "".join((h[k] if k < len(h) else "").rjust(col_width) for h in heads))
        for i, label in enumerate(labels):
            wrapped = textwrap.wrap(label, label_width - 2) or [""]
            for extra in wrapped[:-1]:
                lines.append(extra)
            lines.append(wrapped[-1].ljust(label_width) + "".join(cells[j][i].rjust(col_width) for j in block))
    return lines


def format_table(
    table: pd.DataFrame,
    differences: pd.DataFrame | None = None,
    replicates: int | None = None,
    width: int = TEXT_WIDTH,
) -> str:
    """The comparison as text no wider than ``width``: each scenario's mean [95% CI], then paired differences.

    Args:
        table: as from :func:`summary_table`; dropout causes that no scenario shows are left out.
        differences: as from :func:`paired_differences`, printed below, or None.
        replicates: the number of replicates, for the heading.
        width: the widest line; with many scenarios the columns continue in further blocks.
    """
    seen = table.groupby("metric", sort=False)["mean"].apply(lambda m: bool((m != 0).any()))
    keep = [m for m in table["metric"].unique() if not m.startswith(REASON_PREFIXES) or seen[m]]

    names = scenario_names(table)
    by = table.set_index(["metric", "scenario"])
    cells = [[_cell(m, *by.loc[(m, n), ["mean", "ci_low", "ci_high"]], signed=False) for m in keep] for n in names]
    over = f" over {replicates} replicates" if replicates else ""
    headers = [(name,) for name in names]
    lines = [
        *textwrap.wrap(f"mean [95% CI{over}]", width),
        *_grid([_text_label(m, "%") for m in keep], headers, cells, width),
    ]
    if differences is not None and len(differences):
        pairs = list(dict.fromkeys(zip(differences["scenario"], differences["reference"], strict=True)))
        references = {ref for _, ref in pairs}
        single = len(references) == 1
        heading = f"difference from {pairs[0][1]}" if single else "differences between paired scenarios"
        headers = [(s,) if single else (s, r) for s, r in pairs]
        diff = differences.set_index(["metric", "scenario", "reference"])
        cells = [
            [_cell(m, *diff.loc[(m, s, r), ["difference", "ci_low", "ci_high"]], signed=True) for m in keep]
            for s, r in pairs
        ]
        lines += [
            "",
            *textwrap.wrap(f"{heading}, paired by replicate [95% CI]; pp: percentage points", width),
            *_grid([_text_label(m, "pp") for m in keep], headers, cells, width),
        ]
    lines += ["", *textwrap.wrap(SHARE_NOTE, width)]
    return "\n".join(line.rstrip() for line in lines)
