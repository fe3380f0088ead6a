"""Figures of one run (retention, alliance and PHQ-9 week by week, dropout causes) and their shared parts.

The parts every course-over-time figure uses live here, so ``run``, ``compare`` and ``vignette``
draw weeks, holidays, the alliance scale and dropout causes the same way: whole-number week ticks,
therapist holidays shaded, the alliance on the whole WAI-SR range (12-60) with a zoomed inset that
says what it zooms, means over the clients attending with their ``n`` beside them and left out below
:data:`sim.weekly.MIN_CLIENTS`, and one colour per dropout cause (:data:`sim.display.CAUSE_COLOURS`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FixedFormatter, FixedLocator, MaxNLocator, NullLocator

from sim.display import CAUSE_COLOURS, cause_label, shade_weeks, week_axis
from sim.dynamics import CASENESS, DROPOUT_CAUSES
from sim.reasons import CATEGORIES
from sim.userfiles import clean_text
from sim.weekly import MIN_CLIENTS, weekly_curves

# Figures under docs/ are committed: the same figure must give the same bytes, or every regeneration
# shows a diff of the whole file. SVG otherwise carries the time of saving (dc:date) and ids hashed
# with a random salt (clip paths, glyphs); PNG carries no date, only the matplotlib version.
REPRODUCIBLE_RC = {"svg.hashsalt": "alliancesim"}
METADATA = {".svg": {"Date": None}, ".png": {}}
DPI = 150  # of the PNGs
WAI_SR = (12, 60)  # the WAI-SR total: 12 items scored 1-5
PHQ9 = (0, 27)


def plain_text(text, limit: int = 60) -> str:
    """A name or title as a figure shows it: plain text, never mathtext, short, without control characters.

    ``$`` is escaped (matplotlib would read ``$...$`` as mathtext and can fail on it), control
    characters and terminal escapes are removed and the text is cut to ``limit`` characters.
    """
    return clean_text(text, limit).replace("$", r"\$")


def save(fig, out: Path, stem: str) -> list[Path]:
    """Write ``fig`` as PNG and SVG into ``out``, byte-identical for an identical figure; return the paths.

    The figure is laid out and its tight crop box measured once, at the PNG's resolution, and both
    files are drawn into that box: one geometry in both, one draw each. ``savefig`` with
    ``bbox_inches="tight"`` draws a figure twice per file, once unseen to measure the box; the PNG
    comes out the same to the byte, and the run's summary figure was saved in 0.62 s, not 0.73
    (before its ticks were frozen too: :func:`freeze_ticks`).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.set_dpi(DPI)  # the box is measured with the text as the PNG's renderer sizes it
    # A context, so other code keeps its rc. Without a layout rc: set_layout_engine(None) would
    # bring the rc's engine back, and savefig draws unseen first whenever an engine is set.
    with plt.rc_context({**REPRODUCIBLE_RC, "figure.autolayout": False, "figure.constrained_layout.use": False}):
        if (engine := fig.get_layout_engine()) is not None:
            engine.execute(fig)
            fig.set_layout_engine(None)  # the layout is done: drawing must not move anything
        # Measuring the box applies every fixed aspect and places insets and colourbars: from here
        # on nothing moves, and the ticks can be frozen.
        box = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
        freeze_ticks(fig)
        for path in paths:
            fig.savefig(path, dpi=DPI, bbox_inches=box, metadata=METADATA[path.suffix])
    plt.close(fig)
    return paths


def freeze_ticks(fig) -> None:
    """Fix every axis's ticks and labels to the ones its locators and formatters give now.

    Each draw asks every locator and formatter again, on top of the many times spines, titles and
    labels ask while placing themselves (the run's summary figure: 72 times in drawing its PNG
    alone). Once the figure is laid out and its crop box measured, view limits and axis lengths no
    longer change, so the answers cannot either. The ticks frozen are the ones a draw shows (minor
    ticks on a major one left out, as :meth:`~matplotlib.axis.Axis.get_minorticklocs` does), with
    their offset text (``1e3``, ``+50``): the files come out the same to the byte, and the summary
    figure is saved in about 0.56 s, not 0.58. Axes without ticks keep their NullLocator, which
    matplotlib checks for by type.
    """
    for axis in (axis for ax in _every_axes(fig) for axis in (ax.xaxis, ax.yaxis)):
        for which, locs, set_locator, set_formatter in (
            (axis.major, axis.get_majorticklocs(), axis.set_major_locator, axis.set_major_formatter),
            (axis.minor, axis.get_minorticklocs(), axis.set_minor_locator, axis.set_minor_formatter),
        ):
            if isinstance(which.locator, NullLocator):
                continue
            labels = FixedFormatter(which.formatter.format_ticks(locs))
            labels.set_offset_string(which.formatter.get_offset())
            set_locator(FixedLocator(locs))
            set_formatter(labels)


