"""The comparison figure: retention, the alliance, ruptures, attendance, dropout causes and outcomes.

Six panels, each with one axis: scenarios keep one colour throughout (named once, in the legend
above the panels), dropout causes their colour from :data:`sim.display.CAUSE_COLOURS`, and every
label sits on its own line (scenario names on the y axis of horizontal bars), so six or more
scenarios with long names stay readable.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from analysis.compare import CAUSE_PREFIX, OUTCOME_BARS, alliance_curves, metric_label, retention_curves
from analysis.figures import alliance_axis, cause_order, plain_text
from sim.display import CAUSE_COLOURS, cause_label, shade_weeks, week_axis
from sim.weekly import MIN_CLIENTS


def scenario_colours(names: list[str]) -> dict[str, str]:
    """One colour per scenario, in the order given (matplotlib's default cycle)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _holiday_weeks(curves: pd.DataFrame) -> tuple[list[int], str]:
    """The weeks any scenario's therapists were away, and which scenarios that was."""
    away = curves[curves["holiday"]]
    names = list(dict.fromkeys(away["scenario"].astype(str)))
    label = f"therapist holiday ({', '.join(plain_text(n, 40) for n in names)})" if names else ""
    return sorted(set(away["week"].astype(int))), label


def _retention_panel(ax, clients: pd.DataFrame, colours: dict[str, str], weeks: int, holiday) -> None:
    curves = retention_curves(clients)
    shade_weeks(ax, holiday[0], holiday[1] or None)
    for name, colour in colours.items():
        c = curves[curves["scenario"] == name]
        ax.step(c["session"], 100 * c["survival"], where="post", color=colour)
        ax.fill_between(c["session"], 100 * c["ci_low"], 100 * c["ci_high"], step="post", color=colour, alpha=0.15)
    ax.set(ylabel="clients not dropped out (%)", ylim=(min(50, ax.get_ylim()[0]), 101))
    ax.set_title("Retention (Kaplan-Meier, 95% band; completion and\ngood-enough endings censored)", fontsize="medium")
    week_axis(ax, weeks)
    if holiday[0]:
        ax.legend(frameon=False, loc="lower left", fontsize="small")


def _alliance_panel(ax, curves: pd.DataFrame, colours: dict[str, str], weeks: int, holiday) -> None:
    def draw(a):
        shade_weeks(a, holiday[0], None)
        for name, colour in colours.items():
            c = curves[curves["scenario"] == name]
            a.plot(c["week"], c["mean"], color=colour, marker="o", ms=2.5, lw=1.3)
            a.fill_between(c["week"], c["ci_low"], c["ci_high"], color=colour, alpha=0.15, lw=0)

    week_axis(ax, weeks)
    alliance_axis(ax, draw, np.nanmin(curves["mean"], initial=np.inf), np.nanmax(curves["mean"], initial=-np.inf))
    ax.set_title("Working alliance: mean over clients attending, 95% CI over replicates", fontsize="medium")
    ax.legend(frameon=False, loc="upper left", fontsize="small")


def _rupture_panel(ax, curves: pd.DataFrame, colours: dict[str, str], weeks: int, holiday) -> None:
    shade_weeks(ax, holiday[0], None)
    for name, colour in colours.items():
        c = curves[curves["scenario"] == name]
        ax.plot(c["week"], c["ruptures_per_100"], color=colour, marker="v", ms=3, lw=1.2)
    ax.set_ylim(0, 1.1 * max(np.nanmax(curves["ruptures_per_100"], initial=1.0), 1.0))
    ax.set(ylabel="ruptures per 100 clients attending")
    ax.set_title("Ruptures week by week", fontsize="medium")
    week_axis(ax, weeks)


def _attending_panel(ax, curves: pd.DataFrame, colours: dict[str, str], weeks: int, holiday) -> None:
    shade_weeks(ax, holiday[0], None)
    for name, colour in colours.items():
        c = curves[curves["scenario"] == name]
        ax.plot(c["week"], c["attending"], color=colour, marker="o", ms=2.5, lw=1.2)
    ax.axhline(MIN_CLIENTS, color="black", ls="--", lw=0.8, label=f"{MIN_CLIENTS}: fewer, no mean drawn")
    ax.set_ylim(0, None)
    ax.set(ylabel="clients attending per cohort (n)")
    ax.set_title("Clients attending each week (the n of the means; none in a holiday)", fontsize="medium")
    ax.legend(frameon=False, loc="upper right", fontsize="small")
    week_axis(ax, weeks)


def _cause_panel(ax, table: pd.DataFrame, differences: pd.DataFrame, names: list[str]) -> None:
    causes = table[table["metric"].str.startswith(CAUSE_PREFIX)]
    share = causes.pivot(index="scenario", columns="metric", values="mean").reindex(names)
    share.columns = share.columns.str.removeprefix(CAUSE_PREFIX)
    present = cause_order(c for c in share.columns if share[c].fillna(0).gt(0).any())
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for cause in present:
        values = 100 * share[cause].fillna(0).to_numpy()
        ax.barh(y, values, left=left, color=CAUSE_COLOURS[cause], label=cause_label(cause), height=0.6)
        left += values
    total = table[table["metric"] == "dropout_rate"].set_index("scenario").reindex(names)
    err = 100 * np.abs(total[["ci_low", "ci_high"]].to_numpy().T - total["mean"].to_numpy())
    ax.errorbar(100 * total["mean"], y, xerr=err, fmt="none", ecolor="black", capsize=3, label="all dropout, 95% CI")
    diff = differences[differences["metric"] == "dropout_rate"].set_index("scenario")
    for yi, name in zip(y, names, strict=True):
        if name in diff.index:
            d = diff.loc[name]
            interval = f"[{100 * d['ci_low']:.1f}, {100 * d['ci_high']:.1f}]"
            text = f"{100 * d['difference']:+.1f} pp {interval} vs {d['reference']}"
            ax.annotate(text, (100 * total.loc[name, "ci_high"], yi), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize="x-small")  # fmt: skip
    ax.set_yticks(y, [plain_text(n, 40) for n in names], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.6 * max(np.nanmax(100 * total["ci_high"], initial=1.0), 1.0))
    ax.set_xlabel("dropped out (% of all clients)")
    ax.set_title("Why clients left: dropout by main reason (mean over replicates)", fontsize="medium")
    ax.legend(frameon=False, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=3)


def _outcome_panel(ax, table: pd.DataFrame, colours: dict[str, str]) -> None:
    names = list(colours)
    height = 0.8 / len(names)
    for i, name in enumerate(names):
        rows = table[table["scenario"] == name].set_index("metric").reindex(list(OUTCOME_BARS))
        mean = 100 * rows["mean"].to_numpy()
        err = 100 * np.abs(rows[["ci_low", "ci_high"]].to_numpy().T - rows["mean"].to_numpy())
        y = np.arange(len(OUTCOME_BARS)) + (i - (len(names) - 1) / 2) * height
        ax.barh(y, mean, height=height * 0.95, color=colours[name], xerr=err, capsize=2)
    labels = [textwrap.fill(metric_label(m)[0], 14) for m in OUTCOME_BARS]
    ax.set_yticks(range(len(OUTCOME_BARS)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of finished courses (recovery: of those at caseness at intake)")
    ax.set_title("Outcomes (mean, 95% CI over replicates)", fontsize="medium")


def compare_figure(
    clients: pd.DataFrame, weekly: pd.DataFrame, table: pd.DataFrame, differences: pd.DataFrame, title: str = ""
):
    """Six panels comparing scenarios.

    Args:
        clients, weekly: stacked tables with ``scenario`` and ``replicate`` columns (see
            :class:`sim.comparison.ComparisonResult`).
        table: the summary table from :func:`analysis.compare.summary_table`.
        differences: the paired differences (:func:`analysis.compare.paired_differences`), written
            beside the dropout bars.
        title: the figure's title, over the scenario legend at the top.

    Returns:
        A matplotlib Figure: Kaplan-Meier retention with 95% bands; the mean alliance of the clients
        attending on the whole WAI-SR range with a zoomed inset; ruptures per 100 clients attending;
        clients attending each week; dropout by cause per scenario with the difference from the
        reference; recovery, reliable improvement and reliable deterioration. Holiday weeks shaded.
    """
    names = list(dict.fromkeys(table["scenario"].astype(str)))
    colours = scenario_colours(names)
    curves = alliance_curves(weekly)
    weeks = int(weekly["week"].max())
    holiday = _holiday_weeks(curves)
    fig, axes = plt.subplots(3, 2, figsize=(13, 13.5), layout="constrained")
    _retention_panel(axes[0, 0], clients, colours, weeks, holiday)
    _alliance_panel(axes[0, 1], curves, colours, weeks, holiday)
    _rupture_panel(axes[1, 0], curves, colours, weeks, holiday)
    _attending_panel(axes[1, 1], curves, colours, weeks, holiday)
    _cause_panel(axes[2, 0], table, differences, names)
    _outcome_panel(axes[2, 1], table, colours)
    handles = [Line2D([], [], color=c, lw=6) for c in colours.values()]
    shown = [plain_text(n, 40) for n in names]
    fig.legend(
        handles,
        shown,
        loc="outside upper center",
        ncols=min(len(names), 4),
        frameon=False,
        title=plain_text(title, 160),
    )
    return fig
