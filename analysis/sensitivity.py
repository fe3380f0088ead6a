"""Sensitivity indices from a sweep's stored outputs: ``python -m analysis sensitivity DIR``.

Reads only what the runner stored in DIR (manifest.json, sample.parquet, chunks/*.parquet; see
experiments.store) and writes indices.csv and figures/. With replicates, each parameter set's output
is averaged over replicates before the indices are computed, and the replicate-to-replicate noise
is reported beside them:

- ``replicate_sd``: the standard deviation of one run's output across replicates (same parameter
  set), pooled over sets, in the output's unit;
- ``noise_share``: the share of the variance of the replicate-averaged output that is replicate
  noise, ``(replicate_sd^2 / R) / Var(mean output)``; near 0 means the indices describe the
  parameters, near 1 means they mostly describe noise (add replicates or clients).

Methods: Sobol (S1, ST, S2 with bootstrap confidence intervals; Saltelli 2002,
doi:10.1016/S0010-4655(02)00280-1), Morris (mu, mu*, sigma; Campolongo et al. 2007,
doi:10.1016/j.envsoft.2006.10.004), eFAST (Saltelli et al. 1999, doi:10.1080/00401706.1999.10485594),
RBD-FAST (Tarantola et al. 2006, doi:10.1016/j.ress.2005.06.003), delta (Borgonovo 2007,
doi:10.1016/j.ress.2006.04.015), and for grids and one-at-a-time designs the main-effect variance
share and range of each parameter. ``*_conf`` columns are half-widths of the intervals at the
spec's ``conf_level`` (default 95%).

An output with the same value in every parameter set has no variance to apportion: its
variance-based indices (sobol, fast, rbd_fast, delta) are left empty (NaN) rather than reported as
0, and a warning names it. Warnings are single ``warning: ...`` lines on stderr, each at most once
per analysis; SALib's own notices about its internals (delta's bin merging) and its printing to
stdout are kept out of the way.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

UNIT_PREFIX = "u:"
# Index columns of each SALib method, one value per parameter.
KEYS = {
    "sobol": ["S1", "S1_conf", "ST", "ST_conf"],
    "morris": ["mu", "mu_star", "mu_star_conf", "sigma"],
    "fast": ["S1", "S1_conf", "ST", "ST_conf"],
    "rbd_fast": ["S1", "S1_conf"],
    "delta": ["delta", "delta_conf", "delta_raw", "delta_raw_conf", "S1", "S1_conf"],
}
# Methods whose indices need the output to vary: shares of its variance (and delta's density
# estimate, which is undefined on a single value). Morris effects of a constant output are a
# meaningful 0, so Morris is not among them.
NEEDS_VARIANCE = ("sobol", "fast", "rbd_fast", "delta")
# SALib warnings about its own workings, not about the indices: delta merges sparse bins before
# estimating (a notice per parameter, output and bootstrap), and FAST's caveat on its intervals comes
# once per call; the analysis states that caveat once itself (FAST_NOTE).
SALIB_NOISE = ("Bin Merge Notice", "FAST confidence intervals are estimated")
FAST_NOTE = (
    "fast: S1_conf and ST_conf are bootstrap intervals, which SALib marks as unreliable for FAST "
    "(https://github.com/SALib/SALib/issues/649); read them as indicative only."
)


class AnalysisError(RuntimeError):
    """Stored outputs that cannot be analysed; the message says what to do."""


def warn(message: str) -> None:
    """One ``warning:`` line on stderr, as the experiment runner writes its own."""
    print(f"warning: {message}", file=sys.stderr)


def load(out: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The manifest, sample and outputs (one row per set and replicate) stored in ``out``."""
    out = Path(out)
    if not (out / "manifest.json").is_file():
        raise AnalysisError(f"{out} has no manifest.json: give the --out directory of `python -m experiments run`.")
    manifest = json.loads((out / "manifest.json").read_text())
    files = sorted((out / "chunks").glob("chunk-*.parquet"))
    if len(files) < manifest["n_chunks"]:
        raise AnalysisError(
            f"{out} is incomplete: {manifest['n_chunks'] - len(files)} of {manifest['n_chunks']} chunks are missing. "
            f"Finish it with `python -m experiments run {manifest.get('spec_file') or 'SPEC'} --out {out}`."
        )
    sample = pd.read_parquet(out / "sample.parquet")
    outputs = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    outputs = outputs.sort_values(["set", "replicate"], kind="stable").reset_index(drop=True)
    return manifest, sample, outputs


