"""Experiment specs: TOML files that declare a sweep, validated against the parameter registry.

A spec looks like::

    name = "sobol_dropout"
    description = "one line"
    method = "sobol"                  # sobol, morris, fast, rbd_fast, delta, grid, oat
    scenario = "baseline"             # the world the sweep starts from (name in scenarios/ or path)
    outputs = ["dropout_rate", "recovery_rate"]
    N = 1024                          # base sample size (not used by grid and oat)
    replicates = 1
    clients = 500                     # default: the scenario's [run] settings
    therapists = 25
    seed = 20261122
    chunk_size = 256                  # parameter sets per engine call

    [options]                         # method settings, e.g. calc_second_order, num_resamples
    [fixed]                           # parameters held at a value for every run
    [store]                           # more outputs per run: reasons, retention, curves (experiments.outputs)
    [metrics.early_dropout]           # a user metric over the columns of clients.csv
    y = 'end_type == "dropout" and end_session <= 4'
    [parameters.therapist_empathy_mean]
    low = 0.2                         # optional narrowing within the registry range
    high = 0.9
    distribution = "triang"           # unif (default), triang (peak), norm / lognorm (mean, sd)
    [parameters.scenario]             # named scenarios as a factor: each level's overrides on the base
    levels = ["baseline", "low_empathy"]

Loading refuses anything else with one message naming the file, the key and what is allowed
(:class:`SpecError`). docs/experiments.md describes every key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.chunk import SCENARIO_FACTOR
from experiments.outputs import DEFAULT_RETENTION, NAME, STATISTICS, MetricError, Store, UserMetric, check_user_metrics
from sim import parameters
from sim.outcomes import METRICS
from sim.parameters import ParameterError
from sim.posterior import PosteriorError, load_posterior
from sim.scenario import SCENARIO_DIR, Scenario, ScenarioError, load_scenario
from sim.userfiles import check_name, clean_text, named_file, read_toml

SPEC_DIR = Path(__file__).resolve().parent
METHODS = ("sobol", "morris", "fast", "rbd_fast", "delta", "grid", "oat")
SAMPLED = ("sobol", "morris", "fast", "rbd_fast", "delta")  # SALib draws the sample
DISTRIBUTIONS = ("unif", "triang", "norm", "lognorm")
OUTPUTS = tuple(m.name for m in METRICS)
TOP_KEYS = (
    "name",
    "description",
    "method",
    "scenario",
    "outputs",
    "N",
    "replicates",
    "clients",
    "therapists",
    "seed",
    "chunk_size",
    "options",
    "fixed",
    "posterior",
    "store",
    "metrics",
    "parameters",
)
STORE_KEYS = ("reasons", "retention", "curves")
METRIC_KEYS = ("y", "clients", "statistic", "label", "unit")
FACTOR_KEYS = ("low", "high", "distribution", "peak", "mean", "sd", "levels", "steps")
# Method settings and their defaults; the SALib analyser of the same name documents each.
OPTIONS: dict[str, dict[str, Any]] = {
    "sobol": {"calc_second_order": True, "num_resamples": 1000, "conf_level": 0.95},
    "morris": {"num_levels": 4, "num_resamples": 1000, "conf_level": 0.95},
    "fast": {"M": 4, "num_resamples": 1000, "conf_level": 0.95},
    "rbd_fast": {"M": 10, "num_resamples": 1000, "conf_level": 0.95},
    "delta": {"num_resamples": 100, "conf_level": 0.95},
    "grid": {},
    "oat": {},
}
ANALYSIS_OPTIONS = ("num_resamples", "conf_level")  # change the indices, not the runs
LIMITS = {"N": (2, 10_000_000), "replicates": (1, 10_000), "chunk_size": (1, 1_000_000), "posterior": (2, 10_000)}
DEFAULT_CHUNK_SIZE = 256


class SpecError(ValueError):
    """An experiment spec that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class Factor:
    """One varied parameter.

    Attributes:
        name: the parameter's registry name (any name in tests that bypass the registry).
        kind: "float", "int" or "choice", as in the registry.
        low, high: range sampled (numbers only), within the registry range.
        choices: the choices sampled (choice parameters only).
        distribution: one of :data:`DISTRIBUTIONS`, truncated to [low, high].
        peak: mode of a triangular distribution.
        mean, sd: location and spread of norm (value scale) or lognorm (log scale).
        levels: the values a grid or oat experiment sets.
    """

    name: str
    kind: str = "float"
    low: float = 0.0
    high: float = 1.0
    choices: tuple[str, ...] = ()
    distribution: str = "unif"
    peak: float | None = None
    mean: float | None = None
    sd: float | None = None
    levels: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment.

    Attributes:
        name, description: text from the file.
        method: one of :data:`METHODS`.
        factors: the varied parameters, in file order.
        outputs: the metrics analysed (every metric is stored).
        N: base sample size (None for grid and oat).
        replicates, clients, therapists, seed, chunk_size: run settings.
        scenario: the scenario's name.
        base: every parameter value before the sample sets the factors.
        options: method settings, defaults filled in.
        replicate_params: with ``posterior = K``, one dict per replicate: the free parameters of the
            r-th draw from the posterior (sim/posterior.csv) that neither the scenario, ``[fixed]`` nor
            a factor sets. Part of the digest, so outputs of another posterior are never mixed in.
        store: what each run stores besides the cohort metrics (``[store]`` and ``[metrics]``).
        scenarios: for a ``scenario`` factor, each level's parameter overrides, applied on top of
            ``base``. Part of the digest, so an edited scenario file is never mixed with older runs.
        path: the file it came from, if any.
    """

    name: str
    method: str
    factors: tuple[Factor, ...]
    outputs: tuple[str, ...]
    N: int | None
    replicates: int
    clients: int
    therapists: int
    seed: int
    chunk_size: int = DEFAULT_CHUNK_SIZE
    scenario: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    replicate_params: tuple[dict[str, Any], ...] = ()
    store: Store = field(default_factory=Store)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Everything that decides the sample and the outputs, as JSON-ready data.

        ``store`` and ``scenarios`` appear only when set, so the digest of a spec that uses neither
        is what it was before they existed, and its results directory resumes.
        """
        data = asdict(self)
        data.pop("path")
        data.pop("description")
        for key in ("store", "scenarios"):
            if not getattr(self, key):
                data.pop(key)
        return data

    @property
    def stored(self) -> tuple[str, ...]:
        """Every output each run stores: the cohort metrics, then those of ``store``."""
        return OUTPUTS + tuple(m.name for m in self.store.outputs())

    def run_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the settings that only the analysis reads; see :func:`run_part`."""
        return run_part(self.to_dict())

    def digest(self) -> str:
        """A SHA-256 hash of :meth:`run_dict`; stored outputs belong to exactly one digest."""
        text = json.dumps(self.run_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def run_part(data: dict[str, Any]) -> dict[str, Any]:
    """Spec data (as from ``to_dict``) without the name, outputs and bootstrap settings, which change no run.

    The name is left out so a copied or renamed spec file can resume the same directory; the chunk
    size stays in, as it decides which sets each chunk file holds.
    """
    data = {k: v for k, v in data.items() if k not in ("name", "outputs")}
    data["options"] = {k: v for k, v in data.get("options", {}).items() if k not in ANALYSIS_OPTIONS}
    return data


def resolve_path(name_or_path: str | Path) -> Path:
    """The file for a spec name (looked up in experiments/) or path."""
    return named_file(name_or_path, SPEC_DIR, SpecError, "experiment spec")


def load_spec(name_or_path: str | Path) -> ExperimentSpec:
    """Load and validate an experiment spec by name (from experiments/) or path.

    Raises:
        SpecError: a missing file, a TOML syntax error, an unknown key or method, parameter or
            output, a wrong type, or a range outside the registry's, with a message naming the
            file, the key and what is allowed.
    """
    path = resolve_path(name_or_path)
    return from_dict(
        read_toml(path, SpecError, "save the spec as UTF-8 TOML like experiments/sobol_dropout.toml"), path
    )


def from_dict(data: dict[str, Any], path: Path | str = "<spec>") -> ExperimentSpec:
    """Validate spec data as read from TOML; see :func:`load_spec`."""
    path = Path(path)
    for key in data:
        if key not in TOP_KEYS:
            raise SpecError(f"{path}: unknown key {key!r}. Allowed top-level keys: {', '.join(TOP_KEYS)}.")
    method = data.get("method")
    if method is None:
        raise SpecError(f'{path}: method is missing: add e.g. method = "sobol" (one of {", ".join(METHODS)}).')
    if method not in METHODS:
        raise SpecError(f"{path}: method = {_toml(method)} is not known: use one of {', '.join(METHODS)}.")
    scenario = _scenario(data, path)
    fixed = _table(data, "fixed", path)
    try:
        fixed = parameters.validate(fixed, f"{path}, [fixed]")
        scenario = scenario.with_settings(
            clients=data.get("clients"), therapists=data.get("therapists"), seed=data.get("seed"), where=str(path)
        )
    except (ParameterError, ScenarioError) as err:
        raise SpecError(str(err)) from None
    factors, scenarios = _factors(data, method, path, scenario)
    both = sorted(set(fixed) & {f.name for f in factors})
    if both:
        raise SpecError(f"{path}: {', '.join(both)} is both in [fixed] and [parameters]; keep it in one of them.")
    base = {**scenario.params, **fixed}
    scenarios = _check_levels(scenarios, base, set(fixed), {f.name for f in factors}, path)
    store = _store(data, path, base)
    options = _options(data, method, path)
    N = _sample_size(data, method, factors, options, path)
    replicates = _integer(data, "replicates", 1, path)
    replicate_params: tuple[dict[str, Any], ...] = ()
    if "posterior" in data:
        draws = _integer(data, "posterior", 2, path)
        if "replicates" in data and replicates != draws:
            raise SpecError(
                f"{path}: replicates = {replicates} and posterior = {draws}: each replicate draws its parameters "
                "from the posterior, so give posterior alone (it sets the replicates) or the same number in both."
            )
        replicates = draws
        kept = set(scenario.overrides) | set(fixed) | {f.name for f in factors}
        try:
            sets = load_posterior().draws(draws, scenario.seed)
        except PosteriorError as err:
            raise SpecError(f"{path}: posterior = {draws}: {err}") from None
        replicate_params = tuple({k: v for k, v in d.items() if k not in kept} for d in sets)
    return ExperimentSpec(
        name=check_name(data["name"], str(path), SpecError) if "name" in data else path.stem,
        description=_text(data, "description", path),
        method=method,
        factors=factors,
        outputs=_outputs(data, path, OUTPUTS + tuple(m.name for m in store.outputs())),
        N=N,
        replicates=replicates,
        clients=scenario.clients,
        therapists=scenario.therapists,
        seed=scenario.seed,
        chunk_size=_integer(data, "chunk_size", DEFAULT_CHUNK_SIZE, path),
        scenario=scenario.name,
        base=base,
        options=options,
        replicate_params=replicate_params,
        store=store,
        scenarios=scenarios,
        path=path,
    )


def with_n(spec: ExperimentSpec, N: int) -> ExperimentSpec:
    """``spec`` with base sample size ``N``, for ``--extend N`` (Sobol only: its samples nest).

    Raises:
        SpecError: another method, or an N that is not a power of 2.
    """
    where = spec.path or "<spec>"
    if spec.method != "sobol":
        raise SpecError(
            f"--extend {N}: {where} uses method {spec.method}; only sobol samples nest (the first sets of a larger "
            "N are the smaller N's), so only a sobol run can be extended. Run the larger N into a new --out."
        )
    if N < 2 or N & (N - 1):
        raise SpecError(
            f"--extend {N}: N must be a power of 2 for sobol (e.g. {2 ** max(1, round(math.log2(max(N, 2))))})."
        )
    return replace(spec, N=N)


def _toml(value: Any, limit: int = 80) -> str:
    """``value`` as a TOML file writes it (true, "text", [1, 2]), so a message quotes the file's own syntax.

    Cut to ``limit`` characters, so a huge value is not echoed whole.
    """
    return clean_text(_toml_text(value, 0), limit)


def _toml_text(value: Any, depth: int) -> str:
    if depth > 8:
        return "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value[:200])
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_text(v, depth + 1) for v in value[:20]) + (", ...]" if len(value) > 20 else "]")
    if isinstance(value, dict):
        items = list(value.items())[:20]
        return "{" + ", ".join(f"{k} = {_toml_text(v, depth + 1)}" for k, v in items) + "}"
    return str(value)


def _kind(default: Any) -> str:
    """What a value of ``default``'s type is called in TOML."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    return "a number" if isinstance(default, float) else "a string"


