"""make calibrate: ABC-SMC on the engine, its spec, its outputs, and the shipped posterior.

The sampler itself is checked on a model with a known posterior in tests/test_abc.py; here a small
budget runs it on the engine end to end.
"""

import tomllib

import numpy as np
import pandas as pd
import pytest

from analysis import calibrate as cal
from analysis.__main__ import main as analysis_main
from analysis.calibration_report import write_all
from sim import parameters
from sim.posterior import POSTERIOR_FILE, PosteriorError, load_posterior

SMALL = {"population": 24, "initial": 2, "max_generations": 2, "clients": 200, "replicates": 1, "chunk_size": 16}
SMALL_FREE = ("dropout_base", "dropout_alliance")


def _small_spec(**changes):
    return cal.load_spec(**{**SMALL, "free": list(SMALL_FREE), "round_size": 48, **changes})


@pytest.fixture(scope="module")
def small_fit():
    return cal.calibrate(_small_spec(seed=5), "serial", log=lambda *_: None, progress=False)


def test_a_small_fit_runs_and_narrows_the_tolerance(small_fit):
    gens = small_fit.result.generations
    assert len(gens) == 2 and gens[1].epsilon <= gens[0].epsilon, "the tolerance should not rise"
    assert small_fit.posterior.shape == (SMALL["population"], len(SMALL_FREE))
    for j, p in enumerate(small_fit.problem.free):
        assert (small_fit.posterior[:, j] >= p.low).all() and (small_fit.posterior[:, j] <= p.high).all()
    assert np.isclose(small_fit.weights.sum(), 1.0)


def test_same_seed_same_posterior_on_any_executor(small_fit):
    again = cal.calibrate(_small_spec(seed=5), "processes", workers=2, log=lambda *_: None, progress=False)
    np.testing.assert_array_equal(again.posterior, small_fit.posterior, "serial and processes should agree bit for bit")
    np.testing.assert_array_equal(again.weights, small_fit.weights)
    other = cal.calibrate(_small_spec(seed=6), "serial", log=lambda *_: None, progress=False)
    assert not np.array_equal(other.posterior, small_fit.posterior), "another seed should give another sample"


def test_outputs_are_consistent(small_fit, tmp_path):
    toml, posterior, report = tmp_path / "calibrated.toml", tmp_path / "posterior.csv", tmp_path / "docs" / "c.md"
    write_all(small_fit, toml, posterior, report, tmp_path / "history", log=lambda *_: None)
    values = tomllib.loads(toml.read_text())["values"]
    table = pd.read_csv(posterior)
    assert list(table.columns) == [*SMALL_FREE, "weight", "distance"]
    central = cal.central_particle(small_fit.result.last.particles, small_fit.weights, small_fit.result.last.distances)
    assert small_fit.result.last.distances[central] <= np.median(small_fit.result.last.distances)
    for name in SMALL_FREE:
        assert values[name] == pytest.approx(table.loc[central, name], rel=1e-5), (
            f"the point value of {name} should be the central particle's"
        )
    again = cal.load_fit(tmp_path / "history", small_fit.spec)
    assert again.point() == small_fit.point(), "a fit rebuilt from its history gives the same point values"
    history = pd.read_parquet(tmp_path / "history" / "history.parquet")
    assert sorted(history["generation"].unique()) == [0, 1]
    assert "## Parameters" in report.read_text() and (report.parent / "figures" / "calibration_marginals.png").exists()
    draws = load_posterior(posterior).draws(5, seed=3)
    assert draws == load_posterior(posterior).draws(5, seed=3), "the same seed should draw the same particles"


def test_band_distance_known_answers():
    facts = [t for t in cal.load_targets() if t.set == "calibration"][:2]
    published = np.array([[t.published for t in facts]])
    assert cal.band_distance(published, facts)[0] == 0.0, "the published values are at distance 0"
    at_edges = np.array([[facts[0].band_high, facts[1].band_low]])
    assert cal.band_distance(at_edges, facts)[0] == pytest.approx(1.0), "every fact at its band's edge: distance 1"
    assert cal.band_distance(np.array([[np.nan, facts[1].published]]), facts)[0] == pytest.approx(np.sqrt(50))


