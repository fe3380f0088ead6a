"""A cohort week by week: who is in therapy, who attends, and the alliance and PHQ-9 of those attending.

One function serves every face that draws a course over time (the summary figure of ``run``,
``compare``, the browser app), so they agree on what a weekly mean is: the mean over the clients
who attended that week, shown with its ``n``, and left out (NaN) when fewer than
:data:`MIN_CLIENTS` attended. A mean over a handful of clients in the last weeks of a long course
swings with who happens to be left, not with anything the course does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_CLIENTS = 20  # fewest clients attending for a weekly mean to be shown
CURVE_COLUMNS = ["in_therapy", "attending", "alliance", "phq9", "ruptures", "repairs", "dropouts", "holiday"]


def holiday_weeks(params: dict) -> list[int]:
    """The weeks of the therapist holiday a scenario plans (as :func:`sim.dynamics.week` applies it)."""
    start, length = int(params["planned_break_start"]), int(params["planned_break_weeks"])
    return list(range(start, start + length)) if start > 0 else []


def _has(event: pd.Series, name: str) -> np.ndarray:
    """Whether each ';'-joined event list names ``name`` (a whole name: "repair" is not in "repaired")."""
    return event.fillna("").str.contains(rf"(?:^|;){name}(?:;|$)", regex=True).to_numpy()


def weekly_curves(sessions: pd.DataFrame, weeks: int, min_clients: int = MIN_CLIENTS) -> pd.DataFrame:
    """Week-by-week counts and means of one cohort.

    Args:
        sessions: the sessions table of one run (:func:`sim.records.sessions_table`): one row per
            client and week of their course, with ``attended``, ``alliance``, ``phq9`` and ``event``.
        weeks: the course's last possible week; the index runs from 1 to it.
        min_clients: fewest clients attending for the means to be kept.

    Returns:
        Indexed by ``week`` (1..weeks): ``in_therapy`` (clients whose course ran that week),
        ``attending`` (clients who came), ``alliance`` (mean WAI-SR, 12-60) and ``phq9`` (mean
        PHQ-9, 0-27) over the clients attending, NaN where fewer than ``min_clients`` came or nobody
        was seen (a holiday), ``ruptures``, ``repairs`` and ``dropouts`` (clients that week), and
        ``holiday`` (the therapists were away).
    """
    index = pd.RangeIndex(1, weeks + 1, name="week")
    if sessions.empty:
        empty = pd.DataFrame(0, index=index, columns=CURVE_COLUMNS)
        return empty.assign(alliance=np.nan, phq9=np.nan, holiday=False)
    week = sessions["session"]
    attended = sessions[sessions["attended"]].groupby("session")
    counts = {
        name: pd.Series(_has(sessions["event"], name), index=sessions.index).groupby(week).sum()
        for name in ("rupture", "repair", "dropout", "holiday")
    }
    table = pd.DataFrame(
        {
            "in_therapy": week.value_counts(),
            "attending": attended.size(),
            "alliance": attended["alliance"].mean(),
            "phq9": attended["phq9"].mean(),
            "ruptures": counts["rupture"],
            "repairs": counts["repair"],
            "dropouts": counts["dropout"],
            "holiday": counts["holiday"] > 0,
        }
    ).reindex(index)
    counted = ["in_therapy", "attending", "ruptures", "repairs", "dropouts"]
    table[counted] = table[counted].fillna(0).astype(int)
    table["holiday"] = table["holiday"].fillna(False).astype(bool)
    sparse = table["attending"] < min_clients
    table.loc[sparse, ["alliance", "phq9"]] = np.nan
    return table[CURVE_COLUMNS]


def runs_of(weeks) -> list[tuple[int, int]]:
    """Consecutive weeks as (first, last) pairs: [6, 7, 12] -> [(6, 7), (12, 12)], for shading."""
    spans: list[tuple[int, int]] = []
    for w in sorted(int(w) for w in weeks):
        if spans and w == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], w)
        else:
            spans.append((w, w))
    return spans
