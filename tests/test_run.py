"""simulate, run_batch and the committed baseline summary."""

import json
import math

import numpy as np

from sim import parameters, simulate
from sim.outcomes import METRICS
from sim.run import run_batch
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


def test_run_batch_shapes():
    sets = [parameters.resolve({"therapist_empathy_mean": e}) for e in (0.2, 0.5, 0.8)]
    metrics = run_batch(sets, 200, 10, seed=1)
    assert set(metrics) == {m.name for m in METRICS}
    for name, values in metrics.items():
        assert values.shape == (3,), name
        assert np.isfinite(values).all(), name
