"""The reference model: alliancesim's rules written the way the field writes an agent-based model.

Every therapist and client is a :class:`mesa.Agent` holding its own Python floats; the model steps
the clients one by one each week, and each client draws its own random numbers one at a time from
the model's ``numpy`` Generator (``self.model.rng``). Nothing is vectorised. The rules are a
line-by-line translation of the engine's (``sim/dyads.py``: :func:`~sim.dyads.intake` and
:func:`~sim.dyads.initial_state`; ``sim/dynamics.py``: the weekly kernel; ``sim/population.py``;
the matching policies of ``sim/matching.py``; the follow-up of ``sim/engine.py``; the definitions of
``sim/outcomes.py``), with the same formulas in the same order within a week, so that:

* it is the baseline the benchmarks compare the engine against (``benchmarks/compare_batch_run.py``),
* it is a test oracle: its random numbers differ from the engine's, but on the same scenario its
  cohort statistics agree with the engine's within sampling error (``tests/test_reference_model.py``).

Translated from ``sim/dynamics.py`` at git blob ``bc6f29bc821f55e5946cf91fcfabfd00d9916a1d`` (the numba
kernel ``_advance``) and ``sim/dyads.py`` at blob ``0643f8320e05821bcae1f5167bbaa07924a3f225``; first
written from the array version, blob ``3e44b1d3d76efdbce5b62e59802c0f6028c9498d``.

Example:
    >>> from benchmarks.reference_model import ReferenceTherapyModel
    >>> model = ReferenceTherapyModel(n_clients=40, n_therapists=4, seed=1, therapist_empathy_mean=0.4)
    >>> model.run_model()
    >>> 0.0 <= model.dropout_rate <= 1.0
    True

Under :func:`mesa.batch_run` the cohort metrics come back as columns of the final row::

    mesa.batch_run(ReferenceTherapyModel, {"n_clients": 500, "rupture_rate": [0.03, 0.09]})
"""

from __future__ import annotations

import math
from statistics import NormalDist, median
from typing import Any

import mesa

from sim.parameters import resolve

# Constants restated from sim.dynamics and sim.outcomes (the oracle does not borrow the engine's code).
CASENESS = 10  # PHQ-9 >= 10
RELIABLE_CHANGE = 6  # PHQ-9 points
FINISHED_SESSIONS = 2  # a finished course has at least two sessions attended
END_TYPES = ("active", "completed", "good_enough", "dropout")
DROPOUT_CAUSES = (
    "",
    "weak_alliance",
    "unrepaired_rupture",
    "low_engagement",
    "practical_barriers",
    "early_disengagement",
    "stopped_attending",
    "felt_better",
    "background",
)
CAUSE_MIN_LOG_ODDS = math.log(1.5)  # the smallest term that names a dropout's cause
RUPTURE_CAUSES = ("", "everyday strain", "confrontation", "withdrawal", "cultural misunderstanding", "a break")

METRICS = (
    "dropout_rate",
    "recovery_rate",
    "reliable_improvement_rate",
    "reliable_deterioration_rate",
    "mean_sessions",
    "mean_alliance",
    "alliance_outcome_r",
    "mean_change",
    "ruptures_per_client",
    "repair_share",
)
"""Cohort metrics, named as in :data:`sim.outcomes.METRICS` (:func:`cohort_metrics` returns them all)."""

MODEL_METRICS = {name: name for name in METRICS}
"""Model attribute of each metric, set after the run and reported by the DataCollector."""

WEEKLY_REPORTERS = ("active_clients", "current_alliance", "cumulative_dropout", "mean_phq9")
"""Model attributes the DataCollector records every week."""

_STANDARD_NORMAL = NormalDist()
_NAN = float("nan")


# ── scalar helpers ──────────────────────────────────────────────────────────────────────────────


def clip(x: float, low: float, high: float) -> float:
    """``x`` limited to ``[low, high]``."""
    return low if x < low else high if x > high else x


def expit(x: float) -> float:
    """The logistic function, without overflow."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def normal_cdf(x: float) -> float:
    """The standard normal distribution function (accurate in the lower tail)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def dominant_cause(terms: list[float]) -> str:
    """The largest dropout term's cause, if it raises the odds by at least half; else "background"."""
    best = max(range(len(terms)), key=terms.__getitem__)  # the first, at a tie
    return DROPOUT_CAUSES[1 + best] if terms[best] >= CAUSE_MIN_LOG_ODDS else "background"


