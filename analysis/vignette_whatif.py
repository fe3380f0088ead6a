"""A what-if vignette in plain language: the same client's two courses, week by week, side by side.

The two courses share every random draw (:mod:`sim.vignette`), so the text can say what the change
did: "With therapist empathy at 0.8 instead of 0.6, the rupture in week 4 is repaired in week 5
and the client completes the course." The sentence is built from the two event logs: how each
course ended, and the first rupture whose fate differs.
"""

from __future__ import annotations

import pandas as pd

from analysis.vignette import client_row, client_text, ending_text, scores_text, severity, therapist_text
from sim.display import parameter_label, parameter_value
from sim.records import DROPOUT_TEXT


def ruptures(events: pd.DataFrame) -> list[tuple[int, int | None, str]]:
    """Each rupture of one client's course: (week, week repaired or None, what it was put down to)."""
    found: list[tuple[int, int | None, str]] = []
    for _, e in events.sort_values("session", kind="stable").iterrows():
        if e["event"] == "rupture":
            found.append((int(e["session"]), None, str(e["cause"])))
        elif e["event"] == "repair" and found and found[-1][1] is None:
            week, _, cause = found[-1]
            found[-1] = (week, int(e["session"]), cause)
    return found


# A therapist population mean, and the trait of the client's own therapist it moves.
OWN_TRAIT = {
    "therapist_empathy_mean": "empathy",
    "therapist_humility_mean": "humility",
    "therapist_repair_mean": "repair_skill",
    "therapist_consistency_mean": "consistency",
    "therapist_competence_mean": "competence",
}


def change_phrase(v) -> str:
    """The change, as a sentence opens: "With therapist empathy (mean) at 0.8 instead of 0.6 (...)"."""
    parts = []
    for name, value in v.changes.items():
        new, old = parameter_value(name, value), parameter_value(name, v.scenario.params[name])
        text = f"{parameter_label(name)} at {new} instead of {old}"
        if name in OWN_TRAIT and v.other_therapist is None:
            trait = OWN_TRAIT[name]
            mine = f"{v.what_if.therapist[trait]:.2f} instead of {v.course.therapist[trait]:.2f}"
            text += f" (this client's therapist: {mine})"
        parts.append(text)
    if v.other_therapist is not None:
        parts.append(f"therapist {v.what_if.therapist['id']} instead of therapist {v.course.therapist['id']}")
    return "With " + " and ".join(parts)


def _ending(row: pd.Series) -> str:
    week = row["end_session"]
    if row["end_type"] == "dropout":
        return f"drops out in week {week} ({DROPOUT_TEXT.get(row['dropout_cause'], row['dropout_cause'])})"
    if row["end_type"] == "good_enough":
        return f"ends by agreement in week {week}, good enough"
    return f"completes the course in week {week} ({row['sessions_attended']} sessions)"


def outcome_phrase(a: pd.Series, b: pd.Series) -> str:
    """How the what-if's ending differs from the course as run."""
    dropped_a, dropped_b = a["end_type"] == "dropout", b["end_type"] == "dropout"
    if dropped_a and not dropped_b:
        return f"the client stays and {_ending(b)}"
    if dropped_b and not dropped_a:
        return f"the client {_ending(b)}"
    if dropped_a and dropped_b:
        if a["end_session"] == b["end_session"]:
            return f"the client still drops out in week {a['end_session']}"
        return f"the client drops out in week {b['end_session']} instead of week {a['end_session']}"
    same = a["end_type"] == b["end_type"] and a["end_session"] == b["end_session"]
    ended = "the course ends as before" if same else f"the client {_ending(b)}"
    if a["final_phq9"] == b["final_phq9"]:
        return f"{ended}, with the same end-of-course PHQ-9 ({a['final_phq9']})"
    return f"{ended}, with an end-of-course PHQ-9 of {b['final_phq9']} instead of {a['final_phq9']}"


def rupture_phrase(a: list, b: list) -> str:
    """The first rupture whose fate differs between the two courses, or "" when none does."""
    b_by_week = {week: repaired for week, repaired, _ in b}
    for week, repaired, _ in a:
        if week not in b_by_week:
            return f"the rupture of week {week} does not happen"
        other = b_by_week[week]
        if repaired is None and other is not None:
            return f"the rupture in week {week} is repaired (week {other})"
        if repaired is not None and other is None:
            return f"the rupture in week {week} is not repaired"
        if repaired != other:
            return f"the rupture in week {week} is repaired in week {other} instead of week {repaired}"
    a_weeks = {week for week, _, _ in a}
    for week, repaired, cause in b:
        if week not in a_weeks:
            fate = f"repaired in week {repaired}" if repaired is not None else "never repaired"
            return f"a rupture strikes in week {week} ({cause}, {fate})"
    return ""


