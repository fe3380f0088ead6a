"""Dyads at intake: the constants of each therapist-client pair and the state before session 1.

Both containers are NamedTuples of arrays shaped (n_sets, n_clients), C-contiguous, so the weekly
kernel in :mod:`sim.dynamics` can read and update them in place. Scales: bond, goal and task
agreement, disclosure, hope and engagement are on 0-1; severity on the PHQ-9 scale (0-27).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.expected import CURVE
from sim.jit import kernel
from sim.reasons import N_MISS_CAUSES, REASONS


class Dyads(NamedTuple):
    """What stays fixed over a course, per dyad; each field shape (n_sets, n_clients)."""

    anxiety: np.ndarray  # attachment anxiety rescaled to 0-1
    avoidance: np.ndarray  # attachment avoidance rescaled to 0-1
    cultural_match: np.ndarray  # same culture group (bool)
    strain: np.ndarray  # cultural strain: mismatch x salience x (1 - therapist humility)
    perceived_empathy: np.ndarray
    bond_target: np.ndarray
    bond_speed: np.ndarray
    goal_target: np.ndarray
    task_target: np.ndarray
    trust: np.ndarray  # share of the bond the client turns into disclosure
    rupture_static: np.ndarray  # per-session rupture probability without a preceding break
    rupture_scale: np.ndarray  # base risk, to which relative risks are added
    rupture_drop: np.ndarray  # bond lost at a rupture
    repair_chance: np.ndarray  # per-session repair probability as the therapist sees the client
    repair_open: np.ndarray  # the same with withdrawal made visible by feedback
    cancel_risk: np.ndarray
    break_dent: np.ndarray  # bond lost at a cancelled week
    barrier_attend: np.ndarray  # attendance log-odds lost to practical barriers (after the therapist's flexibility)
    hold: np.ndarray  # share of every dropout risk left by the therapist's retention skill
    retention: np.ndarray  # the therapist's retention skill
    responsiveness: np.ndarray  # the client's rate of response relative to the average (below 0: worsens)
    expectancy: np.ndarray  # outcome expectancy at intake: the anchor of hope
    expected_asymptote: np.ndarray  # share of intake expected to remain (the expected-recovery curve)
    competence: np.ndarray
    uses_feedback: np.ndarray
    barriers: np.ndarray
    readiness: np.ndarray
    support: np.ndarray
    intake: np.ndarray  # intake PHQ-9
    shock: np.ndarray  # PHQ-9 points a life event adds, after support


class State(NamedTuple):
    """What changes session by session, per dyad; each field shape (n_sets, n_clients)."""

    bond: np.ndarray
    goal: np.ndarray
    task: np.ndarray
    disclosure: np.ndarray
    hope: np.ndarray
    engagement: np.ndarray
    severity: np.ndarray  # true severity on the PHQ-9 scale, continuous
    phq9: np.ndarray  # last administered PHQ-9 (intake before the first session)
    active: np.ndarray
    end_type: np.ndarray  # index into dynamics.END_TYPES
    end_week: np.ndarray
    dropout_cause: np.ndarray  # index into dynamics.DROPOUT_CAUSES
    attended: np.ndarray  # sessions attended
    pending: np.ndarray  # an unrepaired rupture
    pending_drop: np.ndarray  # bond lost at that rupture
    ruptures: np.ndarray
    repairs: np.ndarray
    missed_run: np.ndarray  # consecutive missed sessions
    well_run: np.ndarray  # consecutive sessions reliably improved and below caseness
    abandonment: np.ndarray  # reaction to cancelled weeks: +1 each, halved at each attended session
    off_track: np.ndarray  # flagged not on track at the last session
    ever_off_track: np.ndarray
    gain_pending: np.ndarray  # PHQ-9 points of the last sudden gain, until it reverses (0: none)
    gains: np.ndarray  # sudden gains (the dynamic events, not the score criterion)
    reversals: np.ndarray  # sudden gains lost again
    miss_credit: np.ndarray  # shape (n_sets, n_clients, 4): why the current run of missed sessions was missed
    reason_shares: np.ndarray  # shape (n_sets, n_clients, n_reasons): a dropout's reasons, 0 otherwise
    early_alliance: np.ndarray  # sum of WAI-SR over sessions 1-3
    early_goal: np.ndarray  # sum of goal agreement (0-1) over sessions 1-3
    alliance_sum: np.ndarray  # sum of WAI-SR over attended sessions
    early_phq9: np.ndarray  # the PHQ-9 at the fourth attended session (NaN before): early response


def _full(x, shape, dtype=float, copy=False) -> np.ndarray:
    """A writable C-contiguous array of ``shape`` (one compiled kernel serves every run).

    Without ``copy``, an array that already is one (a fresh result of arithmetic) is used as is.
    """
    x = np.asarray(x, dtype=dtype)
    if not copy and x.shape == shape and x.flags.c_contiguous and x.flags.writeable and x.base is None:
        return x
    return np.array(np.broadcast_to(x, shape), order="C")


def set_values(p: dict, name: str) -> np.ndarray:
    """One parameter's values as a kernel reads them: a contiguous float array shaped (n_sets,)."""
    return np.ascontiguousarray(np.asarray(p[name], dtype=float).ravel())