def truncated_normal(u: float, mean: float, sd: float, low: float, high: float) -> float:
    """Inverse-transform draw from a normal(mean, sd) truncated to ``[low, high]``; ``sd == 0`` gives ``mean``."""
    if sd <= 0:
        return clip(mean, low, high)
    lo, hi = normal_cdf((low - mean) / sd), normal_cdf((high - mean) / sd)
    p = clip(lo + u * (hi - lo), 1e-12, 1 - 1e-12)
    return clip(mean + sd * _STANDARD_NORMAL.inv_cdf(p), low, high)


def culture_group(u: float, minority_share: float) -> int:
    """Group 1 or 2 with total probability ``minority_share`` (half each), else the majority group 0."""
    half = minority_share / 2
    return 1 if u < half else 2 if u < 2 * half else 0


def phq9_score(x: float) -> float:
    """A PHQ-9 total: rounded half to even (as numpy does) and kept on 0-27."""
    return clip(float(round(x)), 0.0, 27.0)


# ── agents ──────────────────────────────────────────────────────────────────────────────────────


class RefTherapist(mesa.Agent):
    """A therapist with traits drawn from the population distributions.

    Attributes:
        empathy, humility, repair_skill, consistency, competence: traits on 0-1.
        uses_feedback: uses routine outcome feedback.
        culture: culture group (0 is the majority).
        capacity: caseload carried without strain.
        caseload: the assigned clients.
    """

    def __init__(self, model: ReferenceTherapyModel, index: int):
        super().__init__(model)
        p, rng = model.p, model.rng
        self.index = index
        self.empathy = truncated_normal(rng.random(), p["therapist_empathy_mean"], p["therapist_empathy_sd"], 0, 1)
        self.humility = truncated_normal(rng.random(), p["therapist_humility_mean"], p["therapist_humility_sd"], 0, 1)
        self.repair_skill = truncated_normal(rng.random(), p["therapist_repair_mean"], p["therapist_repair_sd"], 0, 1)
        self.consistency = truncated_normal(
            rng.random(), p["therapist_consistency_mean"], p["therapist_consistency_sd"], 0, 1
        )
        self.competence = truncated_normal(
            rng.random(), p["therapist_competence_mean"], p["therapist_competence_sd"], 0, 1
        )
        self.uses_feedback = rng.random() < p["therapist_feedback_share"]
        self.culture = culture_group(rng.random(), p["therapist_minority_share"])
        # Capacity varies about its mean by roughly a quarter (lognormal, mean-preserving).
        z = rng.standard_normal()
        sd = p["therapist_capacity_sd"]
        self.capacity = max(1.0, float(round(p["therapist_capacity_mean"] * math.exp(sd * z - sd**2 / 2))))
        self.caseload: list[RefClient] = []

    @property
    def load(self) -> int:
        """Clients assigned."""
        return len(self.caseload)

    def take(self, client: RefClient) -> None:
        """Add ``client`` to this therapist's caseload."""
        client.therapist = self
        self.caseload.append(client)


