"""Calibration: fit the registry's free mechanism parameters to the calibration facts.

``python -m analysis calibrate`` (``make calibrate``) fits every parameter that sim/parameters.py
marks ``free`` to the facts of analysis/targets.toml whose set is "calibration", and writes the
fitted values to sim/calibrated.toml (which the registry reads as its defaults) and a fit report to
docs/calibration.md.

Method. Each free parameter is mapped from its registry range [low, high] to the real line by
``u = logit((x - low) / (high - low))``, so every candidate stays inside the range. For a candidate,
the baseline scenario runs over R replicates of n clients (seeds ``(seed, r)``, r = 0..R-1, the same
for every candidate: common random numbers), each fact is computed per replicate and averaged.
With the fact's band [lo, hi], centre c and half-width h, ``d = (value - c) / h`` is 0 at the
centre and +-1 at the band's edges, and each fact contributes two residuals:

- ``outside = weight * max(|d| - margin, 0)``: nothing inside the inner ``margin`` of the band,
  growing linearly beyond it (so a value is pushed well inside the band, with room for the
  replicate noise of another seed), and
- ``pull = pull * d``: a small pull to the band's centre.

Eleven parameters against nine facts leave a valley of fits that meet every band equally well, and
the optimiser would end anywhere along it (a first fit drove repair_rate to 0.94). Each parameter
therefore adds ``prior * (u - u_declared)``: a weak pull, in logit units, to the value the registry
declares from the literature, so the fit moves a parameter only as far as the facts need and the
optimum is unique.

scipy.optimize.least_squares (trust-region reflective, fixed options) minimises half the sum of
squared residuals. The Jacobian is taken by forward differences in u with a fixed step, all its
columns evaluated as one batch of parameter sets in the engine (which shares random draws across
sets), so an evaluation of the Jacobian costs little more than one of the objective. With common
random numbers the objective is a deterministic function of the parameters; the step is large
enough that it is also smooth at that scale (a small step would see the individual clients whose
decisions flip). Same seed, replicates and clients: same numbers, bit for bit.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from analysis.facts import cohort_therapists, simulate_facts
from analysis.targets import Target, load_targets
from sim import parameters
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
REPORT_FILE = ROOT / "docs" / "calibration.md"
METHOD = "scipy.optimize.least_squares (trf), logit-transformed parameters, forward-difference Jacobian in one batch"

# Fixed options: part of the method, so a re-run with the same seed reproduces the fit.
MARGIN = 0.5  # no penalty in the inner half of a band
WEIGHT = 4.0  # weight of the distance beyond the inner half
PULL = 0.15  # weight of the pull to the band centre
PRIOR = 0.1  # weight of the pull to each parameter's declared value, per logit unit
STEP = 0.1  # finite-difference step in logit units
Q_EDGE = 1e-3  # starting values closer than this (as a share of the range) to a bound are moved in


@dataclass
class Fit:
    """The result of a calibration.

    Attributes:
        names: the free parameters, in registry order.
        start, fitted: their starting and fitted values.
        facts: the calibration facts.
        before, after: each fact's simulated value (mean over replicates) at start and fitted values.
        cost_start, cost: the objective (half the sum of squared residuals) at start and fit.
        seed, replicates, clients, therapists: the simulation behind the objective.
        evaluations: objective evaluations; jacobians: Jacobian evaluations (each one batch).
        runtime: wall-clock seconds.
        message: the optimiser's termination message.
        date: when the fit finished (UTC, ISO 8601).
    """

    names: list[str]
    start: np.ndarray
    fitted: np.ndarray
    facts: list[Target]
    before: np.ndarray
    after: np.ndarray
    cost_start: float
    cost: float
    seed: int
    replicates: int
    clients: int
    therapists: int
    evaluations: int
    jacobians: int
    runtime: float
    message: str
    date: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def values(self) -> dict[str, float]:
        """The fitted values by parameter name."""
        return dict(zip(self.names, (float(v) for v in self.fitted), strict=True))

    def passes(self) -> np.ndarray:
        """Whether each fact's fitted value lies in its band."""
        return np.array([t.contains(v) for t, v in zip(self.facts, self.after, strict=True)])


