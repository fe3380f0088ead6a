"""A finished sweep as plain CSV, for R, Stata or a spreadsheet: ``python -m experiments export DIR --csv``.

The runner stores Parquet (typed, compressed, checksummed); the export writes beside it, or into
``--out``:

- ``runs.csv``: one row per run, ``set``, ``replicate``, each varied parameter's value, then every
  stored output (NaN as an empty field, which R's ``read.csv`` reads as NA);
- ``sample.csv``: one row per parameter set, each factor's value and, for SALib methods, its unit
  draw ``u:<factor>`` (the design matrix the indices are computed on);
- ``curves.csv``: the per-session curves, when the spec stored them (``[store] curves = true``).

``indices.csv`` and ``convergence.csv`` are CSV already. Numbers are written at full precision, so
R reads back exactly the values the Python analysis used::

    runs <- read.csv("results/sobol_dropout/runs.csv")
    aggregate(dropout_rate ~ set, data = runs, FUN = mean)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments import store
from experiments.results import read_sweep

FILES = ("runs.csv", "sample.csv", "curves.csv")


def _write(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    return store.write_atomic(path, lambda tmp: frame.to_csv(tmp, index=index))


def export_csv(path: str | Path, out: str | Path | None = None) -> list[Path]:
    """Write runs.csv, sample.csv and (if stored) curves.csv of the finished sweep in ``path``; return them.

    Args:
        path: the results directory.
        out: where to write (default: ``path`` itself).

    Raises:
        experiments.results.ResultsError: ``path`` is not a finished sweep.
    """
    sweep = read_sweep(path)
    out = Path(out) if out is not None else sweep.path
    out.mkdir(parents=True, exist_ok=True)
    runs = sweep.outputs.merge(sweep.factors, left_on="set", right_index=True, how="left")
    columns = ["set", "replicate", *sweep.factors.columns, *sweep.metrics]
    written = [_write(runs[columns], out / "runs.csv"), _write(sweep.sample, out / "sample.csv", index=True)]
    if (sweep.path / store.CURVES).is_dir():
        written.append(_write(sweep.curves(), out / "curves.csv"))
    elif out == sweep.path:
        (out / "curves.csv").unlink(missing_ok=True)  # not this run's: never left beside it
    return written
