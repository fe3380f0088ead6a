"""Figures of a sensitivity experiment, each written as PNG and SVG by :func:`analysis.figures.save`.

Index bar charts with intervals, Sobol S2 heatmaps, Morris mu*-sigma plots, grid heatmaps,
one-at-a-time ranges, output histograms and, for sweeps that stored them, per-session curves.
Convergence figures are :mod:`analysis.sensitivity_convergence`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.figures import plain_text, plt, save
from analysis.sensitivity import replicate_means
from sim.display import parameter_label

# Index columns drawn as bars, with their interval columns, per method.
BARS = {
    "sobol": [("S1", "S1_conf", "first order S1"), ("ST", "ST_conf", "total ST")],
    "fast": [("S1", "S1_conf", "first order S1"), ("ST", "ST_conf", "total ST")],
    "rbd_fast": [("S1", "S1_conf", "first order S1")],
    "delta": [("delta", "delta_conf", "delta"), ("S1", "S1_conf", "first order S1")],
}


def output_label(manifest: dict[str, Any], output: str) -> tuple[str, str]:
    """Label and unit of an output, from the manifest's metric table."""
    metrics = manifest.get("metrics")
    meta = metrics.get(output) if isinstance(metrics, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    return plain_text(meta.get("label", output.replace("_", " ")), 60), plain_text(meta.get("unit", ""), 40)


def _param_label(name: str) -> str:
    """A parameter's readable name (:func:`sim.display.parameter_label`) with its unit from the registry."""
    from sim.parameters import REGISTRY

    param = REGISTRY.get(name)
    return f"{parameter_label(name)} ({param.unit})" if param else plain_text(name, 50)


def index_bars(table: pd.DataFrame, bars: list[tuple[str, str, str]], title: str, xlabel: str):
    """Horizontal bars of each parameter's indices with interval whiskers, largest last index on top."""
    table = table.sort_values(bars[-1][0], ascending=True, na_position="first")
    n, k = len(table), len(bars)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * n * k), constrained_layout=True)
    y = np.arange(n)
    height = 0.8 / k
    for i, (col, conf, label) in enumerate(bars):
        ax.barh(y + (i - (k - 1) / 2) * height, table[col], height, xerr=table[conf], capsize=2, label=label)
    ax.set_yticks(y, [plain_text(parameter_label(p), 50) for p in table["parameter"]])
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel=xlabel, title=title)
    ax.legend(frameon=False, loc="lower right")
    return fig


def s2_heatmap(pairs: pd.DataFrame, names: list[str], title: str):
    """Sobol second-order indices S2 as a matrix over parameter pairs; values written where the interval excludes 0."""
    k = len(names)
    where = {n: i for i, n in enumerate(names)}
    s2, conf = np.full((k, k), np.nan), np.full((k, k), np.nan)
    for _, row in pairs.iterrows():
        i, j = where[row["parameter"]], where[row["parameter_2"]]
        s2[i, j], conf[i, j] = row["S2"], row["S2_conf"]
    size = 2.5 + 0.55 * k
    fig, ax = plt.subplots(figsize=(size + 1.5, size), constrained_layout=True)
    s2, conf = s2[:-1, 1:], conf[:-1, 1:]  # pairs i < j: the first column and the last row are empty
    # The colour scale spans at least 0.05 of the variance, so noise-sized pairs stay pale.
    top = max(float(np.nanmax(np.abs(s2))) if np.isfinite(s2).any() else 0.0, 0.05)
    image = ax.imshow(s2, cmap="RdBu_r", vmin=-top, vmax=top)
    # Values are written only where the interval excludes 0: the rest is noise, and ink there would hide the signal.
    for i, j in zip(*np.nonzero(np.abs(s2) > conf), strict=True):
        ax.text(j, i, f"{s2[i, j]:.3f}", ha="center", va="center", fontsize=7)
    labels = [plain_text(parameter_label(n), 40) for n in names]
    ax.set_xticks(range(k - 1), labels[1:], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k - 1), labels[:-1], fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="S2 (share of output variance)")
    ax.set_title(f"{title}\nsecond-order indices S2; values shown where the interval excludes 0", fontsize=10)
    return fig


CURVE_PANELS = (
    ("in_therapy", "clients still in therapy (%)", 100),
    ("retained", "clients not dropped out (%)", 100),
    ("attended", "clients attending (%)", 100),
    ("alliance", "mean alliance of those attending (WAI-SR, 12-60)", 1),
    ("phq9", "mean PHQ-9 of those attending (points, 0-27)", 1),
)


