"""A finished sweep read back for analysis: its manifest, its parameter sets and their outputs.

Reads only through :mod:`experiments.store`'s public names, after :func:`experiments.resume.finished`
has verified every file against the checksums the manifest recorded, so the sensitivity indices,
scenario discovery and exports all see a results directory the way the runner wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import store

# What analyses read from a manifest, with the type each must have.
MANIFEST_KEYS = {"name": str, "method": str, "n_sets": int, "n_chunks": int, "problem": dict, "spec": dict}
SPEC_KEYS = {"outputs": list, "seed": int, "options": dict}


class ResultsError(ValueError):
    """A directory that is not a finished sweep; the message says what to do."""


@dataclass(frozen=True)
class Sweep:
    """The stored results of one sweep.

    Attributes:
        path: the results directory.
        manifest: manifest.json.
        sample: sample.parquet: one row per parameter set (index ``set``), each factor's value and,
            for SALib methods, its unit draw ``u:<factor>``.
        factors: the varied parameters' values, one row per parameter set (index ``set``), in spec order.
        outputs: one row per (set, replicate): columns ``set``, ``replicate`` and one per stored output.
    """

    path: Path
    manifest: dict[str, Any]
    sample: pd.DataFrame
    factors: pd.DataFrame
    outputs: pd.DataFrame

    @property
    def metrics(self) -> list[str]:
        """The stored outputs."""
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

    def curves(self) -> pd.DataFrame:
        """The per-session curves (``[store] curves = true``): one row per (set, replicate, session).

        Raises:
            ResultsError: the sweep stored no curves.
        """
        if not (self.path / store.CURVES).is_dir():
            raise ResultsError(
                f"{self.path} stores no curves: add [store] curves = true to the spec and run it into a new --out."
            )
        return store.read_outputs(self.path, store.CURVES)


def read_sweep(path: str | Path) -> Sweep:
    """The finished sweep stored in ``path`` (the ``--out`` directory of ``python -m experiments run``).

    Every chunk file and the sample are checked against the checksums in the manifest first.

    Raises:
        ResultsError: no manifest, an unreadable or foreign one, chunks missing or damaged, files that
            do not belong, or a sample or chunk that cannot be read; the message says what to do.
    """
    from experiments.resume import finished
    from experiments.sampling import UNIT_PREFIX  # SALib and scipy.stats: imported only when needed

    path = Path(path)
    try:
        manifest = finished(path)
    except store.StoreError as err:
        raise ResultsError(str(err)) from None
    spec = manifest["spec"]
    wrong = [k for k, kind in MANIFEST_KEYS.items() if not isinstance(manifest.get(k), kind)]
    wrong += [f"spec.{k}" for k, kind in SPEC_KEYS.items() if not isinstance(spec.get(k), kind)]
    if not wrong and not isinstance(manifest["problem"].get("names"), list):
        wrong.append("problem.names")
    if wrong:
        raise ResultsError(
            f"{path / store.MANIFEST} lacks {', '.join(wrong)} (or has the wrong type), which the analysis needs; "
            "it was not written by this version of `python -m experiments run`, or has been edited."
        )
    try:
        sample = pd.read_parquet(path / store.SAMPLE)
        outputs = store.read_outputs(path)
    except Exception as err:  # noqa: BLE001 (pyarrow raises several kinds on a damaged file)
        raise ResultsError(
            f"{path}: the sample or a file in {store.CHUNKS}/ cannot be read ({str(err)[:200]})."
        ) from None
    if outputs.empty or not {"set", "replicate"} <= set(outputs.columns):
        raise ResultsError(f"{path}: the stored outputs have no set and replicate columns; run the sweep again.")
    names = [f["name"] for f in spec.get("factors", []) if isinstance(f, dict)]
    names = [n for n in names if n in sample.columns] or [c for c in sample.columns if not c.startswith(UNIT_PREFIX)]
    factors = sample[names].copy()
    factors.index = pd.RangeIndex(len(factors), name="set")
    return Sweep(path, manifest, sample, factors, outputs)


def is_numeric(column: pd.Series) -> bool:
    """Whether a factor column is numeric (a float or int parameter) rather than a choice."""
    return bool(pd.api.types.is_numeric_dtype(column.dtype)) and not pd.api.types.is_bool_dtype(column.dtype)
