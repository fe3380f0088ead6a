"""One dyad's course in plain language: who the client is, what happened session by session, how it ended.

Pure functions over the output tables of one run (``clients``, ``sessions``, ``events``; see
:mod:`sim.records`). The event log supplies the wording of each event; the sessions table supplies
the alliance and PHQ-9 around them.
"""

from __future__ import annotations

import pandas as pd

from sim.dynamics import CASENESS
from sim.outcomes import RELIABLE_CHANGE
from sim.records import DROPOUT_TEXT, completion_text

PICKS = {
    "dropout": ("dropped out", lambda c: c["end_type"] == "dropout"),
    "recovered": ("recovered", lambda c: c["recovery"].astype(bool)),
    "deteriorated": ("reliably deteriorated", lambda c: c["reliable_deterioration"].astype(bool)),
    "rupture-repaired": ("had a rupture repaired", lambda c: c["repairs"] >= 1),
}
# PHQ-9 severity bands (Kroenke, Spitzer & Williams 2001, doi:10.1046/j.1525-1497.2001.016009606.x).
SEVERITY = ((20, "severe"), (15, "moderately severe"), (10, "moderate"), (5, "mild"), (0, "minimal"))


class VignetteError(ValueError):
    """No such client, or no client matches a pick; the message says what to try instead."""


def severity(phq9: float) -> str:
    """The PHQ-9 severity band of a score, e.g. 'moderate' for 12."""
    return next(label for low, label in SEVERITY if phq9 >= low)


def pick_client(clients: pd.DataFrame, pick: str) -> int:
    """The lowest client id matching ``pick`` (one of :data:`PICKS`).

    Raises:
        VignetteError: an unknown pick, or no client matches.
    """
    if pick not in PICKS:
        raise VignetteError(f"--pick {pick!r} is not one of {', '.join(PICKS)}.")
    label, matches = PICKS[pick]
    ids = clients.loc[matches(clients), "client_id"]
    if ids.empty:
        raise VignetteError(
            f"no client in this run {label} ({len(clients)} clients): try more clients with --clients, "
            f"another seed with --seed, or another --pick."
        )
    return int(ids.min())


def client_row(clients: pd.DataFrame, client_id: int) -> pd.Series:
    """The clients-table row of ``client_id``.

    Raises:
        VignetteError: no such client.
    """
    rows = clients[clients["client_id"] == client_id]
    if rows.empty:
        last = int(clients["client_id"].max())
        raise VignetteError(f"no client {client_id} in this run: use an id from 0 to {last} (or --clients to grow it).")
    return rows.iloc[0]


def profile_text(row: pd.Series) -> str:
    """The client and therapist at intake, in one paragraph."""
    match = "a cultural match" if row["cultural_match"] else "no cultural match"
    feedback = "uses" if row["therapist_uses_feedback"] else "does not use"
    return (
        f"Client {row['client_id']}: {row['attachment_style']} attachment (anxiety {row['attachment_anxiety']:.1f}, "
        f"avoidance {row['attachment_avoidance']:.1f} on the ECR-R 1-7 scale); culture group {row['client_culture']} "
        f"with a therapist of group {row['therapist_culture']}: {match}; outcome expectancy "
        f"{row['expectancy']:.2f} (0-1); intake PHQ-9 {row['intake_phq9']} ({severity(row['intake_phq9'])}). "
        f"Therapist {row['therapist_id']}: empathy {row['therapist_empathy']:.2f} (0-1; the client perceives "
        f"{row['perceived_empathy']:.2f}); {feedback} routine outcome feedback."
    )


def _state(week: pd.Series) -> str:
    if not week["attended"]:
        return ""
    return f" (alliance {week['alliance']:.1f}, PHQ-9 {week['phq9']:.0f})"


