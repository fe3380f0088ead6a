"""The per-agent Mesa reference model as a test oracle for the vectorised engine.

The reference (benchmarks/reference_model.py) restates every rule in scalar, per-agent code and
draws its own random numbers, so the two implementations agree only statistically. The oracle test
runs the baseline scenario through both and asks every cohort metric to agree within

    TOLERANCE_SE = 4 standard errors of the difference,  se = sqrt(se_engine^2 + se_reference^2),

each standard error from the delete-one-therapist jackknife over the pooled clients (clients of a
therapist share the therapist's traits, so they are not independent). Four standard errors leave a
chance of about 6e-5 per metric of failing by accident (about 1e-3 over all of them).

A sharper check feeds the reference the engine's own population, assignment and random numbers (made
here from the named streams of sim/streams.py, as the engine's docstrings say each is used): the two
must then give the same course and the same follow-up, client by client, every per-client output of
sim.run.client_outcomes included (a dropout's reason shares, sudden gains and their reversals, the
early response, the relapse and caseness weeks). The reference computes Shapley values by the
textbook formula, so this is also the check that sim/reasons.py splits a dropout's chance as its
docstring says.
"""

from __future__ import annotations

import functools
import math
import random

import mesa
import numpy as np
import pytest

from benchmarks import reference_model as ref
from benchmarks.reference_model import (
    DROPOUT_CAUSES,
    END_TYPES,
    MODEL_METRICS,
    REASONS,
    RefClient,
    ReferenceTherapyModel,
    assign,
    culture_group,
    shapley,
    truncated_normal,
)
from sim import dynamics, expected, followup, outcomes, population, reasons
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
    "reliable_deterioration_rate",
    "mean_sessions",
    "mean_alliance",
    "alliance_outcome_r",
    "alliance_dropout_d",
    "not_on_track_rate",
    "early_change",
    "sudden_gains_per_client",
    "gain_reversal_share",
    "relapse_rate",
    "improvement_reason_share",
    "circumstances_reason_share",
    "dissatisfaction_reason_share",
    "relationship_share",
)
REASON_GROUPS = {
    "improvement_reason_share": ("felt_better",),
    "circumstances_reason_share": ("practical_barriers", "life_circumstances"),
    "dissatisfaction_reason_share": ref.RELATIONSHIP_REASONS,
}


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