def _text(data, key, path) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise SpecError(f"{path}: {key} = {_toml(value)} must be a string.")
    return value


def _table(data, key, path) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{path}: {key} must be a table, written [{key}].")
    return value


def _integer(data, key, default, path) -> int:
    value = data.get(key, default)
    low, high = LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{path}: {key} = {_toml(value)} is not allowed: use an integer in [{low}, {high:,}].")
    return value


def _scenario(data, path) -> Scenario:
    name = data.get("scenario", "baseline")
    if not isinstance(name, str):
        raise SpecError(f"{path}: scenario = {_toml(name)} must be a scenario name or a path, as a string.")
    beside = path.parent / name
    try:
        return load_scenario(beside if beside.suffix == ".toml" and beside.is_file() else name)
    except ScenarioError as err:
        raise SpecError(f"{path}: scenario = {_toml(name)}: {err}") from None


def _outputs(data, path, stored: tuple[str, ...]) -> tuple[str, ...]:
    outputs = data.get("outputs", list(stored))
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, list) or not outputs:
        raise SpecError(f'{path}: outputs must be a non-empty list of metric names, e.g. outputs = ["dropout_rate"].')
    for name in outputs:
        if name not in stored:
            more = "" if len(stored) > len(OUTPUTS) else " ([store] and [metrics] add more)"
            raise SpecError(f"{path}: unknown output {_toml(name)} in outputs. Allowed: {', '.join(stored)}{more}.")
    return tuple(dict.fromkeys(outputs))


