"""One dyad's course in plain language: who the client is, what happened session by session, how it ended.

Pure functions over the output tables of one run (``clients``, ``sessions``, ``events``; see
:mod:`sim.records`). The event log supplies the wording of each event; the sessions table supplies
the alliance and PHQ-9 around them. The scores are explained where a reader would stop: why the
intake score differs from session 1's, and what the end-of-course assessment is.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from sim.dynamics import CASENESS
from sim.outcomes import RELIABLE_CHANGE
from sim.reasons import CATEGORY_OF, CATEGORY_TEXT, REASON_TEXT, REASONS
from sim.records import DROPOUT_TEXT, completion_text
from sim.vignette import VignetteError

# Each pick names what every match has in common (a client with one repaired and one open rupture
# is not "rupture-repaired").
PICKS = {
    "dropout": ("dropped out", lambda c: c["end_type"] == "dropout"),
    "completed": ("completed the course", lambda c: c["end_type"] == "completed"),
    "good-enough": ("ended by agreement (good enough)", lambda c: c["end_type"] == "good_enough"),
    "recovered": ("recovered", lambda c: c["recovery"].astype(bool)),
    "deteriorated": ("reliably deteriorated", lambda c: c["reliable_deterioration"].astype(bool)),
    "rupture-repaired": (
        "had every rupture repaired",
        lambda c: (c["ruptures"] >= 1) & (c["repairs"] == c["ruptures"]),
    ),
    "rupture-unrepaired": ("left a rupture unrepaired", lambda c: c["repairs"] < c["ruptures"]),
    "dropout-unrepaired": (
        "dropped out with a rupture unrepaired",
        lambda c: (c["end_type"] == "dropout") & (c["repairs"] < c["ruptures"]),
    ),
    "matched": ("saw a therapist of their own culture group", lambda c: c["cultural_match"].astype(bool)),
    "mismatched": ("saw a therapist of another culture group", lambda c: ~c["cultural_match"].astype(bool)),
}
PICK_STREAM = zlib.crc32(b"vignette pick")  # keys the Generator of --random, as sim.streams keys its streams
# PHQ-9 severity bands (Kroenke, Spitzer & Williams 2001, doi:10.1046/j.1525-1497.2001.016009606.x).
SEVERITY = ((20, "severe"), (15, "moderately severe"), (10, "moderate"), (5, "mild"), (0, "minimal"))
__all__ = ["PICKS", "VignetteError", "narrative", "pick_client"]


def severity(phq9: float) -> str:
    """The PHQ-9 severity band of a score, e.g. 'moderate' for 12."""
    return next(label for low, label in SEVERITY if phq9 >= low)


def pick_client(clients: pd.DataFrame, pick: str | list[str] | None, nth: int = 1, seed: int | None = None) -> int:
    """A client whose course went as ``pick`` says: the ``nth`` match, by id or in a seeded random order.

    Args:
        clients: the clients table of the run.
        pick: one of :data:`PICKS`, several (a client must match all: ``["dropout", "mismatched"]``),
            or None for every client.
        nth: which match, from 1.
        seed: shuffle the matches with a Generator seeded from it (``--random``); None keeps id order.

    Raises:
        VignetteError: an unknown pick, no match, or fewer matches than ``nth``.
    """
    picks = [pick] if isinstance(pick, str) else list(pick or [])
    unknown = [p for p in picks if p not in PICKS]
    if unknown:
        raise VignetteError(f"--pick {unknown[0]!r} is not one of {', '.join(PICKS)}.")
    label = " and ".join(PICKS[p][0] for p in picks)
    chosen = np.ones(len(clients), dtype=bool)
    for p in picks:
        chosen &= np.asarray(PICKS[p][1](clients), dtype=bool)
    ids = np.sort(clients.loc[chosen, "client_id"].to_numpy())
    if not len(ids):
        raise VignetteError(
            f"no client in this run {label} ({len(clients)} clients): try more clients with --clients, "
            f"another seed with --seed, or another --pick."
        )
    if nth < 1 or nth > len(ids):
        raise VignetteError(
            f"--nth {nth}: {len(ids)} clients in this run {label or 'in all'}; use --nth from 1 to {len(ids)} "
            "(or more clients with --clients)."
        )
    if seed is not None:
        ids = np.random.default_rng([seed, PICK_STREAM]).permutation(ids)
    return int(ids[nth - 1])


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


def client_text(row: pd.Series) -> str:
    """The client at intake: attachment, culture, hope and severity."""
    return (
        f"Client {row['client_id']}: {row['attachment_style']} attachment (anxiety {row['attachment_anxiety']:.1f}, "
        f"avoidance {row['attachment_avoidance']:.1f} on the ECR-R 1-7 scale); culture group {row['client_culture']}; "
        f"outcome expectancy {row['expectancy']:.2f} (0-1); intake PHQ-9 {row['intake_phq9']} "
        f"({severity(row['intake_phq9'])})."
    )


def therapist_text(row: pd.Series) -> str:
    """The client's therapist, as the client meets them."""
    match = "a cultural match" if row["cultural_match"] else "no cultural match"
    feedback = "uses" if row["therapist_uses_feedback"] else "does not use"
    return (
        f"Therapist {row['therapist_id']}: culture group {row['therapist_culture']} ({match}); empathy "
        f"{row['therapist_empathy']:.2f} (0-1; the client perceives {row['perceived_empathy']:.2f}); {feedback} "
        "routine outcome feedback."
    )


