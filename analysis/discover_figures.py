"""Figures of scenario discovery, each written as PNG and SVG by :func:`analysis.figures.save`.

The PRIM trade-off (coverage against density along each peeling trajectory), the chosen boxes'
limits on each parameter's sampled range, the extra-trees feature scores, and the sets on the two
most significant restricted parameters with the box drawn over them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figures import plt, save


def param_label(name: str) -> str:
    """A parameter's name with its unit from the registry, when it is a registry parameter."""
    from sim.parameters import REGISTRY

    param = REGISTRY.get(name)
    return f"{name} ({param.unit})" if param else name


def _question(d) -> str:
    return f"{d.output} {d.direction} {d.threshold:g}"


def tradeoff_figure(d):
    """Coverage against density of every step of each box's trajectory, the chosen step ringed."""
    boxes = sorted(d.peeling["box"].unique())
    fig, axes = plt.subplots(1, len(boxes), figsize=(5.2 * len(boxes), 4.4), squeeze=False, constrained_layout=True)
    most = int(d.peeling["restricted"].max())
    cmap = plt.get_cmap("viridis", most + 1)
    for ax, number in zip(axes[0], boxes, strict=True):
        steps = d.peeling[d.peeling["box"] == number]
        points = ax.scatter(
            steps["coverage"], steps["density"], c=steps["restricted"], cmap=cmap, vmin=-0.5, vmax=most + 0.5, s=18
        )
        chosen = steps[steps["chosen"]].iloc[0]
        ax.scatter(chosen["coverage"], chosen["density"], s=160, facecolors="none", edgecolors="C3", lw=1.6)
        ax.annotate(
            f"step {int(chosen['step'])}",
            (chosen["coverage"], chosen["density"]),
            xytext=(8, -14),
            textcoords="offset points",
            color="C3",
        )
        ax.axhline(d.min_density, color="grey", ls="--", lw=0.8, label=f"min density {d.min_density:g}")
        ax.set(
            xlim=(0, 1.02),
            ylim=(0, 1.02),
            xlabel="coverage (share of all cases of interest in the box)",
            ylabel="density (share of the box's sets that are cases)",
            title=f"box {number}: peeling trajectory",
        )
        ax.legend(frameon=False, loc="lower left")
    fig.colorbar(points, ax=axes[0, -1], ticks=range(most + 1), label="restricted parameters")
    fig.suptitle(f"PRIM trade-off: {_question(d)}")
    return fig


def box_figure(d):
    """Each chosen box's limits on its parameters' sampled ranges (0 = sampled low, 1 = sampled high)."""
    rows = d.boxes.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 1.3 + 0.55 * max(len(rows), 1)), constrained_layout=True)
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows.itertuples(index=False), strict=True):
        ax.barh(yi, 1.0, left=0.0, color="0.9", height=0.6)
        if r.kind == "choice":
            sampled = r.sampled.split(";")
            kept = set(r.categories.split(";"))
            width = 1.0 / len(sampled)
            for k, category in enumerate(sampled):
                if category in kept:
                    ax.barh(yi, width, left=k * width, color=f"C{int(r.box) - 1}", height=0.6)
            text = "{" + ", ".join(c for c in sampled if c in kept) + "}"
            qp = f"qp {r.qp_lower:.2g}"
        else:
            span = (r.sampled_high - r.sampled_low) or 1.0
            left, right = (r.lower - r.sampled_low) / span, (r.upper - r.sampled_low) / span
            ax.barh(yi, right - left, left=left, color=f"C{int(r.box) - 1}", height=0.6)
            text = f"{r.lower:.3g} .. {r.upper:.3g}"
            qps = [f"{q:.2g}" for q in (r.qp_lower, r.qp_upper) if np.isfinite(q)]
            qp = "qp " + " / ".join(qps)
        ax.text(1.02, yi, f"{text}   {qp}", va="center", fontsize=8)
    labels = [f"box {int(r.box)}: {param_label(r.parameter)}" for r in rows.itertuples(index=False)]
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1.6)
    ax.set_xticks([0, 0.5, 1], ["sampled low", "middle", "sampled high"])
    ax.set_xlabel("position in the sampled range (limits and quasi-p-values on the right)")
    ax.set_title(f"PRIM box limits: {_question(d)}")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


def features_figure(d):
    """Extra-trees importance of each parameter, for the cases of interest and for the output."""
    table = d.features.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 1.3 + 0.42 * len(table)), constrained_layout=True)
    y = np.arange(len(table))
    ax.barh(y + 0.2, table["importance_of_interest"], 0.4, label=f"cases of interest ({_question(d)})")
    ax.barh(y - 0.2, table["importance_output"], 0.4, label=f"{d.output} itself")
    ax.set_yticks(y, [param_label(p) for p in table["parameter"]])
    ax.set(xlabel="extra-trees importance (share of impurity reduction; each sums to 1)", title="Feature scores")
    ax.legend(frameon=False, loc="lower right")
    return fig


def _pair(d) -> list[str]:
    """The two numeric parameters to plot: the first box's most significant restrictions, then the top scores."""
    numeric = [c for c in d.x.columns if pd.api.types.is_numeric_dtype(d.x[c])]
    first = d.boxes[(d.boxes["box"] == 1) & (d.boxes["kind"] == "number")]
    ordered = list(first["parameter"]) + list(d.features["parameter"])
    return [p for p in dict.fromkeys(ordered) if p in numeric][:2]


def scatter_figure(d):
    """The sets on two parameters, cases of interest coloured, the first box drawn; None without two numbers."""
    pair = _pair(d)
    if len(pair) < 2:
        return None
    a, b = pair
    fig, ax = plt.subplots(figsize=(6.4, 5.2), constrained_layout=True)
    case = d.interest
    ax.scatter(d.x.loc[~case, a], d.x.loc[~case, b], s=8, color="0.7", label="other sets")
    ax.scatter(d.x.loc[case, a], d.x.loc[case, b], s=10, color="C3", label=f"{_question(d)}")
    limits = d.boxes[d.boxes["box"] == 1].set_index("parameter")

    def span(name):
        if name in limits.index:
            return limits.loc[name, "lower"], limits.loc[name, "upper"]
        return d.x[name].min(), d.x[name].max()

    (x0, x1), (y0, y1) = span(a), span(b)
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="k", lw=1.5, label="box 1"))
    ax.set(xlabel=param_label(a), ylabel=param_label(b), title="Parameter sets and the first PRIM box")
    ax.legend(frameon=False, loc="best", fontsize="small")
    return fig


def figures(d, out: Path) -> list[Path]:
    """Write every figure into ``out``; return the paths."""
    paths = []
    for stem, make in (
        ("tradeoff", tradeoff_figure),
        ("box_limits", box_figure),
        ("feature_scores", features_figure),
        ("scatter", scatter_figure),
    ):
        fig = make(d)
        if fig is not None:
            paths += save(fig, out, stem)
    return paths
