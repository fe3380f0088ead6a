"""The scenario library shows what its teaching notes tell students to look for.

Each claim a teaching note makes ("Look for: ...") is checked on the scenario's own run against the
scenario it is contrasted with, both on the same seed (the same clients and the same luck, so the
difference is the scenario's). Cohorts of 3,000 clients keep sampling error well inside the
margins: a share's standard error is below one percentage point.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from sim.cli import main
from sim.run import simulate
from sim.scenario import list_scenarios

LIBRARY = {
    "baseline",
    "low_empathy",
    "cultural_mismatch",
    "cultural_mismatch_humility",
    "anxious_breaks",
    "avoidant_withdrawal",
    "repair_skilled",
    "repair_unskilled",
    "inconsistent_therapist",
    "feedback_informed",
    "high_barriers",
    "routine_care",
}
CLIENTS, SEED = 3000, 17


@cache
def run(name: str):
    return simulate(name, clients=CLIENTS, seed=SEED)


def dropout_share(name: str, cause: str | None = None) -> float:
    c = run(name).clients
    dropped = c["end_type"] == "dropout"
    return float(np.mean(dropped if cause is None else dropped & (c["dropout_cause"] == cause)))


def repaired_share(name: str) -> float:
    c = run(name).clients
    return c["repairs"].sum() / c["ruptures"].sum()


def reason_mix(name: str, column: str = "dropout_category"):
    """Share of a scenario's dropouts by main reason (``dropout_cause``) or its category."""
    c = run(name).clients
    return c.loc[c["end_type"] == "dropout", column].value_counts(normalize=True)


def mean_share(name: str, reason: str) -> float:
    """The mean share of a reason in the chance of leaving of a scenario's dropouts (its contribution)."""
    c = run(name).clients
    return float(c.loc[c["end_type"] == "dropout", f"share_{reason}"].mean())


def rupture_causes(name: str):
    events = run(name).events
    return events.loc[events["event"] == "rupture", "cause"].value_counts(normalize=True)


# ── the library itself ──────────────────────────────────────────────────────────────────────────


def test_the_library_has_every_named_scenario_with_a_full_teaching_note():
    scenarios = {s.name: s for s in list_scenarios()}
    assert LIBRARY <= set(scenarios), f"missing scenarios: {sorted(LIBRARY - set(scenarios))}"
    for name in LIBRARY:
        note = scenarios[name].teaching_note
        for part in ("Demonstrates", "Look for:", "Literature:"):
            assert part in note, f"{name}'s teaching note lacks '{part}'"
        assert scenarios[name].description, f"{name} has no one-line description"


