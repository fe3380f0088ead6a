"""Scenarios: TOML files that set parameters and run settings, validated against the registry.

A scenario file looks like::

    name = "baseline"
    description = "one line"
    teaching_note = "what it shows, what to look for, the literature behind it"

    [run]
    clients = 500
    therapists = 25
    seed = 20261122

    [therapists]
    therapist_empathy_mean = 0.6

    [clients]      # client population parameters
    [mechanisms]   # mechanism parameters
    [course]       # course parameters

Every parameter sits in the section of its registry group. Loading refuses anything else with one
message that names the file, the key and what is allowed (:class:`ScenarioError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from sim import parameters
from sim.parameters import GROUPS, REGISTRY, ParameterError
from sim.userfiles import named_file, read_toml

# The library is the `scenarios` package's data, found where Python imports it from: the checkout in an
# editable install, site-packages from a wheel.
SCENARIO_DIR = Path(str(files("scenarios")))
TEXT_KEYS = ("name", "description", "teaching_note")
RUN_LIMITS = {"clients": (1, 10_000_000), "therapists": (1, 1_000_000), "seed": (0, 2**63 - 1)}
RUN_DEFAULTS = {"clients": 500, "therapists": 25, "seed": 20261122}


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message says where and how to fix it."""


@dataclass(frozen=True)
class Scenario:
    """A validated scenario.

    Attributes:
        name, description, teaching_note: text from the file.
        overrides: the parameter values the file (and any later overrides) set.
        params: every registry parameter, defaults updated with ``overrides``.
        clients, therapists, seed: run settings.
        path: the file it came from, if any.
    """

    name: str
    description: str = ""
    teaching_note: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=parameters.defaults)
    clients: int = RUN_DEFAULTS["clients"]
    therapists: int = RUN_DEFAULTS["therapists"]
    seed: int = RUN_DEFAULTS["seed"]
    path: Path | None = None

    def with_settings(
        self,
        clients: int | None = None,
        therapists: int | None = None,
        seed: int | None = None,
        overrides: dict[str, Any] | None = None,
        where: str = "",
    ) -> Scenario:
        """A copy with run settings and parameter values changed (validated).

        Clients given without therapists keep the scenario's caseload: the therapists scale with
        the clients (at least one), so a larger cohort is a larger sample of the same clinic, not
        an overloaded one (caseloads above capacity add cancellations).
        """
        settings = {"clients": clients, "therapists": therapists, "seed": seed}
        changes = {k: _check_run(k, v, where) for k, v in settings.items() if v is not None}
        if "clients" in changes and "therapists" not in changes:
            changes["therapists"] = max(1, round(changes["clients"] * self.therapists / self.clients))
        if overrides:
            merged = {**self.overrides, **_wrap(parameters.validate, overrides, where)}
            changes |= {"overrides": merged, "params": parameters.resolve(merged)}
        return replace(self, **changes)


def _wrap(fn, values, where):
    try:
        return fn(values, where)
    except ParameterError as err:
        raise ScenarioError(str(err)) from None


def _check_run(key: str, value: Any, where: str) -> int:
    low, high = RUN_LIMITS[key]
    at = f" ({where})" if where else ""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScenarioError(f"{key} = {value!r} is not allowed{at}: use an integer in [{low}, {high:,}].")
    return value


def resolve_path(name_or_path: str | Path) -> Path:
    """The file for a scenario name (looked up in scenarios/) or path."""
    return named_file(name_or_path, SCENARIO_DIR, ScenarioError, "scenario file")


def load_scenario(name_or_path: str | Path = "baseline") -> Scenario:
    """Load and validate a scenario by name (from scenarios/) or path.

    Raises:
        ScenarioError: a missing file, a TOML syntax error, an unknown key, a wrong type or an
            out-of-range value, with a message naming the file, the key and what is allowed.

    Example:
        >>> from sim import load_scenario
        >>> load_scenario("baseline").params["planned_sessions"]
        16
    """
    path = resolve_path(name_or_path)
    return _from_dict(read_toml(path, ScenarioError, "save the scenario as UTF-8 TOML"), path)


def _from_dict(data: dict[str, Any], path: Path) -> Scenario:
    allowed = (*TEXT_KEYS, "run", *GROUPS)
    for key, value in data.items():
        if key not in allowed:
            raise ScenarioError(f"{path}: unknown key {key!r}. Allowed top-level keys: {', '.join(allowed)}.")
        if key in TEXT_KEYS and not isinstance(value, str):
            raise ScenarioError(f"{path}: {key} = {value!r} must be a string.")
        if key not in TEXT_KEYS and not isinstance(value, dict):
            raise ScenarioError(f"{path}: {key!r} must be a table, written [{key}].")
    run = data.get("run", {})
    for key in run:
        if key not in RUN_LIMITS:
            raise ScenarioError(f"{path}: unknown key {key!r} in [run]. Allowed: {', '.join(RUN_LIMITS)}.")
    settings = {k: _check_run(k, v, f"{path}, [run]") for k, v in run.items()}

    overrides: dict[str, Any] = {}
    for group in GROUPS:
        for key, value in data.get(group, {}).items():
            where = f"{path}, [{group}]"
            if key in REGISTRY and REGISTRY[key].group != group:
                raise ScenarioError(f"{path}: {key} belongs in [{REGISTRY[key].group}], not [{group}]. Move it there.")
            overrides.update(_wrap(parameters.validate, {key: value}, where))
    return Scenario(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        teaching_note=data.get("teaching_note", ""),
        overrides=overrides,
        params=parameters.resolve(overrides),
        path=path,
        **settings,
    )


def list_scenarios() -> list[Scenario]:
    """Every scenario in scenarios/, by name."""
    return [load_scenario(p) for p in sorted(SCENARIO_DIR.glob("*.toml"))]
