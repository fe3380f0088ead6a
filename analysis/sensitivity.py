"""Sensitivity indices from a sweep's stored outputs: ``python -m analysis sensitivity DIR``.

Reads only what the runner stored in DIR (manifest.json, sample.parquet, chunks/*.parquet, verified
by :func:`experiments.results.read_sweep`) and writes indices.csv, convergence.csv (Sobol:
:mod:`analysis.sensitivity_convergence`), analysis.json and figures/; the checks of whether the
indices can be trusted are :mod:`analysis.sensitivity_checks`. With replicates, each parameter set's output
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
from contextlib import ExitStack, contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.memory import release_freed_memory

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
# SALib methods whose indices read the sample's values, not only the outputs in the sample's order.
READS_SAMPLE = ("morris", "rbd_fast", "delta")
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
    """The manifest, sample and outputs (one row per set and replicate) stored in ``out``, all verified.

    Raises:
        AnalysisError: no or a damaged manifest, a run that is not finished, chunks missing or
            altered since they were written, files that do not belong, or a missing sample.
    """
    from experiments.results import ResultsError, read_sweep

    try:
        sweep = read_sweep(out)
    except ResultsError as err:
        raise AnalysisError(str(err)) from None
    return sweep.manifest, sweep.sample, sweep.outputs


def settings(
    manifest: dict[str, Any],
    stored: list[str],
    outputs: list[str] | None = None,
    num_resamples: int | None = None,
    conf_level: float | None = None,
) -> dict[str, Any]:
    """The manifest as the analysis reads it, with the outputs and bootstrap settings of this analysis.

    Args:
        manifest: the run's manifest.
        stored: the outputs the runs stored.
        outputs: analyse these instead of the spec's ``outputs``.
        num_resamples, conf_level: bootstrap settings instead of the spec's ``[options]``.

    Raises:
        AnalysisError: an output the runs did not store, or a setting the method does not use or
            that is out of range.
    """
    spec, method = manifest["spec"], manifest["method"]
    chosen = list(dict.fromkeys(outputs)) if outputs else list(spec["outputs"])
    missing = [name for name in chosen if name not in stored]
    if missing:
        raise AnalysisError(
            f"{manifest.get('name', 'the run')} stored no output {', '.join(missing)}; the runs stored: "
            f"{', '.join(stored)}."
        )
    options = dict(spec["options"])
    for key, flag, value in (
        ("num_resamples", "--resamples", num_resamples),
        ("conf_level", "--conf-level", conf_level),
    ):
        if value is None:
            continue
        if key not in options:
            raise AnalysisError(f"{flag} is not used by method {method}: it has no bootstrap interval.")
        if key == "conf_level" and not 0 < value < 1:
            raise AnalysisError(f"--conf-level {value} must lie strictly between 0 and 1, e.g. 0.95.")
        if key == "num_resamples" and value < 2:
            raise AnalysisError(f"--resamples {value}: give at least 2 (100 to 1000 is usual).")
        options[key] = value
    return {**manifest, "spec": {**spec, "outputs": chosen, "options": options}}


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
    from SALib.analyze import delta, fast, morris, rbd_fast

    from analysis import sobol_estimators

    boot = {"num_resamples": options["num_resamples"], "conf_level": options["conf_level"], "seed": seed}
    with _salib_quietened([] if notes is None else notes):
        if method == "sobol":
            res = sobol_estimators.analyze(problem, Y, options["calc_second_order"], **boot)
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


def output_indices(task: tuple) -> tuple[pd.DataFrame, list[str]]:
    """The indices of one output and the warnings they raise: ``task`` is (manifest, X, name, Y, noise).

    Module level, so the outputs of a sweep can be analysed on its worker processes.
    """
    manifest, X, name, Y, noise = task
    spec, method, problem = manifest["spec"], manifest["method"], manifest["problem"]
    names = problem["names"]
    found = []
    if noise["nan_sets"]:
        found.append(_nan_message(manifest, name, noise["nan_sets"], manifest["n_sets"]))
    constant = constant_value(Y)
    if constant is not None:
        consequence = {
            "grid": ", so there is no variance to apportion: its S1 is left empty (NaN), its effect ranges are 0.",
            "oat": ": its effect ranges are 0.",
            "morris": ": its Morris effects are 0.",
        }.get(method, f", so there is no variance to apportion and its {method} indices are left empty (NaN).")
        found.append(
            f"{name} is {constant:g} in every parameter set: no parameter of this experiment moves it" + consequence
        )
    if method in ("grid", "oat"):
        table = design_indices(method, X, names, Y)
    elif noise["nan_sets"]:
        table = undefined_indices(method, names, spec["options"])
    elif constant is not None and method in NEEDS_VARIANCE:
        table = undefined_indices(method, names, spec["options"])
    else:
        notes: list[str] = []
        table = salib_indices(method, problem, X, Y, spec["options"], analysis_seed(spec["seed"]), notes)
        found += [f"{name}: SALib: {note}" for note in notes]
        if method == "fast":
            found.append(FAST_NOTE)
    table.insert(0, "output", name)
    table.insert(1, "method", method)
    for key, value in noise.items():
        table[key] = value
    return table, found


def indices(
    manifest: dict[str, Any],
    sample: pd.DataFrame,
    outputs: pd.DataFrame,
    messages: list[str] | None = None,
    pool=None,
) -> pd.DataFrame:
    """The indices of every analysed output, with replicate noise beside them.

    Warnings (an output with parameter sets lacking a value, an output that does not vary, SALib's
    notices) are added to ``messages``, each once; without it they are written to stderr. With
    ``pool`` (an entered executor of :mod:`experiments.executors`) the outputs are analysed on its
    workers, one task each; the indices are the same.
    """
    names = manifest["problem"]["names"]
    units = [UNIT_PREFIX + n for n in names]
    if manifest["method"] in ("grid", "oat"):
        X = sample  # their indices read the design's own columns
    elif manifest["method"] in READS_SAMPLE:
        X = sample[units].to_numpy(dtype=float) if set(units) <= set(sample.columns) else None
    else:  # Sobol and FAST read only the outputs: each task would carry (and copy) the sample for nothing
        X = None
    tasks = [
        (manifest, X, name, *replicate_means(outputs, name, manifest["n_sets"])) for name in manifest["spec"]["outputs"]
    ]
    if pool is None:
        results = [output_indices(task) for task in tasks]
    else:
        from experiments.executors import ordered_map

        results = ordered_map(pool, output_indices, tasks)
    found = [message for _, notes in results for message in notes]
    for message in dict.fromkeys(found):  # each once, in the order they arose
        if messages is None:
            warn(message)
        elif message not in messages:
            messages.append(message)
    frame = pd.concat([table for table, _ in results], ignore_index=True)
    if "parameter_2" in frame:  # pairs after single parameters
        frame = frame[["output", "method", "parameter", "parameter_2", *frame.columns[3:].drop("parameter_2")]]
    return frame


FIGURE_PREFIXES = ("histograms", "curves", "convergence_", "sobol_", "morris_", "fast_", "rbd_fast_", "delta_")
FIGURE_PREFIXES += ("grid_", "oat_")
"""Names of the figures the analysis writes; others in figures/ are left alone."""


def _remove_stale(folder: Path, written: list[Path]) -> list[Path]:
    """Remove the analysis's figures in ``folder`` that this analysis did not write (outputs no longer analysed)."""
    keep = {p.name for p in written}
    stale = [
        p
        for p in (folder.iterdir() if folder.is_dir() else [])
        if p.suffix in (".png", ".svg") and p.name not in keep and p.stem.startswith(FIGURE_PREFIXES)
    ]
    for path in stale:
        path.unlink()
    return stale


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    from experiments.store import write_atomic

    write_atomic(path, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))


