"""Statistical estimators for validating simulated cohorts against published figures.

Pure functions over numpy arrays: they take per-client values (a column of ``clients.csv`` or an
array of outcomes) and return the statistic that the literature reports, computed the way the
literature computes it. Missing values (NaN) are dropped pairwise unless a docstring says otherwise.
Functions that take an ``axis`` work over a stack of replicates at once, e.g. arrays shaped
(n_replicates, n_clients) with ``axis=-1``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, stats

__all__ = [
    "KaplanMeier",
    "MeanCI",
    "cohens_d",
    "fisher_z_ci",
    "icc_random_intercept",
    "kaplan_meier",
    "mean_ci",
    "odds_ratio",
    "pearson_r",
    "point_biserial",
    "share_within_first",
]


def _float(a) -> np.ndarray:
    return np.asarray(a, dtype=float)


def _scalar(a):
    """A 0-d array as a Python float; anything else unchanged."""
    return float(a) if np.ndim(a) == 0 else a


def pearson_r(x, y, axis: int = -1):
    """Pearson product-moment correlation of ``x`` and ``y``, pairs with a NaN dropped.

    Args:
        x, y: values of the two variables, same shape; the correlation is taken along ``axis``,
            so arrays shaped (n_replicates, n_clients) give one r per replicate.
        axis: the axis that holds the observations.

    Returns:
        r as a float (1-D input) or an array with ``axis`` removed. NaN when fewer than two
        complete pairs remain or either variable is constant.

    Reference:
        Cohen, Cohen, West & Aiken (2003), Applied Multiple Regression/Correlation Analysis for
        the Behavioral Sciences, 3rd ed., ch. 2.
    """
    x, y = np.broadcast_arrays(_float(x), _float(y))
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = np.where(ok, x - np.where(ok, x, 0.0).sum(axis=axis, keepdims=True) / n, 0.0)
        dy = np.where(ok, y - np.where(ok, y, 0.0).sum(axis=axis, keepdims=True) / n, 0.0)
        r = (dx * dy).sum(axis=axis) / np.sqrt((dx * dx).sum(axis=axis) * (dy * dy).sum(axis=axis))
    return _scalar(np.clip(r, -1.0, 1.0))


def fisher_z_ci(r, n, level: float = 0.95):
    """Confidence interval for a correlation by Fisher's z transformation.

    ``z = artanh(r)`` is approximately normal with standard error ``1 / sqrt(n - 3)``; the interval
    ``z +/- q * se`` is mapped back with ``tanh``, so it is asymmetric around r and stays in [-1, 1].

    Args:
        r: sample correlation(s).
        n: number of pairs behind each r (must exceed 3).
        level: confidence level, 0.95 for a 95% interval.

    Returns:
        (low, high), floats or arrays shaped like ``r``.

    Reference:
        Fisher (1921), Metron 1, 3-32; Cohen et al. (2003), Applied Multiple
        Regression/Correlation Analysis, section 2.8.
    """
    r, n = _float(r), _float(n)
    q = stats.norm.ppf(0.5 + level / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z, se = np.arctanh(r), 1.0 / np.sqrt(n - 3.0)
    return _scalar(np.tanh(z - q * se)), _scalar(np.tanh(z + q * se))


def cohens_d(a, b, hedges: bool = False, axis: int = -1):
    """Standardised mean difference of group ``a`` minus group ``b`` with the pooled SD.

    ``d = (mean_a - mean_b) / s_pooled`` with
    ``s_pooled**2 = ((n_a - 1) s_a**2 + (n_b - 1) s_b**2) / (n_a + n_b - 2)`` (sample variances with
    ``ddof=1``). With ``hedges=True`` the small-sample correction ``J = 1 - 3 / (4 (n_a + n_b) - 9)``
    is applied, giving Hedges' g. NaNs are ignored.

    Args:
        a, b: values of the two groups; they may differ in length along ``axis`` and must agree
            on the other axes (e.g. (n_replicates, n_a) and (n_replicates, n_b)).
        hedges: apply Hedges' small-sample correction (off by default).
        axis: the axis that holds the observations.

    Returns:
        d (or g) as a float or an array with ``axis`` removed; NaN when a group has no data.

    Reference:
        Cohen (1988), Statistical Power Analysis for the Behavioral Sciences, 2nd ed.;
        Hedges (1981), J. Educ. Stat. 6(2), 107-128, doi:10.3102/10769986006002107.
    """
    a, b = _float(a), _float(b)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # empty groups give NaN, documented above
        n_a, n_b = np.isfinite(a).sum(axis=axis), np.isfinite(b).sum(axis=axis)
        var_a, var_b = np.nanvar(a, axis=axis, ddof=1), np.nanvar(b, axis=axis, ddof=1)
        pooled = np.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
        d = (np.nanmean(a, axis=axis) - np.nanmean(b, axis=axis)) / pooled
        if hedges:
            d = d * (1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0))
    return _scalar(d)


def point_biserial(group, y, axis: int = -1):
    """Point-biserial correlation of a dichotomy ``group`` (True/1 versus False/0) with ``y``.

    It is Pearson's r with the dichotomy coded 1/0, so a positive value means the True group has
    the higher ``y``. Rows where ``y`` is NaN are dropped.

    Args:
        group: booleans (or 0/1) marking membership, same shape as ``y``.
        y: the continuous variable.
        axis: the axis that holds the observations.

    Returns:
        r_pb as a float or an array with ``axis`` removed.

    Reference:
        Tate (1954), Ann. Math. Stat. 25(3), 603-607, doi:10.1214/aoms/1177728730.
    """
    return pearson_r(np.asarray(group).astype(float), y, axis=axis)


def odds_ratio(event, exposed) -> float:
    """Odds ratio of ``event`` among ``exposed`` clients over the odds among the others.

    ``OR = (a / b) / (c / d)`` from the 2x2 table (a: exposed with the event, b: exposed without,
    c: unexposed with, d: unexposed without). No continuity correction: a zero cell gives 0 or inf.

    Args:
        event: booleans, one per client (e.g. ``end_type == "dropout"``).
        exposed: booleans, one per client (e.g. the therapist does not use feedback).

    Returns:
        The odds ratio (float); NaN when it is undefined (0/0).

    Reference:
        Borenstein, Hedges, Higgins & Rothstein (2009), Introduction to Meta-Analysis, ch. 5,
        doi:10.1002/9780470743386.
    """
    event, exposed = np.asarray(event, dtype=bool), np.asarray(exposed, dtype=bool)
    a, b = np.sum(event & exposed), np.sum(~event & exposed)
    c, d = np.sum(event & ~exposed), np.sum(~event & ~exposed)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(a * d) / np.float64(b * c))


def share_within_first(times, k: float, axis: int = -1):
    """Share of ``times`` that are at most ``k``: e.g. the share of dropouts within the first k sessions.

    Pass only the clients the share is about (for the dropout share: the dropouts' sessions
    attended or end sessions). NaNs are ignored.

    Args:
        times: session numbers (or any durations).
        k: the cut-off, inclusive.
        axis: the axis that holds the observations.

    Returns:
        The share in [0, 1], a float or an array with ``axis`` removed; NaN when there are no times.
    """
    times = _float(times)
    ok = np.isfinite(times)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar((ok & (times <= k)).sum(axis=axis) / ok.sum(axis=axis))


def _group_stats(values, groups):
    values = _float(values)
    groups = np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1:
        raise ValueError(f"values and groups must be 1-D and of the same length, got {values.shape} and {groups.shape}")
    ok = np.isfinite(values)
    values, groups = values[ok], groups[ok]
    _, idx = np.unique(groups, return_inverse=True)
    n = np.bincount(idx).astype(float)
    means = np.bincount(idx, weights=values) / n
    ss_within = np.bincount(idx, weights=(values - means[idx]) ** 2)
    return n, means, ss_within


def _icc_anova(n, means, ss_within) -> float:
    k, n_total = len(n), n.sum()
    grand = (n * means).sum() / n_total
    ms_between = (n * (means - grand) ** 2).sum() / (k - 1)
    ms_within = ss_within.sum() / (n_total - k)
    n0 = (n_total - (n**2).sum() / n_total) / (k - 1)
    var_between = max((ms_between - ms_within) / n0, 0.0)
    return var_between / (var_between + ms_within)


def _icc_likelihood(n, means, ss_within, reml: bool) -> float:
    # Only group sizes, group means and within-group sums of squares enter the likelihood of the
    # one-way random-effects model: det V_i = s_w^(2(n_i - 1)) (s_w + n_i s_b) and
    # y_i' V_i^-1 y_i = SS_within_i / s_w + n_i (mean_i - mu)^2 / (s_w + n_i s_b).
    scale = np.sqrt(max(ss_within.sum() / max(n.sum() - len(n), 1.0), 1e-300))
    means, ss_within = means / scale, ss_within / scale**2  # the ICC is scale free; this helps the optimiser
    n_total, k = n.sum(), len(n)

    def neg_loglik(theta):
        var_between, var_within = theta[0], np.exp(theta[1])
        lam = var_within + n * var_between
        w = n / lam
        mu = (w * means).sum() / w.sum()
        ll = (n_total - k) * np.log(var_within) + np.log(lam).sum()
        ll += ss_within.sum() / var_within + (w * (means - mu) ** 2).sum()
        if reml:
            ll += np.log(w.sum())
        return 0.5 * ll

    start = _icc_anova(n, means, ss_within)
    x0 = np.array([max(start, 0.01), np.log(max(1.0 - start, 0.01))])
    fit = optimize.minimize(
        neg_loglik, x0, method="L-BFGS-B", bounds=[(0.0, None), (-30.0, 30.0)], options={"ftol": 1e-14, "gtol": 1e-10}
    )
    var_between, var_within = fit.x[0], np.exp(fit.x[1])
    return float(var_between / (var_between + var_within))


def icc_random_intercept(values, groups, method: Literal["anova", "reml", "ml"] = "anova") -> float:
    """Intraclass correlation ICC(1) of a one-way random-intercept model, for unbalanced groups.

    Model: ``y_ij = mu + u_j + e_ij`` with ``u_j ~ N(0, s_b)`` between groups (therapists) and
    ``e_ij ~ N(0, s_w)`` within; ``ICC = s_b / (s_b + s_w)``, the share of variance between groups.

    ``method="anova"`` (the default) is the ANOVA (method-of-moments) estimator with the ``n0``
    adjustment for unequal group sizes: ``s_b = (MSB - MSW) / n0`` with
    ``n0 = (N - sum(n_j**2) / N) / (k - 1)`` (N clients, k groups), ``s_w = MSW``. When ``MSB < MSW``
    the between-group variance estimate is negative; it is **truncated at 0**, so the ICC is 0,
    never negative. ``method="reml"`` or ``"ml"`` maximises the (restricted) likelihood of the same
    model with scipy (``s_b >= 0``); REML equals the ANOVA estimate for balanced groups when that is
    positive, and both are close when groups are many.

    Args:
        values: the outcome per client, 1-D (e.g. pre-post change in PHQ-9); NaNs are dropped.
        groups: the group label per client (e.g. ``therapist_id``), same length.
        method: "anova", "reml" or "ml".

    Returns:
        The ICC in [0, 1] as a float.

    Raises:
        ValueError: fewer than two groups, no within-group replication, or an unknown method.

    References:
        Shrout & Fleiss (1979), Psychol. Bull. 86(2), 420-428, doi:10.1037/0033-2909.86.2.420;
        Donner (1986), Int. Stat. Rev. 54(1), 67-82, doi:10.2307/1403259 (the n0 adjustment);
        Searle, Casella & McCulloch (1992), Variance Components, ch. 3-6, doi:10.1002/9780470316856.
    """
    n, means, ss_within = _group_stats(values, groups)
    if len(n) < 2 or n.sum() <= len(n):
        raise ValueError(
            f"the ICC needs at least two groups and some group with two or more values; "
            f"got {len(n)} groups and {int(n.sum())} values"
        )
    if method == "anova":
        return _icc_anova(n, means, ss_within)
    if method in ("reml", "ml"):
        return _icc_likelihood(n, means, ss_within, reml=method == "reml")
    raise ValueError(f"method = {method!r} is not one of 'anova', 'reml', 'ml'")


def icc_latent_binary(event, groups) -> float:
    """ICC of a 0/1 outcome on the latent (threshold) scale, as multilevel logistic models report it.

    The ANOVA ICC(1) of the 0/1 values (:func:`icc_random_intercept`) is converted to the scale of
    a normal liability with a threshold: ``ICC * p (1 - p) / phi(Phi^-1(p))^2`` with ``p`` the
    overall rate (Dempster & Lerner 1950, Genetics 35(2), 212-236; for multilevel models see
    Nakagawa, Johnson & Schielzeth 2017, J. R. Soc. Interface 14, 20170213,
    doi:10.1098/rsif.2017.0213). Clipped to [0, 1]; NaN when every value is 0 or every value is 1.

    Args:
        event: the outcome per client (bool), 1-D.
        groups: the group label per client (e.g. ``therapist_id``), same length.
    """
    event = np.asarray(event, dtype=bool)
    p = float(event.mean()) if event.size else float("nan")
    if not 0.0 < p < 1.0:
        return float("nan")
    observed = icc_random_intercept(event.astype(float), groups)
    density = stats.norm.pdf(stats.norm.ppf(p))
    return float(np.clip(observed * p * (1.0 - p) / density**2, 0.0, 1.0))


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier survival (retention) curve with a pointwise confidence band.

    Attributes:
        times: the distinct observed durations (events and censorings), ascending, shape (m,).
        survival: S(t) just after each time (the curve is right-continuous), shape (m,).
        ci_low, ci_high: pointwise confidence band at each time, shape (m,); NaN where the
            Greenwood variance is undefined (where S(t) has reached 0).
        level: the confidence level of the band.
    """

    times: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    level: float

    def survival_at(self, t) -> np.ndarray:
        """S(t) of the step function at arbitrary times ``t`` (1 before the first time)."""
        i = np.searchsorted(self.times, _float(t), side="right")
        return np.concatenate([[1.0], self.survival])[i]


