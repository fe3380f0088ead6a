"""The per-agent Mesa reference model as a test oracle for the vectorised engine.

The reference (benchmarks/reference_model.py) restates every rule in scalar, per-agent code and
draws its own random numbers, so the two implementations agree only statistically. The oracle test
runs the baseline scenario through both and asks every cohort metric to agree within

    TOLERANCE_SE = 4 standard errors of the difference,  se = sqrt(se_engine^2 + se_reference^2),

each standard error from the delete-one-therapist jackknife over the pooled clients (clients of a
therapist share the therapist's traits, so they are not independent). Four standard errors leave a
chance of about 6e-5 per metric of failing by accident.

A sharper check feeds the reference the engine's own population, assignment and random draws: the
two must then give the same course, client by client.
"""

from __future__ import annotations

import math

import mesa
import numpy as np
import pytest

from benchmarks.reference_model import (
    DROPOUT_CAUSES,
    END_TYPES,
    MODEL_METRICS,
    RUPTURE_CAUSES,
    RefClient,
    ReferenceTherapyModel,
    assign,
    culture_group,
    expit,
    truncated_normal,
)
from sim import dynamics
from sim.engine import Cohort
from sim.outcomes import cohort_metrics
from sim.parameters import resolve
from sim.population import culture_group as engine_culture
from sim.population import truncated_normal as engine_truncated_normal
from sim.run import client_outcomes
from sim.scenario import load_scenario
from sim.streams import Streams

TOLERANCE_SE = 4.0
CLIENTS_PER_THERAPIST = 20  # as in the baseline scenario (500 clients, 25 therapists)
ENGINE_RUNS, ENGINE_CLIENTS = 4, 2000
REFERENCE_RUNS, REFERENCE_CLIENTS = 2, 4000  # the same 8000 clients in all
ORACLE_METRICS = (
    "dropout_rate",
    "recovery_rate",
    "reliable_improvement_rate",
    "mean_sessions",
    "mean_alliance",
    "alliance_outcome_r",
)


# ── per-client outcomes from both implementations, as arrays ───────────────────────────────────


def _engine_outcomes(params: dict) -> dict[str, np.ndarray]:
    runs = []
    for replicate in range(ENGINE_RUNS):
        cohort = Cohort(params, ENGINE_CLIENTS, ENGINE_CLIENTS // CLIENTS_PER_THERAPIST, 20261122, replicate).run()
        out = {k: np.asarray(v[0]) for k, v in client_outcomes(cohort).items()}
        out["cluster"] = replicate * 10_000 + out["therapist"]
        runs.append(out)
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}


def _reference_outcomes(params: dict) -> tuple[dict[str, np.ndarray], list[ReferenceTherapyModel]]:
    runs, models = [], []
    for run in range(REFERENCE_RUNS):
        model = ReferenceTherapyModel(
            n_clients=REFERENCE_CLIENTS,
            n_therapists=REFERENCE_CLIENTS // CLIENTS_PER_THERAPIST,
            seed=1000 + run,
            **params,
        )
        model.run_model()
        out = _as_arrays(model.outcomes())
        out["cluster"] = run * 10_000 + out["therapist"]
        runs.append(out)
        models.append(model)
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}, models


def _as_arrays(outcomes: list[dict]) -> dict[str, np.ndarray]:
    """The reference's per-client dicts as the engine's arrays (end types and causes as indices)."""
    out = {k: np.array([o[k] for o in outcomes]) for k in outcomes[0]}
    out["end_type"] = np.array([END_TYPES.index(o["end_type"]) for o in outcomes], dtype=np.int8)
    out["dropout_cause"] = np.array([DROPOUT_CAUSES.index(o["dropout_cause"]) for o in outcomes], dtype=np.int8)
    return out


# ── the statistic and its jackknife standard error ─────────────────────────────────────────────


