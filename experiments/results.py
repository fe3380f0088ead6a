"""A finished sweep read back for analysis: its manifest, its parameter sets and their outputs.

Reads only through :mod:`experiments.store`'s public names, so analyses that are not sensitivity
indices (scenario discovery, exports) see a results directory the way the runner wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import store


class ResultsError(ValueError):
    """A directory that is not a finished sweep; the message says what to do."""


@dataclass(frozen=True)
class Sweep:
    """The stored results of one sweep.

    Attributes:
        path: the results directory.
        manifest: manifest.json.
        factors: the varied parameters' values, one row per parameter set (index ``set``), in spec order.
        outputs: one row per (set, replicate): columns ``set``, ``replicate`` and one per stored metric.
    """

    path: Path
    manifest: dict[str, Any]
    factors: pd.DataFrame
    outputs: pd.DataFrame

    @property
    def metrics(self) -> list[str]:
        """The stored metrics."""
        return [c for c in self.outputs.columns if c not in ("set", "replicate")]

    def set_means(self, metric: str) -> pd.Series:
        """``metric`` averaged over replicates, one value per parameter set (NaN where undefined)."""
        if metric not in self.metrics:
            raise ResultsError(f"{self.path} stores no output {metric!r}. Stored outputs: {', '.join(self.metrics)}.")
        means = self.outputs.groupby("set")[metric].mean()
        return means.reindex(self.factors.index).rename(metric)

    def replicates(self) -> int:
        """Replicates per parameter set."""
        return int(self.outputs["replicate"].max()) + 1 if len(self.outputs) else 0


def read_sweep(path: str | Path) -> Sweep:
    """The finished sweep stored in ``path`` (the ``--out`` directory of ``python -m experiments run``).

    Raises:
        ResultsError: no manifest, an unreadable one, or chunks still missing.
    """
    path = Path(path)
    if not (path / store.MANIFEST).is_file():
        raise ResultsError(
            f"{path} has no {store.MANIFEST}: give the --out directory of `python -m experiments run` "
            "(results/<spec name>/ by default)."
        )
    try:
        manifest = store.read_manifest(path)
        sample = pd.read_parquet(path / store.SAMPLE)
    except (OSError, ValueError) as err:
        raise ResultsError(
            f"{path}: cannot read the sweep's manifest or sample ({err}); run the sweep again."
        ) from None
    n_chunks = manifest.get("n_chunks") if isinstance(manifest, dict) else None
    missing = n_chunks - len(store.done_chunks(path)) if isinstance(n_chunks, int) else 0
    if missing > 0:
        spec_file = manifest.get("spec_file") or "SPEC"
        raise ResultsError(
            f"{path} is unfinished: {missing} of {n_chunks} chunks are missing. Finish it with "
            f"`python -m experiments run {spec_file} --out {path}` (it resumes where it stopped)."
        )
    from experiments.sampling import UNIT_PREFIX  # SALib and scipy.stats: imported only when needed

    names = [f["name"] for f in manifest.get("spec", {}).get("factors", [])]
    names = [n for n in names if n in sample.columns] or [c for c in sample.columns if not c.startswith(UNIT_PREFIX)]
    factors = sample[names].copy()
    factors.index = pd.RangeIndex(len(factors), name="set")
    outputs = store.read_outputs(path)
    if outputs.empty:
        raise ResultsError(f"{path} holds no outputs yet: run the sweep first.")
    return Sweep(path, manifest, factors, outputs)


def is_numeric(column: pd.Series) -> bool:
    """Whether a factor column is numeric (a float or int parameter) rather than a choice."""
    return bool(pd.api.types.is_numeric_dtype(column.dtype)) and not pd.api.types.is_bool_dtype(column.dtype)
