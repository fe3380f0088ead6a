"""The reference model: alliancesim's rules written the way the field writes an agent-based model.

Every therapist and client is a :class:`mesa.Agent` holding its own Python floats; the model steps
the clients one by one each week, and each client draws its own random numbers one at a time from
the model's ``numpy`` Generator (``self.model.rng``), naming each draw after the decision it serves
(:meth:`RefClient.uniform`, :meth:`RefClient.normal`). Nothing is vectorised. The rules are a
line-by-line translation of the engine's (``sim/population.py``; the matching policies of
``sim/matching.py``; ``sim/dyads.py``: :func:`~sim.dyads.intake` and :func:`~sim.dyads.initial_state`;
``sim/dynamics.py``: the weekly kernel; ``sim/reasons.py``: the Shapley split of a dropout's chance of
leaving over its reasons; ``sim/expected.py``: the expected-recovery curve of routine outcome
monitoring; ``sim/followup.py``: the end-of-course assessment and the weekly follow-up with relapse;
the definitions of ``sim/outcomes.py`` and ``sim/run.py``), with the same formulas in the same order
within a week, so that:

* it is the baseline the benchmarks compare the engine against (``benchmarks/compare_batch_run.py``),
* it is a test oracle (``tests/test_reference_model.py``): its random numbers differ from the engine's,
  but on the same scenario its cohort statistics agree with the engine's within sampling error; and
  given the engine's population, assignment and draws it gives the same course, client by client.

The Shapley values here are the textbook formula over every hazard term, an absent term included
(it gets zero from the formula itself), written independently of the engine's bitmask and
closed-form versions. Constants are restated, not imported; the parameters come from the registry
(:func:`sim.parameters.resolve`) and the expected-recovery curve from the file the engine reads
(``sim/expected_recovery.toml``), both data that calibration rewrites.

Translated from the git blobs ``sim/dynamics.py`` 3447433d4d2e30f9d68a8a6c8290afb381735758 (the numba
kernel ``_advance`` and ``_attribute``), ``sim/dyads.py`` 181300c94323a9da1ce6837541e664dc47039621,
``sim/population.py`` cbc43272b7d8da4386c982af61ddd9158ee1cbdd, ``sim/reasons.py``
a939ec3cce675696a44da71f40678a12cb70ad0d, ``sim/expected.py`` f6eb742e1a5e97258c837710d8bd8435843f1726,
``sim/followup.py`` afbd06709a59b253fa65d09a1af2d3b62c0ebdec, ``sim/outcomes.py``
ce4ce5ddcc3ba780ac7e5d043396cf9a1358026c, ``sim/run.py`` 76dd31444f6ea3bc4dd6881be65f9de1a0b9b4a9 and
``sim/matching.py`` 86e8ad71617ca82474b3704686cb686e764bfad6 (commit ad42ff5); first written from the
array version of the kernel, blob ``3e44b1d3d76efdbce5b62e59802c0f6028c9498d``. Where the engine
computes a number another way for speed (a missed session's shares from three exponentials, the
expected-recovery curve's decay looked up from a table), the reference keeps the formula.

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

import itertools
import math
import tomllib
from importlib.resources import files
from statistics import NormalDist, median
from typing import Any

import mesa

from sim.mesa_compat import let_go_of_finished
from sim.parameters import resolve

# Constants restated from sim.dynamics, sim.outcomes, sim.population, sim.reasons, sim.expected and
# sim.followup (the oracle does not borrow the engine's code).
CASENESS = 10  # PHQ-9 >= 10
RELIABLE_CHANGE = 6  # PHQ-9 points
EARLY_RESPONSE_SESSION = 4  # the PHQ-9 at the fourth attended session is the early response
FINISHED_SESSIONS = 2  # a finished course has at least two sessions attended
RESPONSIVENESS_RANGE = (-1.0, 3.0)  # responsiveness is normal about 1, truncated to this range
EXPECTED_CENTRE = 17.0  # PHQ-9 intake at which the expected-recovery asymptote is a0
ASSESSMENT_WEEKS = 4  # the PHQ-9 every four weeks of the follow-up
YEAR = 52  # relapse_rate is the chance of relapsing within a year
END_TYPES = ("active", "completed", "good_enough", "dropout")
REASONS = (
    "weak_alliance",
    "unrepaired_rupture",
    "therapy_breaks",
    "low_engagement",
    "practical_barriers",
    "life_circumstances",
    "felt_better",
)
"""Dropout reasons, in the order of the engine's per-reason shares."""
DROPOUT_CAUSES = ("", *REASONS)
"""A dropout's main reason ("" for clients who did not drop out)."""
HAZARD_TERMS = ("alliance", "rupture", "engagement", "barriers", "missed", "improved", "breaks")
"""The dropout hazard's terms, in the order :meth:`RefClient.dropout_terms` returns them."""
TERM_REASON = {
    "alliance": "weak_alliance",
    "rupture": "unrepaired_rupture",
    "engagement": "low_engagement",
    "barriers": "practical_barriers",
    "improved": "felt_better",
    "breaks": "therapy_breaks",
}
"""The reason each hazard term is put down to; "missed" is credited back to why sessions were missed."""
MISS_CAUSES = ("practical_barriers", "low_engagement", "therapy_breaks", "life_circumstances")
"""What a missed session is put down to: the three attendance terms, then the background rate of missing."""
BACKGROUND_REASON = "life_circumstances"  # the part of leaving that no risk in therapy explains
RELATIONSHIP_REASONS = ("weak_alliance", "unrepaired_rupture", "therapy_breaks")
"""Reasons of the category "dissatisfaction with the therapy or the relationship" (client surveys)."""
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
    "alliance_dropout_d",
    "relationship_share",
)
"""Cohort metrics, named as in :data:`sim.outcomes.METRICS` (:func:`cohort_metrics` returns them all)."""

