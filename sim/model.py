"""The Mesa model: one cohort run, stepped a week at a time by the vectorised engine."""

from __future__ import annotations

import mesa
import networkx as nx
import numpy as np

from sim.agents import Client, Therapist
from sim.engine import Cohort
from sim.mesa_compat import let_go_of_finished
from sim.outcomes import cohort_metrics
from sim.run import client_outcomes
from sim.scenario import Scenario, ScenarioError, load_scenario

MODEL_REPORTERS = {
    "active_clients": "active_clients",
    "mean_alliance": "mean_alliance",
    "cumulative_dropout": "cumulative_dropout",
    "mean_phq9": "mean_phq9",
}
# One table per agent type (Mesa's agenttype_reporters), so client and therapist rows never mix; each row
# carries the agent's own id (client_id, therapist_id) beside Mesa's AgentID (its unique_id).
CLIENT_REPORTERS = {
    "client_id": "client_id",
    "therapist_id": "therapist_id",
    "alliance": "alliance",
    "phq9": "phq9",
    "status": "status",
    "sessions_attended": "sessions_attended",
    "ruptures": "ruptures",
}
THERAPIST_REPORTERS = {"therapist_id": "therapist_id", "caseload": "caseload", "alliance": "alliance", "phq9": "phq9"}


class TherapyModel(mesa.Model):
    """A cohort of therapy courses as a Mesa model; ``step()`` is one weekly session slot.

    Args:
        scenario: a :class:`sim.scenario.Scenario`, a scenario name or a path (default baseline).
        n_clients, n_therapists: override the scenario's run settings; n_clients alone keeps the
            scenario's caseload (the therapists scale with it).
        seed: the cohort's seed. None (the default) draws a fresh one, as ``mesa.Model`` does, so
            ``mesa.batch_run`` iterations are different cohorts; ``model.seed`` records it, and
            ``seed=model.seed`` repeats the run. Pass ``seed=scenario.seed`` for the scenario's own.
        replicate: which independent cohort of the seed (0, 1, ...). Under ``mesa.batch_run`` with
            a fixed seed, ``iterations`` repeat one run exactly; sweep ``replicate`` (or ``seed``)
            for independent, reproducible cohorts.
        **params: registry parameters to override (validated), e.g. ``therapist_empathy_mean=0.3``.

    Attributes:
        cohort: the engine's :class:`sim.engine.Cohort` (one parameter set).
        seed: the seed the cohort was drawn from.
        client_agents, therapist_agents: the agents, indexed by ``client_id`` and ``therapist_id``
            (also :meth:`client` and :meth:`therapist`). Mesa numbers every agent with its own
            ``unique_id`` (therapists first, from 1), which is not the client's id.
        caseload: bipartite networkx graph of therapists ("t0", ...) and clients ("c0", ...).
        datacollector: model reporters (active clients, mean alliance, cumulative dropout, mean
            PHQ-9) and, per agent type, :data:`CLIENT_REPORTERS` and :data:`THERAPIST_REPORTERS`:
            ``datacollector.get_agenttype_vars_dataframe(Client)`` is one row per client and step.

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
        if seed is None:  # as mesa.Model: a fresh seed from the operating system's entropy
            seed = np.random.SeedSequence().entropy % 2**63
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
        self.datacollector = mesa.DataCollector(
            model_reporters=MODEL_REPORTERS,
            agenttype_reporters={Client: CLIENT_REPORTERS, Therapist: THERAPIST_REPORTERS},
        )
        self.datacollector.collect(self)

    @property
    def seed(self) -> int:
        """The seed the cohort was drawn from (fresh when the model was made with ``seed=None``)."""
        return self.scenario.seed

    def client(self, client_id: int) -> Client:
        """The agent of client ``client_id`` (row ``client_id`` of the engine's arrays and of the clients table)."""
        return _by_id(self.client_agents, client_id, "client")

    def therapist(self, therapist_id: int) -> Therapist:
        """The agent of therapist ``therapist_id`` (``therapist_id`` in the clients table)."""
        return _by_id(self.therapist_agents, therapist_id, "therapist")

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
            let_go_of_finished(self)  # every agent of this model exists by now
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


def _by_id(agents: list, agent_id: int, kind: str):
    """``agents[agent_id]``, refusing ids out of range (a negative one would count from the end)."""
    if isinstance(agent_id, bool) or not isinstance(agent_id, int | np.integer) or not 0 <= agent_id < len(agents):
        raise IndexError(f"no {kind} {agent_id!r}: {kind} ids run from 0 to {len(agents) - 1}")
    return agents[int(agent_id)]
