"""One dyad's course: picking a client, the plain-language account, the timeline, the what-if, the CLI."""

import numpy as np
import pandas as pd
import pytest

from analysis.figures import save
from analysis.vignette import PICKS, VignetteError, narrative, pick_client
from analysis.vignette_figure import course_figure
from sim import simulate
from sim.records import DROPOUT_TEXT
from sim.scenario import load_scenario
from sim.vignette import vignette
from tests.test_cli import cli


@pytest.fixture(scope="module")
def run():
    return simulate("baseline", clients=300, seed=4)


MEANS = {  # what each pick promises, written out independently of PICKS
    "dropout": lambda r: r["end_type"] == "dropout",
    "completed": lambda r: r["end_type"] == "completed",
    "good-enough": lambda r: r["end_type"] == "good_enough",
    "recovered": lambda r: bool(r["recovery"]),
    "deteriorated": lambda r: bool(r["reliable_deterioration"]),
    "rupture-repaired": lambda r: r["ruptures"] >= 1 and r["repairs"] == r["ruptures"],
    "rupture-unrepaired": lambda r: r["repairs"] < r["ruptures"],
    "dropout-unrepaired": lambda r: r["end_type"] == "dropout" and r["repairs"] < r["ruptures"],
    "matched": lambda r: bool(r["cultural_match"]),
    "mismatched": lambda r: not r["cultural_match"],
}


@pytest.mark.parametrize("pick", list(PICKS))
def test_pick_selects_lowest_matching_client(run, pick):
    clients = run.clients
    client_id = pick_client(clients, pick)
    row = clients.set_index("client_id").loc[client_id]
    assert MEANS[pick](row), f"--pick {pick} chose client {client_id}, who does not match"
    earlier = clients[clients["client_id"] < client_id]
    assert not earlier.apply(MEANS[pick], axis=1).any(), "--pick should choose the lowest matching id"


def test_every_rupture_of_a_rupture_repaired_client_is_repaired(run):
    ids = [pick_client(run.clients, "rupture-repaired", nth=k) for k in range(1, 6)]
    for client_id in ids:
        log = run.events[run.events["client_id"] == client_id]
        ruptures, repairs = (log["event"] == "rupture").sum(), (log["event"] == "repair").sum()
        assert ruptures >= 1 and repairs == ruptures, f"client {client_id}: {ruptures} ruptures, {repairs} repaired"
    recovered_open = run.clients[run.clients["recovery"] & (run.clients["repairs"] < run.clients["ruptures"])]
    assert not set(recovered_open["client_id"]) & set(ids), "a client with an open rupture is not rupture-repaired"


def test_picks_combine_a_client_must_match_all(run):
    client_id = pick_client(run.clients, ["dropout", "mismatched"])
    row = run.clients.set_index("client_id").loc[client_id]
    assert row["end_type"] == "dropout" and not row["cultural_match"], row
    both = run.clients[(run.clients["end_type"] == "dropout") & ~run.clients["cultural_match"]]
    assert client_id == both["client_id"].min()
    with pytest.raises(VignetteError, match="dropped out and saw a therapist of another culture group"):
        pick_client(run.clients.iloc[:0], ["dropout", "mismatched"])


def test_nth_and_random_choose_among_the_matches(run):
    matches = np.sort(run.clients.loc[run.clients["end_type"] == "dropout", "client_id"].to_numpy())
    assert [pick_client(run.clients, "dropout", nth=k) for k in (1, 2, 3)] == list(matches[:3])
    shuffled = [pick_client(run.clients, "dropout", nth=k, seed=7) for k in range(1, len(matches) + 1)]
    assert sorted(shuffled) == list(matches), "--random --nth K walks through every match once"
    assert shuffled != list(matches), "a seeded random order is not the id order"
    assert pick_client(run.clients, "dropout", seed=7) == shuffled[0], "the same seed gives the same client"
    assert (
        pick_client(run.clients, "dropout", seed=8) != shuffled[0]
        or pick_client(run.clients, "dropout", seed=9) != shuffled[0]
    ), "other seeds choose other clients"
    with pytest.raises(VignetteError, match=f"use --nth from 1 to {len(matches)}"):
        pick_client(run.clients, "dropout", nth=len(matches) + 1)
    everyone = pick_client(run.clients, None, seed=7)
    assert 0 <= everyone < len(run.clients), "--random without a pick chooses among all clients"


def test_narrative_of_a_dropout_names_the_cause(run):
    client_id = pick_client(run.clients, "dropout")
    text = narrative(run.clients, run.sessions, run.events, client_id, "baseline", 26)
    cause = run.clients.set_index("client_id").loc[client_id, "dropout_cause"]
    ending = text.split("## How it ended")[1]
    assert "dropped out" in ending and DROPOUT_TEXT[cause] in ending, ending
    for part in ("attachment", "expectancy", "intake PHQ-9", "empathy", "cultural match", "follow-up"):
        assert part in text, part