class RefClient(mesa.Agent):
    """A client: traits drawn at creation, dyad constants at intake, state advanced by :meth:`step`.

    The state is on 0-1 for bond, goal and task agreement, disclosure, hope and engagement, and on
    the PHQ-9 scale (0-27) for severity.
    """

    def __init__(self, model: ReferenceTherapyModel, index: int):
        super().__init__(model)
        p, rng = model.p, model.rng
        self.index = index
        self.therapist: RefTherapist | None = None

        # Traits. Attachment anxiety and avoidance: a Gaussian copula on the ECR-R 1-7 scale.
        intake = truncated_normal(rng.random(), p["intake_phq9_mean"], p["intake_phq9_sd"], p["intake_phq9_min"], 27)
        # PHQ-9 is an integer score; a score at the admission floor stays admitted.
        self.intake_phq9 = max(float(round(intake)), float(math.ceil(p["intake_phq9_min"] - 1e-9)))
        z_anxiety, z_other = rng.standard_normal(), rng.standard_normal()
        rho = p["attachment_correlation"]
        u_anxiety = normal_cdf(z_anxiety)
        u_avoidance = normal_cdf(rho * z_anxiety + math.sqrt(1 - rho**2) * z_other)
        sd = p["attachment_sd"]
        self.attachment_anxiety = truncated_normal(u_anxiety, p["attachment_anxiety_mean"], sd, 1, 7)
        self.attachment_avoidance = truncated_normal(u_avoidance, p["attachment_avoidance_mean"], sd, 1, 7)
        cutoff = p["attachment_cutoff"]
        self.attachment_style = (self.attachment_anxiety >= cutoff) + 2 * (self.attachment_avoidance >= cutoff)
        self.culture = culture_group(rng.random(), p["client_minority_share"])
        self.salience = truncated_normal(rng.random(), p["cultural_salience_mean"], p["cultural_salience_sd"], 0, 1)
        self.expectancy = truncated_normal(rng.random(), p["expectancy_mean"], p["expectancy_sd"], 0, 1)
        self.readiness = truncated_normal(rng.random(), p["readiness_mean"], p["readiness_sd"], 0, 1)
        self.barriers = truncated_normal(rng.random(), p["barriers_mean"], p["barriers_sd"], 0, 1)
        self.support = truncated_normal(rng.random(), p["support_mean"], p["support_sd"], 0, 1)
        self.perception_noise = rng.standard_normal()

    # ── intake ──────────────────────────────────────────────────────────────────────────────────

    def intake(self) -> None:
        """Dyad constants from the parameters and both parties' traits, then the state before session 1.

        Called once every client has a therapist (cancellation risk depends on the final caseload).
        """
        p, t = self.model.p, self.therapist
        self.anxiety = anxiety = (self.attachment_anxiety - 1.0) / 6.0
        self.avoidance = avoidance = (self.attachment_avoidance - 1.0) / 6.0
        self.cultural_match = self.culture == t.culture
        self.strain = strain = (not self.cultural_match) * self.salience * (1.0 - t.humility)
        self.perceived_empathy = perceived = clip(
            t.empathy * (1.0 - p["cultural_strain_empathy"] * strain)
            + p["perceived_empathy_noise"] * self.perception_noise,
            0.0,
            1.0,
        )
        self.bond_target = clip(
            p["bond_base"] + p["bond_empathy_weight"] * perceived - p["avoidant_trust_penalty"] * avoidance, 0.0, 1.0
        )
        sessions_worth = (1.0 + p["anxious_bond_speedup"] * anxiety) * (1.0 - p["avoidant_bond_slowdown"] * avoidance)
        self.bond_speed = 1.0 - (1.0 - p["bond_rate"]) ** sessions_worth
        self.goal_target = clip(p["agreement_base"] + p["goal_readiness_weight"] * self.readiness, 0.0, 1.0)
        self.task_target = clip(p["agreement_base"] + p["task_competence_weight"] * t.competence, 0.0, 1.0)
        self.trust = 1.0 - p["avoidant_trust_weight"] * avoidance
        self.rupture_scale = p["rupture_rate"] * (1.0 - p["rupture_empathy_protection"] * perceived)
        relative = 1.0 + p["rupture_anxiety"] * anxiety + p["rupture_avoidance"] * avoidance
        relative += p["cultural_strain_rupture"] * strain
        self.rupture_static = clip(self.rupture_scale * relative, 0.0, 1.0)
        self.rupture_drop = p["rupture_depth"] * (1.0 + p["anxious_rupture_fragility"] * anxiety)
        floor = p["repair_skill_floor"]
        self.repair_open = p["repair_rate"] * (floor + (1.0 - floor) * t.repair_skill)
        self.repair_chance = self.repair_open * (1.0 - p["withdrawal_concealment"] * avoidance)
        overload = max(0.0, t.load / t.capacity - 1.0)
        self.cancel_risk = p["cancellation_rate"] * (1.0 - t.consistency) + p["overload_cancellation"] * overload
        self.break_dent = p["cancellation_trust_dent"] * (1.0 + p["anxious_break_sensitivity"] * anxiety)
        self.attend_logit = p["attendance_base"] - p["barriers_attendance"] * self.barriers
        self.shock = p["life_event_size"] * (1.0 - p["support_buffer"] * self.support)

        # State before the first session: alliance at its initial level, hope at expectancy.
        start = p["alliance_initial"]
        self.bond = self.goal = self.task = start
        self.disclosure = start * self.trust
        self.hope = self.expectancy
        self.engagement = (start + self.expectancy + self.readiness) / 3.0
        self.severity = self.phq9 = self.intake_phq9
        self.active = True
        self.end_type = "active"
        self.end_week = 0
        self.dropout_cause = ""
        self.sessions = 0
        self.pending = False  # an unrepaired rupture
        self.pending_drop = 0.0  # bond lost at that rupture
        self.ruptures = 0
        self.repairs = 0
        self.rupture_causes: list[str] = []
        self.missed_run = 0  # consecutive missed sessions
        self.below_run = 0  # consecutive sessions below caseness
        self.abandonment = 0.0  # reaction to cancelled weeks: +1 each, halved at each attended session
        self.off_track = False
        self.ever_off_track = False
        self.early_alliance_sum = 0.0  # WAI-SR summed over sessions 1-3
        self.early_goal_sum = 0.0
        self.alliance_sum = 0.0  # WAI-SR summed over attended sessions

    # ── the week ────────────────────────────────────────────────────────────────────────────────

    @property
    def alliance(self) -> float:
        """The alliance on 0-1: the mean of bond, goal and task agreement."""
        return (self.bond + self.goal + self.task) / 3.0

    @property
    def wai(self) -> float:
        """The alliance on the WAI-SR (12 items, 12-60)."""
        return 12.0 + 16.0 * (self.bond + self.goal + self.task)

    def step(self) -> None:
        """One weekly session slot: cancellation, attendance, the session, symptoms, ending."""
        if not self.active:
            return
        m = self.model
        p, rng, week = m.p, m.rng, m.week
        threshold = p["weak_alliance_threshold"]

        # 1. Therapist cancellations and holidays.
        cancelled = m.holiday or rng.random() < self.cancel_risk

        # 2. Attendance.
        p_attend = expit(self.attend_logit - p["engagement_attendance"] * (1.0 - self.engagement))
        attended = not cancelled and rng.random() < p_attend
        missed = not cancelled and not attended
        flagged = attended and self.therapist.uses_feedback and self.off_track

        # A cancelled week dents trust and adds to an abandonment reaction that raises the risk of
        # a rupture at the sessions after it.
        if cancelled:
            self.bond = max(self.bond - self.break_dent, 0.0)
            self.abandonment += 1.0

        # 3. Ruptures and repair.
        break_risk = p["anxious_break_sensitivity"] * self.rupture_scale * self.anxiety * self.abandonment
        drop = regain = 0.0  # bond lost at a rupture this week, regained at a repair
        repaired = False
        if attended and self.pending:
            p_repair = self.repair_open + p["feedback_repair_boost"] if flagged else self.repair_chance
            if rng.random() < p_repair:
                repaired = True
                regain = self.pending_drop * (1.0 + p["repair_bonus"])
                self.pending = False
                self.repairs += 1
        elif attended and rng.random() < self.rupture_static + break_risk:
            drop = self.rupture_drop
            self.pending = True
            self.pending_drop = self.rupture_drop
            self.ruptures += 1
            self.rupture_causes.append(self.rupture_cause(break_risk))
        if attended:
            self.abandonment *= p["break_reaction_decay"]

        # Alliance: the bond grows toward its target only while no rupture is unrepaired, and not at
        # the session spent on a repair; goals and tasks converge through shared goal setting;
        # feedback renegotiates a flagged client's goals.
        if attended:
            growth = 0.0 if self.pending or repaired else self.bond_speed
            self.bond += growth * (self.bond_target - self.bond) - drop + regain
            collaboration = p["collaboration_rate"]
            share = p["rupture_agreement_share"]  # a repair mends the bond; agreement recovers by collaboration
            self.goal += collaboration * (self.goal_target - self.goal) - share * drop
            if flagged:
                self.goal += p["feedback_goal_boost"] * (1.0 - self.goal)
            self.task += collaboration * (self.task_target - self.task) - share * drop
            self.bond = clip(self.bond, 0.0, 1.0)
            self.goal = clip(self.goal, 0.0, 1.0)
            self.task = clip(self.task, 0.0, 1.0)
        alliance = self.alliance
        if attended:
            self.disclosure += p["disclosure_rate"] * (self.bond * self.trust - self.disclosure)
            self.hope += p["remoralization_rate"] * self.bond * (1.0 - self.hope)

        # 4. Symptom change: negatively accelerated improvement by the session's dose, gated by
        # disclosure; weak alliances can make things worse; life events; natural remission and drift.
        improve = worsen = 0.0
        if attended:
            w_a = p["alliance_improvement_weight"]
            w_c = p["competence_improvement_weight"]
            w_h = p["hope_improvement_weight"]
            dose = (w_a * alliance + w_c * self.therapist.competence + w_h * self.hope) / (w_a + w_c + w_h + 1e-12)
            gate = 1.0 - p["disclosure_gate"] * (1.0 - self.disclosure)
            engaged = 1.0 - p["engagement_dose_weight"] + p["engagement_dose_weight"] * self.engagement
            improve = p["improvement_rate"] * dose * gate * engaged * self.severity
            weakness = max(0.0, threshold - alliance) / (threshold + 1e-12)
            worsen = p["worsening_rate"] * weakness * (1.0 - p["feedback_adaptation"] * flagged)
        life_event = rng.random() < p["life_event_rate"]
        change = worsen - improve + self.shock * life_event - p["natural_recovery_rate"] * self.severity
        self.severity = clip(self.severity + change + p["symptom_noise_sd"] * rng.standard_normal(), 0.0, 27.0)

        # The PHQ-9 given at the session; felt progress feeds hope; engagement follows.
        if attended:
            score = phq9_score(self.severity + p["measurement_error_sd"] * rng.standard_normal())
            self.hope = clip(self.hope + p["progress_hope_weight"] * (self.phq9 - score), 0.0, 1.0)
            self.phq9 = score
            self.sessions += 1
            target = (self.hope + alliance + self.readiness) / 3.0
            self.engagement += p["engagement_rate"] * (target - self.engagement)
            wai = self.wai
            if self.sessions <= 3:
                self.early_alliance_sum += wai
                self.early_goal_sum += self.goal
            self.alliance_sum += wai

            # Routine outcome monitoring: not on track when the score has risen by the flagging
            # threshold since intake. Every client is classified; only feedback users act on it.
            worsened = self.phq9 - self.intake_phq9 >= p["not_on_track_worsening"]
            self.off_track = self.sessions >= p["not_on_track_from_session"] and worsened
            self.ever_off_track = self.ever_off_track or self.off_track
            self.missed_run = 0
            self.below_run = self.below_run + 1 if self.phq9 < CASENESS else 0
        elif missed:
            self.missed_run += 1

        # 5. Endings: completion of the planned sessions or of the course window, a good-enough
        # ending, and otherwise a dropout hazard whose largest term is recorded as the cause.
        completed = self.sessions >= p["planned_sessions"] or week >= m.last_week
        good_enough = (
            attended
            and not completed
            and self.below_run >= p["good_enough_run"]
            and self.sessions >= p["good_enough_min_sessions"]
            and rng.random() < p["good_enough_rate"]
        )
        dropout = False
        if not completed and not good_enough:
            terms = self.dropout_terms(week, alliance)
            logit = p["dropout_base"]
            for term in terms:
                logit += term
            if rng.random() < expit(logit):
                dropout = True
                self.dropout_cause = dominant_cause(terms)
        if completed or good_enough or dropout:
            self.end_type = "completed" if completed else "good_enough" if good_enough else "dropout"
            self.end_week = week
            self.active = False

    def dropout_terms(self, week: int, alliance: float) -> list[float]:
        """Log-odds contributions to the dropout hazard, in the order of ``DROPOUT_CAUSES[1:-1]``.

        Alliance counts from the weak-alliance threshold and engagement from the midpoint of its
        scale: below them they add risk, above them they protect. Every other term is zero when its
        risk factor is absent.
        """
        p = self.model.p
        return [
            p["dropout_alliance"] * (p["weak_alliance_threshold"] - alliance),
            p["dropout_rupture"] * self.pending,
            p["dropout_engagement"] * (0.5 - self.engagement),
            p["dropout_barriers"] * self.barriers,
            p["dropout_early"] * (week <= p["early_phase_weeks"]),
            p["dropout_missed"] * self.missed_run,
            p["dropout_improved"] * (self.phq9 < CASENESS),
        ]

    def rupture_cause(self, break_risk: float) -> str:
        """What a rupture is attributed to (a name from ``RUPTURE_CAUSES``), from its relative risks.

        The relative risk a factor adds to the base risk (1) names the rupture when it is the largest
        (the last, at a tie) and at least half the base; otherwise the rupture is everyday strain.
        """
        p = self.model.p
        added = {
            "confrontation": p["rupture_anxiety"] * self.anxiety,
            "withdrawal": p["rupture_avoidance"] * self.avoidance,
            "cultural misunderstanding": p["cultural_strain_rupture"] * self.strain,
            "a break": break_risk / (self.rupture_scale + 1e-12),
        }
        best, cause = 0.5, "everyday strain"
        for name, risk in added.items():
            if risk >= best:
                best, cause = risk, name
        return cause

    # ── after the course ────────────────────────────────────────────────────────────────────────

    def follow_up(self) -> None:
        """Final PHQ-9 and follow-up PHQ-9.

        Gains hold or relapse over the follow-up: a client who ends below caseness relapses with a
        probability that support built in therapy (social support and the alliance internalised)
        reduces; everyone else follows the natural course of remission.
        """
        p, rng = self.model.p, self.model.rng
        z_end, u_relapse, z_follow = rng.standard_normal(), rng.random(), rng.standard_normal()
        err = p["measurement_error_sd"]
        assessed = phq9_score(self.severity + err * z_end)
        self.final_phq9 = self.phq9 if p["outcome_measure"] == "last_observed" else assessed

        weeks = p["followup_weeks"]
        mean_wai = self.alliance_sum / self.sessions if self.sessions > 0 else 12.0
        internalised = (mean_wai - 12.0) / 48.0 * min(1.0, self.sessions / p["planned_sessions"])
        w = p["support_built_weight"]
        built = (1.0 - w) * self.support + w * internalised
        p_relapse = 1.0 - (1.0 - p["relapse_rate"] * (1.0 - p["relapse_support_buffer"] * built)) ** (weeks / 26.0)
        relapse = self.severity < CASENESS and u_relapse < p_relapse
        remitted = self.severity * (1.0 - p["natural_recovery_rate"]) ** weeks
        follow = clip(remitted + p["relapse_size"] * relapse, 0.0, 27.0)
        self.followup_phq9 = phq9_score(follow + err * z_follow) if weeks > 0 else self.final_phq9
        self.relapse = relapse and weeks > 0

    def outcome(self) -> dict[str, Any]:
        """Per-client outcomes, as in :func:`sim.run.client_outcomes` (NaN where undefined)."""
        n_early = min(self.sessions, 3)
        return {
            "therapist": self.therapist.index,
            "intake_phq9": self.intake_phq9,
            "final_phq9": self.final_phq9,
            "followup_phq9": self.followup_phq9,
            "relapse": self.relapse,
            "sessions_attended": self.sessions,
            "end_type": self.end_type,
            "end_session": self.end_week,
            "dropout_cause": self.dropout_cause,
            "early_alliance": self.early_alliance_sum / n_early if n_early else _NAN,
            "mean_alliance": self.alliance_sum / self.sessions if self.sessions else _NAN,
            "early_goal_agreement": 4.0 + 16.0 * self.early_goal_sum / n_early if n_early else _NAN,
            "ruptures": self.ruptures,
            "repairs": self.repairs,
            "perceived_empathy": self.perceived_empathy,
            "cultural_match": self.cultural_match,
            "not_on_track": self.ever_off_track,
        }