def _per_client_sums(metric: str, c: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:  # noqa: PLR0911
    """Per-client terms whose cluster sums determine ``metric``; 'ratio' (sum y / sum n), 'corr' or 'd'."""
    sessions = c["sessions_attended"]
    change = c["intake_phq9"] - c["final_phq9"]
    finished = sessions >= 2
    seen = sessions > 0
    everyone = np.ones(len(sessions), dtype=bool)
    dropped = c["end_type"] == END_TYPES.index("dropout")

    def ratio(y, n):
        n = np.asarray(n, dtype=float)
        return np.stack([np.where(n > 0, y, 0.0), n], axis=1), "ratio"

    if metric == "dropout_rate":
        return ratio(dropped, everyone)
    if metric == "recovery_rate":
        return ratio(c["final_phq9"] < 10, finished & (c["intake_phq9"] >= 10))
    if metric == "reliable_improvement_rate":
        return ratio(change >= 6, finished)
    if metric == "reliable_deterioration_rate":
        return ratio(change <= -6, finished)
    if metric == "mean_sessions":
        return ratio(sessions.astype(float), everyone)
    if metric == "mean_alliance":
        return ratio(np.nan_to_num(c["mean_alliance"]), seen)
    if metric == "not_on_track_rate":
        return ratio(c["not_on_track"], seen)
    if metric == "early_change":  # intake minus the PHQ-9 at the fourth session
        return ratio(np.nan_to_num(c["early_change"]), ~np.isnan(c["early_change"]))
    if metric == "sudden_gains_per_client":
        return ratio(c["sudden_gains"].astype(float), seen)
    if metric == "gain_reversal_share":
        return ratio(c["gain_reversals"].astype(float), c["sudden_gains"])
    if metric == "relapse_rate":  # among clients who ended below caseness
        return ratio(c["relapse"], c["final_phq9"] < 10)
    if metric in REASON_GROUPS:  # the mean share of a category over dropouts
        columns = [REASONS.index(r) for r in REASON_GROUPS[metric]]
        return ratio(c["reason_shares"][:, columns].sum(axis=1), dropped)
    if metric == "relationship_share":  # dropouts whose main reason is the relationship
        causes = [DROPOUT_CAUSES.index(r) for r in ref.RELATIONSHIP_REASONS]
        return ratio(np.isin(c["dropout_cause"], causes), dropped)
    if metric == "alliance_dropout_d":  # early alliance, clients seen who stayed minus those who left
        x, a, b = np.nan_to_num(c["early_alliance"]), (seen & ~dropped).astype(float), (seen & dropped).astype(float)
        return np.stack([a, a * x, a * x * x, b, b * x, b * x * x], axis=1), "d"
    if metric == "alliance_outcome_r":
        x, y, m = np.nan_to_num(c["early_alliance"]), change.astype(float), seen.astype(float)
        return np.stack([m, m * x, m * y, m * x * x, m * y * y, m * x * y], axis=1), "corr"
    raise KeyError(metric)


def _statistic(totals: np.ndarray, kind: str) -> np.ndarray:
    if kind == "ratio":
        return totals[..., 0] / totals[..., 1]
    if kind == "d":  # Cohen's d with the pooled standard deviation
        n_a, s_a, ss_a, n_b, s_b, ss_b = np.moveaxis(totals, -1, 0)
        pooled = (ss_a - s_a * s_a / n_a + ss_b - s_b * s_b / n_b) / (n_a + n_b - 2)
        return (s_a / n_a - s_b / n_b) / np.sqrt(pooled)
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
    assert se_e > 0 and se_r > 0, f"{metric}: a zero standard error (engine {se_e}, reference {se_r}) tests nothing"
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
        expected_metrics = {k: float(v[0]) for k, v in cohort_metrics(out).items()}
        for name, value in expected_metrics.items():
            got = getattr(model, MODEL_METRICS[name])
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), f"{name}: reference {got} vs sim {value}"


def test_oracle_statistics_follow_the_engine_definitions(baseline_runs):
    """The pooled statistics the oracle compares are the engine's own metrics where it has them."""
    engine, _, _ = baseline_runs
    metrics = cohort_metrics({k: v[None, :] for k, v in engine.items()})
    shared = [name for name in ORACLE_METRICS if name in metrics]
    assert {"dropout_rate", "alliance_dropout_d", "relationship_share"} <= set(shared)
    for name in shared:
        assert estimate(name, engine)[0] == pytest.approx(float(metrics[name][0]), rel=1e-9), name


def test_reference_constants_and_labels_match_the_engine():
    assert END_TYPES == dynamics.END_TYPES
    assert DROPOUT_CAUSES == dynamics.DROPOUT_CAUSES
    assert ref.RUPTURE_CAUSES == dynamics.RUPTURE_CAUSES
    assert REASONS == reasons.REASONS
    assert ref.HAZARD_TERMS == reasons.HAZARD_TERMS
    engine_terms = {t: REASONS[j] for t, j in zip(reasons.HAZARD_TERMS, reasons.TERM_REASON, strict=True) if j >= 0}
    assert ref.TERM_REASON == engine_terms
    assert reasons.HAZARD_TERMS[reasons.MISSED_TERM] == "missed" and "missed" not in ref.TERM_REASON
    assert ref.MISS_CAUSES == reasons.MISS_CAUSES == tuple(REASONS[j] for j in reasons.MISS_REASON)
    assert ref.BACKGROUND_REASON == REASONS[reasons.LIFE]
    assert ref.RELATIONSHIP_REASONS == tuple(r for r in REASONS if reasons.CATEGORY_OF[r] == "dissatisfaction")
    assert [DROPOUT_CAUSES.index(r) for r in ref.RELATIONSHIP_REASONS] == outcomes.RELATIONSHIP_CAUSES
    assert ref.METRICS == tuple(m.name for m in outcomes.METRICS), "the reference should report every cohort metric"
    assert ref.FINISHED_SESSIONS == outcomes.FINISHED_SESSIONS
    assert (ref.CASENESS, ref.RELIABLE_CHANGE) == (dynamics.CASENESS, dynamics.RELIABLE_CHANGE)
    assert ref.EARLY_RESPONSE_SESSION == dynamics.EARLY_RESPONSE_SESSION
    assert ref.RESPONSIVENESS_RANGE == population.RESPONSIVENESS_RANGE
    assert ref.EXPECTED_CENTRE == expected.CENTRE
    assert (ref.ASSESSMENT_WEEKS, ref.YEAR) == (followup.ASSESSMENT_WEEKS, followup.YEAR)


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