def kaplan_meier(
    durations, event_observed, level: float = 0.95, method: Literal["linear", "log-log"] = "log-log"
) -> KaplanMeier:
    """Kaplan-Meier estimate of the survival function under right-censoring, with a 95% band.

    For retention in therapy: ``durations`` is the session at which each course ended and
    ``event_observed`` marks dropouts; completers and good-enough endings are right-censored (they
    were still "retained" when observation stopped). Computed with ``scipy.stats.ecdf`` on
    ``scipy.stats.CensoredData``; the band is ``sf.confidence_interval`` (Greenwood's variance, on
    the log-log scale by default so that it stays inside [0, 1]).

    Args:
        durations: time to the event or to censoring, one per client; NaNs are not allowed.
        event_observed: True where the event (dropout) was observed, False where censored.
        level: confidence level of the band.
        method: "log-log" (default) or "linear" (plain Greenwood), passed to scipy.

    Returns:
        A :class:`KaplanMeier` with times, survival, ci_low and ci_high.

    References:
        Kaplan & Meier (1958), J. Am. Stat. Assoc. 53(282), 457-481, doi:10.1080/01621459.1958.10501452;
        Greenwood (1926), Reports on Public Health and Medical Subjects 33, 1-26.
    """
    durations = _float(durations)
    event = np.asarray(event_observed, dtype=bool)
    if durations.shape != event.shape or durations.ndim != 1:
        raise ValueError(
            f"durations and event_observed must be 1-D of one length, got {durations.shape}, {event.shape}"
        )
    if not np.all(np.isfinite(durations)):
        raise ValueError("durations contain NaN or inf; drop those clients first")
    result = stats.ecdf(stats.CensoredData(uncensored=durations[event], right=durations[~event]))
    with warnings.catch_warnings():
        # scipy warns where S(t) = 0 makes the band undefined; the NaNs there are documented above
        warnings.filterwarnings("ignore", message="The confidence interval is undefined", category=RuntimeWarning)
        band = result.sf.confidence_interval(confidence_level=level, method=method)
    return KaplanMeier(
        times=np.asarray(result.sf.quantiles, dtype=float),
        survival=np.asarray(result.sf.probabilities, dtype=float),
        ci_low=np.asarray(band.low.probabilities, dtype=float),
        ci_high=np.asarray(band.high.probabilities, dtype=float),
        level=level,
    )