def _store(data, path, base: dict[str, Any]) -> Store:
    """``[store]`` and ``[metrics]``; user metrics are tried on a small cohort of ``base``."""
    table = _table(data, "store", path)
    for key in table:
        if key not in STORE_KEYS:
            raise SpecError(f"{path}: unknown key {key!r} in [store]. Allowed: {', '.join(STORE_KEYS)}.")
    for key in ("reasons", "curves"):
        if not isinstance(table.get(key, False), bool):
            raise SpecError(f"{path}: [store] {key} = {_toml(table[key])} must be true or false.")
    retention = table.get("retention", False)
    if retention is True:
        retention = list(DEFAULT_RETENTION)
    elif retention is False:
        retention = []
    if not isinstance(retention, list) or not all(
        isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 1000 for k in retention
    ):
        raise SpecError(
            f"{path}: [store] retention = {_toml(retention)} must be true (sessions 4, 8 and 12) or a list of "
            "session numbers from 1 to 1000, e.g. retention = [4, 8, 12]."
        )
    store = Store(
        reasons=table.get("reasons", False),
        retention=tuple(sorted(set(retention))),
        curves=table.get("curves", False),
        metrics=_user_metrics(data, path),
    )
    try:
        check_user_metrics(store, base)
    except MetricError as err:
        raise SpecError(f"{path}, [metrics.{err.name}] {err.key}: {err}") from None
    return store


