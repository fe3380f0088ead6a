"""The vignette timeline: one dyad's alliance, hope, disclosure, PHQ-9 and sessions week by week."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from analysis.vignette import client_row
from sim.dynamics import CASENESS
from sim.outcomes import RELIABLE_CHANGE

# Rows of the session strip: label, event name in the sessions table, marker, colour.
STRIP = (
    ("attended", "attended", "o", "C2"),
    ("missed by client", "missed", "x", "C3"),
    ("cancelled by therapist", "cancelled", "s", "C1"),
    ("therapist on holiday", "holiday", "D", "C7"),
    ("life event", "life_event", "*", "C4"),
    ("rupture", "rupture", "v", "red"),
    ("repair", "repair", "^", "green"),
)


def vignette_figure(
    clients: pd.DataFrame, sessions: pd.DataFrame, client_id: int, title: str = "", followup_weeks: int | None = None
):
    """Timeline of one dyad in three panels sharing the week axis.

    Args:
        clients, sessions: the run's tables (:mod:`sim.records`).
        client_id: the client to show.
        title: the figure's title.
        followup_weeks: length of the follow-up, for the legend.

    Returns:
        A matplotlib Figure: bond, goal and task agreement (WAI-SR subscales 4-20) with disclosure
        and hope (0-1) on an aligned right axis; PHQ-9 at intake, attended sessions, the end-of-course
        assessment and follow-up with the caseness line; a strip marking attended, missed and
        cancelled sessions, ruptures and repairs. Ruptures (red) and repairs (green) are also drawn
        as vertical lines, the ending as a black one.
    """
    row = client_row(clients, client_id)
    own = sessions[sessions["client_id"] == client_id].sort_values("session")
    weeks = own["session"].to_numpy()
    names = own["event"].fillna("").str.split(";")
    has = {name: names.apply(lambda ev, n=name: n in ev).to_numpy() for _, name, _, _ in STRIP}
    fig, (ax, ax_phq, ax_strip) = plt.subplots(
        3, 1, figsize=(10, 8.5), sharex=True, height_ratios=[3, 2, 1.4], constrained_layout=True
    )

    for key, label, color in (
        ("bond", "bond", "C0"),
        ("goal", "goal agreement", "C1"),
        ("task", "task agreement", "C2"),
    ):
        ax.plot(weeks, own[key], color=color, marker="o", ms=3, label=label)
    ax.set(ylim=(4, 20), ylabel="WAI-SR subscale (4-20)")
    right = ax.twinx()  # 4-20 on the left is 0-1 on the right, since a subscale is 4 + 16 x
    for key, color in (("disclosure", "C4"), ("hope", "C5")):
        right.plot(weeks, own[key], color=color, ls="--", marker=".", label=key)
    right.set(ylim=(0, 1), ylabel="disclosure, hope (0-1)")
    for w in weeks[has["rupture"]]:
        ax.axvline(w, color="red", ls=":", lw=1.2)
    for w in weeks[has["repair"]]:
        ax.axvline(w, color="green", ls=":", lw=1.2)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, frameon=False, ncols=5, loc="lower center", fontsize="small")
    ax.set_title("Alliance parts, disclosure and hope (dotted lines: rupture red, repair green)")

    attended = own[own["attended"]]
    ax_phq.plot([0, *attended["session"]], [row["intake_phq9"], *attended["phq9"]], color="C0", marker="o", ms=4)
    ax_phq.plot([0], [row["intake_phq9"]], marker="s", color="black", ls="none", label="intake")
    ax_phq.axhline(CASENESS, color="grey", ls="--", lw=1, label=f"caseness (PHQ-9 = {CASENESS})")
    ax_phq.axhline(
        row["intake_phq9"] - RELIABLE_CHANGE, color="C2", ls=":", lw=1, label="reliable improvement (intake - 6)"
    )
    # The end-of-course assessment is a separate administration (with its own measurement error),
    # so it can differ from the last session's score; it is the one the outcome uses. Drawn just left
    # of the follow-up mark, which shares its week.
    ax_phq.plot([row["end_session"] - 0.3], [row["final_phq9"]], marker="*", ms=11, color="C1", ls="none",
                label="end-of-course assessment")  # fmt: skip
    later = f"{followup_weeks} weeks after the end" if followup_weeks else "after the end"
    ax_phq.plot([row["end_session"]], [row["followup_phq9"]], marker="D", mfc="white", color="C0", ls="none",
                label=f"follow-up ({later})")  # fmt: skip
    ax_phq.set(ylim=(0, 34), yticks=range(0, 28, 5), ylabel="PHQ-9 at attended sessions (0-27)")
    for i, (_, name, marker, color) in enumerate(STRIP):
        x = weeks[has[name]]
        ax_strip.plot(x, [i] * len(x), ls="none", marker=marker, color=color, ms=7)
    ax_strip.set_yticks(range(len(STRIP)), [label for label, *_ in STRIP], fontsize="small")
    ax_strip.set_ylim(len(STRIP) - 0.5, -0.5)
    ax_strip.set_xlabel("weekly session slot (0 = intake)")
    ax_strip.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_strip.set_xlim(-0.5, max(weeks.max() if len(weeks) else 1, 1) + 0.5)

    end = row["end_type"] if row["end_type"] != "dropout" else f"dropout: {row['dropout_cause']}"
    for a in (ax, ax_phq, ax_strip):
        a.axvline(row["end_session"], color="black", lw=1.5, label=f"end: {end.replace('_', ' ')}")
    ax_phq.legend(frameon=False, fontsize="small", loc="upper left", ncols=3)
    if title:
        fig.suptitle(title)
    return fig
