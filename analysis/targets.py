"""The table of published targets (analysis/targets.toml) as :class:`Target` records.

Each target is a published figure with the band a simulation should land in, its citation, and an
exact, executable definition over the per-client table (``clients.csv``): which clients
(``clients``, a pandas query) and which variables (``x``, ``y``, ``group``, pandas expressions).
:meth:`Target.compute` evaluates it for one replicate; reporting over replicates is left to the caller
(:func:`analysis.estimators.mean_ci`).
"""

from __future__ import annotations

import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import estimators as est
from sim import parameters
from sim.parameters import ParameterError
from sim.scenario import ScenarioError, load_scenario
from sim.userfiles import read_toml

TARGETS_FILE = Path(__file__).with_name("targets.toml")
SETS = ("calibration", "validation")
# statistic -> the expressions it needs besides `clients`
STATISTICS = {
    "share": ("y",),
    "pearson_r": ("x", "y"),
    "point_biserial": ("group", "y"),
    "cohens_d": ("group", "y"),
    "icc": ("group", "y"),
    "icc_latent": ("group", "y"),
    "mean": ("y",),
    "odds_ratio": ("group", "y"),
    "share_within_first": ("y", "k"),
}
NUMBERS = ("published", "band_low", "band_high", "k")  # every other key but overrides is text


class TargetsError(ValueError):
    """A targets table that cannot be used; the message names the file, the fact and what is allowed."""


@dataclass(frozen=True)
class Target:
    """One published fact with its band, source and definition over simulated clients.

    Attributes:
        id: short name, unique in the table.
        set: "calibration" (fitted to) or "validation" (not tuned to).
        fact: what is measured, in words.
        statistic: one of :data:`STATISTICS`.
        published: the published point value.
        band_low, band_high: the band a simulation should land in.
        published_text: the figure as the source states it.
        source: citation.
        definition: the computation in words.
        clients: pandas query selecting the clients ("" for all).
        x, y, group: pandas expressions over clients.csv columns ("" when unused).
        k: cut-off for ``share_within_first``.
        doi: DOI of the source, "" when not recorded.
        note: how confident we are in the figure, and caveats.
        overrides: registry parameters to set on the baseline scenario for the run this fact is
            computed from (e.g. a share of feedback-using therapists, which the baseline lacks);
            empty when the baseline itself is used. A fact of another scenario carries that
            scenario's parameters here, followed by its own overrides.
        scenario: the scenario the fact describes ("" for the scenario validated, the baseline).
    """

    id: str
    set: str
    fact: str
    statistic: str
    published: float
    band_low: float
    band_high: float
    published_text: str
    source: str
    definition: str
    clients: str = ""
    x: str = ""
    y: str = ""
    group: str = ""
    k: float | None = None
    doi: str = ""
    note: str = ""
    overrides: dict[str, float] = field(default_factory=dict)
    scenario: str = ""

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the band (inclusive)."""
        return bool(self.band_low <= value <= self.band_high)

    def compute(self, clients: pd.DataFrame) -> float:
        """The statistic on one replicate's per-client table (columns as in clients.csv)."""
        df = clients.query(self.clients) if self.clients else clients

        def ev(expr):
            return np.asarray(df.eval(expr))

        match self.statistic:
            case "share":
                return float(np.mean(ev(self.y).astype(bool))) if len(df) else float("nan")
            case "pearson_r":
                return est.pearson_r(ev(self.x), ev(self.y))
            case "point_biserial":
                return est.point_biserial(ev(self.group).astype(bool), ev(self.y))
            case "cohens_d":
                mask, y = ev(self.group).astype(bool), ev(self.y).astype(float)
                return est.cohens_d(y[mask], y[~mask])
            case "icc":
                return est.icc_random_intercept(ev(self.y), ev(self.group))
            case "icc_latent":
                return est.icc_latent_binary(ev(self.y).astype(bool), ev(self.group))
            case "mean":
                return float(np.mean(ev(self.y).astype(float))) if len(df) else float("nan")
            case "odds_ratio":
                return est.odds_ratio(ev(self.y).astype(bool), ev(self.group).astype(bool))
            case "share_within_first":
                return est.share_within_first(ev(self.y), self.k)
        raise ValueError(f"{self.id}: unknown statistic {self.statistic!r}; use one of {sorted(STATISTICS)}")


