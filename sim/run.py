"""Running cohorts: per-client outcomes, batches of parameter sets, and one scenario end to end.

``run_batch`` runs many parameter sets in one engine call for a user: partial overrides merged onto
a scenario, validated like every other entry point, cohort metrics back as a DataFrame.
``batch_metrics`` is the same call for code that has complete, validated parameter sets (the sweep
runner's workers): arrays, no validation, no pandas. ``simulate`` is what the CLI and notebooks
call: one scenario, its tables as pandas DataFrames and its summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.engine import Cohort
from sim.outcomes import cohort_metrics

if TYPE_CHECKING:  # the tables need pandas; sweep workers, which call batch_metrics only, do not
    import pandas as pd


def package_version() -> str:
    """The installed alliancesim version."""
    try:
        return version("alliancesim")
    except PackageNotFoundError:
        return "unknown"


def client_outcomes(cohort: Cohort) -> dict[str, np.ndarray]:
    """Per-client outcomes of a finished cohort, each shape (n_sets, n_clients)."""
    s, d = cohort.state, cohort.dyads
    final = cohort.finish()
    attended = s.attended
    n_early = np.minimum(attended, 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        early = np.where(n_early > 0, s.early_alliance / n_early, np.nan)
        early_goal = np.where(n_early > 0, 4.0 + 16.0 * s.early_goal / n_early, np.nan)
        mean_alliance = np.where(attended > 0, s.alliance_sum / attended, np.nan)
    return {
        "therapist": cohort.assignment,
        "intake_phq9": d.intake,
        "final_phq9": final["final_phq9"],
        "followup_phq9": final["followup_phq9"],
        "relapse": final["relapse"],
        "relapse_week": final["relapse_week"],
        "caseness_week": final["caseness_week"],
        "sessions_attended": attended,
        "end_type": s.end_type,
        "end_session": s.end_week,
        "dropout_cause": s.dropout_cause,
        "reason_shares": s.reason_shares,
        "early_alliance": early,
        "mean_alliance": mean_alliance,
        "early_goal_agreement": early_goal,
        "ruptures": s.ruptures,
        "repairs": s.repairs,
        "perceived_empathy": d.perceived_empathy,
        "cultural_match": d.cultural_match,
        "not_on_track": s.ever_off_track,
        "early_change": d.intake - s.early_phq9,
        "sudden_gains": s.gains,
        "gain_reversals": s.reversals,
        "responsiveness": d.responsiveness,
        "therapist_retention": d.retention,
    }


def batch_metrics(
    param_sets: list[dict[str, Any]], n_clients: int, n_therapists: int, seed: int, replicate: int = 0
) -> dict[str, np.ndarray]:
    """Cohort metrics for each parameter set, each shape (n_sets,); see :data:`sim.outcomes.METRICS`.

    The engine call behind :func:`run_batch` and the sweep runner's evaluator: ``param_sets`` must be
    complete and validated (:func:`sim.parameters.resolve`), as the runner's are; nothing is checked.
    """
    cohort = Cohort(param_sets, n_clients, n_therapists, seed, replicate).run()
    return cohort_metrics(client_outcomes(cohort))


def run_batch(
    param_sets: list[dict[str, Any]] | dict[str, Any],
    n_clients: int | None = None,
    n_therapists: int | None = None,
    seed: int | None = None,
    replicate: int = 0,
    scenario=None,
) -> pd.DataFrame:
    """Cohort metrics of many parameter sets, run in one engine call on common random numbers.

    Args:
        param_sets: a list of dicts of parameter values, each merged onto the scenario's (a dict of
            every parameter works too); one dict is one set.
        n_clients, n_therapists, seed: run settings, default the scenario's; clients alone keeps the
            scenario's caseload (the therapists scale with it).
        replicate: which independent cohort of the seed.
        scenario: a :class:`sim.scenario.Scenario`, a name or a path; None for baseline.

    Returns:
        One row per set (index ``set``): the parameters that differ between the sets, then every
        metric of :data:`sim.outcomes.METRICS`.

    Raises:
        ScenarioError: an unknown parameter, a value out of its range, a bad run setting, or no set,
            with a message naming the set and what is allowed.

    Example:
        >>> from sim import run_batch
        >>> table = run_batch([{"therapist_empathy_mean": 0.3}, {"therapist_empathy_mean": 0.9}], n_clients=200)
        >>> list(table["therapist_empathy_mean"])
        [0.3, 0.9]
    """
    import pandas as pd

    from sim.scenario import Scenario, ScenarioError, load_scenario

    if isinstance(param_sets, dict):
        param_sets = [param_sets]
    if not isinstance(param_sets, list | tuple) or not param_sets or not all(isinstance(p, dict) for p in param_sets):
        raise ScenarioError("run_batch needs a list of parameter dicts (at least one), e.g. [{'rupture_rate': 0.1}].")
    if isinstance(replicate, bool) or not isinstance(replicate, int) or replicate < 0:
        raise ScenarioError(f"replicate = {replicate!r} is not allowed (run_batch): use an integer of 0 or more.")
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario or "baseline")
    settings = scenario.with_settings(clients=n_clients, therapists=n_therapists, seed=seed, where="run_batch")
    sets = [settings.with_settings(overrides=o, where=f"run_batch, set {i}").params for i, o in enumerate(param_sets)]
    metrics = batch_metrics(sets, settings.clients, settings.therapists, settings.seed, replicate)
    varied = [name for name in sets[0] if any(s[name] != sets[0][name] for s in sets[1:])]
    table = pd.DataFrame({name: [s[name] for s in sets] for name in varied} | metrics)
    table.index.name = "set"
    return table


@dataclass
class RunResult:
    """One scenario run: its tables and summary."""

    clients: pd.DataFrame
    sessions: pd.DataFrame
    events: pd.DataFrame
    summary: dict[str, Any]
    cohort: Cohort


def simulate(
    scenario=None,
    *,
    clients: int | None = None,
    therapists: int | None = None,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    posterior: int | None = None,
) -> RunResult:
    """Run one scenario and return its tables as DataFrames.

    Args:
        scenario: a :class:`sim.scenario.Scenario`, a scenario name or path, or None for baseline.
        clients, therapists, seed: override the scenario's run settings; clients alone keeps the
            scenario's caseload (the therapists scale with it).
        overrides: parameter values to change, validated against the registry.
        posterior: run this many cohorts instead of one, cohort r (replicate r of the seed) with the
            free parameters of the r-th draw from the posterior (sim/posterior.csv; the scenario's and
            ``overrides``' own settings stay). The tables stack the cohorts with a ``replicate``
            column; the summary gives each metric's mean over them and, under ``intervals``, its
            2.5-97.5% range: parameter and stochastic uncertainty together.

    Example:
        >>> from sim import simulate
        >>> result = simulate("baseline", clients=200, seed=1)
        >>> 0 <= result.summary["dropout_rate"] <= 1
        True
    """
    from sim import records
    from sim.scenario import Scenario, load_scenario

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario or "baseline")
    scenario = scenario.with_settings(clients=clients, therapists=therapists, seed=seed, overrides=overrides)
    header = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "clients": scenario.clients,
        "therapists": scenario.therapists,
        "overrides": scenario.overrides,
        "version": package_version(),
    }
    if posterior:
        return _simulate_posterior(scenario, posterior, header)
    cohort = Cohort(scenario.params, scenario.clients, scenario.therapists, scenario.seed, record=True).run()
    outcomes = client_outcomes(cohort)
    metrics = {k: float(v[0]) for k, v in cohort_metrics(outcomes).items()}
    return RunResult(
        clients=records.clients_table(cohort, outcomes),
        sessions=records.sessions_table(cohort),
        events=records.events_table(cohort),
        summary={**metrics, **header},
        cohort=cohort,
    )


def _simulate_posterior(scenario, k: int, header: dict[str, Any]) -> RunResult:
    import pandas as pd

    from sim import records
    from sim.posterior import posterior_sets

    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"posterior = {k!r}: use an integer of 2 or more (the number of posterior draws)")
    sets = posterior_sets(scenario.params, k, scenario.seed, keep=set(scenario.overrides))
    tables: dict[str, list] = {"clients": [], "sessions": [], "events": []}
    per_replicate = []
    cohort = None
    for r, ps in enumerate(sets):
        cohort = Cohort(ps, scenario.clients, scenario.therapists, scenario.seed, replicate=r, record=True).run()
        outcomes = client_outcomes(cohort)
        per_replicate.append({name: float(v[0]) for name, v in cohort_metrics(outcomes).items()})
        tables["clients"].append(records.clients_table(cohort, outcomes).assign(replicate=r))
        tables["sessions"].append(records.sessions_table(cohort).assign(replicate=r))
        tables["events"].append(records.events_table(cohort).assign(replicate=r))
    frame = pd.DataFrame(per_replicate)
    summary = {name: float(frame[name].mean()) for name in frame}
    intervals = {name: [float(frame[name].quantile(0.025)), float(frame[name].quantile(0.975))] for name in frame}
    stacked = {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}
    return RunResult(
        clients=stacked["clients"],
        sessions=stacked["sessions"],
        events=stacked["events"],
        summary={**summary, **header, "posterior": k, "intervals": intervals},
        cohort=cohort,
    )
