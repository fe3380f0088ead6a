"""Samples: the parameter sets an experiment runs, drawn by SALib or laid out as a grid.

SALib draws every factor on the unit interval (the problem :func:`problem` returns), seeded from the
spec's seed; :func:`to_values` then maps each unit column to the parameter's scale:

- float parameters through the inverse CDF of their distribution truncated to [low, high] (the
  registry refuses values outside it), so ``unif`` is ``low + u (high - low)``;
- int parameters to ``low + floor(u (high - low + 1))``, capped at ``high``: every integer in the
  range is equally likely;
- choice parameters to ``choices[floor(u k)]`` for k choices, capped at the last.

Indices are computed on the unit columns, so Morris' mu* reads as output change per full range of
a parameter, comparable across parameters with different units.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from SALib.sample import fast_sampler, latin, morris, sobol
from scipy import stats

from experiments.chunk import SCENARIO_FACTOR
from experiments.spec import ExperimentSpec, Factor, SpecError

UNIT_PREFIX = "u:"


def problem(factors: tuple[Factor, ...]) -> dict[str, Any]:
    """The SALib problem: every factor on the unit interval."""
    return {"num_vars": len(factors), "names": [f.name for f in factors], "bounds": [[0.0, 1.0]] * len(factors)}


def unit_sample(spec: ExperimentSpec) -> np.ndarray:
    """SALib's sample for a sampled method, shape (n_sets, n_factors), values in [0, 1]."""
    prob, N, options, seed = problem(spec.factors), spec.N, spec.options, spec.seed
    if spec.method == "sobol":
        return sobol.sample(prob, N, calc_second_order=options["calc_second_order"], seed=seed)
    if spec.method == "morris":
        return morris.sample(prob, N, num_levels=options["num_levels"], seed=seed)
    if spec.method == "fast":
        return fast_sampler.sample(prob, N, M=options["M"], seed=seed)
    if spec.method in ("rbd_fast", "delta"):
        return latin.sample(prob, N, seed=seed)
    raise ValueError(f"method {spec.method!r} is not drawn by SALib")


def distribution(factor: Factor):
    """The frozen scipy distribution of a float factor before truncation to [low, high]."""
    if factor.distribution == "triang":
        width = factor.high - factor.low
        return stats.triang(c=(factor.peak - factor.low) / width, loc=factor.low, scale=width)
    if factor.distribution == "norm":
        return stats.norm(loc=factor.mean, scale=factor.sd)
    if factor.distribution == "lognorm":
        with np.errstate(over="ignore"):  # a huge mean: scale inf, refused as holding no mass in range
            return stats.lognorm(s=factor.sd, scale=np.exp(factor.mean))
    return stats.uniform(loc=factor.low, scale=factor.high - factor.low)


def mass_in_range(factor: Factor) -> float:
    """Probability that the untruncated distribution falls in [low, high] (NaN when it cannot be computed)."""
    dist = distribution(factor)
    with np.errstate(all="ignore"):
        return float(dist.cdf(factor.high) - dist.cdf(factor.low))


def to_values(factor: Factor, u: np.ndarray) -> np.ndarray:
    """Map unit values ``u`` (shape (n,)) to the factor's values (float, int or str array)."""
    u = np.asarray(u, dtype=float)
    if factor.kind == "choice":
        k = len(factor.choices)
        return np.array(factor.choices, dtype=object)[np.minimum(np.floor(u * k), k - 1).astype(int)]
    if factor.kind == "int":
        span = int(factor.high) - int(factor.low) + 1
        return int(factor.low) + np.minimum(np.floor(u * span), span - 1).astype(np.int64)
    if factor.distribution == "unif":
        return factor.low + u * (factor.high - factor.low)
    dist = distribution(factor)
    lo, hi = dist.cdf(factor.low), dist.cdf(factor.high)
    return np.clip(dist.ppf(lo + u * (hi - lo)), factor.low, factor.high)


def sample(spec: ExperimentSpec) -> pd.DataFrame:
    """The experiment's parameter sets, one row per set (index ``set``).

    Columns: each factor's value, named after the parameter, and for SALib methods its unit value,
    named ``u:<parameter>``, which the analysis uses.
    """
    if spec.method == "grid":
        rows = list(itertools.product(*(f.levels for f in spec.factors)))
        frame = pd.DataFrame(rows, columns=[f.name for f in spec.factors])
    elif spec.method == "oat":
        frame = pd.DataFrame(_oat_rows(spec), columns=[f.name for f in spec.factors])
    else:
        units = unit_sample(spec)
        columns = {f.name: to_values(f, units[:, i]) for i, f in enumerate(spec.factors)}
        columns |= {UNIT_PREFIX + f.name: units[:, i] for i, f in enumerate(spec.factors)}
        frame = pd.DataFrame(columns)
    for f in spec.factors:
        frame[f.name] = frame[f.name].astype({"float": "float64", "int": "int64", "choice": "object"}[f.kind])
        if f.kind == "float" and not np.isfinite(frame[f.name].to_numpy()).all():  # never NaN into the engine
            where = f"{spec.path or '<spec>'}, [parameters.{f.name}]"
            raise SpecError(
                f"{where}: its distribution gives values that are not numbers (NaN) for some draws; check mean and "
                "sd (lognorm's are on the log scale)."
            )
    frame.index.name = "set"
    return frame


def _oat_rows(spec: ExperimentSpec) -> list[tuple]:
    """The base set first, then each factor at each of its levels with the others at base."""
    base = tuple(spec.scenario if f.name == SCENARIO_FACTOR else spec.base[f.name] for f in spec.factors)
    rows = [base]
    for i, f in enumerate(spec.factors):
        rows += [base[:i] + (level,) + base[i + 1 :] for level in f.levels]
    return rows
