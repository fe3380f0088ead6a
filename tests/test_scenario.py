"""Scenarios: TOML files validated against the registry."""

from pathlib import Path

import pytest

from sim.parameters import REGISTRY
from sim.scenario import SCENARIO_DIR, Scenario, ScenarioError, list_scenarios, load_scenario


def test_baseline_is_a_trial_like_course():
    s = load_scenario("baseline")
    assert s.name == "baseline"
    assert s.params["planned_sessions"] == 16
    assert s.params.keys() == REGISTRY.keys()
    assert s.description and s.teaching_note


def test_load_by_path_equals_load_by_name():
    assert load_scenario(SCENARIO_DIR / "baseline.toml").params == load_scenario("baseline").params


def test_a_directory_named_like_a_scenario_does_not_shadow_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "baseline").mkdir()  # e.g. left by `python -m sim run baseline --out baseline`
    assert load_scenario("baseline").path == SCENARIO_DIR / "baseline.toml"


def test_the_library_is_package_data():
    import scenarios

    assert SCENARIO_DIR.samefile(Path(scenarios.__file__).parent), "scenarios/ is found through its package"


def test_there_are_contrasting_scenarios():
    scenarios = list_scenarios()
    names = [s.name for s in scenarios]
    assert "baseline" in names
    assert len(scenarios) >= 3, f"baseline and at least two contrasting scenarios are required, found {names}"
    for s in scenarios:
        assert s.description, f"{s.name} needs a description"
        assert s.overrides or s.name == "baseline", f"{s.name} changes nothing"


def _write(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("name = 'x'\n[therapists]\ntherapist_empathy_mean = 0.4\nbroken = = 1\n", ["not valid TOML"]),
        ("name = 'x'\ncolour = 'blue'\n", ["colour", "run", "therapists"]),
        ("[therapists]\ntherapist_empathy_man = 0.4\n", ["therapist_empathy_man", "therapist_empathy_mean"]),
        ("[therapists]\ntherapist_empathy_mean = 'high'\n", ["therapist_empathy_mean", "[0, 1]"]),
        ("[therapists]\ntherapist_empathy_mean = 1.4\n", ["therapist_empathy_mean", "1.4", "[0, 1]", "[therapists]"]),
        ("[clients]\ntherapist_empathy_mean = 0.4\n", ["therapist_empathy_mean", "[therapists]"]),
        ("[course]\nmatching_policy = 'best'\n", ["matching_policy", "cultural_match"]),
        ("[course]\nplanned_sessions = 12.5\n", ["planned_sessions", "integer"]),
        ("[run]\nclients = 0\n", ["clients", "integer"]),
        ("[run]\nreplicates = 3\n", ["replicates", "seed"]),
        ("therapists = 3\n", ["therapists", "table"]),
    ],
)
def test_bad_scenarios_are_refused_with_a_clear_message(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert str(path) in msg, f"the message should name the file: {msg}"
    for needle in needles:
        assert needle in msg, f"the message should mention {needle!r}: {msg}"


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no scenario file"):
        load_scenario(tmp_path / "nowhere.toml")
    with pytest.raises(ScenarioError, match="baseline"):
        load_scenario("no_such_scenario")


def test_good_scenario_file(tmp_path):
    path = _write(
        tmp_path,
        "name = 'mine'\n[run]\nclients = 50\nseed = 3\n[therapists]\ntherapist_empathy_mean = 0.3\n"
        "[course]\nplanned_sessions = 10\n",
        "mine.toml",
    )
    s = load_scenario(path)
    assert (s.name, s.clients, s.seed) == ("mine", 50, 3)
    assert s.params["therapist_empathy_mean"] == 0.3 and s.params["planned_sessions"] == 10
    assert s.overrides == {"therapist_empathy_mean": 0.3, "planned_sessions": 10}


def test_with_settings_validates():
    s = load_scenario("baseline")
    t = s.with_settings(clients=10, seed=0, overrides={"therapist_empathy_mean": 0.2})
    assert (t.clients, t.seed, t.params["therapist_empathy_mean"]) == (10, 0, 0.2)
    assert s.params["therapist_empathy_mean"] != 0.2 or s.overrides.get("therapist_empathy_mean") == 0.2
    with pytest.raises(ScenarioError):
        s.with_settings(clients=0)
    with pytest.raises(ScenarioError, match="outside"):
        s.with_settings(overrides={"therapist_empathy_mean": 2.0})
    with pytest.raises(ScenarioError, match="unknown parameter"):
        s.with_settings(overrides={"empathy": 0.5})


def test_more_clients_keep_the_caseload_unless_therapists_are_given():
    s = load_scenario("baseline")  # 500 clients, 25 therapists: caseloads of 20
    assert s.with_settings(clients=2000).therapists == 100, "2000 clients should keep caseloads of 20 (100 therapists)"
    assert s.with_settings(clients=3).therapists == 1, "a tiny cohort still has a therapist"
    assert s.with_settings(clients=2000, therapists=7).therapists == 7, "given therapists are kept as given"
    assert s.with_settings(seed=3).therapists == 25, "changing the seed alone leaves the cohort as it is"


def test_a_larger_cohort_is_the_same_clinic_not_an_overloaded_one():
    from sim.run import simulate

    small = simulate("baseline", clients=500, seed=11).clients
    large = simulate("baseline", clients=4000, seed=11).clients
    # Overloaded caseloads would add cancellations, so fewer sessions; the same clinic gives the
    # same mean within sampling error (SD of sessions attended ~5, SE of the difference ~0.25).
    difference = large["sessions_attended"].mean() - small["sessions_attended"].mean()
    assert abs(difference) < 1.0, f"mean sessions moved by {difference:.2f} with cohort size alone"


def test_default_scenario_object():
    s = Scenario(name="blank")
    assert s.params == {name: p.default for name, p in REGISTRY.items()}
