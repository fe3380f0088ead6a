"""Calibration with honest uncertainty: a posterior over the free parameters by ABC-SMC.

``python -m analysis calibrate`` (``make calibrate``) fits every parameter that sim/parameters.py marks
``free`` to the facts of analysis/targets.toml whose set is "calibration", by approximate Bayesian
computation (:mod:`analysis.abc`), and writes

- ``sim/posterior.csv``: the final population, about a thousand weighted particles (shipped with the
  package; ``--posterior K`` on ``run``, ``compare``, ``validate`` and sweep specs draws from it);
- ``sim/calibrated.toml``: the posterior's most central good particle, the point values a default run
  uses (the registry reads them as defaults, so a default run stays deterministic), with the fit's
  record. Among the half of the final population nearest the facts, it is the particle nearest the
  posterior mean in the posterior's own metric (Mahalanobis, logit scale): a typical member of the
  posterior that reproduces the facts. Not the marginal medians: the facts tie parameters together
  along ridges (the background rate of leaving against the barrier and improvement terms), and the
  medians of such a pair fall off the ridge; not the best particle either, which sits at a corner of the
  ridge, fitted to the noise of the calibration's own cohorts;
- the history, every generation's particles, weights, distances and facts, in the output directory
  (``results/calibration/history.parquet`` and ``generations.csv``);
- ``docs/calibration.md`` and its figures (:mod:`analysis.calibration_report`).

The settings come from analysis/calibration.toml (or ``--spec``), checked before anything runs.

**Prior.** Each free parameter x with registry range [low, high] is mapped to the real line,
u = logit((x - low) / (high - low)); the prior is normal on u, centred on the value the registry declares
from the literature (its default before calibration) with standard deviation ``prior_sd``: weakly
informative, most of its mass inside the range, none outside it.

**Summary statistics and distance.** Every candidate's facts are computed by the code ``make validate``
uses (:func:`analysis.facts.simulate_facts`), averaged over ``replicates`` cohorts of ``clients`` clients.
A fact's deviation from its published value is divided by the distance from the published value to the
band's edge on that side, so 1 is the edge of the published band and every fact counts in units of its
own interval; the distance is the root mean square over the facts.

**Common random numbers.** Every candidate runs the same replicates (seed, r), so the distance is a
deterministic function of the parameters and particles are compared without the simulator's noise (at
this cohort size each fact's replicate-to-replicate noise is small beside its band). The posterior is
so conditional on one realisation of that noise; ``--posterior K`` predictions run other replicates, so
their intervals carry both the parameter and the stochastic uncertainty.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from analysis import abc
from analysis.facts import cohort_therapists, simulate_facts
from analysis.targets import Target, load_targets
from sim import parameters
from sim.parameters import Param
from sim.scenario import load_scenario
from sim.userfiles import read_toml

SPEC_FILE = Path(__file__).with_name("calibration.toml")
ROOT = Path(__file__).resolve().parents[1]
REPORT_FILE = ROOT / "docs" / "calibration.md"
Q_EDGE = 1e-6  # values this close to a bound (as a share of the range) are moved in before the logit


class CalibrationError(ValueError):
    """A calibration spec that cannot be used; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class CalibrationSpec:
    """The settings of an ABC calibration (analysis/calibration.toml documents each).

    Attributes:
        scenario: the scenario the facts describe.
        seed: seed of the common random numbers and of the sampler.
        replicates, clients: the cohorts every candidate runs.
        population: particles per generation.
        initial: prior draws in generation 0, as a multiple of ``population``.
        quantile: each tolerance is this quantile of the last population's distances.
        target: stop once the tolerance is at or below this distance (1 = every fact at its band's edge).
        min_acceptance: stop when a generation accepts fewer candidates than this share.
        max_generations: most generations, generation 0 included.
        max_minutes: stop after the generation that ends past this wall time.
        prior_sd: standard deviation of the prior on the logit scale.
        chunk_size: candidates per engine call (and per task on an executor).
        round_size: candidates proposed together; fixed, so the workers cannot change the result.
        free: the parameters fitted (empty: every parameter the registry marks free).
    """

    scenario: str = "baseline"
    seed: int = 1
    replicates: int = 2
    clients: int = 1000
    population: int = 1000
    initial: int = 4
    quantile: float = 0.5
    target: float = 0.5
    min_acceptance: float = 0.03
    max_generations: int = 12
    max_minutes: float = 60.0
    prior_sd: float = 1.5
    chunk_size: int = 64
    round_size: int = 256
    free: tuple[str, ...] = ()
    path: Path | None = None

    def settings(self) -> abc.Settings:
        """The sampler's settings."""
        return abc.Settings(
            population=self.population,
            initial=self.initial,
            quantile=self.quantile,
            target=self.target,
            min_acceptance=self.min_acceptance,
            max_generations=self.max_generations,
            round_size=self.round_size,
            max_seconds=60.0 * self.max_minutes,
        )


