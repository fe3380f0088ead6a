"""SALib's Sobol' estimators with their bootstrap, each resample's pieces computed once.

``SALib.analyze.sobol.analyze`` recomputes, for every index and every pair, the resampled A and B
blocks, their joint variance and both first-order indices of the pair (three first-order bootstraps
per S2 interval): with 12 factors that is 3 x 66 + 24 passes over an N x resamples array, 80% of a
Sobol sweep's analysis. :func:`analyze` applies the same estimators (Saltelli et al. 2010 for S1 and
ST, Saltelli 2002 for S2) to the same resampling indices drawn from the same seed, in the same order
of floating-point operations, so its indices are bit-identical to SALib's (tests/test_sobol_estimators.py),
computing each shared piece once. Memory stays a few N x resamples arrays whatever the number of factors.

Outputs that are constant in the sample or in every resample go to SALib itself, which warns and
returns zeros; this module covers the common case only.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

EPS = np.finfo(float).eps


def _flat(*blocks: np.ndarray) -> bool:
    return bool(np.ptp(np.r_[blocks]) <= EPS)


def _ratio(numerator: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """The ratio, 0 where the variance is 0 (as SALib's estimators do)."""
    return np.divide(numerator, variance, out=np.zeros_like(variance, dtype=np.float64), where=variance > EPS)


def analyze(
    problem: dict,
    Y: np.ndarray,
    calc_second_order: bool = True,
    num_resamples: int = 100,
    conf_level: float = 0.95,
    seed: int = 1,
    pairs: bool = True,
) -> dict[str, np.ndarray]:
    """Sobol' indices of ``Y`` from a Saltelli sample: S1, ST (and S2) with bootstrap half-widths.

    Args:
        problem: SALib's problem dictionary (``names`` is used for D).
        Y: one output per parameter set, in the sample's order: N (2D + 2) values with second order,
            N (D + 2) without.
        calc_second_order: whether the sample holds the BA blocks and S2 is wanted.
        num_resamples, conf_level: the bootstrap, as SALib takes them.
        seed: the resampling seed (non-zero, as SALib needs for a seeded generator).
        pairs: with second order, estimate S2 too (False: S1 and ST only, from the same sample,
            a fifth of the work with 12 factors).

    Returns:
        ``S1``, ``S1_conf``, ``ST``, ``ST_conf`` (length D) and, with second order, ``S2`` and
        ``S2_conf`` (D x D, upper triangle filled, NaN elsewhere): the values ``SALib.analyze.sobol.analyze``
        returns for the same arguments.
    """
    from SALib.analyze import sobol

    D = len(problem["names"])
    step = 2 * D + 2 if calc_second_order else D + 2
    N = Y.size // step
    if Y.size % step or not 0 < conf_level < 1 or not seed:
        return dict(sobol.analyze(problem, Y, calc_second_order, num_resamples, conf_level, seed=seed))
    A, B, AB, BA = sobol.separate_output_values((Y - Y.mean()) / Y.std(), D, N, calc_second_order)
    r = np.random.default_rng(seed).integers(N, size=(N, num_resamples))
    Ar, Br = A[r], B[r]
    if _flat(A, B) or _flat(Ar, Br):  # SALib warns and returns zeros here: let it
        return dict(sobol.analyze(problem, Y, calc_second_order, num_resamples, conf_level, seed=seed))
    z = norm.ppf(0.5 + conf_level / 2)
    var, var_r = np.var(np.r_[A, B], axis=0), np.var(np.r_[Ar, Br], axis=0)
    out = {key: np.zeros(D) for key in ("S1", "S1_conf", "ST", "ST_conf")}
    s1, s1_r = np.empty(D), np.empty((D, num_resamples))
    for j in range(D):
        ABj, ABj_r = AB[:, j], AB[r, j]
        s1[j] = _ratio(np.mean(B * (ABj - A), axis=0), var)
        s1_r[j] = _ratio(np.mean(Br * (ABj_r - Ar), axis=0), var_r)
        out["S1"][j], out["S1_conf"][j] = s1[j], z * s1_r[j].std(ddof=1)
        out["ST"][j] = _ratio(0.5 * np.mean((A - ABj) ** 2, axis=0), var)
        out["ST_conf"][j] = z * _ratio(0.5 * np.mean((Ar - ABj_r) ** 2, axis=0), var_r).std(ddof=1)
    if calc_second_order and pairs:
        out["S2"], out["S2_conf"] = np.full((D, D), np.nan), np.full((D, D), np.nan)
        AB_ = A * B
        AB_r = Ar * Br
        for j in range(D):
            BAj, BAj_r = BA[:, j], BA[r, j]
            for k in range(j + 1, D):
                vjk = _ratio(np.mean(BAj * AB[:, k] - AB_, axis=0), var)
                out["S2"][j, k] = vjk - s1[j] - s1[k]
                vjk_r = _ratio(np.mean(BAj_r * AB[r, k] - AB_r, axis=0), var_r)
                out["S2_conf"][j, k] = z * (vjk_r - s1_r[j] - s1_r[k]).std(ddof=1)
    return out
