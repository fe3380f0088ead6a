"""make calibrate: a deterministic fit that lowers its objective, and a calibrated.toml the registry reads."""

import tomllib

import numpy as np
import pytest

from analysis import calibrate as cal
from analysis.__main__ import main as analysis_main
from sim import parameters

TINY = {"free": ("dropout_base", "life_event_rate"), "seed": 5, "replicates": 2, "clients": 300, "max_nfev": 4}


@pytest.fixture(scope="module")
def fit():
    return cal.calibrate(**TINY, log=lambda *_: None)


def test_fit_lowers_the_objective(fit):
    assert fit.names == list(TINY["free"])
    assert fit.cost < fit.cost_start, f"objective should fall from its start: {fit.cost_start:.4g} -> {fit.cost:.4g}"
    assert fit.jacobians >= 1 and fit.evaluations >= 2
    for name, value in fit.values.items():
        p = parameters.REGISTRY[name]
        assert p.low < value < p.high, f"{name} = {value} should stay inside its registry range"


def test_same_seed_same_numbers(fit, tmp_path):
    toml, report = tmp_path / "calibrated.toml", tmp_path / "calibration.md"
    argv = ["calibrate", "--seed", "5", "--replicates", "2", "--clients", "300", "--max-nfev", "4"]
    argv += ["--free", *TINY["free"], "--toml", str(toml), "--report", str(report)]
    assert analysis_main(argv) == 0
    written = tomllib.loads(toml.read_text())
    assert written["values"] == fit.values, "re-running with the same seed should reproduce the fitted values"
    assert written["fit"]["objective"] == pytest.approx(fit.cost, rel=1e-5)
    assert written["fit"]["seed"] == 5 and written["fit"]["facts"] == [t.id for t in fit.facts]
    assert "dropout_base" in report.read_text()


def test_objective_is_deterministic_under_common_random_numbers():
    facts = [t for t in cal.load_targets() if t.set == "calibration"]
    free = [parameters.REGISTRY[n] for n in TINY["free"]]
    base = cal.load_scenario("baseline").params
    obj = cal.Objective(facts, free, base, seed=9, replicates=1, clients=200, therapists=10)
    u = obj.to_u([-5.0, 0.05])
    first = obj.residuals_of(obj.fact_values(obj.to_x(u))[0])
    batch = obj.fact_values(obj.to_x(np.stack([u + 0.3, u, u - 0.3])))
    np.testing.assert_array_equal(obj.residuals_of(batch[1]), first, "a candidate alone and in a batch should agree")


def test_transform_keeps_values_in_range():
    free = [parameters.REGISTRY[n] for n in ("rupture_rate", "dropout_base", "worsening_rate")]
    obj = cal.Objective([], free, {}, seed=0, replicates=1, clients=10, therapists=2)
    x = np.array([0.06, -5.2, 2.0])
    np.testing.assert_allclose(obj.to_x(obj.to_u(x)), x, rtol=1e-12)
    extreme = obj.to_x(np.array([-50.0, 50.0, 0.0]))
    assert all(p.low <= v <= p.high for p, v in zip(free, extreme, strict=True))


def test_registry_reads_the_written_values(fit, tmp_path, monkeypatch):
    path = tmp_path / "calibrated.toml"
    path.write_text(cal.calibrated_toml(fit))
    monkeypatch.setattr(parameters, "CALIBRATED_FILE", path)
    registry = parameters._apply_calibration(parameters._DECLARED)
    for name, value in fit.values.items():
        assert registry[name].default == value


def test_committed_calibration_fits_only_free_parameters():
    assert parameters.CALIBRATED_FILE.exists(), "sim/calibrated.toml is missing: run `make calibrate`"
    data = tomllib.loads(parameters.CALIBRATED_FILE.read_text())
    free = {p.name for p in parameters.free_parameters()}
    assert set(data["values"]) == free, "sim/calibrated.toml should hold exactly the free parameters: re-calibrate"
    calibration = {t.id for t in cal.load_targets() if t.set == "calibration"}
    assert set(data["fit"]["facts"]) == calibration