def profile_text(row: pd.Series) -> str:
    """The client and therapist at intake, in one paragraph."""
    return f"{client_text(row)} {therapist_text(row)}"


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


MINOR_SHARE = 0.05  # reasons with a smaller share of a dropout are left out of its account


def reasons_text(row: pd.Series, sessions: pd.DataFrame | None = None) -> str:
    """What pushed a client out, in plain words with the shares of the reasons and what showed them.

    "mostly practical barriers (62%: missed 3 of the last 4 weeks); an unrepaired rupture (25%: the
    rupture of week 6 still open) added to it (as clients report it: practical or circumstantial
    constraints)", from the clients table's ``share_<reason>`` columns (a dropout's shares sum to
    one) and, given the client's rows of the sessions table, the course that shows each reason; the
    main reason's words alone when the table has no shares.
    """
    cause = row["dropout_cause"]
    main = DROPOUT_TEXT.get(cause, str(cause).replace("_", " "))
    shares = {r: float(row[f"share_{r}"]) for r in REASONS if f"share_{r}" in row.index and pd.notna(row[f"share_{r}"])}
    if not shares:
        return main
    order = sorted(shares, key=shares.get, reverse=True)
    lead = order[0]
    seen = _evidence(row, sessions) if sessions is not None else {}

    def part(reason: str) -> str:
        shown = seen.get(reason)
        return f"{REASON_TEXT[reason]} ({shares[reason]:.0%}{': ' + shown if shown else ''})"

    text = f"{'mostly' if shares[lead] >= 0.5 else 'above all'} {part(lead)}"
    others = [part(r) for r in order[1:] if shares[r] >= MINOR_SHARE]
    if others:
        joined = others[0] if len(others) == 1 else ", ".join(others[:-1]) + f" and {others[-1]}"
        text += f"; {joined} added to it"
    return f"{text} (as clients report it: {CATEGORY_TEXT[CATEGORY_OF[lead]]})"


def _evidence(row: pd.Series, sessions: pd.DataFrame) -> dict[str, str]:
    """What in the client's course shows each reason, in a few words (the sessions table's rows of one client)."""
    weeks = sessions.sort_values("session")
    last = weeks.tail(4)
    missed = last["event"].astype(str).str.contains("missed").sum()
    broken = weeks["event"].astype(str).str.contains("cancelled|holiday").sum()
    attended = weeks[weeks["attended"]]
    out: dict[str, str] = {}
    if missed:
        out["practical_barriers"] = out["low_engagement"] = f"missed {missed} of the last {len(last)} weeks"
    if broken:
        out["therapy_breaks"] = f"{broken} cancelled or holiday {'week' if broken == 1 else 'weeks'}"
    ruptures = weeks[weeks["event"].astype(str).str.contains("rupture")]
    if row["ruptures"] > row["repairs"] and len(ruptures):
        out["unrepaired_rupture"] = f"the rupture of week {int(ruptures['session'].iloc[-1])} still open"
    if len(attended):
        out["weak_alliance"] = (
            f"alliance {attended['alliance'].iloc[-1]:.0f} on the WAI-SR at the last session, below 48"
        )
        phq = attended["phq9"].dropna()
        if len(phq) and phq.iloc[-1] < row["intake_phq9"]:
            out["felt_better"] = f"PHQ-9 down from {int(row['intake_phq9'])} to {int(phq.iloc[-1])}"
    return out


