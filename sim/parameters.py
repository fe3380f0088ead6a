"""The parameter registry: every model parameter declared once.

Each :class:`Param` carries its default, plausible range, unit or scale, a one-line meaning and a
source (a citation, or "assumption"). Scenarios, the CLI's ``--set``, experiment specs, the app's
sliders and ``docs/parameters.md`` are all generated from :data:`REGISTRY`; nothing else repeats a
range. Mechanism parameters marked ``free`` are fitted by calibration (``make calibrate``), which
writes their fitted values to ``sim/calibrated.toml``; those values then replace the defaults here.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

GROUPS = {
    "therapists": "therapist population",
    "clients": "client population",
    "mechanisms": "mechanisms",
    "course": "course",
}

MATCHING_POLICIES = ("random", "cultural_match", "attachment_informed", "lowest_caseload")
OUTCOME_MEASURES = ("end_assessment", "last_observed")

CALIBRATED_FILE = Path(__file__).with_name("calibrated.toml")


class ParameterError(ValueError):
    """A parameter name, type or value that the registry refuses."""


@dataclass(frozen=True)
class Param:
    """One model parameter.

    Attributes:
        name: identifier used in scenarios, ``--set`` and experiment specs.
        default: value used when a scenario does not set it.
        low: smallest allowed value (inclusive); ignored for choices.
        high: largest allowed value (inclusive); ignored for choices.
        unit: unit or scale of the value.
        group: one of :data:`GROUPS`.
        meaning: one-line description.
        source: citation for the value or range, or "assumption".
        kind: "float", "int" or "choice".
        choices: allowed values when ``kind == "choice"``.
        free: fitted by calibration.
    """

    name: str
    default: Any
    low: float
    high: float
    unit: str
    group: str
    meaning: str
    source: str
    kind: str = "float"
    choices: tuple[str, ...] = ()
    free: bool = False

    @property
    def allowed(self) -> str:
        """The allowed values, as a message would state them."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "an integer" if self.kind == "int" else "a number"
        return f"{kind} in [{_fmt(self.low)}, {_fmt(self.high)}]"

    def validate(self, value: Any, where: str = "") -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParameterError."""
        at = f" ({where})" if where else ""
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
            raise ParameterError(f"{self.name} = {value!r} is not allowed{at}: use {self.allowed}.")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(
                f"{self.name} = {value!r} has the wrong type{at}: it must be {self.allowed} ({self.unit})."
            )
        # Compared before any conversion: int(inf), int(nan) and float(10**400) raise, and a value
        # out of range is refused as such rather than as a conversion failure.
        if not (isinstance(value, int) or math.isfinite(value)) or not self.low <= value <= self.high:
            raise ParameterError(
                f"{self.name} = {_shown(value)} is outside [{_fmt(self.low)}, {_fmt(self.high)}]{at}: "
                f"use {self.allowed} ({self.unit})."
            )
        if self.kind == "int":
            if value != int(value):
                raise ParameterError(f"{self.name} = {value!r} must be an integer{at}: use {self.allowed}.")
            return int(value)
        return float(value)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _shown(value: float) -> str:
    """A value as a message quotes it, a huge integer cut short."""
    text = _fmt(value) if isinstance(value, float) else str(value)
    return text if len(text) <= 20 else text[:12] + "... (" + str(len(text)) + " digits)"


def _p(name, default, low, high, unit, group, meaning, source, **kw) -> Param:
    return Param(name, default, low, high, unit, group, meaning, source, **kw)


_EMPATHY = "Elliott, Bohart, Watson & Murphy (2018), Psychotherapy 55(4), 399-410"
_REPAIR = "Eubanks, Muran & Safran (2018), Psychotherapy 55(4), 508-519"
_CULTURE = "Cabral & Smith (2011), J. Couns. Psychol. 58(4), 537-554"
_HUMILITY = "Hook, Davis, Owen, Worthington & Utsey (2013), J. Couns. Psychol. 60(3), 353-366"
_ATTACH = "Levy, Kivity, Johnson & Gooch (2018), J. Clin. Psychol. 74(11), 1996-2013"
_ECR = "Fraley, Waller & Brennan (2000), J. Pers. Soc. Psychol. 78(2), 350-365"
_DROPOUT = "Swift & Greenberg (2012), J. Consult. Clin. Psychol. 80(4), 547-559"
_ALLIANCE = "Fluckiger, Del Re, Wampold & Horvath (2018), Psychotherapy 55(4), 316-340"
_FEEDBACK = "de Jong et al. (2021), Clin. Psychol. Rev. 85, 102002"
_EXPECT = "Constantino, Visla, Coyne & Boswell (2018), Psychotherapy 55(4), 473-485"
_DOSE = "Robinson, Delgadillo & Kellett (2020), Psychother. Res. 30(1), 79-96"
_PHQ9 = "Kroenke, Spitzer & Williams (2001), J. Gen. Intern. Med. 16(9), 606-613"
_IAPT = "NHS Talking Therapies Manual (2023), v6"
_THERAPIST_DROPOUT = "Saxon, Barkham, Foster & Parry (2017), Clin. Psychol. Psychother. 24(3), 575-588"
_EARLY = "Gibbons et al. (2019), J. Consult. Clin. Psychol. 87(8), 745-755; Simon, Imel, Ludman & Steinfeld (2012), Psychiatr. Serv. 63(7), 705-707"
_RESPONSE = (
    "Beard & Delgadillo (2019), Depress. Anxiety 36(9), 866-878; Lutz et al. (2017), J. Med. Internet Res. 19(6), e206"
)
_GAINS = "Tang & DeRubeis (1999), J. Consult. Clin. Psychol. 67(6), 894-904; Shalom & Aderka (2020), Clin. Psychol. Rev. 76, 101827"
_RELAPSE = "Ali et al. (2017), Behav. Res. Ther. 94, 1-8"
_WAI = "Hatcher & Gillaspy (2006), Psychother. Res. 16(1), 12-25"
_ASSUME = "assumption"
_T, _C, _M, _K = "therapists", "clients", "mechanisms", "course"
_S01 = "0-1 scale"

# fmt: off
_DECLARED: tuple[Param, ...] = (
    # ── therapist population ──────────────────────────────────────────────────────────────────
    _p("therapist_empathy_mean", 0.6, 0, 1, _S01, _T, "location of therapist empathy", _EMPATHY),
    _p("therapist_empathy_sd", 0.15, 0, 0.5, _S01, _T, "spread of therapist empathy", _EMPATHY),
    _p("therapist_humility_mean", 0.5, 0, 1, _S01, _T, "location of cultural humility", _HUMILITY),
    _p("therapist_humility_sd", 0.15, 0, 0.5, _S01, _T, "spread of cultural humility", _HUMILITY),
    _p("therapist_repair_mean", 0.5, 0, 1, _S01, _T, "location of rupture-repair skill", _REPAIR),
    _p("therapist_repair_sd", 0.15, 0, 0.5, _S01, _T, "spread of rupture-repair skill", _REPAIR),
    _p("therapist_consistency_mean", 0.8, 0, 1, _S01, _T, "location of consistency (few cancellations)", _ASSUME),
    _p("therapist_consistency_sd", 0.1, 0, 0.5, _S01, _T, "spread of consistency", _ASSUME),
    _p("therapist_competence_mean", 0.6, 0, 1, _S01, _T, "location of technical competence", _ASSUME),
    _p("therapist_competence_sd", 0.15, 0, 0.5, _S01, _T, "spread of technical competence", _ASSUME),
    _p("therapist_retention_mean", 0.5, 0, 1, _S01, _T, "location of retention skill (contracting, flexible scheduling, reaching out after a missed session)", _THERAPIST_DROPOUT),
    _p("therapist_retention_sd", 0.18, 0, 0.5, _S01, _T, "spread of retention skill, independent of the other traits", _THERAPIST_DROPOUT),
    _p("therapist_feedback_share", 0.0, 0, 1, "share", _T, "share of therapists using routine outcome feedback", _FEEDBACK),
    _p("therapist_minority_share", 0.15, 0, 1, "share", _T, "share of therapists from the two minority culture groups", _ASSUME),
    _p("therapist_capacity_mean", 20.0, 2, 60, "clients", _T, "mean caseload a therapist can carry without strain", _ASSUME),
    _p("therapist_capacity_sd", 0.25, 0, 1, "log scale", _T, "spread of caseload capacity (lognormal about the mean)", _ASSUME),
    # ── client population ─────────────────────────────────────────────────────────────────────
    _p("intake_phq9_mean", 17.0, 0, 27, "PHQ-9 points", _C, "location of intake severity", _PHQ9),
    _p("intake_phq9_sd", 4.5, 0.5, 10, "PHQ-9 points", _C, "spread of intake severity", _PHQ9),
    _p("intake_phq9_min", 10.0, 0, 27, "PHQ-9 points", _C, "lowest intake severity admitted (10 = caseness)", _IAPT),
    _p("attachment_anxiety_mean", 3.6, 1, 7, "ECR-R 1-7", _C, "location of attachment anxiety", _ECR),
    _p("attachment_avoidance_mean", 3.2, 1, 7, "ECR-R 1-7", _C, "location of attachment avoidance", _ECR),
    _p("attachment_sd", 1.1, 0.1, 3, "ECR-R 1-7", _C, "spread of both attachment dimensions", _ECR),
    _p("attachment_correlation", 0.3, -0.9, 0.9, "correlation", _C, "correlation of anxiety and avoidance", _ECR),
    _p("attachment_cutoff", 4.0, 1, 7, "ECR-R 1-7", _C, "score at or above which a dimension counts as high (styles)", _ECR),
    _p("client_minority_share", 0.25, 0, 1, "share", _C, "share of clients from the two minority culture groups", _ASSUME),
    _p("cultural_salience_mean", 0.5, 0, 1, _S01, _C, "location of how much cultural match matters to a client", _CULTURE),
    _p("cultural_salience_sd", 0.25, 0, 0.5, _S01, _C, "spread of cultural salience", _CULTURE),
    _p("expectancy_mean", 0.55, 0, 1, _S01, _C, "location of outcome expectancy (hope) at intake", _EXPECT),
    _p("expectancy_sd", 0.2, 0, 0.5, _S01, _C, "spread of outcome expectancy", _EXPECT),
    _p("readiness_mean", 0.6, 0, 1, _S01, _C, "location of readiness for change", _ASSUME),
    _p("readiness_sd", 0.2, 0, 0.5, _S01, _C, "spread of readiness", _ASSUME),
    _p("barriers_mean", 0.25, 0, 1, _S01, _C, "location of practical barriers (travel, cost, childcare)", _DROPOUT),
    _p("barriers_sd", 0.2, 0, 0.5, _S01, _C, "spread of practical barriers", _DROPOUT),
    _p("responsiveness_sd", 0.6, 0, 1.5, "ratio", _C, "spread of responsiveness: a client's rate of response to therapy relative to the average (mean 1, below 0: worsens)", _RESPONSE),
    _p("support_mean", 0.5, 0, 1, _S01, _C, "location of social support", _ASSUME),
    _p("support_sd", 0.2, 0, 0.5, _S01, _C, "spread of social support", _ASSUME),
    # ── mechanisms: bond, goals and tasks, disclosure ─────────────────────────────────────────
    _p("alliance_initial", 0.6, 0, 1, _S01, _M, "bond, goal and task agreement before the first session", _ALLIANCE),
    _p("bond_rate", 0.3, 0.01, 0.6, "per session", _M, "share of the gap to the bond target closed each session", _ALLIANCE, free=True),
    _p("bond_base", 0.45, 0, 1, _S01, _M, "bond target with an unempathic therapist and a secure client", _ASSUME),
    _p("bond_empathy_weight", 0.6, 0, 1, _S01, _M, "bond target gained per unit of perceived empathy", _EMPATHY, free=True),
    _p("anxious_bond_speedup", 0.8, 0, 3, "ratio", _M, "relative speed-up of bonding per unit attachment anxiety", _ATTACH),
    _p("avoidant_bond_slowdown", 0.6, 0, 1, "ratio", _M, "relative slow-down of bonding per unit attachment avoidance", _ATTACH),
    _p("avoidant_trust_penalty", 0.25, 0, 1, _S01, _M, "bond target lost per unit attachment avoidance", _ATTACH),
    _p("avoidant_trust_weight", 0.5, 0, 1, _S01, _M, "trust lost per unit attachment avoidance; trust caps disclosure", _ATTACH),
    _p("collaboration_rate", 0.3, 0.01, 1, "per session", _M, "share of the gap to goal and task targets closed each session", "Tryon, Birch & Verkuilen (2018), Psychotherapy 55(4), 372-383"),
    _p("agreement_base", 0.5, 0, 1, _S01, _M, "goal and task agreement targets before readiness and competence add to them", _ASSUME),
    _p("goal_readiness_weight", 0.4, 0, 1, _S01, _M, "goal-agreement target gained per unit client readiness", _ASSUME),
    _p("task_competence_weight", 0.4, 0, 1, _S01, _M, "task-agreement target gained per unit therapist competence", _ASSUME),
    _p("disclosure_rate", 0.3, 0.01, 1, "per session", _M, "share of the gap to the disclosure target closed each session", "Farber (2006), Self-disclosure in psychotherapy"),
    _p("disclosure_gate", 0.6, 0, 1, _S01, _M, "how strongly low disclosure caps the change a session can do", _ASSUME),
    # ── mechanisms: consistency, culture, feedback ────────────────────────────────────────────
    _p("cancellation_rate", 0.25, 0, 0.6, "per session", _M, "cancellation probability of a fully inconsistent therapist", _ASSUME),
    _p("overload_cancellation", 0.1, 0, 0.5, "per unit overload", _M, "cancellation probability added per unit of caseload above capacity", _ASSUME),
    _p("cancellation_trust_dent", 0.04, 0, 0.3, _S01, _M, "bond lost at a therapist cancellation or break", _ATTACH),
    _p("anxious_break_sensitivity", 2.0, 0, 5, "ratio", _M, "extra bond loss and rupture risk after a break per unit anxiety", _ATTACH),
    _p("cultural_strain_empathy", 0.4, 0, 1, _S01, _M, "perceived empathy lost per unit cultural strain", _CULTURE),
    _p("cultural_strain_rupture", 1.5, 0, 5, "ratio", _M, "relative rupture risk added per unit cultural strain", _HUMILITY),
    _p("perceived_empathy_noise", 0.1, 0, 0.5, _S01, _M, "spread of a client's perception of therapist empathy", _EMPATHY),
    _p("not_on_track_margin", 6.0, 0, 15, "PHQ-9 points", _M, "score above the expected-recovery curve for the client's intake that flags a client not on track (6: a reliable change)", "Finch, Lambert & Schaalje (2001), Clin. Psychol. Psychother. 8(4), 231-242"),
    _p("alliance_flag_level", 0.45, 0, 1, _S01, _M, "alliance (0-1) below which routine feedback flags the alliance (WAI-SR 33.6)", "Lambert, Whipple & Kleinstauber (2018), Psychotherapy 55(4), 520-537"),
    _p("not_on_track_from_session", 3, 1, 10, "sessions", _M, "attended sessions before a client can be flagged not on track", "Lambert (2013), Bergin & Garfield's Handbook", kind="int"),
    _p("feedback_goal_boost", 0.3, 0, 1, _S01, _M, "share of the goal-agreement gap closed when feedback flags a client", _FEEDBACK),
    _p("feedback_repair_boost", 0.3, 0, 1, "probability", _M, "repair probability added when feedback flags a client", _FEEDBACK),
    _p("feedback_adaptation", 0.3, 0, 1, _S01, _M, "share of harmful sessions and negative response removed once feedback flags a client", _FEEDBACK),
    _p("feedback_engagement_boost", 0.3, 0, 1, _S01, _M, "share of the engagement gap closed when feedback flags a client (motivation addressed)", "Barkham, de Jong, Delgadillo & Lutz (2023), Psychother. Res. 33(7), 841-855"),
    # ── mechanisms: ruptures and repair ───────────────────────────────────────────────────────
    _p("rupture_rate", 0.06, 0, 0.5, "per session", _M, "rupture probability for a secure, culturally matched client", _REPAIR, free=True),
    _p("rupture_anxiety", 1.0, 0, 5, "ratio", _M, "relative rupture risk (confrontation) per unit attachment anxiety", _ATTACH),
    _p("rupture_avoidance", 1.0, 0, 5, "ratio", _M, "relative rupture risk (withdrawal) per unit attachment avoidance", _ATTACH),
    _p("rupture_empathy_protection", 0.6, 0, 1, _S01, _M, "share of rupture risk removed by fully perceived empathy", _EMPATHY),
    _p("rupture_depth", 0.2, 0, 0.6, _S01, _M, "bond lost at a rupture (more for anxious clients)", _REPAIR),
    _p("anxious_rupture_fragility", 1.0, 0, 3, "ratio", _M, "extra bond lost at a rupture per unit attachment anxiety", _ATTACH),
    _p("rupture_agreement_share", 0.5, 0, 1, "ratio", _M, "goal and task agreement lost at a rupture, per unit bond lost", _REPAIR),
    _p("break_reaction_decay", 0.5, 0, 1, "ratio", _M, "share of a break's added rupture risk left after each attended session", _ATTACH),
    _p("repair_rate", 0.5, 0, 1, "probability", _M, "repair probability per session with a fully skilled therapist", _REPAIR),
    _p("repair_skill_floor", 0.2, 0, 1, "ratio", _M, "share of repair_rate open to a therapist with no repair skill", _REPAIR),
    _p("rupture_stall", 0.5, 0, 1, _S01, _M, "share of a session's therapeutic work lost while a rupture is unrepaired", "Safran & Muran (2000), Negotiating the therapeutic alliance"),
    _p("repair_bonus", 0.3, 0, 1, "ratio", _M, "bond gained above the pre-rupture level by a repair, per unit depth", _REPAIR),
    _p("withdrawal_concealment", 0.5, 0, 1, _S01, _M, "share of repair chances lost because withdrawal goes unnoticed", "Safran & Muran (2000), Negotiating the therapeutic alliance"),
    # ── mechanisms: hope, engagement, attendance ──────────────────────────────────────────────
    _p("remoralization_rate", 0.3, 0, 1, "per session", _M, "share of the gap to the hope target closed each session", "Howard, Lueger, Maling & Martinovich (1993), J. Consult. Clin. Psychol. 61(4), 678-685"),
    _p("remoralization_lift", 0.25, 0, 1, _S01, _M, "share of the gap between expectancy and full hope that a full bond lifts the hope target (hope stays anchored to expectancy)", "Howard, Lueger, Maling & Martinovich (1993), J. Consult. Clin. Psychol. 61(4), 678-685"),
    _p("progress_hope_weight", 0.04, 0, 0.2, "per PHQ-9 point", _M, "hope gained per point of felt improvement", _EXPECT),
    _p("engagement_rate", 0.3, 0.01, 1, "per session", _M, "share of the gap to the engagement target closed each week", _ASSUME),
    _p("engagement_dose_weight", 0.5, 0, 1, "ratio", _M, "share of a session's improvement that depends on the client's engagement", _ASSUME),
    _p("attendance_base", 3.0, 0, 8, "log-odds", _M, "log-odds of attending for a fully engaged client without barriers", _ASSUME),
    _p("engagement_attendance", 3.0, 0, 8, "log-odds", _M, "log-odds of attending lost per unit disengagement", _ASSUME),
    _p("break_attendance", 0.5, 0, 3, "log-odds", _M, "log-odds of attending lost per cancelled week not yet made up by attended sessions", _ATTACH),
    _p("barriers_attendance", 2.0, 0, 6, "log-odds", _M, "log-odds of attending lost per unit practical barriers", _DROPOUT),
    # ── mechanisms: dropout ───────────────────────────────────────────────────────────────────
    _p("dropout_base", -6.5, -10, 0, "log-odds", _M, "weekly dropout log-odds with no risk factor present: leaving for reasons outside therapy (a move, a new job, illness)", _DROPOUT, free=True),
    _p("dropout_alliance", 3.0, 0, 15, "log-odds", _M, "dropout log-odds added per unit alliance (0-1) below alliance_reference", "Sharf, Primavera & Diener (2010), Psychotherapy 47(4), 637-645", free=True),
    _p("alliance_reference", 0.75, 0, 1, _S01, _M, "alliance (0-1) at or above which it adds no dropout risk (WAI-SR 48, about the outpatient mean)", _WAI),
    _p("dropout_rupture", 1.5, 0, 5, "log-odds", _M, "dropout log-odds added while a rupture is unrepaired", _REPAIR, free=True),
    _p("dropout_engagement", 0.6, 0, 10, "log-odds", _M, "dropout log-odds added per unit engagement below full engagement", _ASSUME),
    _p("dropout_barriers", 1.5, 0, 5, "log-odds", _M, "dropout log-odds added per unit practical barriers", _DROPOUT, free=True),
    _p("dropout_missed", 0.8, 0, 3, "log-odds", _M, "dropout log-odds added per consecutive missed session", _ASSUME),
    _p("dropout_breaks", 0.15, 0, 3, "log-odds", _M, "dropout log-odds added per cancelled week not yet made up, more for anxious clients (anxious_break_sensitivity)", _ATTACH),
    _p("dropout_improved", 2.0, 0, 8, "log-odds", _M, "dropout log-odds added per unit felt improvement (share of intake severity gone): leaving because it feels no longer needed", "Pekarik (1983), J. Clin. Psychol. 39(6), 909-913", free=True),
    _p("early_risk_amplifier", 1.0, 0, 10, "ratio", _M, "relative rise of every dropout risk before the client has attended early_phase_sessions sessions", _EARLY),
    _p("early_phase_sessions", 2, 1, 12, "sessions", _M, "sessions attended before the early phase ends (2: after the intake and the first session)", _EARLY, kind="int"),
    _p("retention_protection", 0.6, 0, 1, _S01, _M, "share of every dropout risk, and of barriers' effect on attendance, removed by a therapist with full retention skill", _THERAPIST_DROPOUT),
    # ── mechanisms: symptom change ────────────────────────────────────────────────────────────
    _p("improvement_rate", 0.1, 0, 0.4, "per session", _M, "share of severity removed by a session at full therapeutic dose", _DOSE, free=True),
    _p("alliance_improvement_weight", 0.6, 0, 1, _S01, _M, "weight of the alliance in the therapeutic dose", _ALLIANCE, free=True),
    _p("hope_improvement_weight", 0.6, 0, 1, _S01, _M, "weight of hope (expectancy) in the therapeutic dose", _EXPECT),
    _p("competence_improvement_weight", 0.2, 0, 1, _S01, _M, "weight of technical competence in the therapeutic dose", _ASSUME),
    _p("empathy_improvement_weight", 0.3, 0, 1, _S01, _M, "weight of perceived empathy (feeling understood) in the therapeutic dose, beside its effect through the bond", _EMPATHY),
    _p("worsening_rate", 2.0, 0, 10, "PHQ-9 points per session", _M, "severity added by a session with no alliance at all (scaled down to 0 at the weak threshold): harmful sessions", "Lambert (2013), Bergin & Garfield's Handbook", free=True),
    _p("weak_alliance_threshold", 0.6, 0, 1, _S01, _M, "alliance (0-1) below which sessions can make things worse (WAI-SR 40.8, about one SD below the outpatient mean)", _WAI),
    _p("symptom_noise_sd", 0.6, 0, 5, "PHQ-9 points", _M, "week-to-week drift of true severity", _ASSUME),
    _p("measurement_error_sd", 1.8, 0, 5, "PHQ-9 points", _M, "error of one PHQ-9 administration (test-retest r = .84)", _PHQ9),
    _p("life_event_rate", 0.01, 0, 0.05, "per week", _M, "probability of a high-threat life event in a week (4.3% of person-months)", "Kendler, Hettema, Butera, Gardner & Prescott (2003), Arch. Gen. Psychiatry 60(8), 789-796"),
    _p("life_event_size", 6.0, 0, 15, "PHQ-9 points", _M, "mean severity added by a high-threat life event without support (a reliable change; most such events do not start an episode)", _ASSUME),
    _p("support_buffer", 0.5, 0, 1, _S01, _M, "share of a life event's impact absorbed by full social support", "Cohen & Wills (1985), Psychol. Bull. 98(2), 310-357"),
    _p("natural_recovery_rate", 0.01, 0, 0.1, "per week", _M, "share of severity that remits per week without a session", "Whiteford et al. (2013), Psychol. Med. 43(8), 1569-1585"),
    # ── mechanisms: sudden gains ──────────────────────────────────────────────────────────────
    _p("sudden_gain_rate", 0.1, 0, 0.5, "per session", _M, "chance of a sudden gain at a session with full disclosure and hope", _GAINS),
    _p("sudden_gain_size", 0.3, 0, 0.8, "share", _M, "share of current severity that a sudden gain removes at once", _GAINS),
    _p("sudden_gain_trigger", 2.0, 0, 10, "ratio", _M, "relative rise of the chance of a gain at a session where a rupture is repaired", "Safran & Muran (2000), Negotiating the therapeutic alliance"),
    _p("sudden_gain_bond", 0.2, 0, 1, _S01, _M, "share of the gap to a full bond closed after a sudden gain (the alliance improves after gains)", _GAINS),
    _p("sudden_gain_reversal", 0.04, 0, 0.5, "per week", _M, "weekly chance that an unreversed sudden gain is lost again", "Lutz et al. (2013), Psychother. Res. 23(1), 14-24"),
    # ── mechanisms: follow-up ─────────────────────────────────────────────────────────────────
    _p("relapse_rate", 0.2, 0, 1, "probability", _M, "relapse probability within a year of ending recovered, without support built and without residual symptoms", "Vittengl, Clark, Dunn & Jarrett (2007), J. Consult. Clin. Psychol. 75(3), 475-488"),
    _p("relapse_decay_weeks", 20.0, 1, 104, "weeks", _M, "weeks over which the relapse hazard falls to 1/e of its level at the end of therapy (79% of first-year relapses in the first 6 months)", _RELAPSE),
    _p("relapse_residual", 0.13, 0, 0.5, "log hazard per PHQ-9 point", _M, "rise of the relapse hazard per point of residual symptoms at the end (hazard ratio 1.9 for PHQ-9 5-9 against 0-4)", _RELAPSE),
    _p("relapse_size", 8.0, 0, 20, "PHQ-9 points", _M, "severity regained at a relapse", _ASSUME),
    _p("relapse_support_buffer", 0.6, 0, 1, _S01, _M, "share of relapse risk removed by support built in therapy", _ASSUME),
    _p("support_built_weight", 0.5, 0, 1, "ratio", _M, "weight of the alliance internalised in therapy, against the client's own support, in support built", _ASSUME),
    # ── course ────────────────────────────────────────────────────────────────────────────────
    _p("planned_sessions", 16, 1, 40, "sessions", _K, "sessions in a full course", "trial-like course, Cuijpers et al. (2013)", kind="int"),
    _p("extra_weeks", 4, 0, 20, "weeks", _K, "weeks beyond the planned sessions to make up missed ones", _ASSUME, kind="int"),
    _p("followup_weeks", 26, 0, 104, "weeks", _K, "length of the follow-up period after the course", _ASSUME, kind="int"),
    _p("planned_break_start", 0, 0, 60, "week", _K, "first week of a therapist holiday (0 = no holiday)", _ASSUME, kind="int"),
    _p("planned_break_weeks", 0, 0, 6, "weeks", _K, "length of the therapist holiday", _ASSUME, kind="int"),
    _p("good_enough_rate", 0.1, 0, 1, "per session", _M, "probability per session that a client who has improved reliably and is below caseness chooses to end (responsive regulation)", "Barkham et al. (2006), J. Consult. Clin. Psychol. 74(1), 160-167"),
    _p("good_enough_min_sessions", 6, 2, 40, "sessions", _K, "fewest sessions before a good-enough ending", _ASSUME, kind="int"),
    _p("good_enough_run", 2, 1, 6, "sessions", _K, "consecutive attended sessions reliably improved and below caseness before a good-enough ending", "Stiles, Barkham, Connell & Mellor-Clark (2008), J. Consult. Clin. Psychol. 76(2), 298-305", kind="int"),
    _p("outcome_measure", "end_assessment", 0, 0, "rule", _K, "final PHQ-9: an assessment when the course ends, or the last session's score (routine care)", _IAPT, kind="choice", choices=OUTCOME_MEASURES),
    _p("matching_policy", "random", 0, 0, "policy", _K, "how clients are assigned to therapists at intake", _ASSUME, kind="choice", choices=MATCHING_POLICIES),
)
# fmt: on


def _load_calibrated() -> dict[str, float]:
    if not CALIBRATED_FILE.exists():
        return {}
    with CALIBRATED_FILE.open("rb") as f:
        return dict(tomllib.load(f).get("values", {}))


def _apply_calibration(declared: tuple[Param, ...]) -> dict[str, Param]:
    fitted = _load_calibrated()
    registry = {}
    for p in declared:
        if p.name in fitted:
            p = replace(p, default=p.validate(fitted[p.name], where=str(CALIBRATED_FILE.name)))
        registry[p.name] = p
    return registry


REGISTRY: dict[str, Param] = _apply_calibration(_DECLARED)
"""All parameters by name, in declaration order, with calibrated defaults applied."""


def defaults() -> dict[str, Any]:
    """The default value of every parameter."""
    return {name: p.default for name, p in REGISTRY.items()}


def lookup(name: str, where: str = "") -> Param:
    """The registry entry for ``name``, or a ParameterError that suggests close names."""
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        at = f" ({where})" if where else ""
        raise ParameterError(
            f"unknown parameter {name!r}{at}.{hint} `python -m sim params` lists all parameters."
        ) from None


def validate(values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Check names, types and ranges; return the values converted to their parameter types."""
    return {name: lookup(name, where).validate(v, where) for name, v in values.items()}


def resolve(overrides: dict[str, Any] | None = None, where: str = "") -> dict[str, Any]:
    """Defaults updated with validated ``overrides``."""
    values = defaults()
    values.update(validate(overrides or {}, where))
    return values


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``name=value`` from the command line into a validated pair."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParameterError(f"--set {text!r} is not of the form name=value, e.g. --set therapist_empathy_mean=0.4.")
    param = lookup(name, "--set")
    raw = raw.strip()
    if param.kind == "choice":
        return name, param.validate(raw, "--set")
    try:
        value = float(raw)
    except ValueError:
        raise ParameterError(f"{name} = {raw!r} is not a number (--set): use {param.allowed} ({param.unit}).") from None
    return name, param.validate(value, "--set")


def declared_defaults() -> dict[str, Any]:
    """Every parameter's default as declared here, before calibration replaced the free ones."""
    return {p.name: p.default for p in _DECLARED}


def free_parameters() -> list[Param]:
    """Mechanism parameters that calibration fits."""
    return [p for p in REGISTRY.values() if p.free]