# ── the pieces against the engine's own ────────────────────────────────────────────────────────


def _random_terms(rng: random.Random, n: int) -> list[float]:
    """Non-negative log-odds terms, about a third of them absent (exactly zero)."""
    return [0.0 if rng.random() < 0.35 else rng.uniform(0.0, 3.0) for _ in range(n)]


def test_textbook_shapley_matches_the_engine_and_its_properties():
    """sim.reasons.shapley_shares and miss_shares equal the textbook Shapley values, which sum to one,
    give an absent term exactly zero and grow with their term."""
    rng = random.Random(7)
    for _ in range(300):
        base = rng.uniform(-8.0, 2.0)
        n = len(reasons.HAZARD_TERMS)
        terms = _random_terms(rng, n)
        mine, background = shapley(base, terms)
        engine = np.empty(n)
        engine_background = reasons.shapley_shares(base, np.array(terms), engine)
        np.testing.assert_allclose(mine, engine, rtol=1e-9, atol=1e-12, err_msg=f"base {base}, terms {terms}")
        assert background == pytest.approx(engine_background, rel=1e-12)
        assert math.fsum(mine) + background == pytest.approx(1.0, abs=1e-12), "shares should sum to one"
        assert all(s == 0.0 for s, t in zip(mine, terms, strict=True) if t == 0.0), "an absent term gets zero"
        assert all(s > 0.0 for s, t in zip(mine, terms, strict=True) if t > 0.0), "a present risk gets a share"
        j = rng.randrange(n)
        raised = terms[:j] + [terms[j] + 0.5] + terms[j + 1 :]
        assert shapley(base, raised)[0][j] > mine[j], f"raising term {j} should raise its share"

        three = _random_terms(rng, 3)
        attend = rng.uniform(0.0, 6.0)
        miss, miss_background = shapley(-attend, three)
        # The engine takes the attendance odds exp(base) and builds every coalition's chance from them.
        engine_miss = reasons.miss_shares(math.exp(attend), *three)
        np.testing.assert_allclose(engine_miss, [*miss, miss_background], rtol=1e-9, atol=1e-12)


def test_reference_curve_and_relapse_hazard_match_the_engine():
    model = ReferenceTherapyModel(n_clients=30, n_therapists=2, seed=4)
    assert model.expected_recovery == (expected.CURVE.a0, expected.CURVE.a1, expected.CURVE.rate)
    for client in model.client_agents:
        for session in (1, 4, 12):
            engine = float(expected.CURVE.expected(client.intake_phq9, session))
            assert client.expected_score(session) == pytest.approx(engine, rel=1e-12), f"intake {client.intake_phq9}"
    for rate, decay in ((0.2, 20.0), (0.53, 8.0), (0.0, 1.0), (1.0, 104.0), (0.9, 3.5)):
        engine = float(followup.relapse_base_hazard(rate, decay)[0])
        assert ref.relapse_base_hazard(rate, decay) == pytest.approx(engine, rel=1e-12), (rate, decay)
        # The hazard's definition: the one-year chance of relapse with no residual symptoms or support.
        stay = math.exp(-ref.relapse_base_hazard(rate, decay) * sum(math.exp(-t / decay) for t in range(52)))
        assert 1.0 - stay == pytest.approx(min(rate, 1.0 - 1e-12), abs=1e-9)


