"""The tests of a virtual trial, clustered by therapist, and the Wilson interval of a power estimate.

Clients are nested in therapists, and clients of one therapist resemble each other (the therapist
effect), so a test that treats clients as independent rejects a true null too often. Each test here
takes the clustering into account, using statsmodels:

- ``cluster_robust``: ordinary least squares of the outcome on the arm (the difference in means;
  for a binary outcome the risk difference) with CR1 cluster-robust standard errors by therapist
  and a t reference with G - 1 degrees of freedom for G therapists (Cameron & Miller 2015,
  doi:10.3368/jhr.50.2.317). Fast, and close to nominal from about 10 therapists per arm.
- ``gee``: generalised estimating equations (Liang & Zeger 1986, doi:10.1093/biomet/73.1.13) with a
  logit link for binary outcomes (identity for change), exchangeable correlation within therapist
  and the bias-reduced sandwich covariance of Mancl & DeRouen (2001), doi:10.1111/j.0006-341X.2001.00126.x.
- ``mixed``: a linear mixed model with a random intercept per therapist (REML), Wald z-test of the
  arm; slowest (a numerical fit per trial).
"""

from __future__ import annotations

import warnings

import numpy as np


def cluster_test(y: np.ndarray, arm: np.ndarray, therapist: np.ndarray, test: str, binary: bool) -> tuple[float, ...]:
    """The arm's estimate, its standard error and the two-sided p-value of one trial.

    Args:
        y: outcome per client, shape (n,).
        arm: 0 for control, 1 for treatment, shape (n,).
        therapist: cluster label per client (unique across arms), shape (n,).
        test: "cluster_robust", "gee" or "mixed".
        binary: whether ``y`` is 0/1 (gee then uses the logit link; the estimate is a log odds ratio).

    Returns:
        ``(estimate, se, p)``; NaN throughout when the test is undefined (an outcome with no variance,
        a fit that fails), which a power estimate counts as no rejection.
    """
    import statsmodels.api as sm

    if test not in ("cluster_robust", "gee", "mixed"):
        raise ValueError(f"test {test!r} is not known: use cluster_robust, gee or mixed")
    if np.ptp(y) == 0:
        return np.nan, np.nan, np.nan
    X = np.column_stack([np.ones(len(y)), arm.astype(float)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notices; an unusable fit shows as NaN below
        try:
            if test == "cluster_robust":
                fit = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": therapist}, use_t=True)
            elif test == "gee":
                family = sm.families.Binomial() if binary else sm.families.Gaussian()
                model = sm.GEE(y, X, groups=therapist, family=family, cov_struct=sm.cov_struct.Exchangeable())
                fit = model.fit(cov_type="bias_reduced")
            else:
                fit = sm.MixedLM(y, X, groups=therapist).fit(reml=True)
            estimate, se, p = float(fit.params[1]), float(fit.bse[1]), float(fit.pvalues[1])
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError, OverflowError):
            return np.nan, np.nan, np.nan
    if not (np.isfinite(estimate) and np.isfinite(se) and np.isfinite(p)):
        return np.nan, np.nan, np.nan
    return estimate, se, p


def wilson_interval(successes: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (Wilson 1927, doi:10.1080/01621459.1927.10502953)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)
