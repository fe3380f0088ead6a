"""Convergence of Sobol' indices over the sample size, from the stored runs of one sweep.

Saltelli's sample for N base points is exactly the first N (2D + 2) parameter sets (N (D + 2)
without second order) of the sample for any larger power of two drawn with the same seed: SALib draws
it from scipy's scrambled Sobol' sequence, whose points nest. The indices at N/4 and N/2 therefore
come from the first sets of the runs already stored, with no new run, and ``--extend`` can add sets
to a finished sweep. Indices that still move between N/2 and N, beyond their interval, say that N is
too small to read them (Sarrazin, Pianosi & Wagener 2016, Environ. Model. Softw. 79, 135-152,
doi:10.1016/j.envsoft.2016.02.005).

S1 and ST at each size are SALib's estimators on the first sets (S2 left out, so the smaller sizes cost
a fraction of the full analysis); at each size they equal the indices of a run of that N from scratch,
and at N those in indices.csv.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.figures import plain_text, plt
from analysis.sensitivity import analysis_seed, constant_value, replicate_means
from sim.display import parameter_label

DIVISORS = (4, 2, 1)  # indices at N/4, N/2 and N
SMALLEST = 4  # base points below which no index is estimated
MOVED = 0.05  # an index that moves more than this (and more than its interval) between N/2 and N is flagged


def sizes(N: int) -> list[int]:
    """The base sample sizes indices are computed at: N/4, N/2 and N, those of at least :data:`SMALLEST`."""
    return [N // d for d in DIVISORS if N // d >= SMALLEST and N % d == 0]


def first_and_total(Y: np.ndarray, n: int, D: int, second_order: bool, options: dict, seed: int) -> dict:
    """S1 and ST with bootstrap intervals from the first ``n`` base points of a Saltelli sample's outputs.

    Exactly what SALib's ``sobol.analyze`` gives for a sample of N = n from scratch, S2 left out
    (:func:`analysis.sobol_estimators.analyze` on the first ``n * step`` outputs).

    Args:
        Y: the outputs of the whole sample, shape (N * step,), step = 2D + 2 with second order, D + 2 without.
        n: base points to use.
        D: number of factors.
        second_order: whether the sample holds the BA blocks.
        options: ``num_resamples`` and ``conf_level``.
        seed: the analysis seed (:func:`analysis.sensitivity.analysis_seed`).
    """
    from analysis.sobol_estimators import analyze

    step = 2 * D + 2 if second_order else D + 2
    problem = {"names": [f"x{j}" for j in range(D)]}
    res = analyze(
        problem, Y[: n * step], second_order, options["num_resamples"], options["conf_level"], seed, pairs=False
    )
    return {key: np.asarray(res[key]) for key in ("S1", "S1_conf", "ST", "ST_conf")}


def convergence(manifest: dict[str, Any], outputs: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """S1 and ST with their intervals at N/4, N/2 and N for every analysed output that has values everywhere.

    Args:
        manifest: the run's manifest, as the analysis reads it.
        outputs: the stored outputs.
        table: the indices at N (indices.csv), taken as they are rather than computed again: the same
            estimator and bootstrap on the same runs gives the same numbers.

    Returns:
        One row per (output, N, parameter): columns output, N, parameter, S1, S1_conf, ST, ST_conf.
        Empty for a method other than sobol or an N too small to divide.
    """
    spec = manifest["spec"]
    if manifest["method"] != "sobol" or not spec.get("N"):
        return pd.DataFrame()
    problem, options = manifest["problem"], spec["options"]
    D, second = len(problem["names"]), bool(options["calc_second_order"])
    seed = analysis_seed(spec["seed"])
    tables = []
    for output in spec["outputs"]:
        Y, _ = replicate_means(outputs, output, manifest["n_sets"])
        if np.isnan(Y).any() or constant_value(Y) is not None:
            continue  # its indices are empty; a warning already says why
        for n in sizes(int(spec["N"])):
            if n == spec["N"] and table is not None:
                rows = table[
                    (table["output"] == output) & table.get("parameter_2", pd.Series(index=table.index)).isna()
                ]
                tables.append(rows[["parameter", "S1", "S1_conf", "ST", "ST_conf"]].assign(output=output, N=n))
                continue
            with np.errstate(all="ignore"):  # a degenerate resample gives NaN, as in SALib
                indices = first_and_total(Y, n, D, second, options, seed)
            tables.append(pd.DataFrame({"parameter": problem["names"], **indices}).assign(output=output, N=n))
    if not tables:
        return pd.DataFrame()
    frame = pd.concat(tables, ignore_index=True)
    return frame[["output", "N", "parameter", "S1", "S1_conf", "ST", "ST_conf"]]


def unsettled(table: pd.DataFrame) -> list[str]:
    """Warnings for indices that moved between N/2 and N by more than :data:`MOVED` and their interval at N."""
    if table.empty or table["N"].nunique() < 2:
        return []
    messages = []
    top, half = table["N"].max(), sorted(table["N"].unique())[-2]
    for output, rows in table.groupby("output", sort=False):
        now = rows[rows["N"] == top].set_index("parameter")
        before = rows[rows["N"] == half].set_index("parameter")
        moved = []
        for index in ("S1", "ST"):
            change = (now[index] - before[index]).abs()
            hit = change[(change > MOVED) & (change > now[f"{index}_conf"])]
            moved += [f"{index} of {p}: {before.loc[p, index]:.3f} -> {now.loc[p, index]:.3f}" for p in hit.index]
        if moved:
            messages.append(
                f"{output}: indices still move between N = {half} and N = {top} ({'; '.join(moved[:3])}"
                f"{'; ...' if len(moved) > 3 else ''}); they have not converged: extend the run "
                f"(python -m experiments run SPEC --extend {2 * top})."
            )
    return messages


def convergence_figure(rows: pd.DataFrame, title: str):
    """S1 and ST of every parameter against N (equally spaced: N doubles), with their intervals."""
    order = rows[rows["N"] == rows["N"].max()].sort_values("ST", ascending=False)["parameter"].tolist()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True, sharey=True)
    colours = plt.get_cmap("tab20")
    steps = sorted(rows["N"].unique())
    where = {n: i for i, n in enumerate(steps)}  # N doubles from one step to the next: equal spacing is log2 N
    for ax, index in zip(axes, ("S1", "ST"), strict=True):
        for k, name in enumerate(order):
            line = rows[rows["parameter"] == name].sort_values("N")
            x = line["N"].map(where).to_numpy() + 0.012 * (k - len(order) / 2)  # whiskers side by side
            ax.errorbar(
                x,
                line[index],
                yerr=line[f"{index}_conf"],
                marker="o",
                ms=3,
                color=colours(k % 20),
                label=plain_text(parameter_label(name), 40),
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(steps)), [str(n) for n in steps])
        ax.set_xlim(-0.3, len(steps) - 0.7)
        ax.set(xlabel="N (base sample size)", title=f"{index} ({'first order' if index == 'S1' else 'total'})")
    axes[0].set_ylabel("index (share of output variance)")
    axes[1].legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    return fig


def convergence_title(title: str) -> str:
    """The title of an output's convergence figure, from the title of its index figure."""
    return f"{title}: convergence over N"