def replicate_means(outputs: pd.DataFrame, name: str, n_sets: int) -> tuple[np.ndarray, dict[str, float]]:
    """The output ``name`` averaged over replicates, shape (n_sets,), and its replicate noise."""
    y = outputs.pivot(index="set", columns="replicate", values=name).reindex(range(n_sets)).to_numpy()
    means = y.mean(axis=1)
    n_rep = y.shape[1]
    noise = {"replicates": n_rep, "replicate_sd": np.nan, "noise_share": np.nan, "nan_sets": int(np.isnan(means).sum())}
    if n_rep > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sets
            within = np.nanmean(np.var(y, axis=1, ddof=1))
            total = np.nanvar(means, ddof=1)
        noise["replicate_sd"] = float(np.sqrt(within))
        noise["noise_share"] = float(min(within / n_rep / total, 1.0)) if total > 0 else np.nan
    return means, noise


def analysis_seed(seed: int) -> int:
    """A bootstrap seed drawn from the spec seed; never 0, which old SALib analysers treat as unseeded."""
    return int(np.random.default_rng(seed).integers(1, 2**31 - 1))


@contextmanager
def _salib_quietened(notes: list[str]):
    """Run SALib with its side effects undone and its warnings collected into ``notes``.

    SALib's fast and delta analysers seed numpy's global generator, and delta replaces
    ``warnings.formatwarning`` for the whole process and can print its table to stdout; all three
    are undone here. Its warnings are recorded rather than shown, so the caller can report each
    once; RuntimeWarnings (numpy on degenerate bootstrap resamples) and :data:`SALIB_NOISE` are dropped.
    """
    state = np.random.get_state()  # noqa: NPY002 (saving the legacy global state SALib changes)
    formatwarning = warnings.formatwarning
    with warnings.catch_warnings(record=True) as caught, redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            np.random.set_state(state)  # noqa: NPY002
            warnings.formatwarning = formatwarning
    for w in caught:
        text = str(w.message)
        if not issubclass(w.category, RuntimeWarning) and not any(n in text for n in SALIB_NOISE):
            notes.append(text)


def _frame(method: str, names: list[str], res: dict, options: dict) -> pd.DataFrame:
    """One row per parameter (and per pair for Sobol S2) from SALib's result dict."""
    table = pd.DataFrame({"parameter": names, **{k: np.asarray(res[k], dtype=float) for k in KEYS[method]}})
    if method == "sobol" and options["calc_second_order"]:
        i, j = np.triu_indices(len(names), k=1)
        pairs = pd.DataFrame(
            {
                "parameter": np.asarray(names)[i],
                "parameter_2": np.asarray(names)[j],
                "S2": np.asarray(res["S2"])[i, j],
                "S2_conf": np.asarray(res["S2_conf"])[i, j],
            }
        )
        table = pd.concat([table, pairs], ignore_index=True)
    return table


def undefined_indices(method: str, names: list[str], options: dict) -> pd.DataFrame:
    """The table of :func:`salib_indices` with every index NaN, for an output that does not vary."""
    k = len(names)
    res = {key: np.full(k, np.nan) for key in KEYS[method]} | {"S2": np.full((k, k), np.nan)}
    return _frame(method, names, res | {"S2_conf": res["S2"]}, options)


def salib_indices(
    method: str, problem: dict, X: np.ndarray, Y: np.ndarray, options: dict, seed: int, notes: list[str] | None = None
) -> pd.DataFrame:
    """Indices of one output for a SALib method, one row per parameter (and per pair for Sobol S2).

    SALib's warnings go into ``notes`` (if given) instead of being shown; see :func:`_salib_quietened`.
    """
    from SALib.analyze import delta, fast, morris, rbd_fast, sobol

    boot = {"num_resamples": options["num_resamples"], "conf_level": options["conf_level"], "seed": seed}
    with _salib_quietened([] if notes is None else notes):
        if method == "sobol":
            res = sobol.analyze(problem, Y, calc_second_order=options["calc_second_order"], **boot)
        elif method == "morris":
            res = morris.analyze(problem, X, Y, num_levels=options["num_levels"], **boot)
        elif method == "fast":
            res = fast.analyze(problem, Y, M=options["M"], **boot)
        elif method == "rbd_fast":
            res = rbd_fast.analyze(problem, X, Y, M=options["M"], **boot)
        else:
            res = delta.analyze(problem, X, Y, **boot)
            # SALib's "balanced" bootstrap is Borgonovo's delta; its "step" variant (X > 0 as
            # active) means nothing on unit-interval inputs, so it is left out.
            res["delta"], res["delta_conf"] = res["delta_balanced"], res["delta_balanced_conf"]
    return _frame(method, problem["names"], res, options)


