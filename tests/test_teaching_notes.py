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
    assert 0.35 <= early <= 0.6, f"nearly half of dropouts should come within three sessions, got {early:.2f}"
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


def test_low_empathy_weakens_the_alliance_and_loses_more_clients():
    low, base = run("low_empathy"), run("baseline")
    assert dropout_share("low_empathy") > dropout_share("baseline") + 0.03, "low empathy should raise dropout"
    assert low.summary["mean_alliance"] < base.summary["mean_alliance"] - 1, "low empathy should lower the alliance"
    assert low.summary["recovery_rate"] < base.summary["recovery_rate"], "low empathy should lower recovery"
    assert low.clients["ruptures"].mean() > base.clients["ruptures"].mean(), "low empathy should bring more ruptures"


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
    assert run("anxious_breaks").clients["ruptures"].mean() > run("baseline").clients["ruptures"].mean()


def test_avoidant_clients_withdraw():
    assert rupture_causes("avoidant_withdrawal").get("withdrawal", 0) > 0.5, "most ruptures should be withdrawals"
    avoidant, base = run("avoidant_withdrawal"), run("baseline")
    assert avoidant.sessions["disclosure"].mean() < base.sessions["disclosure"].mean(), "avoidance lowers disclosure"


def test_skilled_repair_mends_more_ruptures_and_loses_fewer_clients_to_them():
    skilled, unskilled = repaired_share("repair_skilled"), repaired_share("repair_unskilled")
    assert 0.7 <= skilled <= 0.9, f"about four ruptures in five should be repaired by skilled therapists: {skilled:.2f}"
    assert skilled > unskilled + 0.1, f"skilled repair should mend more ruptures ({skilled:.2f} vs {unskilled:.2f})"
    rupture_dropout = dropout_share("repair_skilled", "unrepaired_rupture")
    assert rupture_dropout < dropout_share("repair_unskilled", "unrepaired_rupture"), (
        "skilled repair should lose fewer clients to unrepaired ruptures"
    )


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
    assert dropout_share("inconsistent_therapist", "unrepaired_rupture") > dropout_share(
        "baseline", "unrepaired_rupture"
    )


def test_feedback_protects_clients_who_are_not_on_track():
    def deterioration_not_on_track(name):
        c = run(name).clients
        flagged = c[c["not_on_track"].astype(bool) & c["finished_course"].astype(bool)]
        return flagged["reliable_deterioration"].mean()

    with_feedback, without = deterioration_not_on_track("feedback_informed"), deterioration_not_on_track("baseline")
    assert with_feedback < without, (
        f"feedback should cut deterioration among not-on-track clients ({with_feedback:.3f} vs {without:.3f})"
    )


def test_practical_barriers_drive_dropout_not_the_alliance():
    barriers, base = run("high_barriers"), run("baseline")
    assert dropout_share("high_barriers", "practical_barriers") > 2 * dropout_share("baseline", "practical_barriers")
    assert dropout_share("high_barriers") > dropout_share("baseline"), "barriers should raise dropout"
    assert abs(barriers.summary["mean_alliance"] - base.summary["mean_alliance"]) < 2, (
        "the alliance stays near baseline"
    )


def test_routine_care_is_open_ended_with_many_good_enough_endings():
    c = run("routine_care").clients
    good_enough = np.mean(c["end_type"] == "good_enough")
    assert good_enough > 0.35, f"over a third of courses should end good enough, got {good_enough:.2f}"
    assert c["sessions_attended"].max() == 20, "the course runs up to 20 sessions"
    full = np.mean(c["sessions_attended"] == 20)
    assert 0.05 <= full <= 0.25, f"about one client in seven should attend all 20 sessions, got {full:.2f}"


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_scenario_runs_to_sensible_numbers(name):
    s = run(name).summary
    for key in ("dropout_rate", "recovery_rate", "reliable_improvement_rate", "reliable_deterioration_rate"):
        assert 0 <= s[key] <= 1 and np.isfinite(s[key]), f"{name}: {key} = {s[key]}"
    assert 0.05 <= s["dropout_rate"] <= 0.5, f"{name}: dropout {s['dropout_rate']:.2f} outside what clinics see"
