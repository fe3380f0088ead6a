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


# What the analysis reads from a manifest, with the type each must have.
MANIFEST_KEYS = {"name": str, "method": str, "n_sets": int, "problem": dict, "spec": dict}
SPEC_KEYS = {"outputs": list, "seed": int, "options": dict}


def load(out: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The manifest, sample and outputs (one row per set and replicate) stored in ``out``, all verified.

    Raises:
        AnalysisError: no or a damaged manifest, a run that is not finished, chunks missing or
            altered since they were written, files that do not belong, or a missing sample.
    """
    from experiments.resume import finished
    from experiments.store import CHUNKS, SAMPLE, StoreError, chunk_path

    out = Path(out)
    try:
        manifest = finished(out)
    except StoreError as err:
        raise AnalysisError(str(err)) from None
    wrong = [k for k, kind in MANIFEST_KEYS.items() if not isinstance(manifest.get(k), kind)]
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    wrong += [f"spec.{k}" for k, kind in SPEC_KEYS.items() if not isinstance(spec.get(k), kind)]
    if not wrong and not isinstance(manifest["problem"].get("names"), list):
        wrong.append("problem.names")
    if wrong:
        raise AnalysisError(
            f"{out / 'manifest.json'} lacks {', '.join(wrong)} (or has the wrong type), which the analysis needs; "
            "it was not written by this version of `python -m experiments run`, or has been edited."
        )
    try:
        sample = pd.read_parquet(out / SAMPLE)
        files = [chunk_path(out, i) for i in range(manifest["n_chunks"])]
        outputs = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
    except Exception as err:  # noqa: BLE001 (pyarrow raises several kinds on a damaged file)
        raise AnalysisError(f"{out}: the sample or a file in {CHUNKS}/ cannot be read ({str(err)[:200]}).") from None
    missing = [name for name in spec["outputs"] if name not in outputs.columns]
    if missing or not {"set", "replicate"} <= set(outputs.columns):
        raise AnalysisError(
            f"{out}: the stored outputs have no column {', '.join(missing) or 'set/replicate'}; "
            f"the runs stored: {', '.join(map(str, outputs.columns))}."
        )
    outputs = outputs.sort_values(["set", "replicate"], kind="stable").reset_index(drop=True)
    return manifest, sample, outputs


def undefined_reason(manifest: dict[str, Any], name: str) -> str:
    """Why output ``name`` can have no value, from the manifest's metric table or the engine's."""
    from sim.outcomes import undefined_reason as engine_reason

    meta = manifest.get("metrics", {}).get(name)
    return (meta.get("undefined") if isinstance(meta, dict) else None) or engine_reason(name)


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
    defined = bool(len(Y)) and not np.isnan(Y).any()
    for name in names:
        if method == "grid":
            level_means = pd.Series(Y).groupby(sample[name].to_numpy()).mean().to_numpy()  # NaN sets skipped
            s1 = np.var(level_means) / np.var(Y) if defined and np.var(Y) > 0 else np.nan
            rows.append({"parameter": name, "S1": s1, "effect_range": _spread(level_means)})
        else:
            others = [n for n in names if n != name]
            mask = (
                (sample[others] == sample[others].iloc[0]).all(axis=1).to_numpy() if others else np.ones(len(Y), bool)
            )
            y = Y[mask][~np.isnan(Y[mask])]
            low, high = (y.min(), y.max()) if len(y) else (np.nan, np.nan)
            rows.append({"parameter": name, "effect_range": _spread(y), "min": low, "max": high, "base": Y[0]})
    return pd.DataFrame(rows)


def _spread(values: np.ndarray) -> float:
    """Largest minus smallest of the defined values; NaN when none is."""
    values = values[~np.isnan(values)]
    return float(np.ptp(values)) if len(values) else np.nan


def constant_value(Y: np.ndarray) -> float | None:
    """The value of an output that is the same (and defined) in every parameter set, else None."""
    if len(Y) and np.isfinite(Y).all() and np.ptp(Y) == 0:
        return float(Y[0])
    return None


def _nan_message(manifest: dict[str, Any], name: str, n_nan: int, n_sets: int) -> str:
    """The warning for an output without a value in some parameter sets, with the reason in words."""
    reason = undefined_reason(manifest, name)
    consequence = {
        "grid": "its effect ranges are over the sets that have one, its S1 is left empty",
        "oat": "its effect ranges are over the sets that have one",
    }.get(manifest["method"], "its indices are left empty")
    if n_nan == n_sets:
        return f"{name} has no value in any of the {n_sets:,} parameter sets ({reason}); its indices are left empty."
    return f"{name}: {n_nan:,} of {n_sets:,} parameter sets have no value ({reason}); {consequence}."


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
        if noise["nan_sets"]:
            messages.append(_nan_message(manifest, name, noise["nan_sets"], n_sets))
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
            table = undefined_indices(method, names, spec["options"])
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
    from experiments.store import write_atomic

    out = Path(out)
    manifest, sample, outputs = load(out)
    table = indices(manifest, sample, outputs)
    write_atomic(out / "indices.csv", lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    paths = figures(manifest, sample, outputs, table, out / "figures")
    return {"indices": out / "indices.csv", "figures": paths, "table": table}