def test_a_completed_course_says_whether_every_session_was_attended_or_the_window_closed(run):
    done = run.clients[run.clients["end_type"] == "completed"]
    full = done[done["sessions_attended"] == 16]["client_id"].iloc[0]
    short = done[done["sessions_attended"] < 16]["client_id"].iloc[0]
    full_end = narrative(run.clients, run.sessions, run.events, full, planned_sessions=16).split("## How it ended")[1]
    assert "all 16 planned sessions attended" in full_end, full_end
    attended = done.set_index("client_id").loc[short, "sessions_attended"]
    short_end = narrative(run.clients, run.sessions, run.events, short, planned_sessions=16).split("## How it ended")[1]
    assert f"window closed with {attended} of 16 planned sessions" in short_end, short_end
    log = run.events[(run.events["client_id"] == short) & (run.events["event"] == "completed")]
    assert log["text"].str.contains("window closed").all(), "the event log should say the window closed"


def test_narrative_tells_ruptures_and_repairs_session_by_session(run):
    client_id = pick_client(run.clients, "rupture-repaired")
    text = narrative(run.clients, run.sessions, run.events, client_id)
    course = text.split("## The course, session by session")[1].split("## How it ended")[0]
    lines = [line for line in course.splitlines() if line.startswith("- session")]
    assert any("rupture" in line for line in lines) and any("repaired" in line for line in lines), course
    first = [int(line.split()[2].split("-")[0].rstrip(":")) for line in lines]
    assert first == sorted(first), "the course is told in session order"


def test_bad_client_and_empty_pick_are_user_errors(run):
    with pytest.raises(VignetteError, match="no client 5000"):
        narrative(run.clients, run.sessions, run.events, 5000)
    with pytest.raises(VignetteError, match="no client in this run"):
        pick_client(run.clients.iloc[:0], "dropout")


def test_figure_is_written(run, tmp_path):
    client_id = pick_client(run.clients, "rupture-repaired")
    paths = save(course_figure(run.clients, run.sessions, client_id, "test"), tmp_path, "vignette")
    assert all(p.stat().st_size > 0 for p in paths)


def test_the_scores_are_explained_for_a_dropout_and_for_routine_care(run):
    client_id = pick_client(run.clients, "dropout")
    params = load_scenario("baseline").params
    text = narrative(run.clients, run.sessions, run.events, client_id, params=params)
    scores = text.split("## About the scores")[1]
    row = run.clients.set_index("client_id").loc[client_id]
    assert f"end-of-course assessment ({row['final_phq9']})" in scores, scores
    assert "dropped out too" in scores and "measurement error" in scores, scores
    assert f"intake PHQ-9 ({row['intake_phq9']})" in scores, "intake and the first session's score are explained"
    routine = vignette("routine_care", pick="dropout", clients=150)
    assert "nobody is assessed after leaving" in routine.text(), "routine care scores the last session"


# ── what-if: the same client, the same luck ─────────────────────────────────────────────────────────


def test_what_if_follows_the_same_client_on_the_same_draws():
    v = vignette("baseline", 5, clients=120, what_if={"therapist_empathy_mean": 0.6})  # the baseline's own value
    assert v.what_if is not None and v.changes == {"therapist_empathy_mean": 0.6}
    for table in ("clients", "sessions", "events"):
        pd.testing.assert_frame_equal(getattr(v.course, table), getattr(v.what_if, table), obj=table)
    alone = simulate("baseline", clients=120)
    pd.testing.assert_frame_equal(v.course.clients, alone.clients, obj="the course as run is the scenario run alone")
    pd.testing.assert_frame_equal(v.course.sessions, alone.sessions)


def test_what_if_a_more_empathic_therapist_direction():
    low = load_scenario("low_empathy")
    v = vignette(low, 5, clients=400, what_if={"therapist_empathy_mean": 0.95})
    a, b = (c.clients.set_index("client_id") for c in (v.course, v.what_if))
    for trait in ("attachment_anxiety", "attachment_avoidance", "expectancy", "intake_phq9"):
        assert (a[trait] == b[trait]).all(), f"the clients are the same people: {trait} differs"
    assert (b["therapist_id"] == a["therapist_id"]).all(), "random matching keeps each client's therapist"
    assert (b["perceived_empathy"] >= a["perceived_empathy"]).all(), "a more empathic therapist is perceived so"
    assert v.what_if.therapist["empathy"] > v.course.therapist["empathy"]
    alliance_a, alliance_b = a["early_alliance"].mean(), b["early_alliance"].mean()
    assert alliance_b > alliance_a + 1, (
        f"more empathic therapists should bond better: {alliance_a:.1f} -> {alliance_b:.1f}"
    )
    drop_a, drop_b = (a["end_type"] == "dropout").mean(), (b["end_type"] == "dropout").mean()
    assert drop_b <= drop_a, f"more empathic therapists should not lose more clients: {drop_a:.3f} -> {drop_b:.3f}"
    change_a, change_b = ((c["intake_phq9"] - c["final_phq9"]).mean() for c in (a, b))
    assert change_b > change_a, f"their clients should improve more: {change_a:.2f} -> {change_b:.2f} PHQ-9 points"
    assert "With therapist empathy (mean) at 0.95 instead of 0.3" in v.text()