def test_scenarios_command_lists_each_with_its_line(capsys):
    assert main(["scenarios"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for s in list_scenarios():
        assert any(line.split()[0] == s.name and s.description in line for line in lines), s.name


# ── what the notes say to look for ──────────────────────────────────────────────────────────────


def test_baseline_dropout_is_likeliest_early_and_repairs_lift_the_alliance():
    c = run("baseline").clients
    dropped = c[c["end_type"] == "dropout"]
    early = np.mean(dropped["sessions_attended"] <= 3)
    assert 0.4 <= early <= 0.75, f"about half or more of dropouts should come within three sessions, got {early:.2f}"
    hazard_early = np.mean(dropped["end_session"] <= 3) / 3
    hazard_later = np.mean((dropped["end_session"] > 3) & (dropped["end_session"] <= 12)) / 9
    assert hazard_early > hazard_later, "dropouts per week should be highest in the first three weeks"

    # A repaired rupture: the bond at the repair is above its level before the rupture.
    sessions = run("baseline").sessions
    attended = sessions[sessions["attended"] == 1].sort_values(["client_id", "session"])
    events = attended["event"].astype(str)
    before = attended.groupby("client_id")["bond"].shift()  # the last attended session before
    ruptured = attended.loc[events.str.contains("rupture"), ["client_id"]].assign(pre=before)
    repaired = attended.loc[events.str.contains("repair"), ["client_id", "bond"]]
    paired = ruptured.drop_duplicates("client_id").merge(repaired.drop_duplicates("client_id"), on="client_id")
    lift = (paired["bond"] - paired["pre"]).mean()
    assert lift > 0, f"a repair should leave the bond above its pre-rupture level, mean change {lift:.2f}"


def test_baseline_reasons_for_leaving_match_what_clients_report():
    mix = reason_mix("baseline")
    assert 0.25 <= mix["dissatisfaction"] <= 0.5, f"a third or more leave mainly for the relationship: {mix.to_dict()}"
    assert 0.25 <= mix["circumstances"] <= 0.5, f"a third or more for barriers or circumstances: {mix.to_dict()}"
    assert 0.1 <= mix["improvement"] <= 0.3, f"about one in five because they felt better: {mix.to_dict()}"


def test_low_empathy_weakens_the_alliance_and_loses_more_clients_for_relationship_reasons():
    low, base = run("low_empathy"), run("baseline")
    assert dropout_share("low_empathy") > dropout_share("baseline"), "low empathy should raise dropout"
    assert low.summary["mean_alliance"] < base.summary["mean_alliance"] - 1, "low empathy should lower the alliance"
    assert low.summary["recovery_rate"] < 0.8 * base.summary["recovery_rate"], "recovery should fall by a fifth or more"
    assert low.summary["reliable_deterioration_rate"] > 1.5 * base.summary["reliable_deterioration_rate"], (
        "reliable deterioration should rise by half or more"
    )
    assert low.clients["ruptures"].mean() > base.clients["ruptures"].mean(), "low empathy should bring more ruptures"
    relationship_low, relationship_base = (
        reason_mix("low_empathy")["dissatisfaction"],
        reason_mix("baseline")["dissatisfaction"],
    )
    assert relationship_low > relationship_base + 0.04, (
        f"a clearly larger share of dropouts should leave for relationship reasons "
        f"({relationship_base:.2f} -> {relationship_low:.2f})"
    )
    weak = reason_mix("low_empathy", "dropout_cause")["weak_alliance"]
    assert weak > max(0.33, reason_mix("baseline", "dropout_cause")["weak_alliance"]), (
        f"a weak alliance should be the main reason for over a third of the dropouts ({weak:.2f})"
    )


def test_humility_makes_up_for_cultural_mismatch():
    def mismatched(name):
        c = run(name).clients
        return c[~c["cultural_match"].astype(bool)]

    without, with_humility = mismatched("cultural_mismatch"), mismatched("cultural_mismatch_humility")
    assert with_humility["ruptures"].mean() < without["ruptures"].mean() - 0.05, (
        "humble therapists should have fewer ruptures with culturally mismatched clients"
    )
    assert np.mean(with_humility["end_type"] == "dropout") < np.mean(without["end_type"] == "dropout"), (
        "humble therapists should lose fewer mismatched clients"
    )
    cultural = rupture_causes("cultural_mismatch").get("cultural misunderstanding", 0)
    assert cultural > rupture_causes("baseline").get("cultural misunderstanding", 0), (
        "a mismatched client mix should show more cultural-misunderstanding ruptures than baseline"
    )


def test_anxious_clients_rupture_around_therapist_breaks():
    causes = rupture_causes("anxious_breaks")
    assert causes.get("a break", 0) > 2 * rupture_causes("baseline").get("a break", 0), (
        "breaks should cause a far larger share of ruptures with anxious clients and holidays"
    )
    assert causes.get("a break", 0) > 0.4, f"about half the ruptures should follow a break: {causes.to_dict()}"
    assert run("anxious_breaks").clients["ruptures"].mean() > run("baseline").clients["ruptures"].mean()
    assert dropout_share("anxious_breaks") > 0.25, "over a quarter should leave"
    reasons = reason_mix("anxious_breaks", "dropout_cause")
    assert reasons["therapy_breaks"] > 0.1, (
        f"breaks should be the main reason for one in six or so: {reasons.to_dict()}"
    )


def test_avoidant_clients_withdraw():
    assert rupture_causes("avoidant_withdrawal").get("withdrawal", 0) > 0.5, "most ruptures should be withdrawals"
    avoidant, base = run("avoidant_withdrawal"), run("baseline")
    assert avoidant.sessions["disclosure"].mean() < base.sessions["disclosure"].mean(), "avoidance lowers disclosure"


def test_skilled_repair_mends_more_ruptures_and_loses_fewer_clients_to_them():
    skilled, unskilled = repaired_share("repair_skilled"), repaired_share("repair_unskilled")
    assert 0.65 <= skilled <= 0.85, (
        f"about three ruptures in four should be repaired by skilled therapists: {skilled:.2f}"
    )
    assert 0.4 <= unskilled <= 0.65, f"about half should be repaired by unskilled therapists: {unskilled:.2f}"
    assert skilled > unskilled + 0.1, f"skilled repair should mend more ruptures ({skilled:.2f} vs {unskilled:.2f})"
    skilled_share, unskilled_share = (
        mean_share(n, "unrepaired_rupture") for n in ("repair_skilled", "repair_unskilled")
    )
    assert skilled_share < unskilled_share, (
        f"an unrepaired rupture should weigh less in why clients of skilled therapists leave "
        f"({unskilled_share:.3f} -> {skilled_share:.3f})"
    )
    for metric, better in (("recovery_rate", 1), ("reliable_deterioration_rate", -1)):
        a, b = run("repair_skilled").summary[metric], run("repair_unskilled").summary[metric]
        assert better * (a - b) > 0, f"skilled repair should do better on {metric} ({b:.3f} -> {a:.3f})"


def test_inconsistent_therapists_cancel_more_and_rupture_after_breaks():
    inconsistent, base = run("inconsistent_therapist"), run("baseline")

    def cancelled(r):
        return r.sessions["event"].astype(str).str.contains("cancelled").mean()

    assert 0.15 <= cancelled(inconsistent) <= 0.25, (
        f"about one week in five cancelled, got {cancelled(inconsistent):.2f}"
    )
    assert inconsistent.summary["mean_sessions"] < base.summary["mean_sessions"] - 0.5, "fewer sessions attended"
    per_session = {
        n: r.clients["ruptures"].sum() / r.clients["sessions_attended"].sum()
        for n, r in (("i", inconsistent), ("b", base))
    }
    assert per_session["i"] > per_session["b"], "more ruptures per session attended"
    texts = inconsistent.events["text"]
    break_ruptures = texts.str.contains("rupture after a break in therapy").sum()
    assert break_ruptures > 2 * base.events["text"].str.contains("rupture after a break in therapy").sum(), (
        "the event log should show 'rupture after a break in therapy' far more often than in baseline"
    )
    breaks, base_breaks = (mean_share(n, "therapy_breaks") for n in ("inconsistent_therapist", "baseline"))
    assert breaks > 2 * base_breaks, (
        f"breaks in therapy should weigh more among the reasons for leaving ({base_breaks:.3f} -> {breaks:.3f})"
    )
    assert dropout_share("inconsistent_therapist") > dropout_share("baseline") + 0.04, "more dropout"


def test_feedback_protects_clients_who_are_not_on_track():
    def deterioration_not_on_track(name):
        c = run(name).clients
        flagged = c[c["not_on_track"].astype(bool) & c["finished_course"].astype(bool)]
        return flagged["reliable_deterioration"].mean()

    with_feedback, without = deterioration_not_on_track("feedback_informed"), deterioration_not_on_track("baseline")
    assert with_feedback < 0.5 * without, (
        f"feedback should cut deterioration among not-on-track clients ({with_feedback:.3f} vs {without:.3f})"
    )
    flagged = run("feedback_informed").clients["not_on_track"].mean()
    assert 0.2 <= flagged <= 0.45, f"about a third of clients should ever be flagged not on track ({flagged:.2f})"
    assert repaired_share("feedback_informed") > repaired_share("baseline"), "a higher share of ruptures repaired"


def test_practical_barriers_drive_dropout_not_the_alliance():
    barriers, base = run("high_barriers"), run("baseline")
    assert dropout_share("high_barriers", "practical_barriers") > 2 * dropout_share("baseline", "practical_barriers")
    assert dropout_share("high_barriers") > 0.3, "over a third should leave"
    practical = reason_mix("high_barriers", "dropout_cause")["practical_barriers"]
    assert 0.6 <= practical <= 0.9, (
        f"barriers should be the main reason for about seven dropouts in ten ({practical:.2f})"
    )
    assert abs(barriers.summary["mean_alliance"] - base.summary["mean_alliance"]) < 2, (
        "the alliance stays near baseline"
    )


def test_routine_care_reproduces_the_service_and_its_responsive_regulation():
    c = run("routine_care").clients
    assert c["sessions_attended"].max() == 12, "the course runs up to 12 sessions"
    good_enough = np.mean(c["end_type"] == "good_enough")
    assert good_enough > 0.2, f"over a fifth of courses should end good enough, got {good_enough:.2f}"
    attenders = c[c["sessions_attended"] >= 1]
    once = np.mean(attenders["sessions_attended"] == 1)
    assert 0.25 <= once <= 0.42, f"about a third of those who come should not come back ({once:.2f})"
    finished = c[c["finished_course"]]
    recovery = finished.loc[finished["intake_phq9"] >= 10, "recovery"].mean()
    assert 0.45 <= recovery <= 0.6, f"about half of finished courses at caseness should recover ({recovery:.2f})"
    assert 6.5 <= finished["sessions_attended"].mean() <= 9.5, "a mean course of about eight sessions"
    # Responsive regulation: those who end early have usually improved already, so among planned
    # endings the rate of reliable improvement does not rise with the number of sessions.
    planned = c[c["end_type"].isin(["completed", "good_enough"]) & (c["intake_phq9"] >= 10)]
    short, long_ = planned[planned["sessions_attended"] <= 6], planned[planned["sessions_attended"] > 6]
    assert len(short) > 100 and len(long_) > 100
    rate_short, rate_long = short["reliable_improvement"].mean(), long_["reliable_improvement"].mean()
    assert rate_long <= rate_short, (
        f"reliable improvement should not rise with course length among planned endings "
        f"(up to 6 sessions {rate_short:.2f}, more {rate_long:.2f})"
    )


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_scenario_runs_to_sensible_numbers(name):
    s = run(name).summary
    for key in ("dropout_rate", "recovery_rate", "reliable_improvement_rate", "reliable_deterioration_rate"):
        assert 0 <= s[key] <= 1 and np.isfinite(s[key]), f"{name}: {key} = {s[key]}"
    assert 0.05 <= s["dropout_rate"] <= 0.5, f"{name}: dropout {s['dropout_rate']:.2f} outside what clinics see"
