"""The browser app's charts: plain functions of a model and, optionally, the previous cohort (the ghost).

Each chart draws the cohort as it stands this week and, after a Reset, the previous cohort run to
its end in faded grey, so moving one slider shows its effect against what was there before. Weeks
run over the whole course from the start (curves grow into a fixed frame), holiday weeks are
shaded, means are over the clients attending that week (left out below
:data:`sim.weekly.MIN_CLIENTS`), and dropout causes keep their colours from
:data:`sim.display.CAUSE_COLOURS`. They use no browser and are tested without one.
"""

from __future__ import annotations

import math
import textwrap
from functools import lru_cache

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim import records
from sim.display import (
    CAUSE_COLOURS,
    GHOST_COLOUR,
    REPAIR_COLOUR,
    RUPTURE_COLOUR,
    STATUS_COLOURS,
    cause_label,
    shade_weeks,
    week_axis,
)
from sim.dynamics import CASENESS, DROPOUT_CAUSES, END_TYPES
from sim.model import TherapyModel
from sim.reasons import CATEGORIES, CATEGORY_OF
from sim.weekly import holiday_weeks, weekly_curves

SIZE = (4.6, 2.8)  # inches: two charts side by side, legible on a 1280-pixel projector
GHOST = {"color": GHOST_COLOUR, "alpha": 0.8, "lw": 2.2, "ls": "--"}
DROPOUT = END_TYPES.index("dropout")


def cohort_curves(model: TherapyModel) -> pd.DataFrame:
    """The cohort week by week so far: week 0 (intake) to the last week simulated.

    Computed once per model and week (six charts, and the ghost's, read the same table).

    Returns:
        Indexed by ``week``: ``not_dropped`` and ``in_therapy`` (shares of the cohort),
        ``attending`` (clients seen that week), ``alliance`` and ``phq9`` (means over the clients
        attending; NaN where fewer than 20 came), ``ruptures`` and ``repairs`` (clients that week).
    """
    return _curves(model, model.cohort.week)


@lru_cache(maxsize=8)
def _curves(model: TherapyModel, week: int) -> pd.DataFrame:
    cohort = model.cohort
    n = cohort.n_clients
    weeks = pd.RangeIndex(0, week + 1, name="week")
    s = cohort.state
    dropped_week = np.where(s.end_type[0] == DROPOUT, s.end_week[0].astype(float), np.inf)
    frame = pd.DataFrame({"not_dropped": [1.0 - (dropped_week <= w).mean() for w in weeks]}, index=weeks)
    if cohort.week == 0:
        return frame.assign(in_therapy=1.0, attending=0, alliance=np.nan, phq9=np.nan, ruptures=0, repairs=0)
    weekly = weekly_curves(records.sessions_table(cohort), cohort.week)
    frame["in_therapy"] = pd.concat([pd.Series([n], index=[0]), weekly["in_therapy"]]).to_numpy() / n
    for column in ("attending", "alliance", "phq9", "ruptures", "repairs"):
        frame[column] = pd.concat([pd.Series([np.nan], index=[0]), weekly[column]]).to_numpy()
    return frame


def cause_counts(model: TherapyModel) -> pd.Series:
    """Dropouts so far by reason, every cause of the model in its order (zeros included)."""
    s = model.cohort.state
    codes = s.dropout_cause[0][s.end_type[0] == DROPOUT]
    counts = np.bincount(codes, minlength=len(DROPOUT_CAUSES))
    return pd.Series(counts, index=DROPOUT_CAUSES).drop("")


def category_mix(model: TherapyModel) -> str:
    """The dropouts so far by category of their main reason, as client surveys group them."""
    counts = cause_counts(model)
    total = counts.sum()
    if not total:
        return ""
    by_category = counts.groupby(lambda reason: CATEGORY_OF[reason]).sum().reindex(CATEGORIES).fillna(0)
    return ", ".join(f"{c} {n / total:.0%}" for c, n in by_category.items())


