"""alliancesim: an agent-based simulation of psychotherapy courses.

Therapist and client agents meet over weekly sessions; the working alliance that forms between
them drives engagement, dropout and symptom change.

Example:
    >>> from sim import simulate
    >>> result = simulate("baseline", clients=100, seed=1)
    >>> sorted(result.clients["end_type"].unique())  # doctest: +SKIP
    ['completed', 'dropout', 'good_enough']
"""

from sim.comparison import ComparisonResult, compare
from sim.engine import Cohort
from sim.model import TherapyModel
from sim.parameters import REGISTRY, ParameterError
from sim.run import RunResult, run_batch, simulate
from sim.scenario import Scenario, ScenarioError, load_scenario

__all__ = [
    "REGISTRY",
    "Cohort",
    "ComparisonResult",
    "ParameterError",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "TherapyModel",
    "compare",
    "load_scenario",
    "run_batch",
    "simulate",
]