def test_reference_population_draws_match_the_engine_formulas():
    u = np.linspace(0.0, 0.999, 37)
    cases = [(0.6, 0.15, 0, 1), (17.0, 4.5, 10, 27), (3.6, 1.1, 1, 7), (0.9, 0.5, 0, 1), (0.3, 0, 0, 1)]
    cases += [(1.0, 0.7, *population.RESPONSIVENESS_RANGE)]
    for mean, sd, low, high in cases:
        engine = engine_truncated_normal(u, mean, sd, low, high)
        mine = [truncated_normal(x, mean, sd, low, high) for x in u]
        np.testing.assert_allclose(mine, engine, rtol=1e-9, atol=1e-9, err_msg=f"truncated normal {mean, sd}")
    assert [culture_group(x, 0.25) for x in u] == engine_culture(u, 0.25).tolist()


# ── the same population and draws give the same courses ────────────────────────────────────────

# Every draw the reference names, and the engine's stream it comes from: a uniform or a normal per
# week and client (sudden_gains gives two uniforms a week, interleaved by week: the gain, then the
# reversal of an earlier gain), or one per client ("followup", the end-of-course assessment).
COURSE_DRAWS = {
    "cancel": ("cancellation", "uniform"),
    "attend": ("attendance", "uniform"),
    "rupture": ("rupture", "uniform"),
    "repair": ("repair", "uniform"),
    "ending": ("ending", "uniform"),
    "dropout": ("dropout", "uniform"),
    "drift": ("symptoms", "normal"),
    "measurement": ("measurement", "normal"),
    "life_event": ("life_events", "uniform"),
}
FOLLOWUP_DRAWS = {
    "followup_drift": "normal",
    "followup_life_events": "uniform",
    "followup_relapse": "uniform",
    "followup_measurement": "normal",
}


class _EngineDraws:
    """The engine's random numbers, remade from its named streams, served to the reference's named draws.

    Each stream is drawn as the engine draws it (sim/engine.py ``_draw_weeks``, sim/followup.py), from
    a fresh :class:`~sim.streams.Streams` of the cohort's seed and replicate. A course draw is row
    ``model.week - 1``; a follow-up draw row ``model.followup_week - 1``. Every (client, week, draw)
    may be served once: a second request would mean the reference draws twice for one decision.
    """

    def __init__(self, cohort: Cohort):
        streams = Streams(cohort.seed, cohort.replicate)
        weeks, n = cohort.n_weeks, cohort.n_clients
        horizon = int(cohort.p["followup_weeks"].max())

        def draw(stream, kind, rows):
            rng = streams[stream]
            return rng.random((rows, n)) if kind == "uniform" else rng.standard_normal((rows, n))

        self.rows = {name: draw(stream, kind, weeks) for name, (stream, kind) in COURSE_DRAWS.items()}
        gains = draw("sudden_gains", "uniform", 2 * weeks)
        self.rows["gain"], self.rows["gain_reversal"] = gains[0::2], gains[1::2]
        self.followup = {name: draw(name, kind, horizon) for name, kind in FOLLOWUP_DRAWS.items()}
        self.followup["followup"] = streams["followup"].standard_normal(n)[None, :]
        self.served: set[tuple[int, int, int, str]] = set()

    def draw(self, client: RefClient, decision: str) -> float:
        model, i = client.model, client.index
        key = (i, model.week, model.followup_week, decision)
        assert key not in self.served, f"client {i} drew {decision!r} twice in one week"
        self.served.add(key)
        if decision == "followup":
            return float(self.followup["followup"][0, i])
        if decision in self.followup:
            return float(self.followup[decision][model.followup_week - 1, i])
        return float(self.rows[decision][model.week - 1, i])