def design_indices(method: str, sample: pd.DataFrame, names: list[str], Y: np.ndarray) -> pd.DataFrame:
    """Grid and one-at-a-time designs: each parameter's main-effect variance share and range.

    On a full grid, ``S1`` is Var(E[Y | parameter]) / Var(Y) over the grid's levels (equal
    weights), and ``effect_range`` the spread of those level means. One at a time, ``effect_range``
    is the spread of the output over that parameter's levels with the others at their base values.
    """
    rows = []
    for name in names:
        if method == "grid":
            level_means = pd.Series(Y).groupby(sample[name].to_numpy()).mean()
            s1 = np.var(level_means.to_numpy()) / np.var(Y) if np.var(Y) > 0 else np.nan
            rows.append({"parameter": name, "S1": s1, "effect_range": np.ptp(level_means.to_numpy())})
        else:
            others = [n for n in names if n != name]
            mask = (
                (sample[others] == sample[others].iloc[0]).all(axis=1).to_numpy() if others else np.ones(len(Y), bool)
            )
            y = Y[mask]
            rows.append({"parameter": name, "effect_range": np.ptp(y), "min": y.min(), "max": y.max(), "base": Y[0]})
    return pd.DataFrame(rows)


def constant_value(Y: np.ndarray) -> float | None:
    """The value of an output that is the same (and defined) in every parameter set, else None."""
    if len(Y) and np.isfinite(Y).all() and np.ptp(Y) == 0:
        return float(Y[0])
    return None


def indices(manifest: dict[str, Any], sample: pd.DataFrame, outputs: pd.DataFrame) -> pd.DataFrame:
    """The indices of every analysed output, with replicate noise beside them.

    Warnings (an output with parameter sets lacking a value, an output that does not vary, SALib's
    notices) are written to stderr as they arise, each once per call.
    """
    spec, method = manifest["spec"], manifest["method"]
    problem = manifest["problem"]
    names = problem["names"]
    seed = analysis_seed(spec["seed"])
    n_sets = manifest["n_sets"]
    units = [UNIT_PREFIX + n for n in names]
    X = sample[units].to_numpy(dtype=float) if set(units) <= set(sample.columns) else None
    tables, messages, ran_salib = [], [], False
    for name in spec["outputs"]:
        Y, noise = replicate_means(outputs, name, n_sets)
        constant = constant_value(Y)
        if constant is not None:
            consequence = {
                "grid": ", so there is no variance to apportion: its S1 is left empty (NaN), its effect ranges are 0.",
                "oat": ": its effect ranges are 0.",
                "morris": ": its Morris effects are 0.",
            }.get(method, f", so there is no variance to apportion and its {method} indices are left empty (NaN).")
            messages.append(
                f"{name} is {constant:g} in every parameter set: no parameter of this experiment moves it" + consequence
            )
        if method in ("grid", "oat"):
            table = design_indices(method, sample, names, Y)
        elif noise["nan_sets"]:
            messages.append(
                f"{name}: {noise['nan_sets']} parameter sets have no value (e.g. no ruptures to repair); "
                "its indices are left empty."
            )
            table = pd.DataFrame({"parameter": names})
        elif constant is not None and method in NEEDS_VARIANCE:
            table = undefined_indices(method, names, spec["options"])
        else:
            notes: list[str] = []
            table = salib_indices(method, problem, X, Y, spec["options"], seed, notes)
            messages += [f"{name}: SALib: {note}" for note in notes]
            ran_salib = True
        table.insert(0, "output", name)
        table.insert(1, "method", method)
        for key, value in noise.items():
            table[key] = value
        tables.append(table)
    if method == "fast" and ran_salib:
        messages.append(FAST_NOTE)
    for message in dict.fromkeys(messages):  # each once, in the order they arose
        warn(message)
    frame = pd.concat(tables, ignore_index=True)
    if "parameter_2" in frame:  # pairs after single parameters
        frame = frame[["output", "method", "parameter", "parameter_2", *frame.columns[3:].drop("parameter_2")]]
    return frame


def analyse_dir(out: Path) -> dict[str, Any]:
    """Write ``out``/indices.csv and ``out``/figures/ from the stored outputs; return what was written."""
    from analysis.sensitivity_figures import figures

    out = Path(out)
    manifest, sample, outputs = load(out)
    table = indices(manifest, sample, outputs)
    table.to_csv(out / "indices.csv", index=False, float_format="%.6g")
    paths = figures(manifest, sample, outputs, table, out / "figures")
    return {"indices": out / "indices.csv", "figures": paths, "table": table}
