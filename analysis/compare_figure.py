"""The comparison figure: retention, alliance with ruptures, dropout causes and outcomes, side by side."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from analysis.compare import CAUSE_PREFIX, CAUSES, OUTCOME_BARS, alliance_curves, retention_curves
from analysis.figures import plain_text
from sim.reasons import REASON_COLOURS

OUTCOME_LABELS = {
    "recovery_rate": "recovery",
    "reliable_improvement_rate": "reliable\nimprovement",
    "reliable_deterioration_rate": "reliable\ndeterioration",
}
CAUSE_COLORS = REASON_COLOURS


def _names(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["scenario"].astype(str)))


def _retention_panel(ax, clients: pd.DataFrame, names: list[str]) -> None:
    curves = retention_curves(clients)
    for i, name in enumerate(names):
        c = curves[curves["scenario"] == name]
        ax.step(c["session"], 100 * c["survival"], where="post", color=f"C{i}", label=plain_text(name, 40))
        ax.fill_between(c["session"], 100 * c["ci_low"], 100 * c["ci_high"], step="post", color=f"C{i}", alpha=0.2)
    ax.set(
        xlabel="weekly session slot",
        ylabel="clients not dropped out (%)",
        title="Retention (Kaplan-Meier, 95% band)",
        ylim=(min(50, ax.get_ylim()[0]), 101),
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, loc="lower left", title="completion and good-enough\nendings censored")


def _alliance_panel(ax, sessions: pd.DataFrame, names: list[str]) -> None:
    curves = alliance_curves(sessions)
    rate_ax = ax.twinx()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        c = curves[curves["scenario"] == name]
        ax.plot(
            c["session"], c["mean"], color=f"C{i}", marker="o", ms=3, label=f"{plain_text(name, 40)}: mean alliance"
        )
        ax.fill_between(c["session"], c["ci_low"], c["ci_high"], color=f"C{i}", alpha=0.2)
        offset = (i - (len(names) - 1) / 2) * width
        rate_ax.bar(c["session"] + offset, c["ruptures_per_100"], width=width, color=f"C{i}", alpha=0.45)
    top = np.nanmax(curves["ruptures_per_100"]) if len(curves) else 1.0
    rate_ax.set_ylim(0, 4 * max(top, 1e-9))  # rupture bars fill the lower quarter of the panel
    rate_ax.set_ylabel("ruptures per 100 clients in therapy (bars)")
    low, high = np.nanmin(curves["ci_low"]), np.nanmax(curves["ci_high"])
    span = max(high - low, 1.0)
    ax.set_ylim(low - 1.6 * span, high + 0.1 * span)  # the line sits in the upper part, above the bars
    ax.set_yticks([t for t in ax.get_yticks() if low - 0.5 <= t <= high + 0.5])  # no alliance ticks beside the bars
    ax.set(xlabel="weekly session slot", ylabel="mean alliance at attended sessions (WAI-SR, 12-60)")
    ax.set_title("Working alliance (mean, 95% CI over replicates) and ruptures")
    ax.set_zorder(rate_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, _ = ax.get_legend_handles_labels()
    bars = Patch(color="grey", alpha=0.45, label="ruptures per 100 clients (bars, right axis)")
    ax.legend(handles=[*handles, bars], frameon=False, loc="center right", fontsize="small")


def _cause_panel(ax, table: pd.DataFrame, names: list[str]) -> None:
    causes = table[table["metric"].str.startswith(CAUSE_PREFIX)]
    share = causes.pivot(index="scenario", columns="metric", values="mean").reindex(names)
    share.columns = share.columns.str.removeprefix(CAUSE_PREFIX)
    bottom = np.zeros(len(names))
    for cause in CAUSES:
        values = 100 * share[cause].fillna(0).to_numpy()
        if not values.any():
            continue
        ax.bar(names, values, bottom=bottom, color=CAUSE_COLORS[cause], label=cause.replace("_", " "), width=0.6)
        bottom += values
    total = table[table["metric"] == "dropout_rate"].set_index("scenario").reindex(names)
    err = 100 * np.abs(total[["ci_low", "ci_high"]].to_numpy().T - total["mean"].to_numpy())
    ax.errorbar(
        names, 100 * total["mean"], yerr=err, fmt="none", ecolor="black", capsize=4, label="all dropout, 95% CI"
    )
    ax.set_xticks(range(len(names)), [_wrapped(plain_text(name, 40)) for name in names])
    ax.set(ylabel="dropped out (% of all clients)", title="Dropout by main reason (mean over replicates)")
    ax.set_ylim(0, 1.45 * max(bottom.max(), 1.0))
    ax.legend(frameon=False, fontsize="small", ncols=2, loc="upper left")


def _wrapped(name: str, width: int = 14) -> str:
    """A long scenario name broken after its underscores, so neighbouring tick labels do not collide."""
    lines, line = [], ""
    for part in name.split("_"):
        piece = part if not line else f"_{part}"
        if line and len(line) + len(piece) > width:
            lines.append(line + "_")
            line = part
        else:
            line += piece
    return "\n".join([*lines, line])


def _outcome_panel(ax, table: pd.DataFrame, names: list[str]) -> None:
    x = np.arange(len(OUTCOME_BARS))
    width = 0.8 / len(names)
    top = 0.0
    for i, name in enumerate(names):
        rows = table[table["scenario"] == name].set_index("metric").reindex(list(OUTCOME_BARS))
        mean = 100 * rows["mean"].to_numpy()
        err = 100 * np.abs(rows[["ci_low", "ci_high"]].to_numpy().T - rows["mean"].to_numpy())
        offset = (i - (len(names) - 1) / 2) * width
        ax.bar(x + offset, mean, width=width, color=f"C{i}", label=plain_text(name, 40), yerr=err, capsize=3)
        top = max(top, np.nanmax(100 * rows[["mean", "ci_high"]].to_numpy()))
    ax.set_ylim(0, 1.1 * top + 4 * len(names))  # room for the legend above the bars
    ax.set_xticks(x, [OUTCOME_LABELS[m] for m in OUTCOME_BARS])
    ax.set(
        ylabel="% of finished courses (recovery: of those at caseness)", title="Outcomes (mean, 95% CI over replicates)"
    )
    ax.legend(frameon=False, loc="upper right")


def compare_figure(clients: pd.DataFrame, sessions: pd.DataFrame, table: pd.DataFrame, title: str = ""):
    """Four panels comparing scenarios.

    Args:
        clients, sessions: stacked tables with ``scenario`` and ``replicate`` columns (see
            :class:`sim.comparison.ComparisonResult`).
        table: the summary table from :func:`analysis.compare.summary_table`.
        title: the figure's title.

    Returns:
        A matplotlib Figure: Kaplan-Meier retention with 95% bands; mean alliance by session with
        95% bands and rupture rates as bars; dropout causes stacked per scenario; recovery, reliable
        improvement and reliable deterioration with intervals over replicates.
    """
    names = _names(table)
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5), constrained_layout=True)
    _retention_panel(axes[0, 0], clients, names)
    _alliance_panel(axes[0, 1], sessions, names)
    _cause_panel(axes[1, 0], table, names)
    _outcome_panel(axes[1, 1], table, names)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(plain_text(title, 450), 150)))
    return fig