# ── matching ────────────────────────────────────────────────────────────────────────────────────


def _least_loaded(therapists: list[RefTherapist]) -> RefTherapist:
    """The therapist with the lowest caseload relative to capacity (ties to the first)."""
    return min(therapists, key=lambda t: t.load / t.capacity)


def _assign_pooled(clients, therapists, client_pool, therapist_pool) -> None:
    """Each client to the least-loaded therapist of its pool while the pool has room, the rest to anyone.

    In-pool places are filled first (clients in arrival order), then the overflow in arrival order.
    """
    members: dict[Any, list[RefTherapist]] = {}
    for t in therapists:
        members.setdefault(therapist_pool(t), []).append(t)
    room = {pool: int(sum(t.capacity for t in ts)) for pool, ts in members.items()}
    overflow = []
    for c in clients:
        pool = client_pool(c)
        if room.get(pool, 0) > 0:
            room[pool] -= 1
            _least_loaded(members[pool]).take(c)
        else:
            overflow.append(c)
    for c in overflow:
        _least_loaded(therapists).take(c)


def assign(policy: str, clients: list[RefClient], therapists: list[RefTherapist], rng) -> None:
    """Give every client a therapist under a matching policy; clients arrive in index order."""
    if policy == "random":
        k = len(therapists)
        for c in clients:
            therapists[min(int(rng.random() * k), k - 1)].take(c)
    elif policy == "lowest_caseload":
        for c in clients:
            _least_loaded(therapists).take(c)
    elif policy == "cultural_match":
        _assign_pooled(clients, therapists, lambda c: c.culture, lambda t: t.culture)
    elif policy == "attachment_informed":
        # Insecure clients to the therapists most skilled at relationships (empathy plus repair
        # skill at or above the median), secure clients to the others.
        cut = median(t.empathy + t.repair_skill for t in therapists)
        _assign_pooled(
            clients, therapists, lambda c: c.attachment_style > 0, lambda t: t.empathy + t.repair_skill >= cut
        )
    else:
        raise NotImplementedError(f"the reference model has no matching policy {policy!r}")