def _user_metrics(data, path) -> tuple[UserMetric, ...]:
    metrics = []
    for name, settings in _table(data, "metrics", path).items():
        where = f"{path}, [metrics.{name}]"
        if not NAME.fullmatch(name):
            raise SpecError(
                f"{path}: [metrics] name {clean_text(repr(name), 40)} is not allowed: use letters, digits and _ "
                "(not first), at most 64 characters, e.g. early_dropout."
            )
        if name in OUTPUTS or name.startswith(("reason_", "category_", "retention_")) or name in ("set", "replicate"):
            raise SpecError(f"{where}: {name} is the name of a stored output; give the metric another name.")
        if isinstance(settings, str):
            settings = {"y": settings}
        if not isinstance(settings, dict):
            raise SpecError(
                f"{where}: give the metric as an expression, {name} = 'end_type == \"dropout\"', or a table with y."
            )
        for key, value in settings.items():
            if key not in METRIC_KEYS:
                raise SpecError(f"{where}: unknown key {key!r}. Allowed: {', '.join(METRIC_KEYS)}.")
            if not isinstance(value, str):
                raise SpecError(f"{where}: {key} = {_toml(value)} must be a string.")
        if "y" not in settings:
            raise SpecError(
                f"{where}: y is missing: the expression over the columns of clients.csv, e.g. y = 'ruptures'."
            )
        statistic = settings.get("statistic", "mean")
        if statistic not in STATISTICS:
            raise SpecError(
                f"{where}: statistic = {_toml(statistic)} is not known: use one of {', '.join(STATISTICS)}."
            )
        for key in ("label", "unit"):
            if key in settings:
                check_name(settings[key], f"{where}, {key}", SpecError)
        metrics.append(
            UserMetric(
                name,
                settings["y"],
                settings.get("clients", ""),
                statistic,
                settings.get("label", ""),
                settings.get("unit", ""),
            )
        )
    return tuple(metrics)


