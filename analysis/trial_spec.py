"""Virtual trial specs: TOML files that declare a two-arm trial and the sizes to plan it at.

A spec looks like::

    name = "trial_feedback"
    description = "one line"
    outcome = "dropout"           # dropout, recovery, reliable_improvement, deterioration, change
    test = "cluster_robust"       # cluster_robust (default), gee, mixed
    alpha = 0.05                  # two-sided significance level
    trials = 200                  # simulated trials per size
    clients = [250, 500, 1000]    # clients per arm, one size per entry
    caseload = 20                 # clients per therapist: therapists per arm = ceil(clients / caseload)
    # therapists = [13, 25, 50]   # or therapists per arm, one per size (instead of caseload)
    seed = 20261122

    [arms.control]                # the first arm is the control
    scenario = "baseline"

    [arms.feedback]
    scenario = "baseline"
    overrides = { therapist_feedback_share = 1.0 }

Without ``caseload`` or ``therapists`` the control arm's scenario sets the caseload. Loading
refuses anything else with one message naming the file, the key and what is allowed
(:class:`TrialSpecError`). docs/trials.md describes every key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from sim.scenario import Scenario, ScenarioError, load_scenario
from sim.userfiles import named_file, read_toml

TRIAL_DIR = Path(str(files("experiments"))) / "trials"  # package data: found in a checkout or a wheel
OUTCOMES = {
    "dropout": "dropout (share of clients randomised)",
    "recovery": "recovery (share of clients at caseness at intake)",
    "reliable_improvement": "reliable improvement (share of clients randomised)",
    "deterioration": "reliable deterioration (share of clients randomised)",
    "change": "PHQ-9 change, intake minus final (points)",
}
TESTS = {
    "cluster_robust": "OLS with cluster-robust (CR1) standard errors by therapist, t with G - 1 df",
    "gee": "GEE with exchangeable correlation within therapist, bias-reduced sandwich covariance",
    "mixed": "linear mixed model with a random intercept per therapist (REML), Wald test",
}
KEYS = ("name", "description", "outcome", "test", "alpha", "trials", "clients", "therapists", "caseload", "seed")
ARM_KEYS = ("scenario", "overrides")
LIMITS = {"trials": (10, 1_000_000), "clients": (2, 10_000_000), "therapists": (2, 1_000_000), "caseload": (1, 10_000)}


class TrialSpecError(ValueError):
    """A trial spec that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class Arm:
    """One arm: a scenario and parameter overrides; ``params`` is every registry value."""

    name: str
    scenario: str
    overrides: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True)
class TrialSpec:
    """A validated trial spec.

    Attributes:
        name, description: text from the file.
        arms: control first, then the treatment arm.
        outcome: one of :data:`OUTCOMES`.
        test: one of :data:`TESTS`.
        alpha: two-sided significance level.
        trials: simulated trials per size.
        clients, therapists: per arm, one pair per size, in the file's order.
        seed: the seed every trial's cohorts are drawn from.
        path: the file it came from, if any.
    """

    name: str
    arms: tuple[Arm, ...]
    outcome: str
    test: str
    alpha: float
    trials: int
    clients: tuple[int, ...]
    therapists: tuple[int, ...]
    seed: int
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Everything that decides the result, as JSON-ready data (arms without their full parameter sets)."""
        data = asdict(self)
        data["arms"] = [{k: v for k, v in asdict(a).items() if k != "params"} for a in self.arms]
        data.pop("path")
        return json.loads(json.dumps(data, default=str))

    def digest(self) -> str:
        """A SHA-256 hash of :meth:`to_dict` with every arm's full parameter values."""
        data = self.to_dict() | {"params": [a.params for a in self.arms]}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def resolve_path(name_or_path: str | Path) -> Path:
    """The file for a trial spec name (looked up in experiments/trials/) or path."""
    return named_file(name_or_path, TRIAL_DIR, TrialSpecError, "trial spec")


def load_trial_spec(name_or_path: str | Path) -> TrialSpec:
    """Load and validate a trial spec by name (from experiments/trials/) or path.

    Raises:
        TrialSpecError: a missing file, bad TOML, an unknown key, outcome or test, a bad arm or size.
    """
    path = resolve_path(name_or_path)
    data = read_toml(path, TrialSpecError, "save the spec as UTF-8 TOML like experiments/trials/trial_feedback.toml")
    return from_dict(data, path)


def _toml(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | bool) else repr(value)


def _integer(value: Any, key: str, path: Path) -> int:
    low, high = LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TrialSpecError(f"{path}: {key} = {_toml(value)} is not allowed: use an integer in [{low}, {high:,}].")
    return value