# ── cohort metrics ──────────────────────────────────────────────────────────────────────────────


def _mean(xs) -> float:
    xs = list(xs)
    return math.fsum(xs) / len(xs) if xs else _NAN


def _pearson(pairs) -> float:
    pairs = list(pairs)
    if len(pairs) < 2:
        return _NAN
    mx, my = _mean(x for x, _ in pairs), _mean(y for _, y in pairs)
    sxy = math.fsum((x - mx) * (y - my) for x, y in pairs)
    sxx = math.fsum((x - mx) ** 2 for x, _ in pairs)
    syy = math.fsum((y - my) ** 2 for _, y in pairs)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else _NAN


def cohort_metrics(outcomes: list[dict[str, Any]]) -> dict[str, float]:
    """Cohort metrics from per-client outcomes, with the definitions of :mod:`sim.outcomes`.

    Rates of improvement, deterioration and recovery are over finished courses (two or more
    sessions), recovery over finished courses at caseness at intake; dropout is over all clients.
    """
    finished = [o for o in outcomes if o["sessions_attended"] >= FINISHED_SESSIONS]
    seen = [o for o in outcomes if o["sessions_attended"] > 0]
    ruptures = sum(o["ruptures"] for o in outcomes)

    def change(o):
        return o["intake_phq9"] - o["final_phq9"]

    return {
        "dropout_rate": _mean(o["end_type"] == "dropout" for o in outcomes),
        "recovery_rate": _mean(o["final_phq9"] < CASENESS for o in finished if o["intake_phq9"] >= CASENESS),
        "reliable_improvement_rate": _mean(change(o) >= RELIABLE_CHANGE for o in finished),
        "reliable_deterioration_rate": _mean(change(o) <= -RELIABLE_CHANGE for o in finished),
        "mean_sessions": _mean(o["sessions_attended"] for o in outcomes),
        "mean_alliance": _mean(o["mean_alliance"] for o in seen),
        "alliance_outcome_r": _pearson((o["early_alliance"], change(o)) for o in seen),
        "mean_change": _mean(change(o) for o in outcomes),
        "ruptures_per_client": ruptures / len(outcomes),
        "repair_share": sum(o["repairs"] for o in outcomes) / ruptures if ruptures else _NAN,
    }