MODEL_METRICS = {name: name for name in METRICS}
"""Model attribute of each metric, set after the run and reported by the DataCollector."""

WEEKLY_REPORTERS = ("active_clients", "current_alliance", "cumulative_dropout", "mean_phq9")
"""Model attributes the DataCollector records every week."""

_STANDARD_NORMAL = NormalDist()
_NAN = float("nan")


def load_expected_recovery() -> tuple[float, float, float]:
    """The expected-recovery curve's ``a0``, ``a1`` and ``rate``, from the file the engine reads.

    The numbers are refitted by ``make calibrate`` (data, like the calibrated parameters), so they
    are read rather than restated; the formula that uses them is :meth:`RefClient.expected_score`.
    """
    with files("sim").joinpath("expected_recovery.toml").open("rb") as f:
        curve = tomllib.load(f)["curve"]
    return float(curve["a0"]), float(curve["a1"]), float(curve["rate"])


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


def shapley(base: float, terms: list[float]) -> tuple[list[float], float]:
    """Each term's share of ``p = expit(base + sum(terms))``, and the background share ``expit(base) / p``.

    The Shapley value (Shapley 1953) of term ``j`` in the game ``v(S) = expit(base + sum of the terms
    in S)`` is the sum, over the coalitions ``S`` of the other terms, of
    ``|S|! (n - |S| - 1)! / n! * (v(S + j) - v(S))``. Every term is a player; a zero term adds
    nothing to any coalition, so the formula itself gives it zero. By efficiency the shares and the
    background share sum to one.
    """
    n = len(terms)
    p = expit(base + sum(terms))
    shares = []
    for j in range(n):
        others = [q for q in range(n) if q != j]
        phi = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for coalition in itertools.combinations(others, size):
                x = base + sum(terms[q] for q in coalition)
                phi += weight * (expit(x + terms[j]) - expit(x))
        shares.append(phi / p)
    return shares, expit(base) / p


def relapse_base_hazard(relapse_rate: float, decay_weeks: float) -> float:
    """Weekly relapse hazard at the end of therapy that makes ``relapse_rate`` the one-year chance.

    The hazard in follow-up week t is the base times ``exp(-(t - 1) / decay_weeks)``; for a client with
    no residual symptoms and no support built, the chance of relapsing within 52 weeks is then
    ``1 - exp(-base * sum of exp(-t / decay_weeks) over t = 0..51)``, which this solves for the base.
    """
    profile = math.fsum(math.exp(-t / decay_weeks) for t in range(YEAR))
    return -math.log1p(-min(relapse_rate, 1.0 - 1e-12)) / profile


# ── agents ──────────────────────────────────────────────────────────────────────────────────────