def course_lines(sessions: pd.DataFrame, events: pd.DataFrame, intake_phq9: int) -> list[str]:
    """The course session by session: one line per week with an event, quiet stretches merged.

    Args:
        sessions: the client's rows of the sessions table.
        events: the client's rows of the events table.
        intake_phq9: the intake score, for the first fall below caseness.

    Returns:
        Lines such as ``"session 4: attended (alliance 40.2, PHQ-9 17); rupture after a break in
        therapy; not repaired"``.
    """
    sessions = sessions.sort_values("session")
    texts = events.groupby("session")["text"].apply(lambda t: [x.split(": ", 1)[1] for x in t]).to_dict()
    repaired_after = set(events.loc[events["event"] == "repair", "session"])
    below = sessions[sessions["attended"] & (sessions["phq9"] < CASENESS)]
    first_below = int(below["session"].iloc[0]) if intake_phq9 >= CASENESS and len(below) else None

    lines, quiet = [], []

    def flush():
        if quiet:
            a, b = quiet[0], quiet[-1]
            span = f"session {a['session']}" if len(quiet) == 1 else f"sessions {a['session']}-{b['session']}"
            lines.append(
                f"{span}: attended; alliance {a['alliance']:.1f} -> {b['alliance']:.1f}, "
                f"PHQ-9 {a['phq9']:.0f} -> {b['phq9']:.0f}"
                if len(quiet) > 1
                else f"{span}: attended{_state(a)}"
            )
            quiet.clear()

    for _, week in sessions.iterrows():
        w = int(week["session"])
        parts = list(texts.get(w, []))
        if w == first_below:
            parts.append(f"PHQ-9 below caseness ({CASENESS}) for the first time")
        if not parts:
            if week["attended"]:
                quiet.append(week)
            continue
        flush()
        events_w = events[events["session"] == w]
        if (events_w["event"] == "rupture").any() and not any(s > w for s in repaired_after):
            parts.append("not repaired")
        lead = f"attended{_state(week)}; " if week["attended"] else ""
        lines.append(f"session {w}: {lead}{'; '.join(parts)}")
    flush()
    return lines


def ending_text(row: pd.Series, followup_weeks: int | None = None, planned_sessions: int | None = None) -> str:
    """Why and when the course ended, and where the client's symptoms stood after it.

    A completed course ended either with every planned session attended or, with sessions missed
    or cancelled, when the course's window (planned sessions plus extra weeks) closed; knowing
    ``planned_sessions`` the text says which.
    """
    week, attended = row["end_session"], row["sessions_attended"]
    if row["end_type"] == "dropout":
        cause = DROPOUT_TEXT.get(row["dropout_cause"], str(row["dropout_cause"]).replace("_", " "))
        how = f"The client dropped out in week {week}, after {attended} sessions attended: {cause}."
    elif row["end_type"] == "good_enough":
        how = f"Therapist and client ended by agreement in week {week}, after {attended} sessions: good enough."
    elif row["end_type"] == "completed":
        if planned_sessions is None:
            how = f"The course ended in week {week} as scheduled, with {attended} sessions attended."
        else:
            how = f"The course ended in week {week}: {completion_text(attended, planned_sessions)}."
    else:
        how = f"The course was still running in week {week}."
    intake, final, follow = row["intake_phq9"], row["final_phq9"], row["followup_phq9"]
    later = f"at follow-up {followup_weeks} weeks later" if followup_weeks else "at follow-up"
    change = "reliable improvement" if row["reliable_improvement"] else "no reliable change"
    if row["reliable_deterioration"]:
        change = "reliable deterioration"
    if intake < CASENESS:
        recovered = "below caseness at intake, so recovery does not apply"
    elif row["recovery"]:
        recovered = f"recovered (from caseness at intake to below it, PHQ-9 < {CASENESS}, at the end)"
    else:
        recovered = f"not recovered (still at caseness, PHQ-9 >= {CASENESS}, at the end)"
    relapse = " The gains did not hold: a relapse by follow-up." if row.get("relapse", False) else ""
    return (
        f"{how} PHQ-9 {intake} at intake, {final} at the end-of-course assessment ({severity(final)}), "
        f"{follow} {later}: "
        f"{change} (reliable: a change of {RELIABLE_CHANGE} points or more); {recovered}.{relapse}"
    )


def narrative(
    clients: pd.DataFrame,
    sessions: pd.DataFrame,
    events: pd.DataFrame,
    client_id: int,
    scenario: str = "",
    followup_weeks: int | None = None,
    planned_sessions: int | None = None,
) -> str:
    """The vignette as Markdown: profile at intake, the course session by session, the ending.

    Args:
        clients, sessions, events: the run's tables (:mod:`sim.records`).
        client_id: the client to follow.
        scenario: the scenario's name, for the heading.
        followup_weeks: length of the follow-up, for the wording of the follow-up score.
        planned_sessions: the course's planned sessions, to tell a completed course from a closed window.

    Raises:
        VignetteError: no such client.
    """
    row = client_row(clients, client_id)
    own = sessions[sessions["client_id"] == client_id]
    log = events[events["client_id"] == client_id]
    where = f", scenario {scenario}" if scenario else ""
    lines = [
        f"# Vignette: client {client_id}{where}",
        "",
        "## At intake",
        "",
        profile_text(row),
        "",
        "## The course, session by session",
        "",
        *(f"- {line}" for line in course_lines(own, log, int(row["intake_phq9"]))),
        "",
        "## How it ended",
        "",
        ending_text(row, followup_weeks, planned_sessions),
        "",
    ]
    return "\n".join(lines)
