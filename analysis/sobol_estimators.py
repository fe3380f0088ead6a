"""SALib's Sobol' estimators with their bootstrap, each resample's pieces computed once.

``SALib.analyze.sobol.analyze`` recomputes, for every index and every pair, the resampled A and B
blocks, their joint variance and both first-order indices of the pair (three first-order bootstraps
per S2 interval): with 12 factors that is 3 x 66 + 24 passes over an N x resamples array, 80% of a
Sobol sweep's analysis. :func:`analyze` applies the same estimators (Saltelli et al. 2010 for S1 and
ST, Saltelli 2002 for S2) to the same resampling indices drawn from the same seed, in the same order
of floating-point operations, so its indices are bit-identical to SALib's (tests/test_sobol_estimators.py),
computing each shared piece once. Memory stays a few N x 64 arrays whatever the number of factors and
resamples.

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


RESAMPLE_BLOCK = 64
"""Resamples computed together: arrays of N x 64 (2 MB at N = 4096) keep the bootstrap's memory small."""


def _blocks(num_resamples: int) -> list[slice]:
    """Consecutive blocks of about RESAMPLE_BLOCK resamples, none of a single column unless there is one."""
    n = -(-num_resamples // RESAMPLE_BLOCK)
    edges = np.linspace(0, num_resamples, n + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


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
    drawn = np.zeros(N, dtype=bool)
    drawn[r.ravel()] = True  # the resamples hold exactly these rows' values
    if _flat(A, B) or _flat(A[drawn], B[drawn]):
        return dict(sobol.analyze(problem, Y, calc_second_order, num_resamples, conf_level, seed=seed))  # warns, zeros
    z = norm.ppf(0.5 + conf_level / 2)
    second = calc_second_order and pairs
    var = np.var(np.r_[A, B], axis=0)
    s1, st = np.empty(D), np.empty(D)
    for j in range(D):
        s1[j] = _ratio(np.mean(B * (AB[:, j] - A), axis=0), var)
        st[j] = _ratio(0.5 * np.mean((A - AB[:, j]) ** 2, axis=0), var)
    # Every resample's indices, a block of resamples at a time: each block's arrays are N x block, so
    # memory does not grow with the number of resamples. A column's mean sums its rows in order
    # whatever other columns sit beside it (blocks are never a single column, which numpy would sum
    # pairwise), so the resampled indices are the ones the whole N x resamples arrays give.
    s1_r, st_r = np.empty((D, num_resamples)), np.empty((D, num_resamples))
    v2_r = np.empty((D, D, num_resamples)) if second else None
    for cols in _blocks(num_resamples):
        rc = r[:, cols]
        Ar, Br = A[rc], B[rc]
        var_r = np.var(np.r_[Ar, Br], axis=0)
        for j in range(D):
            ABj_r = AB[rc, j]
            s1_r[j, cols] = _ratio(np.mean(Br * (ABj_r - Ar), axis=0), var_r)
            st_r[j, cols] = _ratio(0.5 * np.mean((Ar - ABj_r) ** 2, axis=0), var_r)
        if second:
            AB_r = Ar * Br
            for j in range(D):
                BAj_r = BA[rc, j]
                for k in range(j + 1, D):
                    v2_r[j, k, cols] = _ratio(np.mean(BAj_r * AB[rc, k] - AB_r, axis=0), var_r)
    out = {"S1": s1, "S1_conf": z * s1_r.std(axis=1, ddof=1), "ST": st, "ST_conf": z * st_r.std(axis=1, ddof=1)}
    if second:
        out["S2"], out["S2_conf"] = np.full((D, D), np.nan), np.full((D, D), np.nan)
        AB_ = A * B
        for j in range(D):
            BAj = BA[:, j]
            for k in range(j + 1, D):
                vjk = _ratio(np.mean(BAj * AB[:, k] - AB_, axis=0), var)
                out["S2"][j, k] = vjk - s1[j] - s1[k]
                out["S2_conf"][j, k] = z * (v2_r[j, k] - s1_r[j] - s1_r[k]).std(ddof=1)
    return out