def analyse_dir(
    out: Path,
    outputs: list[str] | None = None,
    num_resamples: int | None = None,
    conf_level: float | None = None,
    workers: int = 1,
    pool=None,
) -> dict[str, Any]:
    """Write indices.csv, convergence.csv (Sobol), analysis.json and figures/ from the stored outputs.

    Figures of outputs no longer analysed, left by an earlier analysis, are removed, so figures/
    always matches indices.csv.

    Args:
        out: the results directory.
        outputs: analyse these stored outputs instead of the spec's ``outputs``.
        num_resamples, conf_level: bootstrap settings instead of the spec's ``[options]``.
        workers: processes that analyse the outputs and draw the figures (1: this one); a pool of
            up to 4 is started when there are enough figures to pay for its start
            (:data:`analysis.sensitivity_figures.PARALLEL_FROM`).
        pool: an entered executor of :mod:`experiments.executors` to use instead (the sweep's own
            pool, its workers already started); ``workers`` is then ignored.

    Returns:
        What was written: paths of indices, convergence and figures, the table, the warnings, and a
        one-line summary per output (its replicate noise share).

    Raises:
        AnalysisError: the directory is not a finished run, or an option cannot be used.
    """
    from analysis.sensitivity_figures import PARALLEL_FROM

    out = Path(out)
    manifest, sample, outputs_frame = load(out)
    stored = [c for c in outputs_frame.columns if c not in ("set", "replicate")]
    run = [sample, outputs_frame]  # a list _analyse empties: no reference stays here while the figures draw
    del sample, outputs_frame
    manifest = settings(manifest, stored, outputs, num_resamples, conf_level)
    # The figures to expect: per output, Sobol draws its indices, S2 and convergence, other methods one.
    figures = len(manifest["spec"]["outputs"]) * (3 if manifest["method"] == "sobol" else 1)
    with ExitStack() as stack:
        if pool is None and workers > 1 and figures >= PARALLEL_FROM:
            from experiments.executors import ProcessExecutor

            pool = stack.enter_context(ProcessExecutor(min(workers, 4)))
        return _analyse(out, manifest, run, pool)