def _check(entry: dict, path: Path) -> Target:
    where = f"{path}, fact {entry.get('id', '?')!r}"
    names = {f.name for f in fields(Target)}
    unknown = set(entry) - names
    if unknown:
        raise TargetsError(f"unknown keys {sorted(unknown)} ({where}); allowed: {sorted(names)}")
    required = {f.name for f in fields(Target) if f.default is MISSING and f.default_factory is MISSING}
    absent = sorted(required - set(entry))
    if absent:
        raise TargetsError(f"missing keys {absent} ({where})")
    # Types are checked here because a string band or a numeric expression would otherwise fail
    # deep in a comparison or a pandas query, after the simulation has run.
    for key, value in entry.items():
        if key == "overrides":
            if not isinstance(value, dict):
                raise TargetsError(f"overrides must be a table of parameter = value ({where})")
        elif key in NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise TargetsError(f"{key} = {value!r} must be a finite number ({where})")
        elif not isinstance(value, str):
            raise TargetsError(f"{key} = {value!r} must be a string ({where})")
    try:
        overrides = parameters.validate(entry.get("overrides", {}), f"{where}, overrides")
    except ParameterError as err:
        raise TargetsError(str(err)) from None
    if entry.get("scenario"):
        # A fact of another scenario runs with that scenario's parameters set on the one validated.
        try:
            scenario = load_scenario(entry["scenario"])
        except ScenarioError as err:
            raise TargetsError(f"scenario = {entry['scenario']!r} ({where}): {err}") from None
        overrides = {**scenario.overrides, **overrides}
    target = Target(**{**entry, "overrides": overrides})
    if target.set not in SETS:
        raise TargetsError(f"set = {target.set!r} ({where}); use one of {SETS}")
    if target.statistic not in STATISTICS:
        raise TargetsError(f"statistic = {target.statistic!r} ({where}); use one of {sorted(STATISTICS)}")
    missing = [name for name in STATISTICS[target.statistic] if getattr(target, name) in ("", None)]
    if missing:
        raise TargetsError(f"statistic {target.statistic!r} needs {missing} ({where})")
    if not target.band_low <= target.published <= target.band_high:
        raise TargetsError(
            f"published = {target.published} is outside the band [{target.band_low}, {target.band_high}] ({where})"
        )
    return target


def load_targets(path: str | Path = TARGETS_FILE) -> list[Target]:
    """Read the targets table, checking every entry.

    Args:
        path: a TOML file with an array of tables ``[[fact]]``; defaults to analysis/targets.toml.

    Returns:
        The targets in file order.

    Raises:
        TargetsError: a file that cannot be read or is not TOML, no ``[[fact]]`` tables, an unknown
            key, set or statistic, a value of the wrong type, a missing expression, an override
            that is not a registry parameter in range, a published value outside its band, or a
            repeated id; the message names the file and the fact.
    """
    path = Path(path)
    how = "give a TOML file of [[fact]] tables like analysis/targets.toml"
    data = read_toml(path, TargetsError, how)
    entries = data.get("fact", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TargetsError(f"{path}: fact must be an array of tables, each written [[fact]]; {how}.")
    if not entries:
        raise TargetsError(f"{path}: no facts: {how}.")
    targets = [_check(entry, path) for entry in entries]
    ids = [t.id for t in targets]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise TargetsError(f"repeated fact ids {repeated} in {path}")
    return targets


def check_expressions(targets: list[Target], path: str | Path, probe: pd.DataFrame) -> None:
    """Evaluate every fact on a small clients table, so a bad expression is reported before a long run.

    Args:
        targets: the facts (from :func:`load_targets`).
        path: the targets file, for the message.
        probe: a clients table with the columns of clients.csv (a small simulated cohort).

    Raises:
        TargetsError: a query or expression that names a column clients.csv does not have, or is
            not a valid pandas expression; the message names the file, the fact and the columns.
    """
    columns = ", ".join(probe.columns)
    for t in targets:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # a tiny probe can leave a statistic undefined: not an error
                t.compute(probe)
        except Exception as err:  # noqa: BLE001 (pandas raises many kinds for a bad expression)
            raise TargetsError(
                f"{path}, fact {t.id!r}: its expressions cannot be evaluated on the clients table "
                f"({type(err).__name__}: {err}); use the columns of clients.csv: {columns}."
            ) from None