def _options(data, method, path) -> dict[str, Any]:
    given = _table(data, "options", path)
    allowed = OPTIONS[method]
    for key, value in given.items():
        if key not in allowed:
            names = ", ".join(allowed) or "none"
            raise SpecError(f"{path}: unknown key {key!r} in [options] for method {_toml(method)}. Allowed: {names}.")
        default = allowed[key]
        if type(value) is not type(default) and not (isinstance(default, float) and type(value) is int):
            raise SpecError(
                f"{path}: [options] {key} = {_toml(value)} must be {_kind(default)}, e.g. {key} = {_toml(default)}."
            )
    options = {**allowed, **given}
    if "conf_level" in options and not 0 < options["conf_level"] < 1:
        raise SpecError(f"{path}: [options] conf_level = {options['conf_level']} must lie strictly between 0 and 1.")
    for key in ("num_resamples", "num_levels", "M"):
        if key in options and options[key] < (2 if key == "num_levels" else 1):
            raise SpecError(f"{path}: [options] {key} = {options[key]} is too small.")
    if method == "morris" and options["num_levels"] % 2:
        raise SpecError(f"{path}: [options] num_levels = {options['num_levels']} must be even (e.g. 4).")
    return options


def _sample_size(data, method, factors, options, path) -> int | None:
    if method not in SAMPLED:
        if "N" in data:
            raise SpecError(
                f"{path}: N is not used by method {_toml(method)}: the levels of each parameter set the runs."
            )
        return None
    if "N" not in data:
        raise SpecError(f"{path}: N (the base sample size) is missing; method {_toml(method)} needs it, e.g. N = 1024.")
    N = _integer(data, "N", None, path)
    if method == "sobol":
        if N & (N - 1):
            raise SpecError(f"{path}: N = {N} must be a power of 2 for sobol (e.g. {2 ** round(math.log2(N))}).")
        if len(factors) < 2:
            raise SpecError(f"{path}: sobol needs at least two [parameters.NAME] tables.")
    if method == "fast" and N <= 4 * options["M"] ** 2:
        raise SpecError(f"{path}: N = {N} is too small for fast: it must exceed 4 M^2 = {4 * options['M'] ** 2}.")
    if method == "rbd_fast" and N <= 2 * options["M"]:
        raise SpecError(f"{path}: N = {N} is too small for rbd_fast: it must exceed 2 M = {2 * options['M']}.")
    return N


def _factors(data, method, path, base: Scenario) -> tuple[tuple[Factor, ...], dict[str, dict[str, Any]]]:
    """The factors, and for a scenario factor each level's overrides (else an empty dict)."""
    table = _table(data, "parameters", path)
    if not table:
        raise SpecError(f"{path}: no parameters to vary: add a table [parameters.NAME] per parameter.")
    factors, scenarios = [], {}
    for name, settings in table.items():
        where = f"{path}, [parameters.{name}]"
        if name == SCENARIO_FACTOR:
            factor, scenarios = _scenario_factor(settings, method, where, path, base)
            factors.append(factor)
            continue
        try:
            param = parameters.lookup(name, where)
        except ParameterError as err:
            raise SpecError(str(err)) from None
        if not isinstance(settings, dict):
            raise SpecError(f"{where}: write the parameter as a table, [parameters.{name}], even if empty.")
        factors.append(_factor(param, settings, method, where))
    return tuple(factors), scenarios