class Objective:
    """Band-normalised residuals of the calibration facts as a function of logit-scaled parameters.

    Args:
        facts: the calibration facts.
        free: the parameters fitted.
        base: every parameter's value (the scenario's), into which candidates are written.
        seed, replicates, clients, therapists: the common random numbers of every evaluation.
        prior: each parameter's declared value; a weak pull toward it (:data:`PRIOR`) makes the
            optimum unique. None: no pull.
    """

    def __init__(
        self,
        facts: Sequence[Target],
        free: Sequence[parameters.Param],
        base: dict[str, Any],
        seed: int,
        replicates: int,
        clients: int,
        therapists: int,
        prior: Sequence[float] | None = None,
    ):
        self.facts, self.free, self.base = list(facts), list(free), dict(base)
        self.seed, self.replicates, self.clients, self.therapists = seed, replicates, clients, therapists
        self.low = np.array([p.low for p in self.free], dtype=float)
        self.span = np.array([p.high - p.low for p in self.free], dtype=float)
        self.centre = np.array([(t.band_low + t.band_high) / 2 for t in self.facts])
        self.half = np.array([(t.band_high - t.band_low) / 2 for t in self.facts])
        self.prior_u = None if prior is None else self.to_u(prior)
        self.evaluations = 0
        self.jacobians = 0
        self._cache: dict[bytes, np.ndarray] = {}

    def to_u(self, x) -> np.ndarray:
        """Parameter values to the logit scale."""
        q = np.clip((np.asarray(x, dtype=float) - self.low) / self.span, Q_EDGE, 1 - Q_EDGE)
        return np.log(q / (1 - q))

    def to_x(self, u) -> np.ndarray:
        """Logit-scale values back to parameter values, inside the registry ranges."""
        return self.low + self.span / (1 + np.exp(-np.asarray(u, dtype=float)))

    def param_set(self, x) -> dict[str, Any]:
        """A complete parameter dict with the free parameters set to ``x``."""
        values = {p.name: (round(v) if p.kind == "int" else float(v)) for p, v in zip(self.free, x, strict=True)}
        return {**self.base, **values}

    def fact_values(self, xs) -> np.ndarray:
        """Each fact, mean over replicates, for each row of ``xs``; shape (n_candidates, n_facts)."""
        sets = [self.param_set(x) for x in np.atleast_2d(xs)]
        per_rep = simulate_facts(self.facts, sets, self.clients, self.therapists, self.seed, self.replicates)
        with np.errstate(invalid="ignore"):
            return np.nanmean(per_rep, axis=0) if np.isfinite(per_rep).any() else per_rep[0]

    def residuals_of(self, values) -> np.ndarray:
        """Residuals (outside-band, then pull) for fact values shaped (..., n_facts)."""
        d = (np.asarray(values, dtype=float) - self.centre) / self.half
        d = np.where(np.isfinite(d), d, 10.0)  # an undefined fact counts as far outside its band
        outside = WEIGHT * np.maximum(np.abs(d) - MARGIN, 0.0)
        return np.concatenate([outside, PULL * d], axis=-1)

    def prior_residuals(self, u) -> np.ndarray:
        """The pull of logit-scale parameters ``u`` (shaped (..., n_free)) to their declared values."""
        u = np.asarray(u, dtype=float)
        return np.zeros(u.shape[:-1] + (0,)) if self.prior_u is None else PRIOR * (u - self.prior_u)

    def all_residuals(self, u, values) -> np.ndarray:
        """Fact residuals for ``values`` followed by the prior's for ``u``."""
        return np.concatenate([self.residuals_of(values), self.prior_residuals(u)], axis=-1)

    def __call__(self, u) -> np.ndarray:
        """Residuals at logit-scale parameters ``u``."""
        key = np.asarray(u, dtype=float).tobytes()
        if key not in self._cache:
            self.evaluations += 1
            self._cache[key] = self.all_residuals(u, self.fact_values(self.to_x(u))[0])
        return self._cache[key]

    def jacobian(self, u) -> np.ndarray:
        """Forward-difference Jacobian in u, all columns run as one batch of parameter sets."""
        self.jacobians += 1
        u = np.asarray(u, dtype=float)
        r0 = self(u)
        shifted = u + STEP * np.eye(len(u))
        r = self.all_residuals(shifted, self.fact_values(self.to_x(shifted)))
        return (r - r0).T / STEP

    @staticmethod
    def cost(residuals) -> float:
        """Half the sum of squared residuals (least_squares' cost)."""
        return 0.5 * float(np.sum(np.square(residuals)))