def _sizes(data: dict[str, Any], key: str, path: Path) -> tuple[int, ...]:
    values = data.get(key)
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, list) or not values:
        raise TrialSpecError(f"{path}: {key} must be a non-empty list of integers (per arm), e.g. {key} = [100, 200].")
    return tuple(_integer(v, key, path) for v in values)


def _choice(data: dict[str, Any], key: str, allowed: dict[str, str], default: str, path: Path) -> str:
    value = data.get(key, default)
    if value not in allowed:
        raise TrialSpecError(f"{path}: {key} = {_toml(value)} is not known. Allowed: {', '.join(allowed)}.")
    return value


def _arms(data: dict[str, Any], path: Path) -> tuple[tuple[Arm, ...], Scenario]:
    """The two arms, and the control arm's scenario (whose caseload is the default)."""
    arms = data.get("arms")
    if not isinstance(arms, dict) or len(arms) != 2:
        raise TrialSpecError(
            f"{path}: arms must be exactly two tables, the control first: [arms.control] and [arms.treatment], "
            'each with scenario = "name" and/or overrides = {parameter = value}.'
        )
    built, scenarios = [], []
    for name, table in arms.items():
        where = f"{path}, [arms.{name}]"
        if not isinstance(table, dict):
            raise TrialSpecError(f"{where}: write the arm as a table, [arms.{name}].")
        for key in table:
            if key not in ARM_KEYS:
                raise TrialSpecError(f"{where}: unknown key {key!r}. Allowed: {', '.join(ARM_KEYS)}.")
        scenario_name = table.get("scenario", "baseline")
        overrides = table.get("overrides", {})
        if not isinstance(scenario_name, str):
            raise TrialSpecError(f"{where}: scenario = {_toml(scenario_name)} must be a scenario name or path.")
        if not isinstance(overrides, dict):
            raise TrialSpecError(f"{where}: overrides must be a table, e.g. overrides = {{ rupture_rate = 0.1 }}.")
        beside = path.parent / scenario_name
        try:
            scenario = load_scenario(beside if beside.suffix == ".toml" and beside.is_file() else scenario_name)
            scenario = scenario.with_settings(overrides=overrides, where=f"{where}, overrides")
        except ScenarioError as err:
            raise TrialSpecError(f"{where}: {err}") from None
        built.append(Arm(name, scenario_name, dict(scenario.overrides), scenario.params))
        scenarios.append(scenario)
    return tuple(built), scenarios[0]


def _therapists(data: dict[str, Any], clients: tuple[int, ...], control: Scenario, path: Path) -> tuple[int, ...]:
    if "therapists" in data and "caseload" in data:
        raise TrialSpecError(f"{path}: give therapists = [...] (per arm, one per size) or caseload = n, not both.")
    if "therapists" in data:
        therapists = _sizes(data, "therapists", path)
        if len(therapists) != len(clients):
            raise TrialSpecError(
                f"{path}: therapists has {len(therapists)} entries and clients {len(clients)}: give one number of "
                "therapists per arm for each size, or caseload = n instead."
            )
    else:
        caseload = _integer(data["caseload"], "caseload", path) if "caseload" in data else None
        ratio = caseload or control.clients / control.therapists
        therapists = tuple(max(2, math.ceil(n / ratio)) for n in clients)
    for n, m in zip(clients, therapists, strict=True):
        if m > n:
            raise TrialSpecError(f"{path}: {m} therapists for {n} clients per arm: give each therapist a client.")
    return therapists


def from_dict(data: dict[str, Any], path: Path) -> TrialSpec:
    """Validate the tables of a trial spec file."""
    for key in data:
        if key not in (*KEYS, "arms"):
            raise TrialSpecError(f"{path}: unknown key {key!r}. Allowed: {', '.join((*KEYS, 'arms'))}.")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise TrialSpecError(f"{path}: {key} = {_toml(data[key])} must be a string.")
    alpha = data.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise TrialSpecError(f"{path}: alpha = {_toml(alpha)} must be a number between 0 and 0.5, e.g. alpha = 0.05.")
    seed = data.get("seed", 20261122)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise TrialSpecError(f"{path}: seed = {_toml(seed)} must be an integer of 0 or more.")
    arms, control = _arms(data, path)
    clients = _sizes(data, "clients", path)
    if len(set(clients)) != len(clients):
        raise TrialSpecError(f"{path}: clients lists a size twice; list each size once.")
    return TrialSpec(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        arms=arms,
        outcome=_choice(data, "outcome", OUTCOMES, "dropout", path),
        test=_choice(data, "test", TESTS, "cluster_robust", path),
        alpha=float(alpha),
        trials=_integer(data.get("trials", 200), "trials", path),
        clients=clients,
        therapists=_therapists(data, clients, control, path),
        seed=seed,
        path=path,
    )