def per_set(fields: type[NamedTuple], p: dict) -> NamedTuple:
    """The parameters a kernel reads, as a named tuple of arrays shaped (n_sets,), from stacked parameters."""
    return fields(**{k: set_values(p, k) for k in fields._fields})


class IntakeParams(NamedTuple):
    """The parameters intake reads, each an array shaped (n_sets,)."""

    cultural_strain_empathy: np.ndarray
    perceived_empathy_noise: np.ndarray
    bond_base: np.ndarray
    bond_empathy_weight: np.ndarray
    avoidant_trust_penalty: np.ndarray
    anxious_bond_speedup: np.ndarray
    avoidant_bond_slowdown: np.ndarray
    bond_rate: np.ndarray
    rupture_rate: np.ndarray
    rupture_empathy_protection: np.ndarray
    rupture_anxiety: np.ndarray
    rupture_avoidance: np.ndarray
    cultural_strain_rupture: np.ndarray
    repair_skill_floor: np.ndarray
    repair_rate: np.ndarray
    retention_protection: np.ndarray
    agreement_base: np.ndarray
    goal_readiness_weight: np.ndarray
    task_competence_weight: np.ndarray
    avoidant_trust_weight: np.ndarray
    rupture_depth: np.ndarray
    anxious_rupture_fragility: np.ndarray
    withdrawal_concealment: np.ndarray
    cancellation_rate: np.ndarray
    overload_cancellation: np.ndarray
    cancellation_trust_dent: np.ndarray
    anxious_break_sensitivity: np.ndarray
    barriers_attendance: np.ndarray
    life_event_size: np.ndarray
    support_buffer: np.ndarray


def intake(p: dict, therapists, assignment: np.ndarray, caseload: np.ndarray, client) -> Dyads:
    """Dyad constants from parameters, the assigned therapist's traits and the client's traits.

    Args:
        p: parameters, arrays shaped (n_sets, 1).
        therapists: :class:`sim.population.Therapists`, traits shaped (n_sets, n_therapists).
        assignment: each client's therapist, shape (n_sets, n_clients).
        caseload: each therapist's number of clients, shape (n_sets, n_therapists).
        client: :class:`sim.population.Clients`.
    """
    shape = assignment.shape
    t, c = therapists, client
    therapist = (
        *(t.empathy, t.humility, t.repair_skill, t.consistency, t.competence, t.uses_feedback, t.culture),
        *(t.capacity, t.retention, caseload),
    )
    traits = (
        *(c.attachment_anxiety, c.attachment_avoidance, c.culture, c.salience, c.perception_noise, c.readiness),
        *(c.barriers, c.support, c.intake_phq9, c.expectancy, c.responsiveness, CURVE.asymptote(c.intake_phq9)),
    )
    booleans = ("cultural_match", "uses_feedback")
    out = Dyads(*(np.empty(shape, dtype=bool if k in booleans else float) for k in Dyads._fields))
    _intake(per_set(IntakeParams, p), therapist, tuple(_full(x, shape, x.dtype) for x in traits), assignment, out)
    return out


@kernel()
def _clip(x, low, high):
    """``np.clip`` for one value, bit for bit: a bound replaces only a value beyond it (-0.0 stays)."""
    x = low if x < low else x
    return high if x > high else x