def _replay(params: dict, n: int, k: int, seed: int) -> tuple[Cohort, ReferenceTherapyModel]:
    cohort = Cohort(params, n, k, seed, record=True).run()  # recorded: the cause of each rupture is kept
    model = ReferenceTherapyModel(n_clients=n, n_therapists=k, seed=0, **params)
    traits = ("empathy", "humility", "repair_skill", "consistency", "competence", "uses_feedback", "culture")
    for j, t in enumerate(model.therapist_agents):
        for name in (*traits, "retention"):
            setattr(t, name, getattr(cohort.therapists, name)[0, j].item())
        t.capacity = float(cohort.therapists.capacity[0, j])
        t.caseload = []
    traits = ("intake_phq9", "attachment_anxiety", "attachment_avoidance", "culture", "salience", "expectancy")
    traits += ("readiness", "barriers", "support", "perception_noise", "responsiveness")
    draws = _EngineDraws(cohort)
    for i, client in enumerate(model.client_agents):
        for name in traits:
            setattr(client, name, getattr(cohort.clients, name)[0, i].item())
        model.therapist_agents[int(cohort.assignment[0, i])].take(client)
        client.uniform = client.normal = functools.partial(draws.draw, client)
    for client in model.client_agents:
        client.intake()
    model.run_model()
    return cohort, model


# Settings that make the rare branches common: negative responders, gains that reverse, flagged
# clients, breaks and the missed sessions they cause, relapse over a two-year follow-up.
STRESS = {
    "therapist_feedback_share": 0.5,
    "planned_break_start": 5,
    "planned_break_weeks": 2,
    "break_attendance": 1.0,
    "cancellation_rate": 0.3,
    "responsiveness_sd": 1.2,
    "sudden_gain_rate": 0.4,
    "sudden_gain_reversal": 0.3,
    "relapse_rate": 0.6,
    "relapse_decay_weeks": 40.0,
    "followup_weeks": 103,
}
CASES = {
    "baseline": lambda: resolve(load_scenario("baseline").overrides),
    "routine_care": lambda: resolve(load_scenario("routine_care").overrides),
    "stress": lambda: resolve({**load_scenario("baseline").overrides, **STRESS}),
}
EXACT = (
    "therapist",
    "intake_phq9",
    "final_phq9",
    "followup_phq9",
    "relapse",
    "relapse_week",
    "caseness_week",
    "sessions_attended",
    "end_type",
    "end_session",
    "dropout_cause",
    "ruptures",
    "repairs",
    "cultural_match",
    "not_on_track",
    "early_change",
    "sudden_gains",
    "gain_reversals",
)
"""Outcomes that must be equal; every other outcome of sim.run.client_outcomes equal within 1e-9."""


@functools.cache
def _replayed(case: str):
    cohort, model = _replay(CASES[case](), n=300, k=15, seed=5)
    engine = {key: np.asarray(v[0]) for key, v in client_outcomes(cohort).items()}
    return case, cohort, model, engine, _as_arrays(model.outcomes())


@pytest.fixture(params=list(CASES))
def replayed(request):
    return _replayed(request.param)


def test_reference_replays_the_engine_given_its_draws(replayed):
    case, cohort, model, engine, mine = replayed
    assert set(mine) == set(engine), f"outcomes only one side has: {set(mine) ^ set(engine)}"
    for key, theirs in engine.items():
        ours = mine[key]
        if key in EXACT:
            ours, theirs = ours.astype(float), theirs.astype(float)  # small integers and flags: exact
            differ = np.flatnonzero(~((ours == theirs) | (np.isnan(ours) & np.isnan(theirs))))
            first = differ[:1].tolist()
            assert len(differ) == 0, (
                f"{case}, {key}: {len(differ)} clients differ, first {first}: reference "
                f"{ours[first].tolist()} vs engine {theirs[first].tolist()}"
            )
        else:
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9, equal_nan=True, err_msg=f"{case}, {key}")
    s = cohort.state
    for i, c in enumerate(model.client_agents):
        for name in (
            "bond",
            "goal",
            "task",
            "disclosure",
            "hope",
            "engagement",
            "severity",
            "gain_pending",
            "abandonment",
        ):
            assert getattr(c, name) == pytest.approx(getattr(s, name)[0, i], abs=1e-9), f"{case}, client {i}: {name}"
        assert c.well_run == s.well_run[0, i] and c.missed_run == s.missed_run[0, i], f"{case}, client {i}: runs"
        credit = [c.miss_credit[cause] for cause in ref.MISS_CAUSES]
        np.testing.assert_allclose(credit, s.miss_credit[0, i], atol=1e-9, err_msg=f"{case}, client {i}: miss credit")
    causes = np.stack(cohort.record.rupture_cause)[:, 0, :]  # (weeks, clients), 0 where no rupture
    for i, c in enumerate(model.client_agents):
        engine_causes = [ref.RUPTURE_CAUSES[j] for j in causes[:, i] if j]
        assert c.rupture_causes == engine_causes, f"{case}, client {i}: rupture causes"


