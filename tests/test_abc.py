"""ABC-SMC on models whose posterior is known, and its reproducibility.

The known answer: x = theta + e with e ~ N(0, s^2) and a N(0, 1) prior; observing x0, the posterior of
theta is normal with mean x0 / (1 + s^2) and variance s^2 / (1 + s^2). ABC with a small tolerance must
recover it (tolerances and sample sizes below keep the test to seconds; the bounds allow for the
approximation). A second parameter that nothing depends on must keep its prior spread.
"""

import numpy as np
import pytest

from analysis import abc

X0, NOISE = 1.2, 0.5


class LinearGaussian:
    """Simulates x = theta_0 + e for a batch of candidates; theta_1 is a dummy nothing depends on.

    Each candidate's noise comes from a Generator seeded by its own values, so the simulator is a pure
    function of the candidate (as the engine is of its parameter set), whatever the batch.
    """

    def __call__(self, u):
        e = np.array([np.random.default_rng(np.frombuffer(row.tobytes(), np.uint32)).standard_normal() for row in u])
        x = u[:, 0] + NOISE * e
        return np.abs(x - X0), x[:, None]


SETTINGS = abc.Settings(population=2000, initial=3, quantile=0.5, target=0.05, min_acceptance=0.01, max_generations=12)


@pytest.fixture(scope="module")
def fit():
    return abc.run(LinearGaussian(), abc.Prior([0.0, 0.0], [1.0, 1.0]), SETTINGS, seed=3, log=lambda *_: None)


def _weighted_mean_sd(x, w):
    mean = w @ x
    return mean, np.sqrt(w @ (x - mean) ** 2)


def test_posterior_recovers_the_known_answer(fit):
    last = fit.last
    mean, sd = _weighted_mean_sd(last.particles[:, 0], last.weights)
    true_mean, true_sd = X0 / (1 + NOISE**2), np.sqrt(NOISE**2 / (1 + NOISE**2))
    assert last.epsilon <= 0.1, f"the tolerance should shrink toward 0 ({last.epsilon:.3f})"
    assert mean == pytest.approx(true_mean, abs=0.1), f"posterior mean {mean:.3f}, known {true_mean:.3f}"
    assert sd == pytest.approx(true_sd, rel=0.15), f"posterior sd {sd:.3f}, known {true_sd:.3f}"


def test_a_parameter_no_fact_depends_on_keeps_its_prior_spread(fit):
    mean, sd = _weighted_mean_sd(fit.last.particles[:, 1], fit.last.weights)
    assert abs(mean) < 0.15, f"the dummy's posterior should stay centred on its prior mean ({mean:.3f})"
    assert sd == pytest.approx(1.0, rel=0.15), f"the dummy should keep its prior spread (sd {sd:.3f}, prior 1)"


def test_weights_stay_usable_and_tolerances_fall(fit):
    eps = [g.epsilon for g in fit.generations]
    assert all(b <= a for a, b in zip(eps, eps[1:], strict=False)), f"tolerances should not rise: {eps}"
    assert fit.last.ess > 0.3 * len(fit.last.particles), f"effective sample size collapsed: {fit.last.ess:.0f}"
    assert np.isclose(fit.last.weights.sum(), 1.0)


def test_same_seed_same_posterior_and_round_size_fixes_it():
    small = abc.Settings(population=200, initial=2, max_generations=3, round_size=128)
    a = abc.run(LinearGaussian(), abc.Prior([0, 0], [1, 1]), small, seed=7, log=lambda *_: None)
    b = abc.run(LinearGaussian(), abc.Prior([0, 0], [1, 1]), small, seed=7, log=lambda *_: None)
    c = abc.run(LinearGaussian(), abc.Prior([0, 0], [1, 1]), small, seed=8, log=lambda *_: None)
    np.testing.assert_array_equal(a.last.particles, b.last.particles, "same seed, same posterior")
    np.testing.assert_array_equal(a.last.weights, b.last.weights)
    assert not np.array_equal(a.last.particles, c.last.particles), "another seed, another sample"


def test_stops_when_acceptance_falls():
    hard = abc.Settings(population=100, initial=2, quantile=0.05, min_acceptance=0.2, max_generations=20)
    result = abc.run(LinearGaussian(), abc.Prior([0, 0], [1, 1]), hard, seed=1, log=lambda *_: None)
    assert "acceptance" in result.stopped, f"should stop on a low acceptance rate: {result.stopped}"