def _frame(model: TherapyModel, ghost: TherapyModel | None, title: str):
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.subplots()
    weeks = max(model.cohort.n_weeks, ghost.cohort.n_weeks if ghost is not None else 0)
    shade_weeks(ax, holiday_weeks(model.scenario.params), "therapist holiday")
    week_axis(ax, weeks)
    ax.set_title(title, fontsize="medium")
    return fig, ax


def _legend(ax, **kw) -> None:
    ax.legend(frameon=False, fontsize="x-small", **kw)


def retention_figure(model: TherapyModel, ghost: TherapyModel | None = None) -> Figure:
    """Share of the cohort not dropped out, and share still in therapy, by week."""
    fig, ax = _frame(model, ghost, "Retention")
    if ghost is not None:
        g = cohort_curves(ghost)
        ax.plot(g.index, 100 * g["not_dropped"], **GHOST, label="before (previous cohort)")
        ax.plot(g.index, 100 * g["in_therapy"], **GHOST)
    c = cohort_curves(model)
    ax.plot(c.index, 100 * c["not_dropped"], color=STATUS_COLOURS["dropout"], marker=".", label="not dropped out")
    ax.plot(c.index, 100 * c["in_therapy"], color=STATUS_COLOURS["active"], marker=".", label="in therapy")
    ax.set(ylabel="% of the cohort", ylim=(0, 102))
    _legend(ax, loc="lower left")
    return fig


def _mean_figure(model, ghost, column: str, title: str, ylabel: str, ylim, colour: str) -> tuple[Figure, object]:
    fig, ax = _frame(model, ghost, title)
    if ghost is not None:
        g = cohort_curves(ghost)
        ax.plot(g.index, g[column], **GHOST, label="before (previous cohort)")
    c = cohort_curves(model)
    ax.plot(c.index, c[column], color=colour, marker=".", label="clients attending that week")
    ax.set(ylabel=ylabel, ylim=ylim)
    return fig, ax


def alliance_figure(model: TherapyModel, ghost: TherapyModel | None = None) -> Figure:
    """Mean WAI-SR of the clients attending each week, on the scale's whole range."""
    title = "Alliance: mean over clients attending"
    fig, ax = _mean_figure(model, ghost, "alliance", title, "WAI-SR (12-60)", (12, 60), STATUS_COLOURS["completed"])
    ax.axhline(36, color="grey", ls=":", lw=1, label="scale midpoint (36)")
    _legend(ax, loc="lower right")
    return fig


def phq9_figure(model: TherapyModel, ghost: TherapyModel | None = None) -> Figure:
    """Mean PHQ-9 of the clients attending each week."""
    title = "PHQ-9: mean over clients attending"
    fig, ax = _mean_figure(model, ghost, "phq9", title, "PHQ-9 (0-27)", (0, 27), STATUS_COLOURS["active"])
    ax.axhline(CASENESS, color="grey", ls=":", lw=1, label=f"caseness ({CASENESS})")
    _legend(ax, loc="lower left")
    return fig


def sessions_figure(model: TherapyModel, ghost: TherapyModel | None = None) -> Figure:
    """Clients attending each week (the n of the means), and ruptures and repairs that week."""
    fig, ax = _frame(model, ghost, "Sessions: clients attending, ruptures, repairs")
    if ghost is not None:
        g = cohort_curves(ghost).iloc[1:]
        ax.step(g.index, g["attending"], where="mid", color=GHOST_COLOUR, lw=1.5, label="before: attending")
        ax.plot(g.index, g["ruptures"], **{**GHOST, "lw": 1.5})
    c = cohort_curves(model).iloc[1:]
    ax.bar(c.index, c["attending"], width=0.8, color="#BBCCEE", label="attending (n)")
    ax.plot(c.index, c["ruptures"], color=RUPTURE_COLOUR, marker="v", ms=4, label="ruptures")
    ax.plot(c.index, c["repairs"], color=REPAIR_COLOUR, marker="^", ms=4, label="repairs")
    ax.set(ylabel="clients", ylim=(0, 1.05 * model.cohort.n_clients))
    _legend(ax, loc="upper right", ncols=2)
    return fig