def test_weighted_quantile_known_answers():
    assert cal.weighted_quantile([3.0, 1.0, 2.0], [1, 1, 1], 0.5) == 2.0
    assert cal.weighted_quantile([1.0, 2.0], [0.9, 0.1], 0.5) == 1.0
    assert cal.weighted_quantile([1.0, 2.0], [0.1, 0.9], 0.5) == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ("population = 0\n", "population = 0 is not allowed"),
        ("quantile = 1.5\n", "quantile = 1.5 is not allowed"),
        ("clients = 'many'\n", "clients = 'many' is not allowed"),
        ("free = ['bond_rat']\n", "unknown parameter 'bond_rat'"),
        ("free = ['matching_policy']\n", "a choice"),
        ("scenario = 'nowhere'\n", "scenario = 'nowhere'"),
        ("max_minutes = nan\n", "max_minutes = nan is not allowed"),
    ],
)
def test_a_bad_spec_is_refused_at_once(tmp_path, capsys, text, message):
    spec = tmp_path / "mine.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert analysis_main(["calibrate", "--spec", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not out.exists(), "nothing should be written for a refused spec"


def test_the_shipped_posterior_and_point_values_agree():
    posterior = load_posterior()
    assert 500 <= len(posterior.weights) <= 5000, "about a thousand particles"
    assert set(posterior.names) == {p.name for p in parameters.free_parameters()}
    with open(parameters.CALIBRATED_FILE, "rb") as f:
        values = tomllib.load(f)["values"]
    table = pd.read_csv(POSTERIOR_FILE)
    problem = cal.make_problem(cal.load_spec())
    u = problem.to_u(table[list(posterior.names)].to_numpy())
    central = table.loc[cal.central_particle(u, posterior.weights, table["distance"].to_numpy())]
    for name in posterior.names:
        assert values[name] == pytest.approx(central[name], rel=1e-5), (
            f"{name}: the default should be the central particle's"
        )
        assert parameters.REGISTRY[name].default == values[name], "the registry should read the point values"


def test_a_bad_posterior_file_is_refused(tmp_path):
    bad = tmp_path / "posterior.csv"
    bad.write_text("bond_rate,weight\n5.0,1.0\n")
    with pytest.raises(PosteriorError, match="bond_rate has values outside"):
        load_posterior(bad)
    with pytest.raises(PosteriorError, match="no posterior file"):
        load_posterior(tmp_path / "absent.csv")
    assert POSTERIOR_FILE.exists()


def test_recovers_known_parameters_and_leaves_an_unused_one_at_its_prior(tmp_path):
    """Facts simulated at known values are fitted back; a parameter no fact depends on keeps its prior."""
    truth = {"dropout_base": -6.0, "dropout_alliance": 6.0}
    spec = cal.load_spec(
        **{**SMALL, "population": 100, "initial": 3, "max_generations": 3, "clients": 400, "replicates": 1},
        free=[*truth, "relapse_size"],  # relapse_size acts after the course: no calibration fact sees it
        round_size=100,
        seed=11,
    )
    facts = [t for t in cal.load_targets() if t.id in ("dropout", "alliance_dropout", "dropout_reason_circumstances")]
    problem = cal.make_problem(spec)
    problem.facts = facts
    x_true = np.array([truth["dropout_base"], truth["dropout_alliance"], parameters.REGISTRY["relapse_size"].default])
    observed = problem.fact_values(x_true[None, :])[0]
    # The simulated facts become the "published" values, with bands a tenth of the published ones wide.
    lines = []
    for t, value in zip(facts, observed, strict=True):
        half = (t.band_high - t.band_low) / 20
        lines += [
            "[[fact]]",
            f'id = "{t.id}"',
            'set = "calibration"',
            f'fact = "{t.fact}"',
            f'statistic = "{t.statistic}"',
            f"published = {float(value)!r}",
            f"band_low = {float(value - half)!r}",
            f"band_high = {float(value + half)!r}",
            'published_text = "simulated at known values"',
            'source = "this test"',
            'definition = "as in analysis/targets.toml"',
            f"clients = '{t.clients}'",
            f"x = '{t.x}'",
            f"y = '{t.y}'",
            f"group = '{t.group}'",
            "",
        ]
    targets = tmp_path / "targets.toml"
    targets.write_text("\n".join(lines))
    fit = cal.calibrate(spec, "serial", targets_file=targets, log=lambda *_: None, progress=False)
    x, w = fit.posterior, fit.weights
    for j, name in enumerate(truth):
        low, high = (cal.weighted_quantile(x[:, j], w, q) for q in (0.01, 0.99))
        assert low <= truth[name] <= high, f"the posterior of {name} [{low:.3g}, {high:.3g}] should cover {truth[name]}"
    u = fit.result.last.particles[:, 2]
    mean = w @ u
    spread = np.sqrt(w @ (u - mean) ** 2) / spec.prior_sd
    assert spread > 0.7, f"relapse_size, which no fact depends on, should keep most of its prior spread ({spread:.2f})"