def _analyse(out: Path, manifest: dict, run: list[pd.DataFrame], pool) -> dict[str, Any]:
    """:func:`analyse_dir` once the run (``[sample, outputs]``, emptied here) is read and the pool chosen.

    The run's sample and outputs are let go of once the figures' data is taken from them: the
    figures are the analysis's peak of memory, and the sample and outputs are what grows with N
    (45 MB at N = 4096 for the shipped study).
    """
    from analysis.sensitivity_checks import degenerate_worlds, estimation_notes, noise_notes
    from analysis.sensitivity_convergence import convergence, unsettled
    from analysis.sensitivity_figures import figure_list, render
    from experiments import store

    spec, options = manifest["spec"], manifest["spec"]["options"]
    sample, outputs_frame = run
    run.clear()
    messages: list[str] = []
    table = indices(manifest, sample, outputs_frame, messages, pool)
    messages += noise_notes(table)
    messages += estimation_notes(table, manifest["method"], options.get("conf_level", 0.95), spec.get("N"))
    degenerate, found = degenerate_worlds(manifest, sample, outputs_frame)
    messages += found
    converged = convergence(manifest, outputs_frame, table)
    messages += unsettled(converged)
    for message in messages:
        warn(message)
    _write_csv(table, out / "indices.csv")
    if converged.empty:
        (out / "convergence.csv").unlink(missing_ok=True)
    else:
        _write_csv(converged, out / "convergence.csv")
    curves = store.read_outputs(out, store.CURVES) if (out / store.CURVES).is_dir() else None
    figures = figure_list(manifest, sample, outputs_frame, table, curves, converged)
    del sample, outputs_frame
    release_freed_memory()  # the run and what the convergence's bootstraps kept go back while the figures draw
    paths = render(figures, out / "figures", pool)
    removed = _remove_stale(out / "figures", paths)
    noise = {
        name: {key: _plain(rows[key].iloc[0]) for key in ("noise_share", "replicate_sd", "replicates")}
        for name, rows in table.groupby("output", sort=False)
    }
    record = {
        "outputs": spec["outputs"],
        "options": options,
        "N": spec.get("N"),
        "convergence_N": sorted(int(n) for n in converged["N"].unique()) if not converged.empty else [],
        "noise": noise,
        "degenerate": degenerate,
        "warnings": messages,
        "figures": sorted(p.name for p in paths),
        "removed": sorted(p.name for p in removed),
    }
    store.write_json(record, out / "analysis.json")
    return {
        "indices": out / "indices.csv",
        "convergence": None if converged.empty else out / "convergence.csv",
        "figures": paths,
        "removed": removed,
        "table": table,
        "warnings": messages,
        "summary": noise_lines(record),
    }


def _plain(value: Any) -> float | int | None:
    """A number from a table as JSON takes it: None when undefined."""
    value = float(value)
    if not np.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def noise_lines(record: dict[str, Any]) -> list[str]:
    """One line per analysed output with replicates: its noise share, from analysis.json's record."""
    lines = []
    for name, noise in (record.get("noise") or {}).items():
        share = noise.get("noise_share") if isinstance(noise, dict) else None
        if share is None:
            continue
        verdict = "the indices describe the parameters" if share < 0.1 else "a part of every index is noise"
        lines.append(
            f"  {name}: noise share {share:.3f} (replicate sd {noise['replicate_sd']:.3g}, "
            f"{noise['replicates']} replicates): {verdict}"
        )
    return lines