def _scenario_factor(settings, method, where, path, base: Scenario) -> tuple[Factor, dict[str, dict[str, Any]]]:
    """A choice factor over named scenarios; each level's parameters are its overrides on top of the spec's base."""
    if not isinstance(settings, dict):
        raise SpecError(f"{where}: write the factor as a table, [parameters.{SCENARIO_FACTOR}], with levels = [...].")
    for key in settings:
        if key != "levels":
            raise SpecError(f'{where}: the scenario factor takes only levels = ["baseline", "low_empathy", ...].')
    known = sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    levels = settings.get("levels", known)
    if not isinstance(levels, list) or not levels or not all(isinstance(v, str) for v in levels):
        raise SpecError(f"{where}: levels must be a list of scenario names or paths, e.g. levels = {_toml(known[:3])}.")
    if len(set(levels)) != len(levels):
        raise SpecError(f"{where}: levels repeat a scenario; list each scenario once.")
    if method not in ("grid", "oat") and len(levels) < 2:
        raise SpecError(f"{where}: list at least two scenarios to vary, or set scenario = {_toml(levels[0])} instead.")
    scenarios = {}
    for level in levels:
        beside = path.parent / level
        try:
            scenario = load_scenario(beside if beside.suffix == ".toml" and beside.is_file() else level)
        except ScenarioError as err:
            raise SpecError(f"{where}, levels: {_toml(level)}: {err}") from None
        scenarios[level] = dict(scenario.overrides)
    if method == "oat" and base.name not in scenarios:  # the base set runs the spec's own scenario
        scenarios[base.name] = {}
    gridded = method in ("grid", "oat")
    factor = Factor(SCENARIO_FACTOR, "choice", choices=tuple(levels), levels=tuple(levels) if gridded else ())
    return factor, scenarios


def _check_levels(
    scenarios: dict[str, dict[str, Any]], base: dict[str, Any], fixed: set[str], varied: set[str], path
) -> dict[str, dict[str, Any]]:
    """Each level's overrides that change the base; refuse one that changes what [fixed] or a factor sets.

    A level that sets a [fixed] or varied parameter to another value would be overwritten in every
    run (or overwrite [fixed]): which should win is unclear, so the spec must say it once.
    """
    changes = {}
    for level, overrides in scenarios.items():
        changes[level] = {k: v for k, v in overrides.items() if base.get(k) != v}
        clash = sorted(set(changes[level]) & (fixed | varied))
        if clash:
            where = "[fixed]" if clash[0] in fixed else f"[parameters.{clash[0]}]"
            raise SpecError(
                f"{path}, [parameters.{SCENARIO_FACTOR}]: the scenario {_toml(level)} sets {', '.join(clash)}, which "
                f"{where} sets too; remove one of them (a scenario level's values would otherwise be overwritten)."
            )
    return changes


def _factor(param, settings: dict[str, Any], method: str, where: str) -> Factor:
    for key in settings:
        if key not in FACTOR_KEYS:
            raise SpecError(f"{where}: unknown key {key!r}. Allowed: {', '.join(FACTOR_KEYS)}.")
    gridded = method in ("grid", "oat")
    if gridded:
        for key in ("distribution", "peak", "mean", "sd"):
            if key in settings:
                raise SpecError(f"{where}: {key} is not used by {method}: set levels = [...] or steps = n.")
    elif "steps" in settings:
        raise SpecError(f"{where}: steps is only for grid and oat; {method} draws values from low..high.")
    if param.kind == "choice":
        return _choice_factor(param, settings, gridded, where)
    low = _bound(param, settings, "low", param.low, where)
    high = _bound(param, settings, "high", param.high, where)
    if low >= high:
        raise SpecError(f"{where}: low = {low:g} must be below high = {high:g}.")
    factor = Factor(param.name, param.kind, low, high)
    if gridded:
        return Factor(param.name, param.kind, low, high, levels=_levels(param, settings, low, high, where))
    if "levels" in settings:
        raise SpecError(f"{where}: levels is only for grid and oat; {method} draws values from low..high.")
    dist = settings.get("distribution", "unif")
    if dist not in DISTRIBUTIONS:
        raise SpecError(f"{where}: distribution = {_toml(dist)} is not known: use one of {', '.join(DISTRIBUTIONS)}.")
    if dist != "unif" and (param.kind != "float" or method == "morris"):
        why = "integer parameters" if param.kind != "float" else "morris (its grid of levels is uniform)"
        raise SpecError(f"{where}: distribution = {_toml(dist)} is not available for {why}; remove it (unif is used).")
    needed = {"unif": (), "triang": ("peak",), "norm": ("mean", "sd"), "lognorm": ("mean", "sd")}[dist]
    for key in ("peak", "mean", "sd"):
        if key in settings and key not in needed:
            takes = " and ".join(needed) or "no settings"
            raise SpecError(f"{where}: {key} is not used by distribution {_toml(dist)}; it takes {takes}.")
    values = {}
    for key in needed:
        value = settings.get(key, (low + high) / 2 if key == "peak" else None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"{where}: distribution {_toml(dist)} needs {key} = a number.")
        if not math.isfinite(value):  # NaN passes every range comparison, and would reach the engine
            raise SpecError(f"{where}: {key} = {_toml(value)} must be a finite number.")
        values[key] = float(value)
    if "peak" in values and not low <= values["peak"] <= high:
        raise SpecError(f"{where}: peak = {values['peak']:g} must lie within [{low:g}, {high:g}].")
    if "sd" in values and values["sd"] <= 0:
        raise SpecError(f"{where}: sd = {values['sd']:g} must be above 0.")
    factor = Factor(factor.name, factor.kind, low, high, distribution=dist, **values)
    from experiments.sampling import mass_in_range  # sampling imports this module

    if not mass_in_range(factor) >= 1e-3:  # NaN (an overflowing lognorm) counts as no mass
        raise SpecError(
            f"{where}: distribution {_toml(dist)} puts almost none of its mass inside [{low:g}, {high:g}], "
            "where it is truncated; move mean into the range or widen sd (lognorm's mean and sd are on the log scale)."
        )
    return factor


