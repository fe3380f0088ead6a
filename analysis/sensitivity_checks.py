"""Whether a sweep's indices can be trusted: estimation error that shows, and degenerate worlds.

Three kinds of warning, each one line on stderr and recorded in analysis.json:

- **Noise.** With replicates, the share of the variance of the replicate-averaged output that is
  replicate noise (``noise_share``). Above :data:`NOISY`, chance moves the output about as much as
  the parameters do, and every index carries that noise (ST most, as noise looks like interaction).

- **Estimation error.** A variance share is never negative, and a first-order index never exceeds
  the total one (S1 <= ST). Estimators from a finite sample can break both; within their bootstrap
  interval that is noise, beyond it the sample is too small for the index to be read (Saltelli et al.
  2010, doi:10.1016/j.cpc.2009.09.018). Such rows get a ``note`` in indices.csv. Among many indices
  a few fall beyond a 95% interval by chance alone (of a Sobol run's 66 pairs, one or two S2 whose
  true value is 0), so the warning, which says how to extend the run, comes when an output has more
  such indices than chance gives (a binomial tail below 5%).
- **Degenerate worlds.** When a share of the parameter sets describes clinics that cannot exist
  (nearly every client dropping out), the indices describe where the model breaks down as much as
  how therapy works. The warning names the factors whose ranges lead there, so the ranges can be
  narrowed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.sensitivity import UNIT_PREFIX, replicate_means

NEGATIVE = "below 0 beyond its interval"
ABOVE_TOTAL = "S1 above ST beyond their intervals"
# Indices that are shares of variance (or of a density difference) and so cannot be negative.
NON_NEGATIVE = (("S1", "S1_conf"), ("ST", "ST_conf"), ("S2", "S2_conf"), ("delta", "delta_conf"))
NOISY = 0.25  # noise share above which the indices are warned about
DEGENERATE = {"dropout_rate": (0.9, "nearly every client drops out")}
"""Stored output -> (the value above which a parameter set is a degenerate world, what that means)."""
DEGENERATE_SHARE = 0.01  # warn when more than this share of the sets is degenerate
SHOWN = 3  # examples named in a warning


def _row_name(row: pd.Series) -> str:
    second = row.get("parameter_2")
    return f"{row['parameter']} x {second}" if isinstance(second, str) else str(row["parameter"])


CHANCE = 0.05  # warn when this few runs of healthy indices would flag as many as were flagged


def _beyond_chance(flagged: int, tested: int, p: float) -> bool:
    """Whether ``flagged`` of ``tested`` indices beyond their interval is more than chance gives (binomial)."""
    from scipy.stats import binom

    return flagged > 0 and float(binom.sf(flagged - 1, tested, p)) < CHANCE


def estimation_notes(table: pd.DataFrame, method: str, conf_level: float, N: int | None) -> list[str]:
    """Mark the rows whose indices break their bounds beyond the interval (``note``); return the warnings.

    An index whose true value is at its bound falls below it beyond a two-sided interval with chance
    ``(1 - conf_level) / 2``; S1 exceeds ST beyond both intervals with chance at most
    ``1 - Phi(sqrt(2) z)`` (z the interval's quantile). An output is warned about when its flags are
    more than that chance gives (:data:`CHANCE`).

    Args:
        table: indices.csv as built by :func:`analysis.sensitivity.indices`; a ``note`` column is set.
        method: the method.
        conf_level: the intervals' level.
        N: the base sample size, for the advice.
    """
    table["note"] = ""
    messages = []
    more = (
        f"extend the run (python -m experiments run SPEC --extend {2 * N})"
        if method == "sobol" and N
        else ("run a larger N")
    )
    from scipy.stats import norm

    below = (1 - conf_level) / 2
    above = float(norm.sf(np.sqrt(2) * norm.ppf(0.5 + conf_level / 2)))
    for output, rows in table.groupby("output", sort=False):
        negative, tested = [], 0
        for index, conf in NON_NEGATIVE:
            if index not in rows or conf not in rows:
                continue
            tested += int(rows[index].notna().sum())
            hit = rows[(rows[index] + rows[conf]) < 0]
            for i, row in hit.iterrows():
                table.loc[i, "note"] = NEGATIVE
                negative.append(f"{index} {_row_name(row)} = {row[index]:.3f} +/- {row[conf]:.3f}")
        if _beyond_chance(len(negative), tested, below):
            shown = "; ".join(negative[:SHOWN]) + ("; ..." if len(negative) > SHOWN else "")
            what = "indices are" if len(negative) > 1 else "index is"
            messages.append(
                f"{output}: {len(negative)} of {tested} {method} {what} below 0 beyond the {conf_level:.0%} interval "
                f"({shown}), more than chance gives: estimation error, not a property of the model; with N = {N} "
                f"these cannot be read, {more}."
            )
        if {"S1", "S1_conf", "ST", "ST_conf"} <= set(rows.columns):
            single = rows[rows.get("parameter_2", pd.Series(np.nan, index=rows.index)).isna()]
            hit = single[(single["S1"] - single["S1_conf"]) > (single["ST"] + single["ST_conf"])]
            for i in hit.index:
                table.loc[i, "note"] = (table.loc[i, "note"] + "; " if table.loc[i, "note"] else "") + ABOVE_TOTAL
            if _beyond_chance(len(hit), int(single["S1"].notna().sum()), above):
                shown = "; ".join(
                    f"{r['parameter']}: S1 = {r['S1']:.3f} +/- {r['S1_conf']:.3f}, ST = {r['ST']:.3f} +/- "
                    f"{r['ST_conf']:.3f}"
                    for _, r in hit.head(SHOWN).iterrows()
                )
                messages.append(
                    f"{output}: S1 exceeds ST beyond their {conf_level:.0%} intervals for {len(hit)} "
                    f"parameter{'s' * (len(hit) > 1)} ({shown}); S1 can never exceed ST, so N = {N} is too small "
                    f"for them: {more}."
                )
    return messages


def noise_notes(table: pd.DataFrame) -> list[str]:
    """A warning for each output whose replicate noise share is above :data:`NOISY`."""
    messages = []
    for output, rows in table.groupby("output", sort=False):
        share, reps = rows["noise_share"].iloc[0], rows["replicates"].iloc[0]
        if np.isfinite(share) and share > NOISY:
            messages.append(
                f"{output}: {share:.0%} of its variance over the parameter sets is replicate noise (noise share "
                f"{share:.2f} with {int(reps)} replicates): its indices describe chance as much as the parameters. "
                "Add replicates or clients, or widen the ranges of the parameters that matter."
            )
    return messages


def degenerate_worlds(
    manifest: dict[str, Any], sample: pd.DataFrame, outputs: pd.DataFrame
) -> tuple[dict[str, Any], list[str]]:
    """How many parameter sets give degenerate outputs, and which factors lead there; with the warnings.

    Returns:
        Per checked output (stored in this sweep): the threshold, the number and share of sets
        beyond it, and the factors most associated (the mean unit draw, or percentile rank, of the
        degenerate sets minus that of all sets: positive when they sit toward the top of the range);
        and the warnings for those above :data:`DEGENERATE_SHARE`.
    """
    names = manifest["problem"]["names"]
    n_sets = manifest["n_sets"]
    found, messages = {}, []
    for output, (threshold, meaning) in DEGENERATE.items():
        if output not in outputs.columns or not n_sets:
            continue
        Y, _ = replicate_means(outputs, output, n_sets)
        bad = Y > threshold
        count = int(bad.sum())
        leaning = _leaning(sample, names, bad) if count else {}
        found[output] = {"threshold": threshold, "sets": count, "share": count / n_sets, "factors": leaning}
        if count / n_sets > DEGENERATE_SHARE:
            toward = ", ".join(
                f"{name} ({'high' if lean > 0 else 'low'} end)" for name, lean in list(leaning.items())[:SHOWN]
            )
            messages.append(
                f"{output} is above {threshold:g} in {count:,} of {n_sets:,} parameter sets ({count / n_sets:.0%}): "
                f"worlds where {meaning}. Their indices describe where the model breaks down, not how therapy "
                f"works; narrow the ranges{' of ' + toward if toward else ''} and run again."
            )
    return found, messages


def _leaning(sample: pd.DataFrame, names: list[str], bad: np.ndarray) -> dict[str, float]:
    """Factors ordered by how far the degenerate sets sit from the middle of their range (above 0.1 only)."""
    leaning = {}
    for name in names:
        unit = UNIT_PREFIX + name
        if unit in sample:
            u = sample[unit].to_numpy(dtype=float)
        elif pd.api.types.is_numeric_dtype(sample[name]) and sample[name].nunique() > 1:
            u = sample[name].rank(pct=True).to_numpy()
        else:
            continue  # a choice without unit draws: no direction to speak of
        lean = float(np.mean(u[bad]) - np.mean(u))
        if abs(lean) > 0.1:
            leaning[name] = round(lean, 3)
    return dict(sorted(leaning.items(), key=lambda kv: -abs(kv[1])))