def calibrate(
    free: Sequence[str] | None = None,
    seed: int = 1,
    replicates: int = 8,
    clients: int = 2000,
    therapists: int | None = None,
    max_nfev: int = 60,
    scenario: str = "baseline",
    targets_file: str | Path | None = None,
    log=print,
) -> Fit:
    """Fit the free parameters to the calibration facts.

    Args:
        free: names of the parameters to fit; None fits every parameter the registry marks free.
        seed: seed of the common random numbers.
        replicates: replicates per evaluation.
        clients: clients per replicate.
        therapists: therapists per replicate; None keeps the scenario's caseload.
        max_nfev: most objective evaluations (Jacobians come on top, one batch each).
        scenario: the scenario the facts describe.
        targets_file: the targets table; None for analysis/targets.toml.
        log: called with a progress line per evaluation; pass ``lambda *_: None`` for silence.

    Returns:
        The :class:`Fit`.
    """
    t0 = time.perf_counter()
    names = list(free) if free is not None else [p.name for p in parameters.free_parameters()]
    params = [parameters.lookup(n, "calibrate --free") for n in names]
    choices = [p.name for p in params if p.kind == "choice"]
    if choices:
        raise parameters.ParameterError(
            f"calibrate --free: {', '.join(choices)} is a choice parameter; only numeric parameters can be fitted."
        )
    facts = [t for t in load_targets(targets_file or _default_targets()) if t.set == "calibration"]
    # Free parameters that are not fitted this time and not set by the scenario keep their declared
    # defaults, not an earlier calibration's values: the fit depends on its arguments only.
    # Start from the declared defaults, not earlier fitted ones: a re-run with the same seed
    # then reproduces the same numbers.
    sc, declared = load_scenario(scenario), parameters.declared_defaults()
    unset = [p.name for p in parameters.free_parameters() if p.name not in sc.overrides]
    base = {**sc.params, **{name: declared[name] for name in unset}}
    therapists = cohort_therapists(sc, clients) if therapists is None else therapists
    start = np.array([declared[n] for n in names], dtype=float)
    obj = Objective(facts, params, base, seed, replicates, clients, therapists, prior=start)
    u0 = obj.to_u(start)
    r_start = obj(u0)
    before = obj.fact_values(obj.to_x(u0))[0]
    log(f"start: cost {obj.cost(r_start):.4f} ({len(names)} parameters, {len(facts)} facts)")

    def fun(u):
        r = obj(u)
        log(f"  evaluation {obj.evaluations:3d}: cost {obj.cost(r):.4f}  ({time.perf_counter() - t0:.0f} s)")
        return r

    result = optimize.least_squares(
        fun,
        u0,
        jac=obj.jacobian,
        method="trf",
        x_scale=1.0,
        ftol=1e-4,
        xtol=1e-4,
        gtol=1e-6,
        max_nfev=max_nfev,
    )
    # The best evaluated point, rounded as it is written to sim/calibrated.toml, is the fit.
    best_u = result.x if obj.cost(obj(result.x)) <= obj.cost(r_start) else u0
    fitted = np.array([float(f"{v:.6g}") for v in obj.to_x(best_u)])
    after = obj.fact_values(fitted)[0]
    cost = obj.cost(obj.all_residuals(obj.to_u(fitted), after))
    return Fit(
        names=names,
        start=start,
        fitted=fitted,
        facts=facts,
        before=before,
        after=after,
        cost_start=obj.cost(r_start),
        cost=cost,
        seed=seed,
        replicates=replicates,
        clients=clients,
        therapists=therapists,
        evaluations=obj.evaluations,
        jacobians=obj.jacobians,
        runtime=time.perf_counter() - t0,
        message=str(result.message),
    )