def curves_figure(curves: pd.DataFrame, title: str):
    """Per-session curves over the parameter sets: the median set and the 10-90% band (replicate means)."""
    means = curves.groupby(["set", "session"]).mean(numeric_only=True).reset_index()
    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(4 * len(CURVE_PANELS), 3.6), constrained_layout=True)
    for ax, (column, ylabel, scale) in zip(axes, CURVE_PANELS, strict=True):
        by = means.groupby("session")[column]
        low, mid, high = (by.quantile(q) * scale for q in (0.1, 0.5, 0.9))
        ax.fill_between(mid.index, low, high, color="C0", alpha=0.25, lw=0, label="10-90% of parameter sets")
        ax.plot(mid.index, mid, color="C0", label="median set")
        ax.set(xlabel="session (week)", ylabel=ylabel)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"{title}: per-session curves over {means['set'].nunique():,} parameter sets")
    return fig


def morris_plot(table: pd.DataFrame, title: str, unit: str):
    """Morris mu* against sigma, with mu* intervals and the sigma = mu* line."""
    fig, ax = plt.subplots(figsize=(7, 5.5), constrained_layout=True)
    ax.errorbar(table["mu_star"], table["sigma"], xerr=table["mu_star_conf"], fmt="o", ms=4, capsize=2)
    top = float(np.nanmax([table["mu_star"].max(), table["sigma"].max(), 0])) * 1.1 or 1.0
    ax.plot(
        [0, top], [0, top], color="grey", ls="--", lw=0.8, label="sigma = mu* (strong interaction or non-linearity)"
    )
    # Label the parameters that matter; the crowd near the origin would only overprint.
    labelled = table[table["mu_star"] >= 0.05 * table["mu_star"].max()]
    for _, row in labelled.iterrows():
        ax.annotate(
            plain_text(parameter_label(row["parameter"]), 50),
            (row["mu_star"], row["sigma"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel=f"mu* (mean |elementary effect|, {unit} per full parameter range)",
        ylabel=f"sigma (sd of elementary effects, {unit})",
        title=title,
    )
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    return fig


def grid_heatmap(sample: pd.DataFrame, names: list[str], Y: np.ndarray, title: str, label: str):
    """Mean output over the first two grid parameters (averaged over any others); a line for one."""
    frame = sample[names].assign(y=Y)
    fig, ax = plt.subplots(figsize=(6.5, 5.2), constrained_layout=True)
    if len(names) == 1:
        means = frame.groupby(names[0], sort=True)["y"].mean()
        ax.plot(means.index.astype(str) if means.index.dtype == object else means.index, means.to_numpy(), "o-")
        ax.set(xlabel=_param_label(names[0]), ylabel=label, title=title)
        return fig
    table = frame.groupby([names[1], names[0]], sort=True)["y"].mean().unstack(names[0])
    image = ax.imshow(table.to_numpy(), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(table.shape[1]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.columns])
    ax.set_yticks(range(table.shape[0]), [f"{v:g}" if isinstance(v, float) else str(v) for v in table.index])
    ax.tick_params(axis="x", labelrotation=45)
    fig.colorbar(image, ax=ax, label=label)
    more = f" (mean over {', '.join(names[2:])})" if len(names) > 2 else ""
    ax.set(xlabel=_param_label(names[0]), ylabel=_param_label(names[1]), title=title + more)
    return fig


def oat_ranges(table: pd.DataFrame, title: str, label: str):
    """One-at-a-time: the output's range over each parameter's levels, with the base value marked."""
    table = table.sort_values("effect_range")
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * len(table)), constrained_layout=True)
    y = np.arange(len(table))
    ax.barh(y, table["max"] - table["min"], left=table["min"], color="C0", alpha=0.7)
    ax.axvline(table["base"].iloc[0], color="k", lw=1, label="base value")
    ax.set_yticks(y, [plain_text(parameter_label(p), 50) for p in table["parameter"]])
    ax.set(xlabel=label, title=title)
    ax.legend(frameon=False)
    return fig


def histograms(manifest: dict[str, Any], means: dict[str, np.ndarray]):
    """Histograms of each output over the parameter sets, from its replicate means per set."""
    names = list(means)
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), constrained_layout=True, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        text, unit = output_label(manifest, name)
        values = means[name][np.isfinite(means[name])]
        if len(values):
            ax.hist(values, bins=_bins(values), color="C0")
        else:
            ax.text(0.5, 0.5, "no value in any parameter set", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel=f"{text} ({unit})" if unit else text, ylabel="parameter sets")
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"{plain_text(manifest['name'])}: outputs over {manifest['n_sets']:,} parameter sets")
    return fig


