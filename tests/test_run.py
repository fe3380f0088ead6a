"""simulate, run_batch and the committed baseline summary."""

import json
import math

import numpy as np
import pytest

from sim import parameters, simulate
from sim.outcomes import METRICS
from sim.run import batch_metrics, run_batch
from sim.scenario import ScenarioError, load_scenario
from tests.refresh_baseline import BASELINE_FILE, compute

REFRESH = "python -m tests.refresh_baseline"


def test_baseline_summary_matches_committed_file():
    assert BASELINE_FILE.exists(), f"{BASELINE_FILE} is missing: create it with `{REFRESH}`"
    committed = json.loads(BASELINE_FILE.read_text())
    fresh = compute()
    for key in ("scenario", "clients", "seed", "therapists"):
        assert fresh[key] == committed[key], f"baseline setting {key} changed: refresh with `{REFRESH}`"
    assert fresh["metrics"].keys() == committed["metrics"].keys(), f"metrics changed: refresh with `{REFRESH}`"
    # Same numerical libraries: bit for bit. Others: a few of the 1,000 clients may decide differently
    # when a draw sits on a threshold, moving a share by a few thousandths; a model change moves more.
    exact = fresh["versions"] == committed.get("versions")
    tolerance = {"rel_tol": 1e-12, "abs_tol": 1e-12} if exact else {"rel_tol": 0.02, "abs_tol": 0.01}
    for name, value in committed["metrics"].items():
        now = fresh["metrics"][name]
        same = (math.isnan(value) and math.isnan(now)) or math.isclose(now, value, **tolerance)
        assert same, (
            f"baseline {name} changed from {value!r} to {now!r} (libraries {fresh['versions']}, file computed "
            f"with {committed.get('versions')}). If the change in model behaviour is intended, refresh the "
            f"committed summary with `{REFRESH}` and commit it with the change."
        )


def test_simulate_returns_tables_and_summary():
    result = simulate("baseline", clients=120, therapists=8, seed=3)
    assert len(result.clients) == 120
    assert result.clients["client_id"].tolist() == list(range(120))
    assert result.summary["clients"] == 120 and result.summary["seed"] == 3
    for m in METRICS:
        assert m.name in result.summary
    assert set(result.sessions["client_id"]) <= set(range(120))


def test_simulate_overrides_are_validated_and_applied():
    a = simulate("baseline", clients=300, seed=3, overrides={"dropout_base": -8.0})
    b = simulate("baseline", clients=300, seed=3, overrides={"dropout_base": -2.0})
    assert a.summary["dropout_rate"] < b.summary["dropout_rate"]
    assert a.summary["overrides"]["dropout_base"] == -8.0


def test_summary_metrics_agree_with_the_clients_table():
    result = simulate("baseline", clients=400, seed=7)
    t = result.clients
    assert math.isclose(result.summary["dropout_rate"], (t["end_type"] == "dropout").mean())
    assert math.isclose(result.summary["mean_sessions"], t["sessions_attended"].mean())
    finished = t["finished_course"]
    assert math.isclose(result.summary["reliable_improvement_rate"], t.loc[finished, "reliable_improvement"].mean())
    assert math.isclose(result.summary["reliable_deterioration_rate"], t.loc[finished, "reliable_deterioration"].mean())
    at_caseness = finished & (t["intake_phq9"] >= 10)
    assert math.isclose(result.summary["recovery_rate"], t.loc[at_caseness, "recovery"].mean())
    assert math.isclose(result.summary["repair_share"], t["repairs"].sum() / t["ruptures"].sum())


def test_batch_metrics_shapes():
    sets = [parameters.resolve({"therapist_empathy_mean": e}) for e in (0.2, 0.5, 0.8)]
    metrics = batch_metrics(sets, 200, 10, seed=1)
    assert set(metrics) == {m.name for m in METRICS}
    for name, values in metrics.items():
        assert values.shape == (3,), name
        assert np.isfinite(values).all(), name


def test_run_batch_merges_partial_overrides_onto_a_scenario_and_returns_a_table():
    sets = [{"therapist_empathy_mean": 0.3}, {"therapist_empathy_mean": 0.9, "rupture_rate": 0.05}]
    table = run_batch(sets, n_clients=200, n_therapists=10, seed=1, scenario="cultural_mismatch")
    assert table.index.name == "set" and list(table.index) == [0, 1]
    assert list(table.columns) == ["therapist_empathy_mean", "rupture_rate", *(m.name for m in METRICS)]
    world = load_scenario("cultural_mismatch").params
    full = [{**world, **s} for s in sets]
    expected = batch_metrics(full, 200, 10, seed=1)
    for name, values in expected.items():
        assert np.array_equal(table[name].to_numpy(), values, equal_nan=True), name
    assert table.loc[0, "rupture_rate"] == world["rupture_rate"], "a parameter a set leaves out keeps the scenario's"
    assert table.loc[0, "dropout_rate"] > table.loc[1, "dropout_rate"], "higher empathy should lower dropout"


def test_run_batch_defaults_to_the_scenario_run_settings_and_accepts_one_dict():
    one = run_batch({"therapist_empathy_mean": 0.5}, n_clients=100)  # baseline's caseload: 20 per therapist
    alone = batch_metrics([parameters.resolve({"therapist_empathy_mean": 0.5})], 100, 5, load_scenario().seed)
    assert len(one) == 1 and one.loc[0, "dropout_rate"] == alone["dropout_rate"][0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: run_batch([{"therapist_empathy_mean": 1.7}], 50, 5, 1), "therapist_empathy_mean = 1.7 is outside"),
        (lambda: run_batch([{}, {"empathy": 0.5}], 50, 5, 1), "unknown parameter"),
        (lambda: run_batch([], 50, 5, 1), "at least one"),
        (lambda: run_batch([{}], 0, 5, 1), "clients = 0"),
        (lambda: run_batch([{}], 50, 5, -1), "seed = -1"),
        (lambda: run_batch([{}], 50, 5, 1, replicate=-2), "replicate = -2"),
        (lambda: run_batch([{}], 50, 5, 1, scenario="nowhere"), "no scenario file"),
    ],
)
def test_run_batch_validates_like_every_entry_point(call, message):
    with pytest.raises(ScenarioError) as err:
        call()
    assert message in str(err.value)
