"""alliancesim: an agent-based simulation of psychotherapy courses.

Therapist and client agents meet over weekly sessions; the working alliance that forms between
them drives engagement, dropout and symptom change.

Example:
    >>> from sim import simulate
    >>> result = simulate("baseline", clients=100, seed=1)
    >>> sorted(result.clients["end_type"].unique())  # doctest: +SKIP
    ['completed', 'dropout', 'good_enough']
"""

from sim.lazy import lazy_exports

# Imported on first use (PEP 562): a sweep's worker process imports the engine alone, not Mesa,
# pandas or matplotlib, and starts in a fraction of the time.
_EXPORTS = {
    "REGISTRY": "sim.parameters",
    "Cohort": "sim.engine",
    "ComparisonResult": "sim.comparison",
    "ParameterError": "sim.parameters",
    "RunResult": "sim.run",
    "Scenario": "sim.scenario",
    "ScenarioError": "sim.scenario",
    "TherapyModel": "sim.model",
    "batch_metrics": "sim.run",
    "compare": "sim.comparison",
    "load_scenario": "sim.scenario",
    "run_batch": "sim.run",
    "simulate": "sim.run",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