def _per_client_sums(metric: str, c: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """Per-client terms whose cluster sums determine ``metric``; 'ratio' (sum y / sum n) or 'corr'."""
    sessions = c["sessions_attended"]
    change = c["intake_phq9"] - c["final_phq9"]
    finished = sessions >= 2
    seen = sessions > 0
    ones = np.ones(len(sessions))

    def ratio(y, mask):
        return np.stack([np.where(mask, y, 0.0), mask.astype(float)], axis=1), "ratio"

    if metric == "dropout_rate":
        return ratio(c["end_type"] == END_TYPES.index("dropout"), ones > 0)
    if metric == "recovery_rate":
        return ratio(c["final_phq9"] < 10, finished & (c["intake_phq9"] >= 10))
    if metric == "reliable_improvement_rate":
        return ratio(change >= 6, finished)
    if metric == "mean_sessions":
        return ratio(sessions.astype(float), ones > 0)
    if metric == "mean_alliance":
        return ratio(np.nan_to_num(c["mean_alliance"]), seen)
    if metric == "alliance_outcome_r":
        x, y, m = np.nan_to_num(c["early_alliance"]), change.astype(float), seen.astype(float)
        return np.stack([m, m * x, m * y, m * x * x, m * y * y, m * x * y], axis=1), "corr"
    raise KeyError(metric)


def _statistic(totals: np.ndarray, kind: str) -> np.ndarray:
    if kind == "ratio":
        return totals[..., 0] / totals[..., 1]
    n, sx, sy, sxx, syy, sxy = np.moveaxis(totals, -1, 0)
    return (sxy - sx * sy / n) / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))


def estimate(metric: str, c: dict[str, np.ndarray]) -> tuple[float, float]:
    """The pooled metric and its delete-one-therapist jackknife standard error."""
    terms, kind = _per_client_sums(metric, c)
    _, cluster = np.unique(c["cluster"], return_inverse=True)
    by_cluster = np.stack([np.bincount(cluster, weights=t) for t in terms.T], axis=1)
    totals = by_cluster.sum(axis=0)
    leave_one_out = _statistic(totals[None, :] - by_cluster, kind)
    g = len(by_cluster)
    se = math.sqrt((g - 1) / g * np.sum((leave_one_out - leave_one_out.mean()) ** 2))
    return float(_statistic(totals, kind)), se


# ── tests ──────────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def baseline_runs():
    params = load_scenario("baseline").params
    return _engine_outcomes(params), *_reference_outcomes(params)


@pytest.mark.parametrize("metric", ORACLE_METRICS)
def test_reference_agrees_with_engine_on_baseline(baseline_runs, metric):
    engine, reference, _ = baseline_runs
    e, se_e = estimate(metric, engine)
    r, se_r = estimate(metric, reference)
    tolerance = TOLERANCE_SE * math.hypot(se_e, se_r)
    assert abs(e - r) <= tolerance, (
        f"{metric}: engine {e:.4f} (se {se_e:.4f}, {len(engine['therapist'])} clients) and reference model "
        f"{r:.4f} (se {se_r:.4f}, {len(reference['therapist'])} clients) differ by {abs(e - r):.4f}, "
        f"more than {TOLERANCE_SE:g} standard errors ({tolerance:.4f})"
    )


def test_reference_metrics_follow_the_engine_definitions(baseline_runs):
    """The reference's own pure-Python metrics equal sim.outcomes.cohort_metrics on its outcomes."""
    _, _, models = baseline_runs
    for model in models:
        out = {k: v[None, :] for k, v in _as_arrays(model.outcomes()).items()}
        expected = {k: float(v[0]) for k, v in cohort_metrics(out).items()}
        for name, value in expected.items():
            got = getattr(model, MODEL_METRICS[name])
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), f"{name}: reference {got} vs sim {value}"


def test_reference_labels_match_the_engine():
    assert END_TYPES == dynamics.END_TYPES
    assert DROPOUT_CAUSES == dynamics.DROPOUT_CAUSES
    assert RUPTURE_CAUSES == dynamics.RUPTURE_CAUSES