@dataclass(frozen=True)
class MeanCI:
    """A mean over replicates with its t-interval.

    Attributes:
        mean: the mean over replicates.
        low, high: the confidence interval for the mean.
        n: the number of replicates (non-NaN values).
        level: the confidence level.
    """

    mean: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    n: int | np.ndarray
    level: float


def mean_ci(values, level: float = 0.95, axis: int = 0) -> MeanCI:
    """Mean of a statistic over replicates with a Student-t confidence interval.

    ``mean +/- t_{(1 + level) / 2, n - 1} * sd / sqrt(n)`` with the sample SD (``ddof=1``), for
    reporting a simulated value with its 95% interval over independent replicates. NaNs (e.g. a
    replicate where the statistic is undefined) are dropped; with fewer than two replicates the
    interval is NaN.

    Args:
        values: one value per replicate along ``axis`` (e.g. shape (n_replicates,) or
            (n_replicates, n_facts)).
        level: confidence level.
        axis: the replicate axis.

    Returns:
        A :class:`MeanCI`; its fields are floats for 1-D input, arrays otherwise.

    Reference:
        Law (2015), Simulation Modeling and Analysis, 5th ed., section 9.4.1 (independent replications).
    """
    values = _float(values)
    n = np.isfinite(values).sum(axis=axis)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN or single replicates give NaN
        mean = np.nanmean(values, axis=axis)
        sem = np.nanstd(values, axis=axis, ddof=1) / np.sqrt(n)
        half = stats.t.ppf(0.5 + level / 2.0, np.where(n > 1, n - 1, np.nan)) * sem
    n = int(n) if np.ndim(n) == 0 else n
    return MeanCI(_scalar(mean), _scalar(mean - half), _scalar(mean + half), n, level)
