"""The Mesa model: stepping, agents as views onto the arrays, DataCollector, caseload graph, batch_run."""

import mesa
import networkx as nx
import numpy as np
import pytest

from sim import TherapyModel
from sim.agents import AgentRemovalError, Client, Therapist
from sim.dynamics import END_TYPES
from sim.engine import Cohort
from sim.model import CLIENT_REPORTERS, MODEL_REPORTERS, THERAPIST_REPORTERS
from sim.run import client_outcomes
from sim.scenario import ScenarioError

N, K = 60, 6


@pytest.fixture
def model():
    return TherapyModel("baseline", n_clients=N, n_therapists=K, seed=4)


def test_agents(model):
    assert len(model.client_agents) == N and len(model.therapist_agents) == K
    assert len(model.agents) == N + K
    assert all(isinstance(a, mesa.Agent) for a in model.agents)


def test_step_advances_one_week(model):
    assert model.cohort.week == 0
    model.step()
    assert model.cohort.week == 1
    attended = sum(c.sessions_attended for c in model.client_agents)
    assert 0 < attended <= N
    model.step()
    assert model.cohort.week == 2


def test_client_agents_read_and_write_the_arrays(model):
    model.step()
    s = model.cohort.state
    client = model.client_agents[7]
    assert client.bond == s.bond[0, 7]
    assert client.phq9 == s.phq9[0, 7]
    assert client.alliance == pytest.approx(12 + 16 * (s.bond[0, 7] + s.goal[0, 7] + s.task[0, 7]))
    assert client.status == END_TYPES[s.end_type[0, 7]], "status reads the client's end type"
    assert client.therapist.therapist_id == model.cohort.assignment[0, 7]
    s.bond[0, 7] = 0.123
    assert client.bond == 0.123, "an agent reads its slot of the arrays, it holds no copy"
    client.hope = 0.9
    assert s.hope[0, 7] == 0.9, "writing an agent attribute writes the array"
    with pytest.raises(ValueError):
        client.bond = 1.5


def test_therapist_agents_read_the_arrays(model):
    t = model.therapist_agents[2]
    assert t.empathy == model.cohort.therapists.empathy[0, 2]
    assert t.repair_skill == model.cohort.therapists.repair_skill[0, 2]
    assert t.caseload == int((model.cohort.assignment[0] == 2).sum())


def test_caseload_is_a_bipartite_graph_with_one_edge_per_client(model):
    g = model.caseload
    assert isinstance(g, nx.Graph)
    therapists = {n for n, d in g.nodes(data=True) if d["bipartite"] == 0}
    clients = {n for n, d in g.nodes(data=True) if d["bipartite"] == 1}
    assert len(therapists) == K and len(clients) == N
    assert nx.is_bipartite(g)
    assert g.number_of_edges() == N
    assert all(g.degree(c) == 1 for c in clients)
    for i, t in enumerate(model.cohort.assignment[0]):
        assert g.has_edge(f"t{t}", f"c{i}")


def test_datacollector(model):
    model.run_model()
    assert not model.running
    assert all(c.status != "active" for c in model.client_agents)
    mv = model.datacollector.get_model_vars_dataframe()
    assert set(MODEL_REPORTERS) <= set(mv.columns)
    assert len(mv) == model.steps + 1, "one row at the start and one per step"
    assert model.steps >= model.cohort.week, "a step per session week (and the follow-up)"
    assert mv["active_clients"].iloc[0] == N and mv["active_clients"].iloc[-1] == 0
    assert mv["cumulative_dropout"].is_monotonic_increasing
    assert mv["mean_alliance"].dropna().between(12, 60).all()
    assert mv["mean_phq9"].between(0, 27).all()
    clients = model.datacollector.get_agenttype_vars_dataframe(Client)
    therapists = model.datacollector.get_agenttype_vars_dataframe(Therapist)
    assert list(clients.columns) == list(CLIENT_REPORTERS) and list(therapists.columns) == list(THERAPIST_REPORTERS)
    last = clients.xs(model.steps, level="Step")
    assert len(last) == N and sorted(last["client_id"]) == list(range(N)), "client rows only, one per client"
    assert set(last["status"]) <= {"completed", "good_enough", "dropout"}
    assert len(therapists.xs(model.steps, level="Step")) == K
    assert therapists.xs(0, level="Step")["caseload"].sum() == N, "every client starts in a caseload"
    assert not model.datacollector.agent_reporters, "no table that mixes the two agent types"


def test_model_steps_the_same_engine():
    model = TherapyModel("baseline", n_clients=N, n_therapists=K, seed=4, therapist_empathy_mean=0.4)
    model.run_model()
    direct = Cohort(model.scenario.params, N, K, 4).run()
    a, b = client_outcomes(model.cohort), client_outcomes(direct)
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
    assert model.cumulative_dropout == float((b["end_type"][0] == 3).mean())


def test_client_id_maps_to_its_agent_and_the_tables(model):
    model.run_model()
    table = client_outcomes(model.cohort)
    for client_id in (0, 17, N - 1):
        agent = model.client(client_id)
        assert agent.client_id == client_id and agent is model.client_agents[client_id]
        assert agent.therapist_id == int(table["therapist"][0, client_id]) == agent.therapist.therapist_id
        assert agent.sessions_attended == int(table["sessions_attended"][0, client_id])
        assert agent.unique_id == K + client_id + 1, "Mesa numbers therapists first, from 1"
    assert model.therapist(2).therapist_id == 2
    rows = model.datacollector.get_agenttype_vars_dataframe(Client).xs(model.steps, level="Step")
    assert (rows.index.to_numpy() == [model.client(int(i)).unique_id for i in rows["client_id"]]).all()
    for bad in (-1, N, 2.0, True):
        with pytest.raises(IndexError, match="client ids run from 0"):
            model.client(bad)


