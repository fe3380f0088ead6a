"""The Mesa model: one cohort run, stepped a week at a time by the vectorised engine."""

from __future__ import annotations

import mesa
import networkx as nx
import numpy as np

from sim.agents import Client, Therapist
from sim.engine import Cohort
from sim.outcomes import cohort_metrics
from sim.run import client_outcomes
from sim.scenario import Scenario, ScenarioError, load_scenario

MODEL_REPORTERS = {
    "active_clients": "active_clients",
    "mean_alliance": "mean_alliance",
    "cumulative_dropout": "cumulative_dropout",
    "mean_phq9": "mean_phq9",
}
AGENT_REPORTERS = {"alliance": "alliance", "phq9": "phq9", "status": "status"}


class TherapyModel(mesa.Model):
    """A cohort of therapy courses as a Mesa model; ``step()`` is one weekly session slot.

    Args:
        scenario: a :class:`sim.scenario.Scenario`, a scenario name or a path (default baseline).
        n_clients, n_therapists, seed: override the scenario's run settings; n_clients alone keeps
            the scenario's caseload (the therapists scale with it).
        replicate: which independent cohort of the seed (0, 1, ...). Under ``mesa.batch_run``,
            ``iterations`` repeat one run exactly (same seed, same cohort); sweep ``replicate``
            instead for independent, reproducible cohorts.
        **params: registry parameters to override (validated), e.g. ``therapist_empathy_mean=0.3``.

    Attributes:
        cohort: the engine's :class:`sim.engine.Cohort` (one parameter set).
        caseload: bipartite networkx graph of therapists ("t0", ...) and clients ("c0", ...).
        datacollector: model reporters (active clients, mean alliance, cumulative dropout, mean
            PHQ-9) and agent reporters (alliance, PHQ-9, status) by attribute name.

    Example:
        >>> from sim import TherapyModel
        >>> model = TherapyModel("baseline", n_clients=50, n_therapists=5, seed=1)
        >>> model.run_model()
        >>> model.datacollector.get_model_vars_dataframe().shape[1]
        4
    """

    def __init__(
        self,
        scenario: Scenario | str = "baseline",
        n_clients: int | None = None,
        n_therapists: int | None = None,
        seed: int | None = None,
        replicate: int = 0,
        **params,
    ):
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        scenario = scenario.with_settings(
            clients=n_clients, therapists=n_therapists, seed=seed, overrides=params, where="TherapyModel"
        )
        super().__init__(seed=scenario.seed)
        self.scenario = scenario
        if isinstance(replicate, bool) or not isinstance(replicate, int) or replicate < 0:
            raise ScenarioError(
                f"replicate = {replicate!r} is not allowed (TherapyModel): use an integer of 0 or more."
            )
        self.replicate = replicate
        self.cohort = Cohort(
            scenario.params, scenario.clients, scenario.therapists, scenario.seed, replicate=replicate, record=True
        )
        self.therapist_agents = [Therapist(self, j) for j in range(scenario.therapists)]
        self.client_agents = [Client(self, i) for i in range(scenario.clients)]
        self.caseload = self._caseload_graph()
        self.datacollector = mesa.DataCollector(model_reporters=MODEL_REPORTERS, agent_reporters=AGENT_REPORTERS)
        self.datacollector.collect(self)

    def _caseload_graph(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from((f"t{t.therapist_id}" for t in self.therapist_agents), bipartite=0)
        g.add_nodes_from((f"c{c.client_id}" for c in self.client_agents), bipartite=1)
        g.add_edges_from((f"t{t}", f"c{c}") for c, t in enumerate(self.cohort.assignment[0]))
        return g

    def step(self) -> None:
        """Advance every dyad by one weekly session slot and collect data.

        The step after the last course has ended is the follow-up assessment; it stops the model.
        (That extra step also keeps ``mesa.batch_run``, which reports the second-to-last collection
        when the model collects at creation, reporting the state at the end of the last session.)
        """
        if self.cohort.done:
            self.cohort.finish()
            self.running = False
        else:
            self.cohort.step()
        self.datacollector.collect(self)

    def run_model(self) -> None:
        """Step until every course has ended."""
        while self.running:
            self.step()

    @property
    def active_clients(self) -> int:
        """Clients still in therapy."""
        return int(self.cohort.state.active[0].sum())

    @property
    def mean_alliance(self) -> float:
        """Mean WAI-SR (12-60) of clients who have attended at least one session."""
        s = self.cohort.state
        seen = s.attended[0] > 0
        if not seen.any():
            return float("nan")
        return float(np.mean(12.0 + 16.0 * (s.bond[0] + s.goal[0] + s.task[0])[seen]))

    @property
    def cumulative_dropout(self) -> float:
        """Share of the cohort that has dropped out so far."""
        return float((self.cohort.state.end_type[0] == 3).mean())

    @property
    def mean_phq9(self) -> float:
        """Mean of each client's last administered PHQ-9."""
        return float(self.cohort.state.phq9[0].mean())

    def summary(self) -> dict[str, float]:
        """Cohort metrics once every course has ended (see :data:`sim.outcomes.METRICS`)."""
        self.run_model()
        return {k: float(v[0]) for k, v in cohort_metrics(client_outcomes(self.cohort)).items()}
