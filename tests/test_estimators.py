"""Each estimator against synthetic data with a known answer and a stated tolerance."""

import numpy as np
import pytest
from scipy import stats

from analysis.estimators import (
    cohens_d,
    fisher_z_ci,
    icc_random_intercept,
    kaplan_meier,
    mean_ci,
    odds_ratio,
    pearson_r,
    point_biserial,
    share_within_first,
)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- Pearson r and the Fisher-z interval -------------------------------------------------------


def test_pearson_r_recovers_rho_of_bivariate_normal():
    rho, n = 0.3, 200_000
    xy = rng(1).multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    r = pearson_r(xy[:, 0], xy[:, 1])
    assert r == pytest.approx(rho, abs=0.01), f"expected r close to rho = {rho} (atol 0.01), got {r:.4f}"
    low, high = fisher_z_ci(r, n)
    assert low < rho < high, f"expected the 95% Fisher-z interval to contain rho = {rho}, got [{low:.4f}, {high:.4f}]"


def test_pearson_r_matches_scipy_and_drops_nan_pairs():
    x, y = rng(2).normal(size=(2, 50))
    expected = stats.pearsonr(x, y).statistic
    assert pearson_r(x, y) == pytest.approx(expected, rel=1e-12), "expected r equal to scipy.stats.pearsonr"
    x_nan, y_nan = np.append(x, [np.nan, 3.0]), np.append(y, [1.0, np.nan])
    assert pearson_r(x_nan, y_nan) == pytest.approx(expected, rel=1e-12), "pairs with a NaN should be dropped"


def test_pearson_r_vectorised_over_replicates_equals_row_by_row():
    x, y = rng(3).normal(size=(2, 4, 30))
    rows = [stats.pearsonr(x[i], y[i]).statistic for i in range(4)]
    np.testing.assert_allclose(pearson_r(x, y, axis=-1), rows, rtol=1e-12, err_msg="expected one r per replicate row")


def test_fisher_z_ci_matches_hand_computation():
    # r = .5, n = 28: z = artanh(.5) = 0.549306, se = 1/5 = 0.2, z +/- 1.959964 * 0.2
    low, high = fisher_z_ci(0.5, 28)
    z = np.arctanh(0.5)
    assert low == pytest.approx(np.tanh(z - 1.959964 * 0.2), abs=1e-6), "expected tanh(z - 1.96 se)"
    assert high == pytest.approx(np.tanh(z + 1.959964 * 0.2), abs=1e-6), "expected tanh(z + 1.96 se)"
    assert low == pytest.approx(0.1560, abs=1e-4) and high == pytest.approx(0.7358, abs=1e-4), (
        f"expected [0.1560, 0.7358], got [{low:.4f}, {high:.4f}]"
    )


def test_fisher_z_ci_covers_rho_about_95_percent_of_the_time():
    rho, n, reps = 0.3, 60, 2000
    z = rng(4).standard_normal((2, reps, n))
    x, y = z[0], rho * z[0] + np.sqrt(1 - rho**2) * z[1]
    low, high = fisher_z_ci(pearson_r(x, y, axis=-1), n)
    coverage = np.mean((low < rho) & (rho < high))
    assert 0.93 <= coverage <= 0.97, f"expected coverage near 0.95 (0.93-0.97), got {coverage:.3f}"


# --- Cohen's d, point-biserial, odds ratio, shares ---------------------------------------------


def test_cohens_d_of_two_normals_half_an_sd_apart():
    g = rng(5)
    a, b = g.normal(0.5, 1.0, 100_000), g.normal(0.0, 1.0, 120_000)
    d = cohens_d(a, b)
    assert d == pytest.approx(0.5, abs=0.02), f"expected d close to 0.5 (atol 0.02), got {d:.4f}"
    assert cohens_d(b, a) == pytest.approx(-d), "d of b minus a should be minus d of a minus b"


def test_cohens_d_hand_example_and_hedges_correction():
    # means 2 and 3, both sample SDs 1, so pooled SD 1 and d = -1; J = 1 - 3 / (4 * 6 - 9) = 0.8
    a, b = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]
    assert cohens_d(a, b) == pytest.approx(-1.0), "expected d = -1 for means 2 vs 3 with pooled SD 1"
    assert cohens_d(a, b, hedges=True) == pytest.approx(-0.8), "expected Hedges' g = -1 * 0.8"
    # unequal sizes: pooled variance ((2 * 1) + (1 * 2)) / 3 = 4/3
    d = cohens_d([1.0, 2.0, 3.0], [0.0, 2.0, np.nan])
    assert d == pytest.approx(1.0 / np.sqrt(4.0 / 3.0)), "expected NaN-dropping pooled-SD d = 1 / sqrt(4/3)"