def _every_axes(fig) -> list:
    """The axes of ``fig``, of its subfigures and their insets."""
    axes = [*fig.axes]
    for ax in (ax for sub in fig.subfigs for ax in _every_axes(sub)):
        if ax not in axes:  # a subfigure's axes may be listed by its figure too
            axes.append(ax)
    for ax in axes:  # grows as insets are found, so insets of insets are found too
        axes += [child for child in ax.child_axes if child not in axes]
    return axes


# ── shared parts ─────────────────────────────────────────────────────────────────────────────────


def alliance_axis(ax, draw: Callable, low: float, high: float, inset: bool = True) -> None:
    """The alliance on the whole WAI-SR range, and a zoomed copy that names the range it shows.

    A mean alliance moves a few points on a 48-point scale; drawn alone on a zoomed axis, a
    3-point drift fills the panel. The main axis keeps the scale's range with its midpoint; the
    inset below it repeats the curves on the range they span, titled with that range.

    Args:
        ax: the panel.
        draw: ``draw(axes)`` draws the curves on the axes it is given (called for panel and inset).
        low, high: the range the curves span (WAI-SR points), for the inset.
        inset: draw the zoomed inset (skipped when the curves span most of the scale anyway).
    """
    draw(ax)
    ax.axhline(36, color="grey", ls=":", lw=1, label="scale midpoint (36)")
    ax.set_ylim(*WAI_SR)
    ax.set_ylabel("WAI-SR total (12-60)")
    if not inset or not np.isfinite([low, high]).all() or high - low > 20:
        return
    zoom = ax.inset_axes((0.1, 0.07, 0.86, 0.33))
    draw(zoom)
    pad = max(0.4, 0.08 * (high - low))
    zoom.set_ylim(low - pad, high + pad)
    zoom.set_xlim(ax.get_xlim())
    zoom.xaxis.set_major_locator(MaxNLocator(integer=True))
    zoom.tick_params(labelsize="x-small", labelbottom=False)  # the weeks are read off the main axis
    zoom.set_title(f"zoomed to WAI-SR {low - pad:.1f}-{high + pad:.1f}", fontsize="x-small", pad=2)
    ax.indicate_inset_zoom(zoom, edgecolor="#777777")


def attending_strip(ax, curves: pd.DataFrame, colour: str = "#777777", min_clients: int = MIN_CLIENTS) -> None:
    """Bars of the clients attending each week (the ``n`` of the means above), with the cut-off line."""
    ax.bar(curves.index, curves["attending"], width=0.8, color=colour, alpha=0.6)
    ax.axhline(min_clients, color="black", lw=0.8, ls="--", label=f"{min_clients}: fewer, mean not drawn")
    ax.set_ylabel("attending (n)", fontsize="small")
    ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))


def cause_order(causes) -> list[str]:
    """The dropout causes among ``causes``, in the model's order (so positions and colours stay put)."""
    present = set(causes)
    return [c for c in DROPOUT_CAUSES if c and c in present]


# ── the summary figure of `python -m sim run` ────────────────────────────────────────────────────


def retention_by_session(clients: pd.DataFrame, weeks: int) -> pd.Series:
    """Share of clients not yet dropped out at the start of each week (1..weeks)."""
    ends = clients["end_session"].to_numpy()
    dropped = clients["end_type"].to_numpy() == "dropout"
    index = pd.RangeIndex(1, weeks + 1, name="session")
    # A client who drops out in week w is no longer retained from week w + 1 on.
    return pd.Series([1.0 - (dropped & (ends < w)).mean() for w in index], index=index)