def headline(v) -> str:
    """One sentence: what the change did to this client's course."""
    a = client_row(v.course.clients, v.client_id)
    b = client_row(v.what_if.clients, v.client_id)
    log_a = v.course.events[v.course.events["client_id"] == v.client_id]
    log_b = v.what_if.events[v.what_if.events["client_id"] == v.client_id]
    rupture = rupture_phrase(ruptures(log_a), ruptures(log_b))
    middle = f"{rupture} and " if rupture else ""
    return f"{change_phrase(v)}, {middle}{outcome_phrase(a, b)}."


def _week_cell(sessions: pd.DataFrame, events: pd.DataFrame, week: int) -> str:
    row = sessions[sessions["session"] == week]
    if row.empty:
        return "(course over)"
    row = row.iloc[0]
    parts = [f"attended (alliance {row['alliance']:.1f}, PHQ-9 {row['phq9']:.0f})"] if row["attended"] else []
    texts = events.loc[events["session"] == week, "text"].str.split(": ", n=1).str[1]
    parts += [t.replace("the client did not attend", "did not attend") for t in texts]
    return "; ".join(parts) or "no session"


def week_table(v) -> list[str]:
    """The two courses week by week as a Markdown table; weeks where they differ in bold."""
    courses = (v.course, v.what_if)
    own = [(c.sessions[c.sessions["client_id"] == v.client_id], c.events[c.events["client_id"] == v.client_id])
           for c in courses]  # fmt: skip
    last = max(int(s["session"].max()) for s, _ in own if len(s))
    lines = ["| week | as run | " + courses[1].label + " |", "| --- | --- | --- |"]
    for week in range(1, last + 1):
        cells = [_week_cell(s, e, week) for s, e in own]
        mark = "**" if cells[0] != cells[1] else ""
        lines.append(f"| {mark}{week}{mark} | {cells[0]} | {cells[1]} |")
    return lines


def _summary_rows(v) -> list[str]:
    rows = [client_row(c.clients, v.client_id) for c in (v.course, v.what_if)]
    logs = [c.events[c.events["client_id"] == v.client_id] for c in (v.course, v.what_if)]

    def scores(r):
        return f"{r['intake_phq9']} -> {r['final_phq9']} ({severity(r['final_phq9'])}) -> {r['followup_phq9']}"

    def fates(log):
        found = ruptures(log)
        return f"{len(found)}, {sum(r is not None for _, r, _ in found)} repaired"

    lines = ["| | as run | " + v.what_if.label + " |", "| --- | --- | --- |"]
    lines.append(f"| therapist | {therapist_text(rows[0])} | {therapist_text(rows[1])} |")
    lines.append(f"| sessions attended | {rows[0]['sessions_attended']} | {rows[1]['sessions_attended']} |")
    lines.append(f"| ruptures | {fates(logs[0])} | {fates(logs[1])} |")
    lines.append(f"| ending | {_ending(rows[0])} | {_ending(rows[1])} |")
    lines.append(f"| PHQ-9: intake -> end-of-course -> follow-up | {scores(rows[0])} | {scores(rows[1])} |")
    return lines


def what_if_narrative(v) -> str:
    """The what-if vignette as Markdown: the client, the headline, both courses side by side, both endings."""
    a = client_row(v.course.clients, v.client_id)
    b = client_row(v.what_if.clients, v.client_id)
    followup = int(v.course.params["followup_weeks"])
    planned = [int(c.params["planned_sessions"]) for c in (v.course, v.what_if)]
    lines = [
        f"# Vignette: client {v.client_id}, scenario {v.scenario.name}, {v.what_if.label}",
        "",
        "## The client at intake (the same in both courses)",
        "",
        client_text(a),
        "",
        "## Two courses, the same luck",
        "",
        "Both courses use the same random draws for this client (whether they come each week, whether a "
        "rupture strikes, whether a repair takes, life events, the error of each PHQ-9), so every difference "
        "below comes from the change.",
        "",
        f"**{headline(v)}**",
        "",
        *_summary_rows(v),
        "",
        "## Week by week",
        "",
        *week_table(v),
        "",
        "## How each course ended",
        "",
        f"**As run.** {ending_text(a, followup, planned[0])}",
        "",
        f"**{v.what_if.label.capitalize()}.** {ending_text(b, followup, planned[1])}",
        "",
        "## About the scores",
        "",
        scores_text(
            a,
            v.course.sessions[v.course.sessions["client_id"] == v.client_id],
            v.course.events[v.course.events["client_id"] == v.client_id],
            v.course.params,
        ),
        "",
    ]
    return "\n".join(lines)