# One pass over the dyads, each therapist's traits read through the assignment: numpy's version of these
# formulas made some 80 passes over arrays of every dyad and gathered the traits first (47 ms of the
# bench's batch; this 25 ms). Each formula keeps numpy's order of operations, so the bits are the same.
@kernel(error_model="numpy")
def _intake(q, therapist, client, assignment, d):  # noqa: PLR0915 (one dyad's constants, one formula each)
    empathy, humility, repair_skill, consistency, competence, uses_feedback, t_culture = therapist[:7]
    capacity, retention, caseload = therapist[7:]
    anxiety_ecr, avoidance_ecr, culture, salience, perception_noise, readiness = client[:6]
    barriers, support, intake_phq9, expectancy, responsiveness, asymptote = client[6:]
    for k in range(assignment.shape[0]):
        for i in range(assignment.shape[1]):
            j = assignment[k, i]
            anxiety = (anxiety_ecr[k, i] - 1.0) / 6.0
            avoidance = (avoidance_ecr[k, i] - 1.0) / 6.0
            match = t_culture[k, j] == culture[k, i]
            strain = (0.0 if match else 1.0) * salience[k, i] * (1.0 - humility[k, j])
            perceived = empathy[k, j] * (1.0 - q.cultural_strain_empathy[k] * strain)
            perceived = _clip(perceived + q.perceived_empathy_noise[k] * perception_noise[k, i], 0.0, 1.0)
            bond_target = q.bond_base[k] + q.bond_empathy_weight[k] * perceived
            # Attachment scales the number of sessions' worth of bonding a session brings; compounding
            # keeps the share closed below 1 however fast, so anxiety speeds bonding at any bond_rate.
            worth = (1.0 + q.anxious_bond_speedup[k] * anxiety) * (1.0 - q.avoidant_bond_slowdown[k] * avoidance)
            rupture_scale = q.rupture_rate[k] * (1.0 - q.rupture_empathy_protection[k] * perceived)
            relative = 1.0 + q.rupture_anxiety[k] * anxiety + q.rupture_avoidance[k] * avoidance
            relative = relative + q.cultural_strain_rupture[k] * strain
            floor = q.repair_skill_floor[k]
            repair_open = q.repair_rate[k] * (floor + (1.0 - floor) * repair_skill[k, j])
            overload = max(float(caseload[k, j]) / capacity[k, j] - 1.0, 0.0)  # never -0.0, so as numpy's maximum
            hold = 1.0 - q.retention_protection[k] * retention[k, j]
            d.anxiety[k, i] = anxiety
            d.avoidance[k, i] = avoidance
            d.cultural_match[k, i] = match
            d.strain[k, i] = strain
            d.perceived_empathy[k, i] = perceived
            d.bond_target[k, i] = _clip(bond_target - q.avoidant_trust_penalty[k] * avoidance, 0.0, 1.0)
            d.bond_speed[k, i] = 1.0 - (1.0 - q.bond_rate[k]) ** worth  # the C library's pow, as sim.libm
            d.goal_target[k, i] = _clip(q.agreement_base[k] + q.goal_readiness_weight[k] * readiness[k, i], 0.0, 1.0)
            d.task_target[k, i] = _clip(q.agreement_base[k] + q.task_competence_weight[k] * competence[k, j], 0.0, 1.0)
            d.trust[k, i] = 1.0 - q.avoidant_trust_weight[k] * avoidance
            d.rupture_static[k, i] = _clip(rupture_scale * relative, 0.0, 1.0)
            d.rupture_scale[k, i] = rupture_scale
            d.rupture_drop[k, i] = q.rupture_depth[k] * (1.0 + q.anxious_rupture_fragility[k] * anxiety)
            d.repair_chance[k, i] = repair_open * (1.0 - q.withdrawal_concealment[k] * avoidance)
            d.repair_open[k, i] = repair_open
            d.cancel_risk[k, i] = (
                q.cancellation_rate[k] * (1.0 - consistency[k, j]) + q.overload_cancellation[k] * overload
            )
            d.break_dent[k, i] = q.cancellation_trust_dent[k] * (1.0 + q.anxious_break_sensitivity[k] * anxiety)
            d.barrier_attend[k, i] = q.barriers_attendance[k] * barriers[k, i] * hold
            d.hold[k, i] = hold
            d.retention[k, i] = retention[k, j]
            d.responsiveness[k, i] = responsiveness[k, i]
            d.expectancy[k, i] = expectancy[k, i]
            d.expected_asymptote[k, i] = asymptote[k, i]
            d.competence[k, i] = competence[k, j]
            d.uses_feedback[k, i] = uses_feedback[k, j]
            d.barriers[k, i] = barriers[k, i]
            d.readiness[k, i] = readiness[k, i]
            d.support[k, i] = support[k, i]
            d.intake[k, i] = intake_phq9[k, i]
            d.shock[k, i] = q.life_event_size[k] * (1.0 - q.support_buffer[k] * support[k, i])


def initial_state(p: dict, d: Dyads, client) -> State:
    """State before the first session: alliance at its initial level, hope at expectancy."""
    shape = d.intake.shape
    start = _full(p["alliance_initial"], shape, copy=True)
    expectancy = _full(client.expectancy, shape, copy=True)
    readiness = _full(client.readiness, shape, copy=True)

    def zeros(dtype):
        return np.zeros(shape, dtype=dtype)

    return State(
        bond=start.copy(),
        goal=start.copy(),
        task=start.copy(),
        disclosure=start * d.trust,
        hope=expectancy,
        engagement=(start + expectancy + readiness) / 3.0,
        severity=d.intake.copy(),
        phq9=d.intake.copy(),
        active=np.ones(shape, dtype=bool),
        end_type=zeros(np.int8),
        end_week=zeros(np.int16),
        dropout_cause=zeros(np.int8),
        attended=zeros(np.int16),
        pending=zeros(bool),
        pending_drop=zeros(float),
        ruptures=zeros(np.int16),
        repairs=zeros(np.int16),
        missed_run=zeros(np.int16),
        well_run=zeros(np.int16),
        abandonment=zeros(float),
        off_track=zeros(bool),
        ever_off_track=zeros(bool),
        gain_pending=zeros(float),
        gains=zeros(np.int16),
        reversals=zeros(np.int16),
        miss_credit=np.zeros((*shape, N_MISS_CAUSES)),
        reason_shares=np.zeros((*shape, len(REASONS))),
        early_alliance=zeros(float),
        early_goal=zeros(float),
        alliance_sum=zeros(float),
        early_phq9=np.full(shape, np.nan),
    )


def copy_state(s: State) -> State:
    """An independent copy of a state."""
    return State(*(x.copy() for x in s))