def summary_figure(clients: pd.DataFrame, sessions: pd.DataFrame, title: str = ""):
    """Retention, dropout causes, and the alliance and PHQ-9 of the clients attending, week by week.

    Args:
        clients, sessions: the run's tables (:mod:`sim.records`).
        title: the figure's title.

    Returns:
        A matplotlib Figure: retention with the weeks of a therapist holiday shaded; the main
        reason of each dropout (share of the dropouts) with the mix of reason categories; mean
        alliance on the whole WAI-SR range with a zoomed inset, and mean PHQ-9 with the intake
        mean at week 0, both over the clients attending that week and left out where fewer than 20
        attended; under each, the number attending.
    """
    weeks = int(sessions["session"].max()) if len(sessions) else 1
    curves = weekly_curves(sessions, weeks)
    holiday = curves.index[curves["holiday"]]
    fig = plt.figure(figsize=(11, 8.5), layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[3, 3, 1])
    ax_ret, ax_cause = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    ax_all, ax_phq = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    strips = [fig.add_subplot(grid[2, 0], sharex=ax_all), fig.add_subplot(grid[2, 1], sharex=ax_phq)]

    retention = retention_by_session(clients, weeks)
    shade_weeks(ax_ret, holiday)
    ax_ret.step([0, *retention.index], [100, *(100 * retention.to_numpy())], where="post", color="C0")
    ax_ret.set(ylabel="clients not dropped out (%)", title="Retention", ylim=(0, 101))
    week_axis(ax_ret, weeks)
    if len(holiday):
        ax_ret.legend(frameon=False, loc="lower left")

    _cause_bars(ax_cause, clients)

    alliance = curves["alliance"]

    def draw_alliance(a):
        shade_weeks(a, holiday, None)
        a.plot(alliance.index, alliance, color="C1", marker="o", ms=3)

    for a, strip in ((ax_all, strips[0]), (ax_phq, strips[1])):
        week_axis(a, weeks, label=False)
        a.tick_params(labelbottom=False)
        shade_weeks(strip, holiday, None)
        attending_strip(strip, curves)
        week_axis(strip, weeks)
    alliance_axis(ax_all, draw_alliance, np.nanmin(alliance, initial=np.inf), np.nanmax(alliance, initial=-np.inf))
    ax_all.set_title("Working alliance: mean over clients attending that week")
    ax_all.legend(frameon=False, loc="upper left", fontsize="small")

    shade_weeks(ax_phq, holiday, None)
    ax_phq.plot(curves.index, curves["phq9"], color="C2", marker="o", ms=3, label="clients attending that week")
    ax_phq.plot([0], [clients["intake_phq9"].mean()], "s", color="black", label="intake (all clients)")
    ax_phq.axhline(CASENESS, color="grey", ls="--", lw=1, label=f"caseness (PHQ-9 = {CASENESS})")
    ax_phq.set(ylabel="PHQ-9 (0-27)", ylim=PHQ9, title="Depression severity: mean PHQ-9")
    ax_phq.legend(frameon=False, loc="lower left", fontsize="small")
    for strip in strips:
        strip.legend(frameon=False, fontsize="x-small", loc="upper right")
    if title:
        fig.suptitle(f"{plain_text(title, 120)}: {len(clients)} clients")
    return fig


def _cause_bars(ax, clients: pd.DataFrame) -> None:
    """The main reason of each dropout, as a share of the dropouts, with the mix of reason categories."""
    dropped = clients[clients["end_type"] == "dropout"]
    causes = cause_order(dropped["dropout_cause"].unique())
    share = 100 * dropped["dropout_cause"].value_counts().reindex(causes).fillna(0) / max(len(dropped), 1)
    y = np.arange(len(causes))
    ax.barh(y, share.to_numpy(), color=[CAUSE_COLOURS[c] for c in causes])
    ax.set_yticks(y, [cause_label(c) for c in causes])
    ax.invert_yaxis()
    for yi, value in zip(y, share.to_numpy(), strict=True):
        ax.annotate(f"{value:.0f}%", (value, yi), xytext=(3, 0), textcoords="offset points", va="center")
    ax.set_xlim(0, 1.18 * max(share.max() if len(share) else 1.0, 1.0))
    total = 100 * len(dropped) / max(len(clients), 1)
    categories = dropped["dropout_category"].value_counts(normalize=True)
    mix = ", ".join(f"{c} {100 * categories.get(c, 0.0):.0f}%" for c in CATEGORIES)
    ax.set(xlabel=f"share of the {len(dropped)} dropouts (%)")
    ax.set_title(f"Why clients left: main reason ({total:.1f}% of clients dropped out)\n{mix}", fontsize="medium")
