"""Dyads at intake: the constants of each therapist-client pair and the state before session 1.

Both containers are NamedTuples of arrays shaped (n_sets, n_clients), C-contiguous, so the weekly
kernel in :mod:`sim.dynamics` can read and update them in place. Scales: bond, goal and task
agreement, disclosure, hope and engagement are on 0-1; severity on the PHQ-9 scale (0-27).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim import libm
from sim.expected import CURVE
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


def intake(p: dict, therapist: dict, client) -> Dyads:
    """Dyad constants from parameters, the assigned therapist's traits and the client's traits.

    Args:
        p: parameters, arrays shaped (n_sets, 1).
        therapist: the assigned therapist's traits gathered per client (plus ``load``, the
            therapist's caseload), each shape (n_sets, n_clients).
        client: :class:`sim.population.Clients`.
    """
    shape = therapist["empathy"].shape
    anxiety = (client.attachment_anxiety - 1.0) / 6.0
    avoidance = (client.attachment_avoidance - 1.0) / 6.0
    match = therapist["culture"] == client.culture
    strain = ~match * client.salience * (1.0 - therapist["humility"])
    perceived = np.clip(
        therapist["empathy"] * (1.0 - p["cultural_strain_empathy"] * strain)
        + p["perceived_empathy_noise"] * client.perception_noise,
        0.0,
        1.0,
    )
    bond_target = p["bond_base"] + p["bond_empathy_weight"] * perceived - p["avoidant_trust_penalty"] * avoidance
    # Attachment scales the number of sessions' worth of bonding a session brings; compounding
    # keeps the share closed below 1 however fast, so anxiety speeds bonding at any bond_rate.
    sessions_worth = (1.0 + p["anxious_bond_speedup"] * anxiety) * (1.0 - p["avoidant_bond_slowdown"] * avoidance)
    bond_speed = 1.0 - libm.power(1.0 - p["bond_rate"], sessions_worth)
    competence = therapist["competence"]
    rupture_scale = p["rupture_rate"] * (1.0 - p["rupture_empathy_protection"] * perceived)
    relative = 1.0 + p["rupture_anxiety"] * anxiety + p["rupture_avoidance"] * avoidance
    relative = relative + p["cultural_strain_rupture"] * strain
    floor = p["repair_skill_floor"]
    repair_open = p["repair_rate"] * (floor + (1.0 - floor) * therapist["repair_skill"])
    overload = np.maximum(0.0, therapist["load"] / therapist["capacity"] - 1.0)
    hold = 1.0 - p["retention_protection"] * therapist["retention"]
    values = {
        "anxiety": anxiety,
        "avoidance": avoidance,
        "cultural_match": match,
        "strain": strain,
        "perceived_empathy": perceived,
        "bond_target": np.clip(bond_target, 0.0, 1.0),
        "bond_speed": bond_speed,
        "goal_target": np.clip(p["agreement_base"] + p["goal_readiness_weight"] * client.readiness, 0.0, 1.0),
        "task_target": np.clip(p["agreement_base"] + p["task_competence_weight"] * competence, 0.0, 1.0),
        "trust": 1.0 - p["avoidant_trust_weight"] * avoidance,
        "rupture_static": np.clip(rupture_scale * relative, 0.0, 1.0),
        "rupture_scale": rupture_scale,
        "rupture_drop": p["rupture_depth"] * (1.0 + p["anxious_rupture_fragility"] * anxiety),
        "repair_chance": repair_open * (1.0 - p["withdrawal_concealment"] * avoidance),
        "repair_open": repair_open,
        "cancel_risk": p["cancellation_rate"] * (1.0 - therapist["consistency"])
        + p["overload_cancellation"] * overload,
        "break_dent": p["cancellation_trust_dent"] * (1.0 + p["anxious_break_sensitivity"] * anxiety),
        "barrier_attend": p["barriers_attendance"] * client.barriers * hold,
        "hold": hold,
        "retention": therapist["retention"],
        "responsiveness": client.responsiveness,
        "expectancy": client.expectancy,
        "expected_asymptote": CURVE.asymptote(client.intake_phq9),
        "competence": competence,
        "uses_feedback": therapist["uses_feedback"],
        "barriers": client.barriers,
        "readiness": client.readiness,
        "support": client.support,
        "intake": client.intake_phq9,
        "shock": p["life_event_size"] * (1.0 - p["support_buffer"] * client.support),
    }
    booleans = ("cultural_match", "uses_feedback")
    return Dyads(**{k: _full(v, shape, bool if k in booleans else float) for k, v in values.items()})


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
