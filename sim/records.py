"""The output tables of one recorded run (parameter set 0) as pandas DataFrames.

Column names are a contract that researchers script against (see README): ``clients`` has one row
per client, ``sessions`` one row per client and weekly session slot while the course runs, and
``events`` one row per notable event with a plain-language ``text``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from sim import dynamics as dyn
from sim.outcomes import classify, sudden_gains
from sim.population import ATTACHMENT_STYLES
from sim.reasons import CATEGORY_OF, REASON_TEXT, REASONS

# Event flag, name, and how it reads in a course told session by session.
EVENTS = (
    (dyn.MISSED, "missed", "the client did not attend"),
    (dyn.CANCELLED, "cancelled", "the therapist cancelled the session"),
    (dyn.HOLIDAY, "holiday", "no session: therapist on holiday"),
    (dyn.OFF_TRACK, "off_track_alert", "feedback flagged the client as not on track; goals renegotiated"),
    (dyn.RUPTURE, "rupture", "rupture in the alliance"),
    (dyn.REPAIR, "repair", "the rupture was repaired"),
    (dyn.LIFE_EVENT, "life_event", "a stressful life event"),
    (dyn.GAIN_REVERSED, "gain_reversed", "an earlier sudden gain was lost again"),
    (dyn.SUDDEN_GAIN, "sudden_gain", "a sudden gain: symptoms fell at once, and the bond strengthened"),
    (dyn.GOOD_ENOUGH, "good_enough_ending", "ended by mutual agreement: good enough"),
    (dyn.COMPLETED, "completed", "the planned course was completed"),
    (dyn.DROPOUT, "dropout", "the client stopped coming"),
)
DROPOUT_TEXT = REASON_TEXT  # how each dropout reason reads in the event log


def completion_text(attended: int, planned: int) -> str:
    """Why a course counted as completed ended: every planned session attended, or the window closed."""
    if attended >= planned:
        return f"all {planned} planned sessions attended: the course is complete"
    return f"the course's window closed with {attended} of {planned} planned sessions attended"


def client_columns(cohort, outcomes: dict[str, np.ndarray], columns=None) -> dict[str, np.ndarray]:
    """The columns of clients.csv for every parameter set at once, each shape (n_sets, n_clients).

    Args:
        cohort: a finished cohort; sudden gains need a recorded one (``record=True``).
        outcomes: from :func:`sim.run.client_outcomes`.
        columns: compute only these columns (None: all), in the order of clients.csv.
    """
    shape = cohort.state.active.shape
    c = {k: np.broadcast_to(getattr(cohort.clients, k), shape) for k in cohort.clients.__dataclass_fields__}
    t = cohort.therapists
    o = outcomes
    therapist = o["therapist"]
    flags = classify(o["intake_phq9"], o["final_phq9"], o["sessions_attended"])
    dropped = o["end_type"] == dyn.END_TYPES.index("dropout")

    def gathered(trait):
        return np.take_along_axis(np.broadcast_to(trait, (shape[0], trait.shape[-1])), therapist, axis=1)

    @cache  # sudden_gain and sudden_gain_reversed come from one pass over the scores
    def gains():
        if cohort.record is None:
            none = np.zeros(shape, bool)
            return none, none
        scores = np.stack(cohort.record.phq9)  # (weeks, n_sets, n_clients)
        pairs = [sudden_gains(o["intake_phq9"][k], scores[:, k, :]) for k in range(shape[0])]
        return np.stack([g for g, _ in pairs]), np.stack([r for _, r in pairs])

    # A dropout's reason shares (empty for everyone else); its category is its main reason's.
    category = np.asarray([""] + [CATEGORY_OF[r] for r in REASONS])
    makers = {
        "client_id": lambda: np.broadcast_to(np.arange(shape[1]), shape),
        "therapist_id": lambda: therapist,
        "attachment_style": lambda: np.asarray(ATTACHMENT_STYLES)[c["attachment_style"]],
        "attachment_anxiety": lambda: c["attachment_anxiety"].round(3),
        "attachment_avoidance": lambda: c["attachment_avoidance"].round(3),
        "client_culture": lambda: c["culture"],
        "therapist_culture": lambda: gathered(t.culture),
        "cultural_match": lambda: o["cultural_match"],
        "expectancy": lambda: c["expectancy"].round(4),
        "therapist_empathy": lambda: gathered(t.empathy).round(4),
        "therapist_uses_feedback": lambda: gathered(t.uses_feedback),
        "perceived_empathy": lambda: o["perceived_empathy"].round(4),
        "intake_phq9": lambda: o["intake_phq9"].astype(int),
        "final_phq9": lambda: o["final_phq9"].astype(int),
        "followup_phq9": lambda: o["followup_phq9"].astype(int),
        "sessions_attended": lambda: o["sessions_attended"],
        "end_type": lambda: np.asarray(dyn.END_TYPES)[o["end_type"]],
        "end_session": lambda: o["end_session"],
        "dropout_cause": lambda: np.asarray(dyn.DROPOUT_CAUSES)[o["dropout_cause"]],
        "dropout_category": lambda: category[o["dropout_cause"]],
        "early_alliance": lambda: o["early_alliance"].round(3),
        "mean_alliance": lambda: o["mean_alliance"].round(3),
        "early_goal_agreement": lambda: o["early_goal_agreement"].round(3),
        "early_change": lambda: o["early_change"],
        "ruptures": lambda: o["ruptures"],
        "repairs": lambda: o["repairs"],
        "reliable_improvement": lambda: flags["reliable_improvement"],
        "reliable_deterioration": lambda: flags["reliable_deterioration"],
        "recovery": lambda: flags["recovery"],
        "reliable_recovery": lambda: flags["reliable_recovery"],
        "sudden_gain": lambda: gains()[0],
        "sudden_gain_reversed": lambda: gains()[1],
        "sudden_gain_events": lambda: o["sudden_gains"],
        "responsiveness": lambda: o["responsiveness"].round(3),
        "therapist_retention": lambda: o["therapist_retention"].round(4),
        "finished_course": lambda: flags["finished"],
        "not_on_track": lambda: o["not_on_track"],
        "relapse": lambda: o["relapse"],
        "relapse_week": lambda: o["relapse_week"],
        "caseness_week": lambda: o["caseness_week"],
    }
    for j, reason in enumerate(REASONS):
        makers[f"share_{reason}"] = lambda j=j: np.where(dropped, o["reason_shares"][..., j], np.nan).round(6)
    return {k: make() for k, make in makers.items() if columns is None or k in columns}


def clients_table(cohort, outcomes: dict[str, np.ndarray], s: int = 0) -> pd.DataFrame:
    """One row per client of parameter set ``s``."""
    return pd.DataFrame({k: v[s] for k, v in client_columns(cohort, outcomes).items()})


def _event_names(events: np.ndarray) -> np.ndarray:
    names = np.full(events.shape, "", dtype=object)
    attended = (events & dyn.ATTENDED) > 0
    names[attended] = "attended"
    for flag, name, _ in EVENTS:
        hit = (events & flag) > 0
        names[hit] = np.where(names[hit] == "", name, names[hit] + ";" + name)
    return names


def sessions_table(cohort, s: int = 0) -> pd.DataFrame:
    """One row per client and weekly slot of parameter set ``s`` while the client's course ran.

    bond, goal and task are on their WAI-SR subscales (4-20), alliance on the total (12-60);
    disclosure, hope and engagement on 0-1. They are the dyad's state after the week. phq9 is the
    score administered at the session, empty when no session took place.
    """
    rec = cohort.record.arrays()
    weeks, _, n = rec["events"].shape
    active = rec["active"][:, s, :]
    w_idx, c_idx = np.nonzero(active)
    order = np.lexsort((w_idx, c_idx))
    w_idx, c_idx = w_idx[order], c_idx[order]

    def col(name):
        return rec[name][:, s, :][w_idx, c_idx]

    bond, goal, task = (4.0 + 16.0 * col(k).astype(float) for k in ("bond", "goal", "task"))
    events = col("events")
    return pd.DataFrame(
        {
            "client_id": c_idx,
            "session": w_idx + 1,
            "attended": (events & dyn.ATTENDED) > 0,
            "bond": bond.round(3),
            "goal": goal.round(3),
            "task": task.round(3),
            "alliance": (bond + goal + task).round(3),
            "disclosure": col("disclosure").astype(float).round(4),
            "hope": col("hope").astype(float).round(4),
            "engagement": col("engagement").astype(float).round(4),
            "phq9": col("phq9").astype(float),
            "event": _event_names(events),
        }
    )


def events_table(cohort, s: int = 0) -> pd.DataFrame:
    """One row per notable event of parameter set ``s``, in session order, with plain text."""
    rec = cohort.record.arrays()
    events = rec["events"][:, s, :]
    rupture_cause = rec["rupture_cause"][:, s, :]
    therapist = cohort.assignment[s]
    dropout_cause = np.asarray(dyn.DROPOUT_CAUSES)[cohort.state.dropout_cause[s]]
    planned = int(cohort.p["planned_sessions"][s, 0])
    frames = []
    for rank, (flag, name, text) in enumerate(EVENTS):
        w_idx, c_idx = np.nonzero(events & flag)
        if len(w_idx) == 0:
            continue
        cause = np.full(len(w_idx), "", dtype=object)
        texts = np.full(len(w_idx), text, dtype=object)
        if flag == dyn.RUPTURE:
            cause = np.asarray(dyn.RUPTURE_CAUSES, dtype=object)[rupture_cause[w_idx, c_idx]]
            texts = np.where(cause == "a break", "rupture after a break in therapy", "rupture: " + cause)
        elif flag == dyn.DROPOUT:
            cause = dropout_cause[c_idx].astype(object)
            texts = "dropped out: " + np.vectorize(DROPOUT_TEXT.get, otypes=[object])(cause)
        elif flag == dyn.COMPLETED:
            texts = np.array([completion_text(a, planned) for a in cohort.state.attended[s, c_idx]], dtype=object)
        frames.append(
            pd.DataFrame(
                {
                    "session": w_idx + 1,
                    "client_id": c_idx,
                    "therapist_id": therapist[c_idx],
                    "event": name,
                    "cause": cause,
                    "text": texts,
                    "_rank": rank,
                }
            )
        )
    columns = ["session", "client_id", "therapist_id", "event", "cause", "text"]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True).sort_values(["client_id", "session", "_rank"], kind="stable")
    table["text"] = "session " + table["session"].astype(str) + ": " + table["text"]
    return table[columns].reset_index(drop=True)