_OPTIONS = {"max_generations": "generations", "max_minutes": "minutes"}  # spec keys set by other option names
_LIMITS: dict[str, tuple[float, float]] = {
    "seed": (0, 2**63 - 1),
    "replicates": (1, 1000),
    "clients": (20, 1_000_000),
    "population": (10, 1_000_000),
    "initial": (1, 100),
    "quantile": (0.05, 0.95),
    "target": (0.0, 100.0),
    "min_acceptance": (0.0, 1.0),
    "max_generations": (1, 1000),
    "max_minutes": (0.1, 100_000.0),
    "prior_sd": (0.05, 10.0),
    "chunk_size": (1, 100_000),
    "round_size": (1, 1_000_000),
}


def load_spec(path: str | Path = SPEC_FILE, **changes) -> CalibrationSpec:
    """Read and check a calibration spec; ``changes`` override its values (from the command line).

    Raises:
        CalibrationError: an unknown key, a value of the wrong type or outside its range, an unknown
            scenario, or a ``free`` name that is not a numeric registry parameter; the message names the
            file and the key.
    """
    path = Path(path)
    how = "see analysis/calibration.toml for every key"
    given = {k: v for k, v in changes.items() if v is not None}
    data = {**read_toml(path, CalibrationError, how), **given}

    def where(key: str) -> str:  # the command-line option a value came from, or the file
        return f"--{_OPTIONS.get(key, key)}" if key in given else str(path)

    known = {f.name for f in fields(CalibrationSpec)} - {"path"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CalibrationError(f"{path}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}.")
    for key, value in data.items():
        if key in ("scenario", "free"):
            continue
        low, high = _LIMITS[key]
        integer = isinstance(getattr(CalibrationSpec, key), int)
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not low <= value <= high:
            kind = "an integer" if integer else "a number"
            raise CalibrationError(
                f"{where(key)}: {key} = {value!r} is not allowed: use {kind} in [{low:g}, {high:g}] ({how})."
            )
    scenario = data.get("scenario", "baseline")
    if not isinstance(scenario, str):
        raise CalibrationError(f"{path}: scenario = {scenario!r} must be a scenario name or path.")
    try:
        load_scenario(scenario)
    except ValueError as err:
        raise CalibrationError(f"{path}: scenario = {scenario!r}: {err}") from None
    free = data.get("free", [])
    if not isinstance(free, list | tuple) or not all(isinstance(n, str) for n in free):
        raise CalibrationError(f"{where('free')}: free = {free!r} must be a list of parameter names.")
    for name in free:
        try:
            p = parameters.lookup(name, f"{where('free')}")
        except parameters.ParameterError as err:
            raise CalibrationError(str(err)) from None
        if p.kind == "choice":
            raise CalibrationError(
                f"{where('free')}: {name!r} is a choice parameter; only numeric parameters can be fitted."
            )
    repeated = sorted({n for n in free if list(free).count(n) > 1})
    if repeated:
        raise CalibrationError(f"{where('free')}: {', '.join(repeated)} is listed more than once; list each once.")
    return CalibrationSpec(**{**data, "free": tuple(free)}, path=path)


@dataclass
class Problem:
    """The calibration problem: facts, free parameters and their prior, and how a candidate is scored.

    Picklable, so executors can run :func:`evaluate_chunk` on any worker.
    """

    facts: list[Target]
    free: list[Param]
    base: dict[str, Any]
    declared: np.ndarray
    seed: int
    replicates: int
    clients: int
    therapists: int
    prior_sd: float

    @property
    def names(self) -> list[str]:
        """The free parameters' names."""
        return [p.name for p in self.free]

    @property
    def low(self) -> np.ndarray:
        """Each free parameter's lowest value."""
        return np.array([p.low for p in self.free], dtype=float)

    @property
    def span(self) -> np.ndarray:
        """Each free parameter's range."""
        return np.array([p.high - p.low for p in self.free], dtype=float)

    def to_u(self, x) -> np.ndarray:
        """Parameter values to the logit scale."""
        q = np.clip((np.asarray(x, dtype=float) - self.low) / self.span, Q_EDGE, 1 - Q_EDGE)
        return np.log(q / (1 - q))

    def to_x(self, u) -> np.ndarray:
        """Logit-scale values back to parameter values, inside the registry ranges."""
        return self.low + self.span / (1 + np.exp(-np.asarray(u, dtype=float)))

    def prior(self) -> abc.Prior:
        """Normal on the logit scale about the declared values."""
        return abc.Prior(self.to_u(self.declared), np.full(len(self.free), self.prior_sd))

    def param_set(self, x) -> dict[str, Any]:
        """A complete parameter dict with the free parameters set to ``x``."""
        values = {p.name: (round(v) if p.kind == "int" else float(v)) for p, v in zip(self.free, x, strict=True)}
        return {**self.base, **values}

    def fact_values(self, xs) -> np.ndarray:
        """Each fact, mean over the replicates, for each row of ``xs``; shape (n, n_facts)."""
        sets = [self.param_set(x) for x in np.atleast_2d(xs)]
        per_rep = simulate_facts(self.facts, sets, self.clients, self.therapists, self.seed, self.replicates)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a candidate with an empty group gives NaN facts
            return np.nanmean(per_rep, axis=0)

    def distances(self, values) -> np.ndarray:
        """Root mean square of each fact's deviation in units of its band (1: at the band's edge)."""
        return band_distance(values, self.facts)


def band_distance(values, facts: Sequence[Target]) -> np.ndarray:
    """Root mean square over facts of (value - published) / (distance to the band's edge on that side).

    An undefined fact (NaN) counts as ten band-widths away, so a candidate that cannot produce a fact
    is never accepted.
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    published = np.array([t.published for t in facts])
    above = np.array([t.band_high - t.published for t in facts])
    below = np.array([t.published - t.band_low for t in facts])
    dev = values - published
    z = np.where(dev >= 0, dev / np.where(above > 0, above, 1e-12), -dev / np.where(below > 0, below, 1e-12))
    z = np.where(np.isfinite(z), z, 10.0)
    return np.sqrt(np.mean(z**2, axis=1))


def evaluate_chunk(task: tuple[int, Problem, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Distances and facts of one chunk of candidates (module level, so any executor can run it)."""
    start, problem, u = task
    values = problem.fact_values(problem.to_x(u))
    return start, problem.distances(values), values


class BatchedSimulator:
    """Maps a round of candidates to distances and facts, chunk by chunk on an executor.

    The result of a chunk depends only on its candidates, so the executor and the number of workers
    cannot change it.
    """

    def __init__(self, problem: Problem, executor, chunk_size: int):
        self.problem, self.executor, self.chunk_size = problem, executor, chunk_size
        self.evaluations = 0

    def __call__(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances (n,) and facts (n, n_facts) of the candidates ``u`` (logit scale), in order."""
        tasks = [(start, self.problem, rows) for start, rows in abc.chunks(u, self.chunk_size)]
        distances = np.empty(len(u))
        values = np.empty((len(u), len(self.problem.facts)))
        for start, d, v in self.executor.imap_unordered(evaluate_chunk, tasks):
            distances[start : start + len(d)] = d
            values[start : start + len(d)] = v
        self.evaluations += len(u)
        return distances, values


@dataclass
class Fit:
    """The result of a calibration: the sampler's history and what it was run on."""

    problem: Problem
    spec: CalibrationSpec
    result: abc.Result
    runtime: float
    evaluations: int
    executor: str
    workers: int
    date: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def posterior(self) -> np.ndarray:
        """The final population's parameter values, shape (population, n_free)."""
        return self.problem.to_x(self.result.last.particles)

    @property
    def weights(self) -> np.ndarray:
        """The final population's weights."""
        return self.result.last.weights

    def medians(self) -> dict[str, float]:
        """The weighted posterior median of each parameter."""
        return {
            name: weighted_quantile(self.posterior[:, j], self.weights, 0.5)
            for j, name in enumerate(self.problem.names)
        }

    def point(self) -> dict[str, float]:
        """The default values: the most central of the better half of the final population, as written."""
        index = central_particle(self.result.last.particles, self.weights, self.result.last.distances)
        return {name: float(f"{v:.6g}") for name, v in zip(self.problem.names, self.posterior[index], strict=True)}


def central_particle(u: np.ndarray, weights: np.ndarray, distances: np.ndarray) -> int:
    """The most central good particle: nearest the weighted mean among the better half by distance.

    Nearness is Mahalanobis distance under the population's weighted covariance (logit scale).
    """
    mean = weights @ u
    cov = np.atleast_2d(np.cov(u, rowvar=False, aweights=weights)) + 1e-12 * np.eye(u.shape[1])
    diff = u - mean
    mahalanobis = np.einsum("ij,ij->i", diff, np.linalg.solve(cov, diff.T).T)
    good = distances <= np.median(distances)
    return int(np.flatnonzero(good)[np.argmin(mahalanobis[good])])


def load_fit(history: str | Path, spec: CalibrationSpec, targets_file: str | Path | None = None) -> Fit:
    """A fit rebuilt from its stored history (history.parquet, generations.csv, calibration.json).

    Lets the outputs and the report be written again (``calibrate --from-history DIR``) without
    sampling again; the problem is rebuilt from ``spec``, which must be the fit's.
    """
    import json

    import pandas as pd

    history = Path(history)
    try:
        frame = pd.read_parquet(history / "history.parquet")
        schedule = pd.read_csv(history / "generations.csv")
        record = json.loads((history / "calibration.json").read_text())
    except (OSError, ValueError) as err:
        raise CalibrationError(f"{history}: not a calibration history ({err}); run `make calibrate` first.") from None
    problem = make_problem(spec, targets_file)
    missing = [n for n in problem.names if n not in frame]
    if missing or record.get("facts") != [t.id for t in problem.facts]:
        raise CalibrationError(f"{history}: its parameters or facts differ from this spec's; fit again.")
    result = abc.Result(stopped=record["stopped"])
    for row in schedule.itertuples(index=False):
        g = frame[frame["generation"] == row.generation]
        stats = g[[f"fact:{t.id}" for t in problem.facts]].to_numpy()
        weights = g["weight"].to_numpy()
        result.generations.append(
            abc.Generation(
                int(row.generation),
                float(row.tolerance),
                problem.to_u(g[problem.names].to_numpy()),
                weights / weights.sum(),
                g["distance"].to_numpy(),
                stats,
                int(row.proposed),
                float(row.seconds),
            )
        )
    return Fit(
        problem,
        spec,
        result,
        float(record["runtime_s"]),
        int(record["evaluations"]),
        record["executor"],
        int(record["workers"]),
        date=record["date"],
    )


def weighted_quantile(values, weights, q: float) -> float:
    """The ``q`` quantile of weighted values (the inverse of the weighted empirical distribution)."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(np.asarray(weights, dtype=float)[order])
    index = np.searchsorted(cumulative, q * cumulative[-1])
    return float(np.asarray(values)[order][min(index, len(order) - 1)])


def make_problem(spec: CalibrationSpec, targets_file: str | Path | None = None) -> Problem:
    """The problem a spec describes: the calibration facts, the free parameters and the base values."""
    names = list(spec.free) or [p.name for p in parameters.free_parameters()]
    free = [parameters.lookup(n) for n in names]
    facts = [t for t in load_targets(targets_file or _default_targets()) if t.set == "calibration"]
    # Parameters that are free but not fitted this time keep their declared values, not an earlier
    # calibration's, unless the scenario sets them: the fit depends on its arguments only.
    sc, declared = load_scenario(spec.scenario), parameters.declared_defaults()
    unset = [p.name for p in parameters.free_parameters() if p.name not in sc.overrides]
    base = {**sc.params, **{name: declared[name] for name in unset}}
    return Problem(
        facts=facts,
        free=free,
        base=base,
        declared=np.array([declared[n] for n in names], dtype=float),
        seed=spec.seed,
        replicates=spec.replicates,
        clients=spec.clients,
        therapists=cohort_therapists(sc, spec.clients),
        prior_sd=spec.prior_sd,
    )


def calibrate(
    spec: CalibrationSpec,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    targets_file: str | Path | None = None,
    log=print,
    progress: bool = True,
) -> Fit:
    """Run ABC-SMC for a spec on an executor ("serial", "processes" or "dask"); see the module docstring."""
    from experiments.executors import make_executor

    problem = make_problem(spec, targets_file)
    t0 = time.perf_counter()
    bar = _progress_bar(progress)
    with make_executor(executor, workers, scheduler) as pool:
        simulator = BatchedSimulator(problem, pool, spec.chunk_size)
        result = abc.run(simulator, problem.prior(), spec.settings(), spec.seed, log=log, progress=bar.update)
        n_workers = pool.workers
    bar.close()
    log(f"stopped: {result.stopped}")
    return Fit(problem, spec, result, time.perf_counter() - t0, simulator.evaluations, executor, n_workers)


def _progress_bar(enabled: bool):
    from tqdm import tqdm

    return tqdm(unit=" candidates", desc="ABC-SMC", disable=not enabled, mininterval=2.0)


def _default_targets() -> Path:
    from analysis.targets import TARGETS_FILE

    return TARGETS_FILE
