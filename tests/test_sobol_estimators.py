"""The Sobol' estimators of analysis/sobol_estimators.py give SALib's indices bit for bit."""

import warnings

import numpy as np
import pytest
from SALib.analyze import sobol
from SALib.sample import sobol as sobol_sample
from SALib.test_functions import Ishigami

from analysis.sobol_estimators import analyze

PROBLEM = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-np.pi, np.pi]] * 3}


def _assert_same(ours: dict, theirs: dict) -> None:
    assert set(ours) == {k for k in theirs if k in ours}, f"keys {sorted(ours)} should all be among SALib's"
    for key, value in ours.items():
        assert np.array_equal(value, np.asarray(theirs[key]), equal_nan=True), f"{key} differs from SALib's"


@pytest.mark.parametrize("second_order", [True, False])
@pytest.mark.parametrize("n", [64, 256])
def test_equal_to_salib_on_ishigami(second_order, n):
    X = sobol_sample.sample(PROBLEM, n, calc_second_order=second_order, seed=3)
    Y = Ishigami.evaluate(X)
    ours = analyze(PROBLEM, Y, second_order, num_resamples=200, conf_level=0.9, seed=11)
    theirs = sobol.analyze(PROBLEM, Y, second_order, num_resamples=200, conf_level=0.9, seed=11)
    _assert_same(ours, theirs)
    if n == 256:  # the analytic values: ST of x1 0.558, S1 of x2 0.442 (Ishigami & Homma 1990)
        assert ours["ST"][0] == pytest.approx(0.558, abs=0.1), "Ishigami's x1 has ST 0.558"
        assert ours["S1"][1] == pytest.approx(0.442, abs=0.1), "Ishigami's x2 has S1 0.442"


def test_equal_to_salib_on_a_noisy_output_with_many_factors():
    problem = {"num_vars": 12, "names": [f"p{j}" for j in range(12)], "bounds": [[0, 1]] * 12}
    X = sobol_sample.sample(problem, 128, seed=5)
    noise = np.random.default_rng(2).normal(0, 0.3, len(X))
    Y = X[:, 0] + 2 * X[:, 1] * X[:, 2] + noise  # an interaction and noise, like a cohort output
    _assert_same(analyze(problem, Y, True, 300, 0.95, seed=7), sobol.analyze(problem, Y, True, 300, 0.95, seed=7))


@pytest.mark.parametrize("resamples", [2, 65, 129, 1000])
def test_equal_to_salib_whatever_the_resample_blocks(resamples):
    """The bootstrap runs in blocks of resamples (65 and 129 leave an odd block); the intervals must not move."""
    problem = {"num_vars": 4, "names": ["a", "b", "c", "d"], "bounds": [[0, 1]] * 4}
    X = sobol_sample.sample(problem, 64, seed=9)
    Y = X[:, 0] + X[:, 1] * X[:, 3] + np.random.default_rng(4).normal(0, 0.2, len(X))
    ours = analyze(problem, Y, True, resamples, 0.95, seed=13)
    _assert_same(ours, sobol.analyze(problem, Y, True, resamples, 0.95, seed=13))


def test_pairs_false_gives_the_same_first_and_total_order():
    X = sobol_sample.sample(PROBLEM, 64, seed=3)
    Y = Ishigami.evaluate(X)
    full, short = analyze(PROBLEM, Y, seed=4), analyze(PROBLEM, Y, seed=4, pairs=False)
    assert "S2" not in short, "pairs=False should leave S2 out"
    for key in ("S1", "S1_conf", "ST", "ST_conf"):
        assert np.array_equal(full[key], short[key]), f"{key} should not depend on whether S2 is estimated"


def test_a_constant_output_is_left_to_salib():
    X = sobol_sample.sample(PROBLEM, 16, seed=3)
    Y = np.full(len(X), 0.25)
    Y[0] = 0.25 + 1e-18  # constant to the last bit but for rounding: SALib's own zero case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = analyze(PROBLEM, Y, seed=4)
        theirs = sobol.analyze(PROBLEM, Y, seed=4)
    _assert_same(ours, theirs)