def dropout_causes_figure(model: TherapyModel, ghost: TherapyModel | None = None) -> Figure:
    """Dropouts so far by reason; the previous cohort's as grey outlines."""
    counts = cause_counts(model)
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(counts))
    top = counts.max()
    if ghost is not None:
        before = cause_counts(ghost)
        ax.barh(y, before.to_numpy(), height=0.8, fill=False, edgecolor=GHOST_COLOUR, lw=1.5, ls="--",
                label=f"before: {int(before.sum())} dropouts")  # fmt: skip
        top = max(top, before.max())
    ax.barh(y, counts.to_numpy(), height=0.55, color=[CAUSE_COLOURS[c] for c in counts.index])
    ax.set_yticks(y, [cause_label(c) for c in counts.index], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, max(5, int(top) + 1))
    ax.xaxis.get_major_locator().set_params(integer=True)
    so_far = " so far" if model.running else ""
    mix = category_mix(model)
    title = f"Why clients left: {int(counts.sum())} of {model.cohort.n_clients}{so_far}"
    title += "".join(f"\n{line}" for line in textwrap.wrap(mix, 48))
    ax.set(xlabel="clients (main reason of each dropout)")
    ax.set_title(title, fontsize="medium")
    if ghost is not None:
        _legend(ax, loc="lower right")
    return fig


def caseload_layout(model: TherapyModel) -> dict[str, tuple[float, float]]:
    """Node positions: therapists on a grid, each client on a ring around their therapist."""
    n_t = model.scenario.therapists
    cols = math.ceil(math.sqrt(n_t))
    pos = {f"t{j}": (float(j % cols), -float(j // cols)) for j in range(n_t)}
    assignment = model.cohort.assignment[0]
    for j in range(n_t):
        members = np.flatnonzero(assignment == j)
        cx, cy = pos[f"t{j}"]
        for k, c in enumerate(members):
            angle = 2 * math.pi * k / len(members)
            r = 0.3 + 0.08 * (k % 2)  # alternate radii so large caseloads do not overlap
            pos[f"c{c}"] = (cx + r * math.cos(angle), cy + r * math.sin(angle))
    return pos


def caseload_figure(model: TherapyModel, ghost: TherapyModel | None = None) -> Figure:
    """The bipartite caseload graph; clients coloured by status (the previous cohort's counts in the legend)."""
    import networkx as nx

    g = model.caseload
    pos = caseload_layout(model)
    status = [c.status for c in model.client_agents]
    before = [c.status for c in ghost.client_agents] if ghost is not None else None
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.subplots()
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color="#cccccc", width=0.5)
    therapists = [f"t{t.therapist_id}" for t in model.therapist_agents]
    nx.draw_networkx_nodes(g, pos, nodelist=therapists, ax=ax, node_color="#333333", node_shape="s", node_size=30)
    size = max(4.0, 30.0 - 0.03 * len(status))
    for name, colour in STATUS_COLOURS.items():
        nodes = [f"c{i}" for i, st in enumerate(status) if st == name]
        then = f"; before {before.count(name)}" if before is not None else ""
        ax.scatter([], [], color=colour, label=f"{name.replace('_', ' ')} ({len(nodes)}{then})")
        if nodes:
            nx.draw_networkx_nodes(g, pos, nodelist=nodes, ax=ax, node_color=colour, node_size=size)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize="x-small", frameon=False)
    ax.set_title("Caseloads (squares: therapists)", fontsize="medium")
    ax.set_axis_off()
    return fig


CHARTS = (retention_figure, alliance_figure, phq9_figure, sessions_figure, dropout_causes_figure, caseload_figure)