def _bins(values: np.ndarray, most: int = 30) -> int:
    """Histogram bins for ``values``: ``most``, or one when their range is too narrow to split (a float's width)."""
    try:
        np.histogram_bin_edges(values, bins=most)
    except ValueError:  # "Too many bins for data range": values that differ only in their last bits
        return 1
    return most


@dataclass(frozen=True)
class Figure:
    """A figure to draw: the file stem, the name of its drawing function in :data:`DRAWERS` and its arguments."""

    stem: str
    draw: str
    args: tuple


def figure_list(
    manifest: dict[str, Any],
    sample: pd.DataFrame,
    outputs: pd.DataFrame,
    table: pd.DataFrame,
    curves: pd.DataFrame | None = None,
    convergence: pd.DataFrame | None = None,
) -> list[Figure]:
    """Every figure of the experiment, not yet drawn, the costliest first."""
    from analysis.sensitivity_convergence import convergence_title

    method, spec = manifest["method"], manifest["spec"]
    names = manifest["problem"]["names"]
    means = {name: replicate_means(outputs, name, manifest["n_sets"])[0] for name in spec["outputs"]}
    heavy, light = [], [Figure("histograms", "histograms", (manifest, means))]
    if curves is not None and len(curves):
        light.append(Figure("curves", "curves_figure", (curves, plain_text(manifest["name"]))))
    for output in spec["outputs"]:
        text, unit = output_label(manifest, output)
        full = f"{text} ({unit})" if unit else text
        rows = table[table["output"] == output]
        pairs = rows[rows["parameter_2"].notna()] if "parameter_2" in rows else rows.iloc[:0]
        if "parameter_2" in rows:
            rows = rows[rows["parameter_2"].isna()]
        title = f"{plain_text(manifest['name'])}: {text}"
        noise = rows["noise_share"].iloc[0] if "noise_share" in rows and len(rows) else np.nan
        if np.isfinite(noise):
            title += f" (noise share {noise:.2f})"
        if convergence is not None and len(convergence) and output in set(convergence["output"]):
            rows_n = convergence[convergence["output"] == output]
            heavy.append(Figure(f"convergence_{output}", "convergence_figure", (rows_n, convergence_title(title))))
        if method in BARS:
            if rows[BARS[method][0][0]].isna().all():
                continue
            share = "share of output variance" if method != "delta" else "index"
            light.append(
                Figure(f"{method}_{output}", "index_bars", (rows, BARS[method], title, f"{method} index ({share})"))
            )
            if len(pairs) and pairs["S2"].notna().any():
                heavy.append(Figure(f"sobol_s2_{output}", "s2_heatmap", (pairs, names, title)))
        elif method == "morris":
            if not rows["mu_star"].isna().all():
                light.append(Figure(f"morris_{output}", "morris_plot", (rows, title, unit or "output units")))
        elif method == "grid":
            if not np.isnan(means[output]).all():
                light.append(
                    Figure(f"grid_{output}", "grid_heatmap", (sample[names], names, means[output], title, full))
                )
        elif not rows["effect_range"].isna().all():
            light.append(Figure(f"oat_{output}", "oat_ranges", (rows, title, full)))
    return heavy + light


def draw(figure: Figure, out: Path) -> list[Path]:
    """Draw one figure and write it as PNG and SVG into ``out``; return the paths."""
    from analysis.sensitivity_convergence import convergence_figure

    drawers = {
        "histograms": histograms,
        "curves_figure": curves_figure,
        "index_bars": index_bars,
        "s2_heatmap": s2_heatmap,
        "morris_plot": morris_plot,
        "grid_heatmap": grid_heatmap,
        "oat_ranges": oat_ranges,
        "convergence_figure": convergence_figure,
    }
    return save(drawers[figure.draw](*figure.args), out, figure.stem)


PARALLEL_FROM = 12  # figures from which drawing them in worker processes pays for the workers' start


def render(figures: list[Figure], out: Path, pool=None) -> list[Path]:
    """Draw every figure into ``out``, on ``pool``'s workers when there are many; return the paths.

    Drawing and writing a figure costs about half a second, most of it in matplotlib's renderers, so a
    Sobol sweep's 20-odd figures are worth drawing on several cores. ``pool`` is an entered executor
    of :mod:`experiments.executors` (None: this process). The files are the same bytes whichever
    process writes them.
    """
    if pool is None or len(figures) < PARALLEL_FROM:
        return [path for figure in figures for path in draw(figure, out)]
    from functools import partial

    from experiments.executors import ordered_map

    out.mkdir(parents=True, exist_ok=True)
    return [path for paths in ordered_map(pool, partial(draw, out=out), figures) for path in paths]