def test_cohens_d_vectorised_over_replicates():
    g = rng(6)
    a, b = g.normal(0.3, 1.0, (3, 40)), g.normal(0.0, 1.0, (3, 25))
    rows = [cohens_d(a[i], b[i]) for i in range(3)]
    np.testing.assert_allclose(cohens_d(a, b, axis=-1), rows, rtol=1e-12, err_msg="expected one d per replicate")


def test_point_biserial_matches_scipy():
    g = rng(7)
    group = g.random(500) < 0.3
    y = g.normal(size=500) + 0.4 * group
    expected = stats.pointbiserialr(group, y).statistic
    assert point_biserial(group, y) == pytest.approx(expected, rel=1e-12), "expected scipy's point-biserial r"


def test_odds_ratio_hand_example():
    # exposed: 3 events, 7 without (odds 3/7); unexposed: 1 event, 9 without (odds 1/9): OR = 27/7
    event = np.array([1] * 3 + [0] * 7 + [1] * 1 + [0] * 9, bool)
    exposed = np.array([1] * 10 + [0] * 10, bool)
    assert odds_ratio(event, exposed) == pytest.approx(27.0 / 7.0), "expected OR = (3/7) / (1/9) = 27/7"


def test_share_within_first_hand_example():
    sessions = np.array([1, 2, 2, 3, 5, 8, np.nan])
    assert share_within_first(sessions, 2) == pytest.approx(3 / 6), "expected 3 of 6 non-missing times <= 2"
    stacked = np.array([[1, 4, 4, 4], [1, 1, 2, 9]])
    np.testing.assert_allclose(share_within_first(stacked, 3, axis=-1), [0.25, 0.75], err_msg="one share per row")


# --- ICC(1) of a random-intercept model -------------------------------------------------------


def random_intercept_sample(seed, n_groups, var_between, var_within, sizes=(2, 41)):
    g = rng(seed)
    size = g.integers(*sizes, n_groups)
    groups = np.repeat(np.arange(n_groups), size)
    y = 10.0 + g.normal(0.0, np.sqrt(var_between), n_groups)[groups] + g.normal(0.0, np.sqrt(var_within), groups.size)
    return y, groups


def test_icc_recovers_variance_share_with_unbalanced_groups():
    var_between, var_within = 0.05, 0.2
    true_icc = var_between / (var_between + var_within)  # 0.2
    y, groups = random_intercept_sample(8, 5000, var_between, var_within)
    for method in ("anova", "reml", "ml"):
        icc = icc_random_intercept(y, groups, method=method)
        assert icc == pytest.approx(true_icc, abs=0.01), (
            f"expected {method} ICC close to {true_icc} (atol 0.01), got {icc:.4f}"
        )


def test_icc_small_true_value_like_therapist_effects():
    y, groups = random_intercept_sample(9, 4000, 0.05, 0.95, sizes=(5, 30))
    icc = icc_random_intercept(y, groups)
    assert icc == pytest.approx(0.05, abs=0.01), f"expected ICC close to 0.05 (atol 0.01), got {icc:.4f}"