def test_reference_runs_under_batch_run():
    parameters = {"n_clients": 40, "n_therapists": 4, "seed": 3, "therapist_empathy_mean": [0.3, 0.8]}
    rows = mesa.batch_run(
        ReferenceTherapyModel, parameters, number_processes=1, iterations=1, max_steps=100, display_progress=False
    )
    assert len(rows) == 2, f"a 2x1 factorial should give 2 final rows, got {len(rows)}"
    assert sorted(row["therapist_empathy_mean"] for row in rows) == [0.3, 0.8]
    for row in rows:
        for name in ("dropout_rate", "mean_sessions", "mean_alliance", "reliable_improvement_rate"):
            assert math.isfinite(row[name]), f"batch_run row lacks a final {name}: {row}"
        assert 0.0 <= row["dropout_rate"] <= 1.0
        assert row["active_clients"] == 0, "the final row should be the end of the course"
        assert row["Step"] <= 20, "a baseline course lasts at most 20 weeks"


def test_reference_refuses_unknown_parameters_and_policies():
    with pytest.raises(ValueError, match="therapist_empathy_mean"):
        ReferenceTherapyModel(n_clients=5, n_therapists=1, seed=1, therapist_empathy_mean=2.0)
    with pytest.raises(NotImplementedError, match="no matching policy"):
        assign("by_horoscope", [], [], None)


# ── the same population and draws give the same courses ────────────────────────────────────────


class _EngineDraws:
    """Stands in for the model's Generator during one client's week, serving the engine's draws.

    The reference draws only what it needs, in the order of the rules; this replays the engine's
    draw for each decision in that order (which decision a call is follows from the client's state).
    """

    def __init__(self, client: RefClient, draws, week: int, i: int, holiday: bool):
        self.client, self.draws, self.t, self.i, self.holiday = client, draws, week - 1, i, holiday
        self.pending, self.engagement = client.pending, client.engagement
        self.uniforms: list[str] = []
        self.normals = 0

    def _next_uniform(self) -> str:
        c, p, d, t, i = self.client, self.client.model.p, self.draws, self.t, self.i
        cancelled = self.holiday or d.cancel[t, i] < c.cancel_risk
        p_attend = expit(c.attend_logit - p["engagement_attendance"] * (1.0 - self.engagement))
        attended = not cancelled and d.attend[t, i] < p_attend
        order = ([] if self.holiday else ["cancel"]) + ([] if cancelled else ["attend"])
        order += ["repair" if self.pending else "rupture"] if attended else []
        order.append("life_event")
        if len(self.uniforms) < len(order):
            return order[len(self.uniforms)]
        completed = c.sessions >= p["planned_sessions"] or c.model.week >= c.model.last_week
        may_end_well = c.below_run >= 2 and c.sessions >= p["good_enough_min_sessions"] and not completed
        if attended and may_end_well and "ending" not in self.uniforms:
            return "ending"
        return "dropout"

    def random(self) -> float:
        name = self._next_uniform()
        self.uniforms.append(name)
        return float(getattr(self.draws, name)[self.t, self.i])

    def standard_normal(self) -> float:
        self.normals += 1
        return float((self.draws.drift if self.normals == 1 else self.draws.measurement)[self.t, self.i])


def _replay(params: dict, n: int, k: int, seed: int) -> tuple[Cohort, ReferenceTherapyModel]:
    cohort = Cohort(params, n, k, seed).run()
    model = ReferenceTherapyModel(n_clients=n, n_therapists=k, seed=0, **params)
    for j, t in enumerate(model.therapist_agents):
        for name in ("empathy", "humility", "repair_skill", "consistency", "competence", "uses_feedback", "culture"):
            setattr(t, name, getattr(cohort.therapists, name)[0, j].item())
        t.capacity = float(cohort.therapists.capacity[0, j])
        t.caseload = []
    traits = ("intake_phq9", "attachment_anxiety", "attachment_avoidance", "culture", "salience", "expectancy")
    traits += ("readiness", "barriers", "support", "perception_noise")
    for i, client in enumerate(model.client_agents):
        for name in traits:
            setattr(client, name, getattr(cohort.clients, name)[0, i].item())
        model.therapist_agents[int(cohort.assignment[0, i])].take(client)
    for client in model.client_agents:
        client.intake()
    generator = model.rng
    while model.running:
        model.week += 1
        start = model.p["planned_break_start"]
        model.holiday = 0 < start <= model.week < start + model.p["planned_break_weeks"]
        for i, client in enumerate(model.client_agents):
            model.rng = _EngineDraws(client, cohort.draws, model.week, i, model.holiday)
            client.step()
        model.rng = generator
        model.running = model.week < model.last_week and model.active_clients > 0
    return cohort, model


