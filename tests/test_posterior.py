"""Predictions that carry the posterior: draws, runs, sweeps and validation with --posterior K."""

import json

import numpy as np
import pytest

from analysis.__main__ import main as analysis_main
from experiments.spec import SpecError, load_spec
from sim import parameters
from sim.cli import main as sim_main
from sim.posterior import load_posterior, posterior_sets
from sim.run import simulate
from sim.scenario import load_scenario


@pytest.fixture(scope="module")
def posterior():
    return load_posterior()


def test_draws_are_reproducible_and_follow_the_weights(posterior):
    a, b = posterior.draw_indices(20_000, seed=4), posterior.draw_indices(20_000, seed=4)
    np.testing.assert_array_equal(a, b, "the same seed should draw the same particles")
    assert not np.array_equal(a, posterior.draw_indices(20_000, seed=5)), "another seed, other particles"
    counts = np.bincount(a, minlength=len(posterior.weights)) / len(a)
    heaviest = np.argsort(posterior.weights)[-20:]
    np.testing.assert_allclose(counts[heaviest], posterior.weights[heaviest], atol=0.01)


def test_posterior_sets_keep_what_the_scenario_sets(posterior):
    sc = load_scenario("low_empathy")
    sets = posterior_sets(sc.params, 3, seed=1, keep={"dropout_base"})
    assert len(sets) == 3
    for ps, draw in zip(sets, posterior.draws(3, seed=1), strict=True):
        assert ps["therapist_empathy_mean"] == sc.params["therapist_empathy_mean"], "the scenario's own setting stays"
        assert ps["dropout_base"] == sc.params["dropout_base"], "a kept parameter stays"
        assert ps["dropout_alliance"] == draw["dropout_alliance"], "a free parameter comes from the draw"


def test_a_posterior_run_has_wider_intervals_than_one_cohort_and_stacks_its_tables():
    result = simulate("baseline", clients=300, seed=2, posterior=6)
    s = result.summary
    assert s["posterior"] == 6 and sorted(result.clients["replicate"].unique()) == list(range(6))
    low, high = s["intervals"]["dropout_rate"]
    assert low <= s["dropout_rate"] <= high and high > low, "a range over the cohorts around their mean"


def test_run_posterior_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert sim_main(["run", "baseline", "--clients", "200", "--posterior", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["posterior"] == 3 and set(summary["intervals"]) >= {"dropout_rate", "recovery_rate"}
    assert "3 cohorts with posterior draws" in capsys.readouterr().out


SPEC = """
name = "post"
method = "grid"
scenario = "baseline"
outputs = ["dropout_rate"]
clients = 120
therapists = 6
seed = 3
chunk_size = 4
posterior = 3

[parameters.therapist_empathy_mean]
levels = [0.3, 0.8]
"""


def test_a_sweep_spec_draws_each_replicate_from_the_posterior(tmp_path, posterior):
    path = tmp_path / "post.toml"
    path.write_text(SPEC)
    spec = load_spec(path)
    assert spec.replicates == 3 and len(spec.replicate_params) == 3
    free = {p.name for p in parameters.free_parameters()}
    assert set(spec.replicate_params[0]) == free - set(load_scenario("baseline").overrides)
    assert "therapist_empathy_mean" not in spec.replicate_params[0], "a factor is never drawn"
    assert spec.replicate_params[1] != spec.replicate_params[0], "replicates draw different particles"
    path.write_text(SPEC.replace("posterior = 3", "replicates = 3"))
    assert load_spec(path).digest() != spec.digest(), "posterior draws are part of what the stored outputs belong to"


def test_a_sweep_spec_refuses_replicates_that_disagree_with_posterior(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SPEC.replace("posterior = 3", "posterior = 3\nreplicates = 5"))
    with pytest.raises(SpecError, match="replicates = 5 and posterior = 3"):
        load_spec(path)


def test_validate_shows_both_intervals_and_can_pass_on_the_posterior(tmp_path, capsys):
    out = tmp_path / "val"
    argv = ["validate", "--replicates", "2", "--clients", "300", "--out", str(out), "--posterior", "4"]
    assert analysis_main([*argv, "--strict", "--pass-on", "posterior"]) in (0, 1)
    table = (out / "validation.csv").read_text().splitlines()[0].split(",")
    assert {"posterior_median", "posterior_low", "posterior_high", "posterior_status"} <= set(table)
    assert "posterior" in (out / "validation.md").read_text()
    capsys.readouterr()
    assert analysis_main(["validate", "--out", str(tmp_path / "v2"), "--pass-on", "posterior"]) == 2
    assert "--posterior K" in capsys.readouterr().err