def test_icc_hand_computed_balanced_example():
    # groups {1, 3}, {5, 7}, {9, 11}: MSW = 2, group means 2, 6, 10, MSB = 2 * 32 / 2 = 32;
    # n0 = 2, s_b = (32 - 2) / 2 = 15, ICC = 15 / 17
    y = np.array([1.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    assert icc_random_intercept(y, groups) == pytest.approx(15 / 17), "expected ICC = 15/17"
    # REML equals the ANOVA estimator for balanced groups when it is positive
    assert icc_random_intercept(y, groups, method="reml") == pytest.approx(15 / 17, abs=1e-6), "expected REML = 15/17"


def test_icc_hand_computed_unbalanced_example_uses_n0():
    # groups {0, 2} and {4, 6, 8}: N = 5, k = 2, n0 = (5 - 13/5) / 1 = 2.4
    # group means 1 and 6, grand mean 4: SSB = 2*9 + 3*4 = 30 = MSB; SSW = 2 + 8 = 10, MSW = 10/3
    y = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    groups = np.array([0, 0, 1, 1, 1])
    var_between = (30.0 - 10.0 / 3.0) / 2.4
    expected = var_between / (var_between + 10.0 / 3.0)
    assert icc_random_intercept(y, groups) == pytest.approx(expected), f"expected n0-adjusted ICC {expected:.5f}"


def test_icc_truncated_at_zero():
    # group means identical, all variance within: MSB = 0 < MSW, so the estimate is truncated to 0
    y = np.array([1.0, 3.0, 1.0, 3.0, 1.0, 3.0])
    groups = np.array([0, 0, 1, 1, 2, 2])
    for method in ("anova", "reml"):
        icc = icc_random_intercept(y, groups, method=method)
        assert icc == pytest.approx(0.0, abs=1e-6), f"expected {method} ICC truncated at 0, got {icc}"


def test_icc_rejects_bad_input():
    with pytest.raises(ValueError, match="at least two groups"):
        icc_random_intercept([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="method"):
        icc_random_intercept([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1], method="bayes")


# --- Kaplan-Meier ---------------------------------------------------------------------------


def test_kaplan_meier_hand_computed_example():
    # t=1: 6 at risk, 1 event -> 5/6; t=2: 5 at risk, 1 event (1 censored) -> 5/6 * 4/5 = 2/3;
    # t=3: 3 at risk, 1 event -> 2/3 * 2/3 = 4/9; t=4 censored; t=5: 1 at risk, 1 event -> 0
    durations = [1, 2, 2, 3, 4, 5]
    events = [True, True, False, True, False, True]
    km = kaplan_meier(durations, events)
    np.testing.assert_allclose(km.times, [1, 2, 3, 4, 5], err_msg="expected the distinct observed times")
    np.testing.assert_allclose(
        km.survival, [5 / 6, 2 / 3, 4 / 9, 4 / 9, 0.0], rtol=1e-12, err_msg="expected S = 5/6, 2/3, 4/9, 4/9, 0"
    )
    np.testing.assert_allclose(km.survival_at([0.5, 1, 2.5, 6]), [1.0, 5 / 6, 2 / 3, 0.0], err_msg="step function")
    # Greenwood: var S(1) = S^2 * 1 / (6 * 5); log-log band computed by hand
    s, v = 5 / 6, 1 / 30
    se = np.sqrt(v) / abs(np.log(s))
    expected = sorted(s ** np.exp(np.array([1, -1]) * 1.959964 * se))
    assert [km.ci_low[0], km.ci_high[0]] == pytest.approx(expected, abs=1e-5), "expected log-log Greenwood band at t=1"
    assert np.isnan(km.ci_low[-1]), "the band is undefined (NaN) where S has reached 0"


def test_kaplan_meier_exponential_with_random_censoring():
    g = rng(10)
    lam, n = 8.0, 20_000  # mean time to dropout, in sessions
    event_time = g.exponential(lam, n)
    censor_time = g.uniform(0.0, 30.0, n)
    durations = np.minimum(event_time, censor_time)
    km = kaplan_meier(durations, event_time <= censor_time)
    t = np.linspace(0.5, 20.0, 40)
    error = np.max(np.abs(km.survival_at(t) - np.exp(-t / lam)))
    assert error < 0.02, f"expected KM within 0.02 of exp(-t/{lam}) on [0.5, 20], max error {error:.4f}"
    inside = (km.ci_low <= np.exp(-km.times / lam)) & (np.exp(-km.times / lam) <= km.ci_high)
    early = km.times < 20.0
    assert inside[early].mean() > 0.8, "expected the 95% band to contain the true curve at most times"
    assert np.all(km.ci_low[early] <= km.survival[early]) and np.all(km.survival[early] <= km.ci_high[early]), (
        "expected the band to bracket the estimate"
    )


def test_kaplan_meier_without_censoring_is_one_minus_ecdf():
    d = rng(11).integers(1, 17, 300).astype(float)
    km = kaplan_meier(d, np.ones(d.size, bool))
    expected = 1.0 - np.array([np.mean(d <= t) for t in km.times])
    np.testing.assert_allclose(km.survival, expected, atol=1e-12, err_msg="expected 1 - ECDF without censoring")


# --- mean over replicates with a t-interval ---------------------------------------------------


def test_mean_ci_hand_example():
    ci = mean_ci([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3.0)  # 4.302653 / sqrt(3)
    assert (ci.mean, ci.n) == (2.0, 3), "expected mean 2 of 3 replicates"
    assert ci.low == pytest.approx(2.0 - half) and ci.high == pytest.approx(2.0 + half), "expected t(2) interval"
    assert ci.high - ci.low == pytest.approx(2 * 2.4841377, abs=1e-6), "expected half-width 2.48414"


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    mu, reps, n = 0.25, 4000, 20
    values = rng(12).normal(mu, 0.1, (n, reps))  # replicate axis 0, one column per experiment
    ci = mean_ci(values, axis=0)
    coverage = np.mean((ci.low < mu) & (mu < ci.high))
    assert 0.935 <= coverage <= 0.965, f"expected t-interval coverage near 0.95 (0.935-0.965), got {coverage:.3f}"


def test_mean_ci_ignores_nan_and_needs_two_replicates():
    ci = mean_ci([1.0, np.nan, 3.0])
    assert ci.n == 2 and ci.mean == 2.0, "a NaN replicate should be dropped"
    single = mean_ci([4.0])
    assert single.mean == 4.0 and np.isnan(single.low) and np.isnan(single.high), "one replicate has no interval"