@pytest.mark.parametrize(
    "overrides",
    [{}, {"therapist_feedback_share": 0.5, "planned_break_start": 5, "planned_break_weeks": 2}],
    ids=["baseline", "feedback_and_holiday"],
)
def test_reference_replays_the_engine_given_its_draws(overrides):
    params = resolve({**load_scenario("baseline").overrides, **overrides})
    cohort, model = _replay(params, n=300, k=15, seed=5)
    s = cohort.state
    for i, c in enumerate(model.client_agents):
        engine = (END_TYPES[s.end_type[0, i]], int(s.attended[0, i]), float(s.phq9[0, i]), int(s.ruptures[0, i]))
        mine = (c.end_type, c.sessions, c.phq9, c.ruptures)
        assert mine == engine, f"client {i}: reference (end, sessions, PHQ-9, ruptures) {mine} vs engine {engine}"
        for name in ("bond", "goal", "task", "disclosure", "hope", "engagement", "severity"):
            assert getattr(c, name) == pytest.approx(getattr(s, name)[0, i], abs=1e-9), f"client {i}: {name}"


@pytest.mark.parametrize("policy", ["random", "lowest_caseload", "cultural_match", "attachment_informed"])
def test_reference_matching_assigns_as_the_engine(policy):
    params = resolve({"matching_policy": policy, "therapist_capacity_mean": 6, "client_minority_share": 0.5})
    n, k = 120, 9
    cohort = Cohort(params, n, k, seed=9)
    model = ReferenceTherapyModel(n_clients=n, n_therapists=k, seed=0, **params)
    for j, t in enumerate(model.therapist_agents):
        for name in ("empathy", "repair_skill", "culture", "capacity"):
            setattr(t, name, getattr(cohort.therapists, name)[0, j].item())
        t.caseload = []
    for i, c in enumerate(model.client_agents):
        c.culture = cohort.clients.culture[0, i].item()
        c.attachment_style = cohort.clients.attachment_style[0, i].item()
    uniforms = iter(Streams(9, 0).uniform("matching", n))  # the engine's matching draws

    class _MatchingDraws:
        def random(self):
            return float(next(uniforms))

    assign(policy, model.client_agents, model.therapist_agents, _MatchingDraws())
    mine = np.array([c.therapist.index for c in model.client_agents])
    differ = np.flatnonzero(mine != cohort.assignment[0])
    assert len(differ) == 0, f"{policy}: {len(differ)} clients assigned differently, first {differ[:5]}"


def test_reference_population_draws_match_the_engine_formulas():
    u = np.linspace(0.0, 0.999, 37)
    cases = [(0.6, 0.15, 0, 1), (17.0, 4.5, 10, 27), (3.6, 1.1, 1, 7), (0.9, 0.5, 0, 1), (0.3, 0, 0, 1)]
    for mean, sd, low, high in cases:
        engine = engine_truncated_normal(u, mean, sd, low, high)
        mine = [truncated_normal(x, mean, sd, low, high) for x in u]
        np.testing.assert_allclose(mine, engine, rtol=1e-9, atol=1e-9, err_msg=f"truncated normal {mean, sd}")
    assert [culture_group(x, 0.25) for x in u] == engine_culture(u, 0.25).tolist()