def test_agents_refuse_removal_and_the_engine_keeps_every_client(model):
    with pytest.raises(AgentRemovalError, match="client 3 cannot be removed"):
        model.client(3).remove()
    with pytest.raises(AgentRemovalError, match="therapist 1 cannot be removed"):
        model.therapist(1).remove()
    assert len(model.agents) == N + K and model.client(3) in model.agents


def test_seed_none_draws_a_fresh_seed_as_mesa_does():
    first, second = (TherapyModel("baseline", n_clients=30, n_therapists=3) for _ in range(2))
    assert first.seed != second.seed, "seed=None gives a fresh cohort each time"
    assert not np.array_equal(first.cohort.clients.attachment_anxiety, second.cohort.clients.attachment_anxiety)
    again = TherapyModel("baseline", n_clients=30, n_therapists=3, seed=first.seed)
    assert np.array_equal(again.cohort.clients.attachment_anxiety, first.cohort.clients.attachment_anxiety)
    assert 0 <= first.seed < 2**63


def test_batch_run_iterations_without_a_seed_are_different_cohorts():
    runs = mesa.batch_run(
        TherapyModel, parameters={"n_clients": 80, "n_therapists": 4}, iterations=3, number_processes=1,
        data_collection_period=-1, display_progress=False,
    )  # fmt: skip
    assert len({(r["cumulative_dropout"], r["mean_phq9"]) for r in runs}) == 3, "iterations should differ as in Mesa"
    assert all("AgentID" not in r for r in runs), "batch_run rows are model rows; agent tables are per type"


def test_model_refuses_bad_parameters():
    with pytest.raises(ScenarioError, match="therapist_empathy_mean"):
        TherapyModel(n_clients=10, n_therapists=2, therapist_empathy_mean=3.0)
    with pytest.raises(ScenarioError, match="unknown parameter"):
        TherapyModel(n_clients=10, n_therapists=2, empathy=0.5)


def test_batch_run_small_factorial():
    grid = {"n_clients": 40, "n_therapists": 4, "seed": [1, 2], "therapist_empathy_mean": [0.3, 0.9]}
    final = mesa.batch_run(
        TherapyModel, parameters=grid, iterations=1, number_processes=1, data_collection_period=-1,
        display_progress=False,
    )  # fmt: skip
    assert {(r["seed"], r["therapist_empathy_mean"]) for r in final} == {(1, 0.3), (1, 0.9), (2, 0.3), (2, 0.9)}
    for r in final:
        assert set(MODEL_REPORTERS) <= set(r)
        assert r["Step"] > 3
        assert r["active_clients"] == 0, "batch_run should report the state after the last session"
        assert 0 <= r["cumulative_dropout"] <= 1
        assert 12 <= r["mean_alliance"] <= 60

    every = mesa.batch_run(
        TherapyModel, parameters=grid, iterations=1, number_processes=1, data_collection_period=1,
        display_progress=False,
    )  # fmt: skip
    for run_id in {r["RunId"] for r in every}:
        rows = sorted((r for r in every if r["RunId"] == run_id), key=lambda r: r["Step"])
        assert rows[0]["Step"] == 0 and rows[0]["active_clients"] == 40
        dropout = [r["cumulative_dropout"] for r in rows]
        assert dropout == sorted(dropout), "cumulative dropout never falls"
        active = [r["active_clients"] for r in rows]
        assert active == sorted(active, reverse=True), "clients leave, none come back"


def test_batch_run_replicates_are_independent_cohorts_and_iterations_repeat_one():
    grid = {"n_clients": 60, "n_therapists": 4, "seed": 3, "replicate": [0, 1, 2]}
    runs = mesa.batch_run(
        TherapyModel, parameters=grid, iterations=2, number_processes=1, data_collection_period=-1,
        display_progress=False,
    )  # fmt: skip
    by_replicate = {}
    for r in runs:
        by_replicate.setdefault(r["replicate"], []).append((r["cumulative_dropout"], r["mean_phq9"]))
    for replicate, outcomes in by_replicate.items():
        assert outcomes[0] == outcomes[1], f"iterations of replicate {replicate} should repeat one run exactly"
    distinct = {outcomes[0] for outcomes in by_replicate.values()}
    assert len(distinct) == 3, "each replicate should be its own cohort"
    with pytest.raises(ScenarioError, match="replicate"):
        TherapyModel(n_clients=10, n_therapists=2, replicate=-1)


def test_a_finished_model_and_its_agents_are_freed():
    # Mesa 3.3 holds every model in mesa.Agent._ids; without the model letting go at its end, each
    # run of a mesa.batch_run would keep its cohort and agents alive for the life of the process.
    import gc
    import weakref

    model = TherapyModel("baseline", n_clients=N, n_therapists=K, seed=4)
    model.run_model()
    freed_model, freed_client = weakref.ref(model), weakref.ref(model.client_agents[0])
    del model
    gc.collect()
    assert freed_model() is None and freed_client() is None, "a finished model should be garbage-collected"