# ── the model ───────────────────────────────────────────────────────────────────────────────────


class ReferenceTherapyModel(mesa.Model):
    """A cohort of therapy courses, one agent per therapist and client; ``step()`` is one week.

    Args:
        n_clients: clients in the cohort.
        n_therapists: therapists.
        seed: seed of the model's Generator (``self.rng``), from which every draw is taken.
        parameters: a whole parameter set (registry names), for sampled sweeps through
            :func:`mesa.batch_run`; ``**params`` are applied on top.
        **params: registry parameters (see :mod:`sim.parameters`), validated; the rest default.

    Attributes:
        p: every parameter, validated.
        therapist_agents, client_agents: the agents, in index order.
        week: weeks stepped so far.
        datacollector: each week, the model attributes in :data:`WEEKLY_REPORTERS` and
            :data:`MODEL_METRICS` (the metrics are NaN until the course ends).
        dropout_rate, recovery_rate, ...: the cohort metrics (attributes named by
            :data:`MODEL_METRICS`), set when every course has ended, so that
            :func:`mesa.batch_run` returns them in its final row.
        metrics: the same metrics in a dict keyed by their :mod:`sim.outcomes` names.
    """

    def __init__(
        self,
        n_clients: int = 500,
        n_therapists: int = 25,
        seed: int | None = None,
        parameters: dict[str, Any] | None = None,
        **params,
    ):
        super().__init__(seed=seed)
        if n_clients < 1 or n_therapists < 1:
            raise ValueError(f"need at least one client and one therapist, got {n_clients} and {n_therapists}")
        self.p = resolve({**(parameters or {}), **params}, where="ReferenceTherapyModel")
        self.last_week = self.p["planned_sessions"] + self.p["extra_weeks"]
        self.week = 0
        self.holiday = False
        self.metrics: dict[str, float] = {}  # the cohort metrics by their sim.outcomes names, once finished
        for attribute in MODEL_METRICS.values():
            setattr(self, attribute, _NAN)

        self.therapist_agents = [RefTherapist(self, j) for j in range(n_therapists)]
        self.client_agents = [RefClient(self, i) for i in range(n_clients)]
        assign(self.p["matching_policy"], self.client_agents, self.therapist_agents, self.rng)
        for client in self.client_agents:
            client.intake()

        # Collected after every step, not at creation: batch_run reads the row of index steps - 1.
        reporters = {name: name for name in WEEKLY_REPORTERS + tuple(MODEL_METRICS.values())}
        self.datacollector = mesa.DataCollector(model_reporters=reporters)

    def step(self) -> None:
        """Advance every client by one weekly session slot; after the last week, the follow-up."""
        self.week += 1
        start = self.p["planned_break_start"]
        self.holiday = 0 < start <= self.week < start + self.p["planned_break_weeks"]  # start 0: no holiday
        self.agents_by_type[RefClient].shuffle_do("step")
        if self.week >= self.last_week or self.active_clients == 0:
            self.finish()
        self.datacollector.collect(self)

    def run_model(self) -> None:
        """Step until every course has ended."""
        while self.running:
            self.step()

    def finish(self) -> None:
        """End-of-course assessment and follow-up, then the cohort metrics; stops the model."""
        for client in self.client_agents:
            client.follow_up()
        self.metrics = cohort_metrics(self.outcomes())
        for name, value in self.metrics.items():
            setattr(self, MODEL_METRICS[name], value)
        self.running = False

    def outcomes(self) -> list[dict[str, Any]]:
        """Per-client outcomes (after :meth:`finish`), in client index order."""
        return [c.outcome() for c in self.client_agents]

    # ── weekly reporters ────────────────────────────────────────────────────────────────────────

    @property
    def active_clients(self) -> int:
        """Clients still in therapy."""
        return sum(c.active for c in self.client_agents)

    @property
    def current_alliance(self) -> float:
        """Mean current WAI-SR (12-60) of clients who have attended at least one session."""
        return _mean(c.wai for c in self.client_agents if c.sessions > 0)

    @property
    def cumulative_dropout(self) -> float:
        """Share of the cohort that has dropped out so far."""
        return _mean(c.end_type == "dropout" for c in self.client_agents)

    @property
    def mean_phq9(self) -> float:
        """Mean of each client's last administered PHQ-9."""
        return _mean(c.phq9 for c in self.client_agents)