def test_replayed_reasons_are_shares_of_each_dropout(replayed):
    """Each dropout's shares sum to one with its main reason the largest; everyone else has none."""
    case, _, _, engine, mine = replayed
    dropped = engine["end_type"] == END_TYPES.index("dropout")
    shares = mine["reason_shares"]
    assert dropped.sum() >= 10, f"{case}: too few dropouts ({dropped.sum()}) to check their reasons"
    np.testing.assert_allclose(shares[dropped].sum(axis=1), 1.0, atol=1e-12, err_msg=f"{case}: shares sum to one")
    assert (shares >= 0).all() and (shares[~dropped] == 0).all(), f"{case}: shares of clients who did not drop out"
    main = shares[dropped].argmax(axis=1) + 1
    assert (main == engine["dropout_cause"][dropped]).all(), f"{case}: the main reason is the largest share"


def test_replay_covers_the_new_mechanisms():
    """The stress case exercises every branch the replay is meant to check, so its agreement means something."""
    _, _, model, _, o = _replayed("stress")
    dropped = o["end_type"] == END_TYPES.index("dropout")
    # A dropout's state is that of the week it left: the miss credit and the break reaction it left with.
    leavers = [c for c in model.client_agents if c.end_type == "dropout"]
    counts = {
        "sudden gains": int(o["sudden_gains"].sum()),
        "reversed gains": int(o["gain_reversals"].sum()),
        "negative responders": int((o["responsiveness"] < 0).sum()),
        "clients flagged not on track": int(o["not_on_track"].sum()),
        "early responses read": int((~np.isnan(o["early_change"])).sum()),
        "relapses": int(o["relapse"].sum()),
        "returns to caseness": int((o["caseness_week"] > 0).sum()),
        "good-enough endings": int((o["end_type"] == END_TYPES.index("good_enough")).sum()),
        "dropouts with missed sessions put down to breaks": sum(
            c.missed_run > 0 and c.miss_credit["therapy_breaks"] > 0 for c in leavers
        ),
        "dropouts whose reaction to breaks raised the hazard": sum(c.abandonment > 0 for c in leavers),
        "dropouts with a share for breaks": int(
            (o["reason_shares"][dropped, REASONS.index("therapy_breaks")] > 0).sum()
        ),
        "dropouts with a share for an unrepaired rupture": int(
            (o["reason_shares"][dropped, REASONS.index("unrepaired_rupture")] > 0).sum()
        ),
        "dropouts that felt better": int((o["reason_shares"][dropped, REASONS.index("felt_better")] > 0).sum()),
    }
    rare = {name: count for name, count in counts.items() if count < 5}
    assert not rare, f"the stress replay rarely reaches these branches: {rare}"
    assert int(o["relapse_week"].max()) > 52, "relapses should occur in the second year of a two-year follow-up"


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


def test_a_finished_reference_model_is_freed():
    # Without letting go of mesa.Agent._ids at the end, batch_run's workers grew by 8 MB a run.
    import gc
    import weakref

    model = ReferenceTherapyModel(n_clients=40, n_therapists=4, seed=1, **load_scenario("baseline").params)
    model.run_model()
    freed = weakref.ref(model)
    del model
    gc.collect()
    assert freed() is None, "a finished reference model should be garbage-collected"