class RefTherapist(mesa.Agent):
    """A therapist with traits drawn from the population distributions.

    Attributes:
        empathy, humility, repair_skill, consistency, competence: traits on 0-1.
        uses_feedback: uses routine outcome feedback.
        culture: culture group (0 is the majority).
        capacity: caseload carried without strain.
        retention: retention skill on 0-1 (contracting, flexible scheduling, reaching out after a
            missed session), independent of the other traits.
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
        self.retention = truncated_normal(
            rng.random(), p["therapist_retention_mean"], p["therapist_retention_sd"], 0, 1
        )
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
        # The client's own rate of response, relative to the average (below 0: worsens with therapy).
        self.responsiveness = truncated_normal(rng.random(), 1.0, p["responsiveness_sd"], *RESPONSIVENESS_RANGE)

    # ── random numbers ──────────────────────────────────────────────────────────────────────────

    def uniform(self, decision: str) -> float:
        """A uniform draw on [0, 1) from the model's Generator for ``decision``.

        ``decision`` names the draw as the engine does (:class:`sim.dynamics.Draws` fields in the
        course, the ``followup*`` streams after it); it does not change the number drawn.
        """
        return self.model.rng.random()

    def normal(self, decision: str) -> float:
        """A standard normal draw from the model's Generator for ``decision`` (see :meth:`uniform`)."""
        return self.model.rng.standard_normal()

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
        # The therapist's retention skill removes part of every dropout risk and of what barriers
        # cost attendance (flexible scheduling).
        self.hold = 1.0 - p["retention_protection"] * t.retention
        self.barrier_attend = p["barriers_attendance"] * self.barriers * self.hold
        self.shock = p["life_event_size"] * (1.0 - p["support_buffer"] * self.support)
        # Routine outcome monitoring: the share of intake expected to remain after many sessions.
        a0, a1, _ = self.model.expected_recovery
        self.expected_asymptote = clip(a0 + a1 * (self.intake_phq9 - EXPECTED_CENTRE) / 10.0, 0.0, 1.0)

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
        self.reason_shares = dict.fromkeys(REASONS, 0.0)  # a dropout's reasons, all 0 otherwise
        self.sessions = 0
        self.pending = False  # an unrepaired rupture
        self.pending_drop = 0.0  # bond lost at that rupture
        self.ruptures = 0
        self.repairs = 0
        self.rupture_causes: list[str] = []
        self.missed_run = 0  # consecutive missed sessions
        self.miss_credit = dict.fromkeys(MISS_CAUSES, 0.0)  # why the current run of sessions was missed
        self.well_run = 0  # consecutive sessions reliably improved and below caseness
        self.abandonment = 0.0  # reaction to cancelled weeks: +1 each, decaying at each attended session
        self.off_track = False
        self.ever_off_track = False
        self.gain_pending = 0.0  # PHQ-9 points of the last sudden gain, until it reverses (0: none)
        self.gains = 0
        self.reversals = 0
        self.early_alliance_sum = 0.0  # WAI-SR summed over sessions 1-3
        self.early_goal_sum = 0.0
        self.alliance_sum = 0.0  # WAI-SR summed over attended sessions
        self.early_phq9 = _NAN  # the PHQ-9 at the fourth attended session

    # ── the week ────────────────────────────────────────────────────────────────────────────────

    @property
    def alliance(self) -> float:
        """The alliance on 0-1: the mean of bond, goal and task agreement."""
        return (self.bond + self.goal + self.task) / 3.0

    @property
    def wai(self) -> float:
        """The alliance on the WAI-SR (12 items, 12-60)."""
        return 12.0 + 16.0 * (self.bond + self.goal + self.task)

    def expected_score(self, session: int) -> float:
        """The PHQ-9 expected at the ``session``-th attended session for this client's intake."""
        a, rate = self.expected_asymptote, self.model.expected_recovery[2]
        return self.intake_phq9 * (a + (1.0 - a) * math.exp(-rate * session))

    def step(self) -> None:
        """One weekly session slot: cancellation, attendance, the session, symptoms, ending."""
        if not self.active:
            return
        m = self.model
        p, week = m.p, m.week
        threshold = p["weak_alliance_threshold"]

        # 1. Therapist cancellations and holidays.
        cancelled = m.holiday or self.uniform("cancel") < self.cancel_risk

        # 2. Attendance: engagement, practical barriers (after the therapist's flexibility) and the
        # reaction to a break. A missed session's chance of being missed is split over those causes
        # and the background rate of missing.
        attended = missed = False
        if not cancelled:
            disengaged = p["engagement_attendance"] * (1.0 - self.engagement)
            broken = p["break_attendance"] * self.abandonment
            base = p["attendance_base"]
            attended = self.uniform("attend") < expit(base - self.barrier_attend - disengaged - broken)
            missed = not attended
            if missed:
                shares, background = shapley(-base, [self.barrier_attend, disengaged, broken])
                for cause, share in zip(MISS_CAUSES, [*shares, background], strict=True):
                    self.miss_credit[cause] += share
        flagged = attended and self.therapist.uses_feedback and self.off_track

        # A cancelled week dents trust and adds to an abandonment reaction that, until later sessions
        # fade it, lowers attendance and raises the risks of a rupture and of leaving.
        if cancelled:
            self.bond = max(self.bond - self.break_dent, 0.0)
            self.abandonment += 1.0

        # 3. Ruptures and repair.
        break_risk = p["anxious_break_sensitivity"] * self.rupture_scale * self.anxiety * self.abandonment
        drop = regain = 0.0  # bond lost at a rupture this week, regained at a repair
        repaired = False
        if attended and self.pending:
            p_repair = self.repair_open + p["feedback_repair_boost"] if flagged else self.repair_chance
            if self.uniform("repair") < p_repair:
                repaired = True
                regain = self.pending_drop * (1.0 + p["repair_bonus"])
                self.pending = False
                self.repairs += 1
        elif attended and self.uniform("rupture") < self.rupture_static + break_risk:
            drop = self.rupture_drop
            self.pending = True
            self.pending_drop = self.rupture_drop
            self.ruptures += 1
            self.rupture_causes.append(self.rupture_cause(break_risk))
        if attended:
            self.abandonment *= p["break_reaction_decay"]

        # Alliance: the bond grows toward its target only while no rupture is unrepaired, and not at
        # the session spent on a repair; goals and tasks converge through shared goal setting;
        # feedback renegotiates a flagged client's goals and addresses motivation.
        if attended:
            if not self.pending and not repaired:
                self.bond += self.bond_speed * (self.bond_target - self.bond)
            collaboration = p["collaboration_rate"]
            self.goal += collaboration * (self.goal_target - self.goal)
            self.task += collaboration * (self.task_target - self.task)
        self.bond = clip(self.bond - drop + regain, 0.0, 1.0)
        share = p["rupture_agreement_share"]  # a repair mends the bond; agreement recovers by collaboration
        self.goal -= share * drop
        if flagged:
            self.goal += p["feedback_goal_boost"] * (1.0 - self.goal)
            self.engagement += p["feedback_engagement_boost"] * (1.0 - self.engagement)
        self.goal = clip(self.goal, 0.0, 1.0)
        self.task = clip(self.task - share * drop, 0.0, 1.0)
        alliance = self.alliance
        if attended:
            self.disclosure += p["disclosure_rate"] * (self.bond * self.trust - self.disclosure)
            # Hope is anchored to expectancy: the bond lifts it part of the way to full hope.
            hope_target = self.expectancy + p["remoralization_lift"] * self.bond * (1.0 - self.expectancy)
            self.hope += p["remoralization_rate"] * (hope_target - self.hope)

        # 4. Symptom change: negatively accelerated improvement by the session's dose at the client's
        # own rate of response, gated by disclosure and stalled by an open rupture; weak alliances
        # can make things worse; life events; natural remission and drift; an earlier sudden gain
        # may be lost again.
        change = -p["natural_recovery_rate"] * self.severity
        adapted = 1.0 - p["feedback_adaptation"] if flagged else 1.0
        if attended:
            w_a = p["alliance_improvement_weight"]
            w_c = p["competence_improvement_weight"]
            w_p = p["empathy_improvement_weight"]
            w_h = p["hope_improvement_weight"]
            brought = w_c * self.therapist.competence + w_p * self.perceived_empathy  # what the therapist brings
            dose = (w_a * alliance + brought + w_h * self.hope) / (w_a + w_c + w_h + w_p + 1e-12)
            gate = 1.0 - p["disclosure_gate"] * (1.0 - self.disclosure)
            engaged = 1.0 - p["engagement_dose_weight"] + p["engagement_dose_weight"] * self.engagement
            # A negative responder worsens with the work of therapy; feedback changes course.
            response = self.responsiveness if self.responsiveness >= 0.0 else self.responsiveness * adapted
            stalled = 1.0 - p["rupture_stall"] * self.pending
            change -= p["improvement_rate"] * response * dose * gate * engaged * stalled * self.severity
            weakness = max(0.0, threshold - alliance) / (threshold + 1e-12)
            change += p["worsening_rate"] * weakness * adapted
        if self.uniform("life_event") < p["life_event_rate"]:
            change += self.shock
        if self.gain_pending > 0.0 and self.uniform("gain_reversal") < p["sudden_gain_reversal"]:
            change += self.gain_pending
            self.gain_pending = 0.0
            self.reversals += 1
        self.severity = clip(self.severity + change + p["symptom_noise_sd"] * self.normal("drift"), 0.0, 27.0)
        # A sudden gain, likelier with disclosure and hope and after a repaired rupture; the bond
        # strengthens after it.
        if attended:
            p_gain = p["sudden_gain_rate"] * self.disclosure * self.hope * (1.0 + p["sudden_gain_trigger"] * repaired)
            if self.uniform("gain") < p_gain:
                gained = p["sudden_gain_size"] * self.severity
                self.severity -= gained
                self.gain_pending = gained
                self.gains += 1
                self.bond += p["sudden_gain_bond"] * (1.0 - self.bond)

        # The PHQ-9 given at the session; felt progress feeds hope; engagement follows.
        if attended:
            score = phq9_score(self.severity + p["measurement_error_sd"] * self.normal("measurement"))
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
            if self.sessions == EARLY_RESPONSE_SESSION:
                self.early_phq9 = score

            # Routine outcome monitoring: not on track when the score lies the margin above the
            # expected-recovery curve for this intake, or the alliance is weak. Every client is
            # classified; only feedback users act on it, at the next session.
            lagging = score - self.expected_score(self.sessions) >= p["not_on_track_margin"]
            weak = alliance < p["alliance_flag_level"]
            self.off_track = self.sessions >= p["not_on_track_from_session"] and (lagging or weak)
            self.ever_off_track = self.ever_off_track or self.off_track
            self.missed_run = 0
            self.miss_credit = dict.fromkeys(MISS_CAUSES, 0.0)
            well = score < CASENESS and self.intake_phq9 - score >= RELIABLE_CHANGE
            self.well_run = self.well_run + 1 if well else 0
        elif missed:
            self.missed_run += 1

        # 5. Endings: completion of the planned sessions or of the course window, a good-enough
        # ending the client chooses once improved reliably and below caseness, and otherwise a
        # dropout hazard whose chance that week is split over the reasons.
        completed = self.sessions >= p["planned_sessions"] or week >= m.last_week
        good_enough = (
            attended
            and not completed
            and self.well_run >= p["good_enough_run"]
            and self.sessions >= p["good_enough_min_sessions"]
            and self.uniform("ending") < p["good_enough_rate"]
        )
        dropout = False
        if not completed and not good_enough:
            terms = self.dropout_terms(alliance)
            if self.uniform("dropout") < expit(p["dropout_base"] + sum(terms)):
                dropout = True
                self.reason_shares = self.dropout_reasons(terms)
                self.dropout_cause = max(REASONS, key=self.reason_shares.__getitem__)  # the first, at a tie
        if completed or good_enough or dropout:
            self.end_type = "completed" if completed else "good_enough" if good_enough else "dropout"
            self.end_week = week
            self.active = False

    def dropout_terms(self, alliance: float) -> list[float]:
        """Log-odds contributions to the dropout hazard, in the order of :data:`HAZARD_TERMS`.

        Each is a risk that is zero when its factor is absent (an alliance at or above the
        reference, no open rupture, full engagement, no barriers, no missed session, no felt
        improvement, no cancelled week still felt); the therapist's retention skill removes part of
        each, and each weighs more before the client has attended ``early_phase_sessions`` sessions.
        The reaction to breaks is the abandonment reaction that raises the rupture risk, weighing
        more for anxious clients.
        """
        p = self.model.p
        scale = self.hold * (1.0 + p["early_risk_amplifier"] * (self.sessions < p["early_phase_sessions"]))
        felt = max(0.0, self.intake_phq9 - self.phq9) / max(self.intake_phq9, 1.0)
        return [
            p["dropout_alliance"] * max(0.0, p["alliance_reference"] - alliance) * scale,
            p["dropout_rupture"] * self.pending * scale,
            p["dropout_engagement"] * (1.0 - self.engagement) * scale,
            p["dropout_barriers"] * self.barriers * scale,
            p["dropout_missed"] * self.missed_run * scale,
            p["dropout_improved"] * felt * scale,
            p["dropout_breaks"] * (1.0 + p["anxious_break_sensitivity"] * self.anxiety) * self.abandonment * scale,
        ]

    def dropout_reasons(self, terms: list[float]) -> dict[str, float]:
        """Each reason's share of this week's chance of leaving (the shares sum to one).

        Every hazard term's Shapley share goes to its reason; the missed sessions' share is split
        over why they were missed, in proportion to the run's accumulated miss credit; the
        background share (leaving with no risk in therapy) is put down to life circumstances.
        """
        shares, background = shapley(self.model.p["dropout_base"], terms)
        reasons = dict.fromkeys(REASONS, 0.0)
        reasons[BACKGROUND_REASON] += background
        credit = sum(self.miss_credit.values())
        for term, share in zip(HAZARD_TERMS, shares, strict=True):
            if term != "missed":
                reasons[TERM_REASON[term]] += share
            elif share > 0.0 and credit > 0.0:
                for cause, missed in self.miss_credit.items():
                    reasons[cause] += share * missed / credit
        return reasons

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

    def end_of_course(self) -> None:
        """The final PHQ-9, and what the client takes into the follow-up.

        The final score is an assessment when the course ends, or the last session's score (routine
        care). Support built in therapy is the client's own social support and the alliance
        internalised, the more so the more of the planned course was attended; it buffers life events
        and the relapse hazard after the course. The relapse hazard rises with residual symptoms.
        """
        p = self.model.p
        assessed = phq9_score(self.severity + p["measurement_error_sd"] * self.normal("followup"))
        self.final_phq9 = self.phq9 if p["outcome_measure"] == "last_observed" else assessed
        mean_wai = self.alliance_sum / self.sessions if self.sessions > 0 else 12.0
        internalised = (mean_wai - 12.0) / 48.0 * min(1.0, self.sessions / p["planned_sessions"])
        w = p["support_built_weight"]
        self.support_built = built = (1.0 - w) * self.support + w * internalised
        self.followup_shock = p["life_event_size"] * (1.0 - p["support_buffer"] * built)
        self.recovered = self.final_phq9 < CASENESS
        self.relapse_hazard = (
            self.model.base_relapse_hazard
            * math.exp(p["relapse_residual"] * self.final_phq9)
            * (1.0 - p["relapse_support_buffer"] * built)
        )
        self.followup_severity = self.severity
        self.followup_phq9 = self.final_phq9  # the last follow-up score
        self.relapse_week = 0  # the follow-up week of a relapse (0: none)
        self.caseness_week = 0  # the first follow-up score at caseness of a client who ended below it (0: none)

    def follow_up_week(self, t: int) -> None:
        """Week ``t`` of the follow-up: remission, drift, life events, relapse, the monthly PHQ-9.

        A client who ended below caseness may relapse, at a hazard highest at the end of therapy and
        falling over the following months; the PHQ-9 is given every four weeks and in the last week.
        """
        p = self.model.p
        sev = self.followup_severity
        change = -p["natural_recovery_rate"] * sev + p["symptom_noise_sd"] * self.normal("followup_drift")
        if self.uniform("followup_life_events") < p["life_event_rate"]:
            change += self.followup_shock
        if self.recovered and not self.relapse_week:
            hazard = self.relapse_hazard * math.exp(-(t - 1) / p["relapse_decay_weeks"])
            if self.uniform("followup_relapse") < 1.0 - math.exp(-hazard):
                self.relapse_week = t
                change += p["relapse_size"]
        self.followup_severity = clip(sev + change, 0.0, 27.0)
        if t % ASSESSMENT_WEEKS == 0 or t == p["followup_weeks"]:
            err = p["measurement_error_sd"]
            self.followup_phq9 = phq9_score(self.followup_severity + err * self.normal("followup_measurement"))
            if self.recovered and not self.caseness_week and self.followup_phq9 >= CASENESS:
                self.caseness_week = t

    def outcome(self) -> dict[str, Any]:
        """Per-client outcomes, as in :func:`sim.run.client_outcomes` (NaN where undefined)."""
        n_early = min(self.sessions, 3)
        return {
            "therapist": self.therapist.index,
            "intake_phq9": self.intake_phq9,
            "final_phq9": self.final_phq9,
            "followup_phq9": self.followup_phq9,
            "relapse": self.relapse_week > 0,
            "relapse_week": self.relapse_week,
            "caseness_week": self.caseness_week,
            "sessions_attended": self.sessions,
            "end_type": self.end_type,
            "end_session": self.end_week,
            "dropout_cause": self.dropout_cause,
            "reason_shares": [self.reason_shares[r] for r in REASONS],
            "early_alliance": self.early_alliance_sum / n_early if n_early else _NAN,
            "mean_alliance": self.alliance_sum / self.sessions if self.sessions else _NAN,
            "early_goal_agreement": 4.0 + 16.0 * self.early_goal_sum / n_early if n_early else _NAN,
            "ruptures": self.ruptures,
            "repairs": self.repairs,
            "perceived_empathy": self.perceived_empathy,
            "cultural_match": self.cultural_match,
            "not_on_track": self.ever_off_track,
            "early_change": self.intake_phq9 - self.early_phq9,
            "sudden_gains": self.gains,
            "gain_reversals": self.reversals,
            "responsiveness": self.responsiveness,
            "therapist_retention": self.therapist.retention,
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


def _cohens_d(first, second) -> float:
    """Cohen's d of two samples, ``first`` minus ``second``, over their pooled standard deviation."""
    first, second = list(first), list(second)
    df = len(first) + len(second) - 2
    if not first or not second or df < 1:
        return _NAN
    m1, m2 = _mean(first), _mean(second)
    pooled = (math.fsum((x - m1) ** 2 for x in first) + math.fsum((x - m2) ** 2 for x in second)) / df
    return (m1 - m2) / math.sqrt(pooled) if pooled > 0 else _NAN


def cohort_metrics(outcomes: list[dict[str, Any]]) -> dict[str, float]:
    """Cohort metrics from per-client outcomes, with the definitions of :mod:`sim.outcomes`.

    Rates of improvement, deterioration and recovery are over finished courses (two or more
    sessions), recovery over finished courses at caseness at intake; dropout is over all clients.
    The early alliance's d compares the clients who attended a session and did not drop out with
    those who did; the relationship's share is that of dropouts whose main reason is one of
    :data:`RELATIONSHIP_REASONS`.
    """
    finished = [o for o in outcomes if o["sessions_attended"] >= FINISHED_SESSIONS]
    seen = [o for o in outcomes if o["sessions_attended"] > 0]
    dropouts = [o for o in outcomes if o["end_type"] == "dropout"]
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
        "alliance_dropout_d": _cohens_d(
            (o["early_alliance"] for o in seen if o["end_type"] != "dropout"),
            (o["early_alliance"] for o in seen if o["end_type"] == "dropout"),
        ),
        "relationship_share": _mean(o["dropout_cause"] in RELATIONSHIP_REASONS for o in dropouts),
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
        week: weeks of the course stepped so far.
        followup_week: the week of the follow-up being run (0 until the course has ended).
        expected_recovery: the expected-recovery curve's ``a0``, ``a1`` and ``rate``.
        base_relapse_hazard: the weekly relapse hazard at the end of therapy of a client with no
            residual symptoms and no support built.
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
        self.followup_week = 0
        self.holiday = False
        self.expected_recovery = load_expected_recovery()
        self.base_relapse_hazard = relapse_base_hazard(self.p["relapse_rate"], self.p["relapse_decay_weeks"])
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
        """End-of-course assessment, the follow-up week by week, then the cohort metrics; stops the model."""
        for client in self.client_agents:
            client.end_of_course()
        for t in range(1, self.p["followup_weeks"] + 1):
            self.followup_week = t
            for client in self.client_agents:
                client.follow_up_week(t)
        self.metrics = cohort_metrics(self.outcomes())
        for name, value in self.metrics.items():
            setattr(self, MODEL_METRICS[name], value)
        self.running = False
        let_go_of_finished(self)  # its agents are all made

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
