"""The validation forest plot: published band against simulated interval, one row a fact."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.figures import plain_text, plt, save
from analysis.targets import Target

# Facts grouped into panels by the scale their statistic lives on: axis label, no-effect line.
PANELS = (
    (("share", "share_within_first"), "share of clients (proportion)", None),
    (("pearson_r", "point_biserial"), "correlation (Pearson r)", 0.0),
    (("cohens_d",), "standardised mean difference (Cohen's d, pooled SD)", 0.0),
    (("icc",), "share of outcome variance between therapists (ICC)", None),
    (("odds_ratio",), "odds ratio of dropout (no feedback over feedback)", 1.0),
)
PASS_COLOUR, MISS_COLOUR, BAND_COLOUR = "#1b6ca8", "#c0392b", "#b9d7ea"


def forest_plot(table: pd.DataFrame, targets: Sequence[Target], out: Path, settings: dict) -> list[Path]:
    """Draw the forest plot and save it as validation_forest.png and .svg in ``out``.

    Args:
        table: the validation table (analysis.validate.COLUMNS).
        targets: the facts, for their statistics.
        out: the figures directory.
        settings: run settings (scenario, replicates, clients, seed) for the title.

    Returns:
        The paths written.
    """
    statistic = {t.id: t.statistic for t in targets}
    panels = []
    for stats, label, ref in PANELS:
        rows = table[table["fact"].map(statistic).isin(stats)]
        if len(rows):
            panels.append((rows, label, ref))
    heights = [len(rows) + 1.2 for rows, _, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8.5, 0.34 * sum(heights) + 1.2), gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    for ax, (rows, label, ref) in zip(axes[:, 0], panels, strict=True):
        _panel(ax, rows.reset_index(drop=True), label, ref)
    fig.suptitle(
        f"Simulated ({plain_text(settings['scenario'], 60)}, {settings['replicates']} replicates x "
        f"{settings['clients']} clients) "
        "against published bands",
        fontsize=10,
    )
    handles = [
        Patch(color=BAND_COLOUR, label="published band"),
        Line2D([], [], marker="D", ls="none", color="#333333", label="published value"),
        Line2D([], [], marker="o", color=PASS_COLOUR, label="simulated, 95% CI: pass"),
        Line2D([], [], marker="o", color=MISS_COLOUR, mfc="white", label="miss"),
        Line2D([], [], ls="none", label="(C) calibrated to, (V) validation only"),
    ]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=5,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.32 / fig.get_figheight()),
    )
    return save(fig, Path(out), "validation_forest")


def _panel(ax, rows: pd.DataFrame, label: str, ref: float | None) -> None:
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows.itertuples(index=False), strict=True):
        ax.barh(yi, row.band_high - row.band_low, left=row.band_low, height=0.6, color=BAND_COLOUR, zorder=1)
        ax.plot(row.published, yi, marker="D", ms=5, color="#333333", zorder=3, ls="none")
        colour = PASS_COLOUR if row.status == "pass" else MISS_COLOUR
        if np.isfinite(row.simulated):
            err = [[max(row.simulated - row.ci_low, 0.0)], [max(row.ci_high - row.simulated, 0.0)]]
            ax.errorbar(
                row.simulated,
                yi,
                xerr=err if np.all(np.isfinite(err)) else None,
                fmt="o",
                ms=5,
                color=colour,
                mfc=colour if row.status == "pass" else "white",
                capsize=3,
                zorder=4,
            )
    kind = {"calibration": "C", "validation": "V"}
    names = [f"{plain_text(r.fact.replace('_', ' '), 90)} ({kind[r.set]})" for r in rows.itertuples(index=False)]
    ax.set_yticks(y, names, fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(label, fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#dddddd", lw=0.6, zorder=0)
    if ref is not None:
        ax.axvline(ref, color="#888888", lw=0.8, zorder=0)