def ending_text(
    row: pd.Series,
    followup_weeks: int | None = None,
    planned_sessions: int | None = None,
    sessions: pd.DataFrame | None = None,
) -> str:
    """Why and when the course ended, and where the client's symptoms stood after it.

    A completed course ended either with every planned session attended or, with sessions missed
    or cancelled, when the course's window (planned sessions plus extra weeks) closed; knowing
    ``planned_sessions`` the text says which.
    """
    week, attended = row["end_session"], row["sessions_attended"]
    if row["end_type"] == "dropout":
        sessions_word = "session" if attended == 1 else "sessions"
        how = (
            f"The client dropped out in week {week}, after {attended} {sessions_word} attended: "
            f"{reasons_text(row, sessions)}."
        )
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


def scores_text(row: pd.Series, sessions: pd.DataFrame, events: pd.DataFrame, params: dict) -> str:
    """Why the client's PHQ-9 scores differ from one another: each is a separate administration.

    Args:
        row: the client's row of the clients table.
        sessions, events: the client's rows of the sessions and events tables.
        params: the run's parameters (measurement error, outcome measure).
    """
    error = float(params["measurement_error_sd"])
    attended = sessions[sessions["attended"]].sort_values("session")
    parts = []
    if len(attended):
        first = attended.iloc[0]
        week = int(first["session"])
        stress = events[(events["event"] == "life_event") & (events["session"] <= week)]
        moved = (
            f", and a stressful life event in week {int(stress['session'].iloc[0])} added to it" if len(stress) else ""
        )
        parts.append(
            f"The intake PHQ-9 ({row['intake_phq9']}) and the score at the first session attended "
            f"({first['phq9']:.0f}, week {week}) are separate administrations: each carries measurement error "
            f"(SD {error:g} points), and the client's true severity moves between them{moved}."
        )
    else:
        parts.append("The client never attended a session, so the intake is the only score taken in therapy.")
    if params.get("outcome_measure", "end_assessment") == "last_observed":
        parts.append(
            f"In this scenario, as in routine care, nobody is assessed after leaving: the final score "
            f"({row['final_phq9']}) is the last one taken, and outcomes are scored on it."
        )
    else:
        last = (
            f"the last session's {attended.iloc[-1]['phq9']:.0f} (week {int(attended.iloc[-1]['session'])})"
            if len(attended)
            else "a session score"
        )
        everyone = " (those who dropped out too, as a trial assesses everyone it enrolled)"
        parts.append(
            f"The end-of-course assessment ({row['final_phq9']}) is one more administration, given when the course "
            f"ended in week {row['end_session']} to every client{everyone}; recovery and reliable change are "
            f"scored on it, not on {last}, so the two can differ by "
            "measurement error and by what happened since."
        )
    return " ".join(parts)


def narrative(
    clients: pd.DataFrame,
    sessions: pd.DataFrame,
    events: pd.DataFrame,
    client_id: int,
    scenario: str = "",
    followup_weeks: int | None = None,
    planned_sessions: int | None = None,
    params: dict | None = None,
) -> str:
    """The vignette as Markdown: profile at intake, the course session by session, the ending, the scores.

    Args:
        clients, sessions, events: the run's tables (:mod:`sim.records`).
        client_id: the client to follow.
        scenario: the scenario's name, for the heading.
        followup_weeks: length of the follow-up, for the wording of the follow-up score.
        planned_sessions: the course's planned sessions, to tell a completed course from a closed window.
        params: the run's parameters; supply the follow-up, planned sessions, measurement error and
            outcome measure, and add the section on how the scores relate.

    Raises:
        VignetteError: no such client.
    """
    if params is not None:
        followup_weeks = int(params["followup_weeks"]) if followup_weeks is None else followup_weeks
        planned_sessions = int(params["planned_sessions"]) if planned_sessions is None else planned_sessions
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
        ending_text(row, followup_weeks, planned_sessions, own),
        "",
    ]
    if params is not None:
        lines += ["## About the scores", "", scores_text(row, own, log, params), ""]
    return "\n".join(lines)