def _bound(param, settings, key, default, where) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"{where}: {key} = {_toml(value)} must be a finite number.")
    if not param.low <= value <= param.high:
        raise SpecError(
            f"{where}: {key} = {value:g} is outside the registry range of {param.name}, "
            f"[{param.low:g}, {param.high:g}] ({param.unit}); narrow the range within it."
        )
    if param.kind == "int" and value != int(value):
        raise SpecError(f"{where}: {key} = {value:g} must be an integer for {param.name}.")
    return int(value) if param.kind == "int" else float(value)


def _levels(param, settings, low, high, where) -> tuple[Any, ...]:
    if ("levels" in settings) == ("steps" in settings):
        raise SpecError(f"{where}: give either levels = [v1, v2, ...] or steps = n (n values from low to high).")
    if "steps" in settings:
        steps = settings["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 10_000:
            raise SpecError(f"{where}: steps = {_toml(steps)} must be an integer from 2 to 10,000.")
        values = [round(low + (high - low) * i / (steps - 1), 12) for i in range(steps)]
        if param.kind == "int":
            values = sorted({round(v) for v in values})
        return tuple(values)
    levels = settings["levels"]
    if not isinstance(levels, list) or not levels:
        raise SpecError(f"{where}: levels must be a non-empty list, e.g. levels = [0.2, 0.5, 0.8].")
    try:
        checked = [param.validate(v, f"{where}, levels") for v in levels]
    except ParameterError as err:
        raise SpecError(str(err)) from None
    if len(set(checked)) != len(checked):
        raise SpecError(f"{where}: levels repeat a value; list each level once.")
    return tuple(checked)


def _choice_factor(param, settings, gridded, where) -> Factor:
    for key in settings:
        if key != "levels":
            raise SpecError(f"{where}: {param.name} is a choice; it takes only levels = {_toml(param.choices, 200)}.")
    levels = settings.get("levels", list(param.choices))
    if not isinstance(levels, list) or not levels:
        raise SpecError(f"{where}: levels must be a non-empty list, e.g. levels = {_toml(param.choices, 200)}.")
    try:
        checked = tuple(param.validate(v, f"{where}, levels") for v in levels)
    except ParameterError as err:
        raise SpecError(str(err)) from None
    if len(set(checked)) != len(checked):  # a repeated choice would be drawn (or run) twice as often
        raise SpecError(f"{where}: levels repeat a choice; list each choice once.")
    if not gridded and len(checked) < 2:
        raise SpecError(f"{where}: list at least two choices to vary, or move {param.name} to [fixed].")
    return Factor(param.name, "choice", choices=checked, levels=checked if gridded else ())