def _default_targets() -> Path:
    from analysis.targets import TARGETS_FILE

    return TARGETS_FILE


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for plain text
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def calibrated_toml(fit: Fit, scenario: str = "baseline") -> str:
    """The text of sim/calibrated.toml: [values] (the fitted free parameters) and [fit]."""
    lines = [
        "# Written by `make calibrate` (python -m analysis calibrate); see docs/calibration.md.",
        "# sim/parameters.py reads [values] as the registry defaults of these free parameters.",
        "",
        "[values]",
    ]
    lines += [f"{name} = {value!r}" for name, value in fit.values.items()]
    info = {
        "date": fit.date,
        "scenario": scenario,
        "seed": fit.seed,
        "replicates": fit.replicates,
        "clients": fit.clients,
        "therapists": fit.therapists,
        "objective": float(f"{fit.cost:.6g}"),
        "objective_start": float(f"{fit.cost_start:.6g}"),
        "method": METHOD,
        "options": (
            f"margin={MARGIN}, weight={WEIGHT}, pull={PULL}, prior={PRIOR}, step={STEP}, ftol=xtol=1e-4, gtol=1e-6"
        ),
        "facts": [t.id for t in fit.facts],
        "evaluations": fit.evaluations,
        "jacobians": fit.jacobians,
        "runtime_s": round(fit.runtime, 1),
    }
    lines += ["", "[fit]"] + [f"{k} = {_toml_value(v)}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def report(fit: Fit, scenario: str = "baseline") -> str:
    """docs/calibration.md: the fit report."""
    params = parameters.REGISTRY
    n_pass = int(fit.passes().sum())
    lines = [
        "# Calibration",
        "",
        "Generated by `make calibrate` (`python -m analysis calibrate`); do not edit by hand. The fitted "
        "values are in `sim/calibrated.toml`, which the parameter registry reads as the defaults of the free "
        "parameters; `make validate` reports every fact with them (docs/validation.md).",
        "",
        "## Method",
        "",
        f"The parameters that `sim/parameters.py` marks free ({len(fit.names)}) were fitted to the "
        f"{len(fit.facts)} calibration facts of analysis/targets.toml for the `{scenario}` scenario. Every "
        f"evaluation ran the same {fit.replicates} replicates of {fit.clients} clients and {fit.therapists} "
        f"therapists (seed {fit.seed}, replicate r drawn from (seed, r): common random numbers), computed each "
        "fact per replicate and averaged over replicates. With d = (value - band centre) / band half-width, a "
        f"fact adds the residuals {WEIGHT:g} max(|d| - {MARGIN:g}, 0) (zero in the inner half of the band) and "
        f"{PULL:g} d (a small pull to the centre); each parameter adds {PRIOR:g} (u - u0), a weak pull in logit "
        "units u to its declared value u0, because more parameters than facts leave a valley of equally good "
        "fits and the pull picks the one nearest the literature's values. "
        "scipy.optimize.least_squares (trust-region reflective, "
        "ftol = xtol = 1e-4, gtol = 1e-6) minimised half the sum of squared residuals over the parameters "
        "mapped to logit((x - low) / (high - low)), so every candidate stays in the registry range. The "
        f"Jacobian was taken by forward differences (step {STEP:g} in logit units), its columns evaluated as "
        "one batch of parameter sets sharing their random draws. The objective is a deterministic function of "
        "the parameters: re-running with the same seed, replicates and clients gives the same numbers. The "
        "fit starts from the declared defaults in sim/parameters.py, whatever an earlier calibration wrote.",
        "",
        "## Result",
        "",
        f"- date: {fit.date}; runtime: {fit.runtime:.0f} s ({fit.evaluations} objective evaluations, "
        f"{fit.jacobians} Jacobians)",
        f"- objective: {fit.cost_start:.4g} at the start, {fit.cost:.4g} fitted",
        f"- optimiser: {fit.message}",
        f"- calibration facts in their band: {n_pass} of {len(fit.facts)} (before: "
        f"{sum(t.contains(v) for t, v in zip(fit.facts, fit.before, strict=True))})",
        f"- command: `python -m analysis calibrate --seed {fit.seed} --replicates {fit.replicates} "
        f"--clients {fit.clients}`",
        "",
        "## Parameters",
        "",
        "| parameter | range | start | fitted | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, x0, x1 in zip(fit.names, fit.start, fit.fitted, strict=True):
        p = params[name]
        lines.append(f"| `{name}` | {p.low:g} – {p.high:g} ({p.unit}) | {x0:g} | {x1:.4g} | {p.meaning} |")
    near = [n for n, x in zip(fit.names, fit.fitted, strict=True) if _near_bound(params[n], x)]
    if near:
        lines += ["", f"Within 5% of a bound of the registry range: {', '.join(f'`{n}`' for n in near)}."]
    if len(fit.names) > len(fit.facts):
        lines += [
            "",
            f"With {len(fit.names)} free parameters and {len(fit.facts)} facts the fit is not unique: other "
            "values also put every fact in its band. The optimiser returns the one it reaches from the declared "
            "defaults, deterministically; read the fitted values as one plausible setting, not as estimates.",
        ]
    lines += [
        "",
        "## Calibration facts",
        "",
        f"Mean over the {fit.replicates} calibration replicates (seed {fit.seed}).",
        "",
        "| fact | published | band | before | after | status |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t, b, a in zip(fit.facts, fit.before, fit.after, strict=True):
        status = "pass" if t.contains(a) else "**miss**"
        lines.append(f"| {t.id} | {t.published:g} | {t.band_low:g} – {t.band_high:g} | {b:.3f} | {a:.3f} | {status} |")
    return "\n".join(lines) + "\n"


def _near_bound(p: parameters.Param, x: float) -> bool:
    return min(x - p.low, p.high - x) < 0.05 * (p.high - p.low)


def run(
    seed: int = 1,
    replicates: int = 12,
    clients: int = 2000,
    therapists: int | None = None,
    max_nfev: int = 60,
    free: Sequence[str] | None = None,
    scenario: str = "baseline",
    toml_path: Path | None = parameters.CALIBRATED_FILE,
    report_path: Path | None = REPORT_FILE,
    log=print,
) -> Fit:
    """Fit, print the result, and write sim/calibrated.toml and docs/calibration.md.

    Args:
        seed, replicates, clients, therapists, max_nfev, free, scenario: as for :func:`calibrate`.
        toml_path: where to write the fitted values; None writes nothing.
        report_path: where to write the report; None writes nothing.
        log: progress output.
    """
    fit = calibrate(free, seed, replicates, clients, therapists, max_nfev, scenario, log=log)
    log(f"\n{fit.message}\nobjective {fit.cost_start:.4g} -> {fit.cost:.4g} in {fit.runtime:.0f} s")
    width = max(len(n) for n in fit.names)
    for name, x0, x1 in zip(fit.names, fit.start, fit.fitted, strict=True):
        log(f"  {name:{width}}  {x0:10.4g} -> {x1:10.4g}")
    for t, b, a in zip(fit.facts, fit.before, fit.after, strict=True):
        status = "pass" if t.contains(a) else "MISS"
        log(f"  {t.id:18} band [{t.band_low:g}, {t.band_high:g}]  {b:7.3f} -> {a:7.3f}  {status}")
    if toml_path is not None:
        Path(toml_path).write_text(calibrated_toml(fit, scenario))
        log(f"wrote {toml_path}")
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(report(fit, scenario))
        log(f"wrote {report_path}")
    return fit
