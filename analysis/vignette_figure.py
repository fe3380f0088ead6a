"""The vignette timeline: one dyad's alliance, disclosure and hope, PHQ-9 and sessions week by week.

With a what-if (:class:`sim.vignette.Vignette`), the two courses of the same client stand side by
side in two columns that share every axis, so a rupture repaired in one and not the other, or a
course that goes on where the other stopped, lines up week by week.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis.figures import PHQ9
from analysis.vignette import client_row
from sim.display import CAUSE_COLOURS, REPAIR_COLOUR, RUPTURE_COLOUR, cause_label, shade_weeks
from sim.dynamics import CASENESS
from sim.outcomes import RELIABLE_CHANGE

# Rows of the session strip: label, event name in the sessions table, marker, colour.
STRIP = (
    ("attended", "attended", "o", "C2"),
    ("missed by client", "missed", "x", "C3"),
    ("cancelled by therapist", "cancelled", "s", "C1"),
    ("therapist on holiday", "holiday", "D", "C7"),
    ("life event", "life_event", "*", "C4"),
    ("rupture", "rupture", "v", RUPTURE_COLOUR),
    ("repair", "repair", "^", REPAIR_COLOUR),
)
FOLLOWUP_OFFSET = 2.0  # the follow-up score sits this far right of the last week, under a "follow-up" tick


def _events(own: pd.DataFrame) -> dict[str, np.ndarray]:
    names = own["event"].fillna("").str.split(";")
    return {name: names.apply(lambda ev, n=name: n in ev).to_numpy() for _, name, _, _ in STRIP}


def end_colour(row: pd.Series) -> str:
    """The colour of a course's end line: its dropout cause's colour, black for other endings."""
    return CAUSE_COLOURS.get(row["dropout_cause"], "black") if row["end_type"] == "dropout" else "black"


def end_text(row: pd.Series) -> str:
    """How a course ended, for a title: "dropout in week 6: unrepaired rupture"."""
    if row["end_type"] == "dropout":
        return f"dropout in week {row['end_session']}: {cause_label(row['dropout_cause'])}"
    return f"{row['end_type'].replace('_', ' ')} in week {row['end_session']}"


def draw_course(
    axes, clients: pd.DataFrame, sessions: pd.DataFrame, client_id: int, followup_weeks=None, followup_at=None
) -> None:
    """Draw one client's course on four axes sharing the week axis (top to bottom).

    Args:
        axes: alliance parts, disclosure and hope, PHQ-9, session strip.
        clients, sessions: the run's tables (:mod:`sim.records`).
        client_id: the client to show.
        followup_weeks: length of the follow-up, for the label of the follow-up score.
        followup_at: where on the week axis the follow-up score goes (default: a step right of the
            end), under a tick labelled "follow-up" rather than a week number.
    """
    ax_all, ax_dh, ax_phq, ax_strip = axes
    row = client_row(clients, client_id)
    own = sessions[sessions["client_id"] == client_id].sort_values("session")
    weeks = own["session"].to_numpy()
    has = _events(own)
    for ax in axes:
        shade_weeks(ax, weeks[has["holiday"]], None)
        for w in weeks[has["rupture"]]:
            ax.axvline(w, color=RUPTURE_COLOUR, ls=":", lw=1.2)
        for w in weeks[has["repair"]]:
            ax.axvline(w, color=REPAIR_COLOUR, ls=":", lw=1.2)
        ax.axvline(row["end_session"], color=end_colour(row), lw=2)

    for key, label, colour in (
        ("bond", "bond", "C0"),
        ("goal", "goal agreement", "C1"),
        ("task", "task agreement", "C2"),
    ):
        ax_all.plot(weeks, own[key], color=colour, marker="o", ms=3, label=label)
    ax_all.set(ylim=(4, 20), ylabel="WAI-SR subscale (4-20)")
    for key, colour in (("disclosure", "C4"), ("hope", "C5")):
        ax_dh.plot(weeks, own[key], color=colour, marker=".", label=key)
    ax_dh.set(ylim=(0, 1), ylabel="0-1 scale")

    attended = own[own["attended"]]
    # Scores at sessions attended, joined across missed weeks but broken by a holiday (no one was seen).
    scores = pd.Series([row["intake_phq9"], *attended["phq9"]], index=[0, *attended["session"]], dtype=float)
    scores = pd.concat([scores, pd.Series(np.nan, index=weeks[has["holiday"]])]).sort_index()
    ax_phq.plot(scores.index, scores.to_numpy(), color="C0", marker="o", ms=4, label="PHQ-9 at a session attended")
    ax_phq.plot([0], [row["intake_phq9"]], marker="s", color="black", ls="none", label="intake assessment")
    ax_phq.axhline(CASENESS, color="grey", ls="--", lw=1, label=f"caseness ({CASENESS})")
    ax_phq.axhline(row["intake_phq9"] - RELIABLE_CHANGE, color="C2", ls=":", lw=1, label="reliable improvement")
    # The end-of-course assessment is a separate administration (with its own measurement error),
    # given to every client when the course ends, dropouts too; the outcome is scored on it.
    end = row["end_session"]
    ax_phq.plot([end], [row["final_phq9"]], marker="*", ms=13, color="C1", ls="none", zorder=5,
                label="end-of-course assessment (a separate PHQ-9, dropouts too)")  # fmt: skip
    ax_phq.annotate(f"{row['final_phq9']}", (end, row["final_phq9"]), xytext=(-6, 6), textcoords="offset points",
                    ha="right", fontsize="small", color="C1")  # fmt: skip
    later = f"follow-up, {followup_weeks} weeks later" if followup_weeks else "follow-up"
    followup_at = end + FOLLOWUP_OFFSET if followup_at is None else followup_at
    ax_phq.plot([followup_at], [row["followup_phq9"]], marker="D", mfc="white", color="C0", ls="none",
                label=later)  # fmt: skip
    ax_phq.annotate("//", (followup_at - FOLLOWUP_OFFSET / 2, PHQ9[0]), ha="center", va="bottom", fontsize="small")
    ax_phq.set(ylim=(PHQ9[0], PHQ9[1] + 12), yticks=range(0, 28, 5), ylabel="PHQ-9 (0-27)")

    for i, (_, name, marker, colour) in enumerate(STRIP):
        x = weeks[has[name]]
        ax_strip.plot(x, [i] * len(x), ls="none", marker=marker, color=colour, ms=7)
    ax_strip.set_yticks(range(len(STRIP)), [label for label, *_ in STRIP], fontsize="small")
    ax_strip.set_ylim(len(STRIP) - 0.5, -0.5)
    ax_strip.set_xlabel("week (weekly session slot; 0 = intake)")
    ax_strip.xaxis.set_major_locator(MaxNLocator(integer=True))


def _layout(columns: int):
    fig, axes = plt.subplots(
        4, columns, figsize=(10 if columns == 1 else 15, 10), sharex=True, sharey="row", squeeze=False,
        height_ratios=[2.4, 1.3, 2.4, 1.6], layout="constrained",
    )  # fmt: skip
    return fig, axes


def _finish(fig, axes, last_week: int, title: str) -> None:
    axes[0, 0].set_xlim(-0.5, last_week + FOLLOWUP_OFFSET + 0.5)
    # Whole weeks up to the end; the place right of it is the follow-up, months later, not a week.
    weeks = [int(t) for t in MaxNLocator(integer=True).tick_values(0, last_week) if 0 <= t <= last_week]
    for ax in axes[-1, :]:
        ax.set_xticks([*weeks, last_week + FOLLOWUP_OFFSET], [*map(str, weeks), "follow-\nup"])
    for row, where in ((0, "lower center"), (1, "lower center"), (2, "upper left")):
        handles, labels = axes[row, 0].get_legend_handles_labels()
        if row == 2:
            handles.append(plt.Line2D([], [], color="black", lw=2))
            labels.append("end of the course (a dropout: in its cause's colour)")
        axes[row, 0].legend(handles, labels, frameon=False, fontsize="x-small", loc=where, ncols=2 if row == 2 else 3)
    axes[0, 0].set_title("Alliance parts (dotted lines: rupture red, repair green)", loc="left", fontsize="medium")
    axes[1, 0].set_title("Disclosure and hope", loc="left", fontsize="medium")
    axes[2, 0].set_title("PHQ-9: intake, sessions attended, end-of-course assessment", loc="left", fontsize="medium")
    if title:
        fig.suptitle(title)


def course_figure(
    clients: pd.DataFrame, sessions: pd.DataFrame, client_id: int, title: str = "", followup_weeks: int | None = None
):
    """Timeline of one client's course in four panels sharing the week axis.

    Args:
        clients, sessions: the run's tables (:mod:`sim.records`).
        client_id: the client to show.
        title: the figure's title.
        followup_weeks: length of the follow-up, for the legend.

    Returns:
        A matplotlib Figure: bond, goal and task agreement (WAI-SR subscales 4-20); disclosure and
        hope (0-1); PHQ-9 at intake, at each session attended, at the end-of-course assessment and
        at follow-up (past a break in the axis), with the caseness and reliable-improvement lines; a
        strip of attended, missed and cancelled sessions, holidays, life events, ruptures and repairs.
        Ruptures and repairs are also vertical dotted lines, the ending a solid one (in the colour
        of the dropout cause for a dropout), holiday weeks shaded.
    """
    fig, axes = _layout(1)
    draw_course(axes[:, 0], clients, sessions, client_id, followup_weeks)  # the follow-up a step right of the end
    row = client_row(clients, client_id)
    _finish(fig, axes, int(row["end_session"]), f"{title}: {end_text(row)}" if title else end_text(row))
    return fig


def vignette_figure(v):
    """The figure of a :class:`sim.vignette.Vignette`: one course, or the course as run beside the what-if."""
    followup = int(v.course.params["followup_weeks"])
    title = f"Client {v.client_id}, scenario {v.scenario.name} (seed {v.scenario.seed})"
    if v.what_if is None:
        return course_figure(v.course.clients, v.course.sessions, v.client_id, title, followup)
    courses = (v.course, v.what_if)
    last = max(int(client_row(c.clients, v.client_id)["end_session"]) for c in courses)
    fig, axes = _layout(2)
    for column, course in enumerate(courses):
        draw_course(axes[:, column], course.clients, course.sessions, v.client_id, followup, last + FOLLOWUP_OFFSET)
        t = course.therapist
        ending = end_text(client_row(course.clients, v.client_id))
        axes[0, column].annotate(
            f"{course.label}\ntherapist {t['id']}: empathy {t['empathy']:.2f}, repair skill {t['repair_skill']:.2f}"
            f"\n{ending}",
            (0.5, 1.12), xycoords="axes fraction", ha="center", va="bottom", fontsize="medium", weight="bold",
        )  # fmt: skip
    _finish(fig, axes, last, f"{title}: the same client and the same luck, two courses")
    for ax in axes[:, 1]:
        ax.tick_params(labelleft=True)
    return fig