def test_other_therapist_moves_one_client_and_keeps_their_draws():
    base = vignette("baseline", 7, clients=200)
    row = base.course.clients.set_index("client_id").loc[7]
    therapists = base.course.clients.drop_duplicates("therapist_id").set_index("therapist_id")
    same_culture = therapists[(therapists["therapist_culture"] == row["therapist_culture"])]
    kinder = same_culture["therapist_empathy"].drop(row["therapist_id"]).idxmax()
    v = vignette("baseline", 7, clients=200, other_therapist=int(kinder))
    a, b = (c.clients.set_index("client_id") for c in (v.course, v.what_if))
    assert a.loc[7, "therapist_id"] == row["therapist_id"] and b.loc[7, "therapist_id"] == kinder
    assert v.what_if.therapist["id"] == kinder and v.course.therapist["id"] == row["therapist_id"]
    for trait in ("attachment_anxiety", "attachment_avoidance", "expectancy", "intake_phq9", "client_culture"):
        assert a.loc[7, trait] == b.loc[7, trait], trait
    assert b.loc[7, "therapist_empathy"] > a.loc[7, "therapist_empathy"]
    assert b.loc[7, "perceived_empathy"] > a.loc[7, "perceived_empathy"], (
        "the same client perceives a more empathic therapist of the same culture as more empathic"
    )
    moved = (a["therapist_id"] != b["therapist_id"]).sum()
    assert moved == 1, f"only the client followed changes therapist, {moved} did"
    assert f"therapist {kinder} instead of therapist {row['therapist_id']}" in v.text()
    with pytest.raises(VignetteError, match="already sees therapist"):
        vignette("baseline", 7, clients=200, other_therapist=int(row["therapist_id"]))
    with pytest.raises(VignetteError, match="no therapist 999"):
        vignette("baseline", 7, clients=200, other_therapist=999)


def test_what_if_headline_tells_what_changed(tmp_path):
    from analysis.vignette_whatif import outcome_phrase, rupture_phrase

    assert rupture_phrase([(6, None, "x")], [(6, 7, "x")]) == "the rupture in week 6 is repaired (week 7)"
    assert rupture_phrase([(6, None, "x")], []) == "the rupture of week 6 does not happen"
    stays = outcome_phrase(
        pd.Series({"end_type": "dropout", "end_session": 8, "dropout_cause": "unrepaired_rupture", "final_phq9": 14}),
        pd.Series({"end_type": "completed", "end_session": 20, "sessions_attended": 16, "final_phq9": 6}),
    )
    assert stays == "the client stays and completes the course in week 20 (16 sessions)"
    v = vignette("low_empathy", clients=150, pick="dropout", what_if={"therapist_empathy_mean": 0.9})
    text = v.text()
    assert text.count("| week | as run |") == 1 and "## How each course ended" in text
    paths = v.save(tmp_path)
    assert [p.name for p in paths] == ["vignette.md", "vignette.png", "vignette.svg"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_cli_vignette_writes_outputs(tmp_path):
    r = cli("vignette", "baseline", "--pick", "dropout", "--clients", 150, "--seed", 2, "--out", tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("vignette.md", "vignette.png", "vignette.svg"):
        assert (tmp_path / name).stat().st_size > 0, name
    text = (tmp_path / "vignette.md").read_text()
    assert "dropped out" in text and text.strip() in r.stdout


def test_cli_vignette_what_if_prints_both_courses(tmp_path):
    r = cli("vignette", "low_empathy", "--pick", "dropout", "--random", "--clients", 150, "--seed", 2,
            "--what-if", "therapist_empathy_mean=0.9", "--what-if", "therapist_repair_mean=0.8",
            "--out", tmp_path, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "With therapist empathy (mean) at 0.9 instead of 0.3" in r.stdout
    assert "therapist repair skill (mean) at 0.8" in r.stdout and "## Week by week" in r.stdout
    for name in ("vignette.md", "vignette.png", "vignette.svg"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--client", "150", "--clients", "150"), "no client 150"),
        (("--pick", "deteriorated", "--clients", "1", "--seed", "1"), "no client in this run"),
        (("--nth", "2"), "--nth K chooses among the matches"),
        (("--client", "3", "--pick", "dropout"), "not both"),
        (("--what-if", "therapist_empathy=0.8"), "--what-if"),
        (("--what-if", "therapist_empathy_mean=1.8"), "outside [0, 1]"),
        (("--other-therapist", "500", "--clients", "100"), "no therapist 500"),
    ],
)
def test_cli_vignette_bad_input_exits_2(tmp_path, args, message):
    r = cli("vignette", "baseline", *args, "--out", tmp_path, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and message in r.stderr


def test_a_client_who_never_attended_gets_a_vignette_too():
    from analysis.vignette import narrative
    from sim.run import simulate

    r = simulate("baseline", clients=1500, seed=3)
    never = r.clients.loc[r.clients["sessions_attended"] == 0, "client_id"]
    assert len(never), "some clients never come to a session"
    params = r.cohort.param_sets[0]
    text = narrative(r.clients, r.sessions, r.events, int(never.iloc[0]), "baseline", params=params)
    assert "never attended a session" in text and "dropped out in week" in text
