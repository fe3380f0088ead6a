"""Outcome definitions per client and cohort metrics per parameter set.

Definitions follow NHS Talking Therapies, as used in routine UK services:
caseness is PHQ-9 >= 10; reliable improvement a fall of 6 or more points, reliable deterioration a
rise of 6 or more; recovery means at caseness at intake and below it at the end; reliable recovery is
recovery with reliable improvement; a finished course has at least two sessions attended.
Rates of improvement, deterioration and recovery are taken over finished courses, as the service
reports them; the dropout rate is over all clients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from sim.dynamics import CASENESS, RELIABLE_CHANGE
from sim.reasons import CATEGORY_OF, REASONS

FINISHED_SESSIONS = 2
SUDDEN_GAIN_POINTS = 6
# Dropout causes (codes into sim.dynamics.DROPOUT_CAUSES) whose category is the relationship.
RELATIONSHIP_CAUSES = [1 + j for j, r in enumerate(REASONS) if CATEGORY_OF[r] == "dissatisfaction"]


def reliable_change_index(x1, x2, sd_pre: float, reliability: float):
    """Jacobson & Truax (1991) RCI = (x2 - x1) / S_diff, S_diff = sqrt(2) s1 sqrt(1 - r_xx).

    doi:10.1037/0022-006X.59.1.12. Reliable when ``abs(rci) > 1.96``.
    """
    s_diff = np.sqrt(2.0) * sd_pre * np.sqrt(1.0 - reliability)
    return (np.asarray(x2, dtype=float) - np.asarray(x1, dtype=float)) / s_diff


def classify(intake, final, attended) -> dict[str, np.ndarray]:
    """Boolean outcome flags for arrays of intake and final PHQ-9 and sessions attended."""
    change = intake - final
    caseness = intake >= CASENESS
    recovery = caseness & (final < CASENESS)
    improved = change >= RELIABLE_CHANGE
    return {
        "finished": attended >= FINISHED_SESSIONS,
        "caseness": caseness,
        "reliable_improvement": improved,
        "reliable_deterioration": change <= -RELIABLE_CHANGE,
        "recovery": recovery,
        "reliable_recovery": recovery & improved,
    }


def sudden_gains(intake: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each client shows a sudden gain, and whether the first one reversed; each shape (n,).

    The three criteria of Tang & DeRubeis (1999), doi:10.1037/0022-006X.67.6.894, as the
    suddengains package implements them (Wiedemann et al. 2020, doi:10.1371/journal.pone.0230276),
    on the PHQ-9 with the intake as the first score: a fall between consecutive scores of at least
    :data:`SUDDEN_GAIN_POINTS` (the reliable change), at least 25% of the pre-gain score, and the
    mean of up to three scores before the gain (the pre-gain score included) above the mean of up
    to three after it by a two-sample t-test (pooled variance, two-sided 5%, critical value for the
    scores available: at least two on each side). A gain reverses when a later score gives back
    half of it or more.

    Args:
        intake: intake PHQ-9, shape (n,).
        scores: PHQ-9 per week, NaN where no session took place, shape (n_weeks, n).
    """
    seq = np.vstack([intake[None, :], scores]).T  # (n, weeks + 1)
    order = np.argsort(np.isnan(seq), axis=1, kind="stable")  # observed scores first, in order
    seq = np.take_along_axis(seq, order, axis=1)
    n, length = seq.shape
    pad = np.full((n, 3), np.nan)
    padded = np.concatenate([pad, seq, pad], axis=1)  # index j + 3 is score j
    pre = np.stack([padded[:, 3 - q : 3 - q + length] for q in (2, 1, 0)])  # scores j-2, j-1, j
    post = np.stack([padded[:, 4 + q : 4 + q + length] for q in (0, 1, 2)])  # scores j+1, j+2, j+3
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN, which fail below
        n_pre, n_post = (~np.isnan(pre)).sum(axis=0), (~np.isnan(post)).sum(axis=0)
        m_pre, m_post = np.nanmean(pre, axis=0), np.nanmean(post, axis=0)
        ss = np.nansum((pre - m_pre) ** 2, axis=0) + np.nansum((post - m_post) ** 2, axis=0)
        df = n_pre + n_post - 2
        pooled = np.sqrt(ss / np.maximum(df, 1) * (1.0 / np.maximum(n_pre, 1) + 1.0 / np.maximum(n_post, 1)))
        t = (m_pre - m_post) / pooled
        critical = _T_CRITICAL[np.clip(df, 0, len(_T_CRITICAL) - 1)]
        before, after = pre[2], post[0]
        gain = before - after
        hit = (gain >= SUDDEN_GAIN_POINTS) & (gain >= 0.25 * before) & (n_pre >= 2) & (n_post >= 2) & (t > critical)
    has_gain = hit.any(axis=1)
    first = np.argmax(hit, axis=1)
    rows = np.arange(n)
    size, low = gain[rows, first], after[rows, first]
    later = np.where(np.arange(length)[None, :] > first[:, None] + 1, seq, np.nan)
    with np.errstate(invalid="ignore"):
        reversed_ = has_gain & (np.nanmax(np.where(np.isnan(later), -np.inf, later), axis=1) >= low + size / 2)
    return has_gain, reversed_


# Two-sided 5% critical values of Student's t by degrees of freedom (0 and 1 cannot occur with two
# scores on each side; they are there so the table is indexed by df).
_T_CRITICAL = np.array([np.inf, 12.706, 4.303, 3.182, 2.776])


@dataclass(frozen=True)
class Metric:
    """A cohort metric that describes itself: name, label, unit and the range its values can take."""

    name: str
    label: str
    unit: str
    low: float = -np.inf
    high: float = np.inf


SHARE = {"low": 0.0, "high": 1.0}

METRICS = (
    Metric("dropout_rate", "dropout", "share of clients", **SHARE),
    Metric("recovery_rate", "recovery", "share of finished courses at caseness", **SHARE),
    Metric("reliable_improvement_rate", "reliable improvement", "share of finished courses", **SHARE),
    Metric("reliable_deterioration_rate", "reliable deterioration", "share of finished courses", **SHARE),
    Metric("mean_sessions", "sessions attended", "sessions", low=0.0),
    Metric("mean_alliance", "mean alliance", "WAI-SR 12-60", low=12.0, high=60.0),
    Metric("alliance_outcome_r", "r(early alliance, PHQ-9 change)", "Pearson r", low=-1.0, high=1.0),
    Metric("mean_change", "PHQ-9 change, intake minus final", "PHQ-9 points", low=-27.0, high=27.0),
    Metric("ruptures_per_client", "ruptures per client", "ruptures", low=0.0),
    Metric("repair_share", "share of ruptures repaired", "share", **SHARE),
    Metric("alliance_dropout_d", "d of early alliance, completers minus dropouts", "Cohen's d"),
    Metric("relationship_share", "dropouts leaving mainly for relationship reasons", "share of dropouts", **SHARE),
)


def masked_mean(x, mask):
    """Mean of ``x`` over ``mask`` along the last axis; NaN where the mask is empty."""
    n = mask.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mask, x, 0.0).sum(axis=-1) / n


def masked_corr(x, y, mask):
    """Pearson r of ``x`` and ``y`` over ``mask`` along the last axis; NaN when undefined."""
    mx, my = masked_mean(x, mask), masked_mean(y, mask)
    dx = np.where(mask, x - mx[..., None], 0.0)
    dy = np.where(mask, y - my[..., None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dx * dy).sum(axis=-1) / np.sqrt((dx * dx).sum(axis=-1) * (dy * dy).sum(axis=-1))


def masked_cohens_d(x, group, mask):
    """Cohen's d (pooled SD) of ``x``, ``group`` minus the rest, over ``mask`` along the last axis."""
    a, b = mask & group, mask & ~group
    n_a, n_b = a.sum(axis=-1), b.sum(axis=-1)
    m_a, m_b = masked_mean(x, a), masked_mean(x, b)
    ss = np.where(a, x - m_a[..., None], 0.0) ** 2 + np.where(b, x - m_b[..., None], 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (m_a - m_b) / np.sqrt(ss.sum(axis=-1) / (n_a + n_b - 2))


def cohort_metrics(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cohort metrics (see :data:`METRICS`), each shape (n_sets,), from per-client outcomes.

    Args:
        c: per-client arrays shaped (n_sets, n_clients), as from :func:`sim.run.client_outcomes`.
    """
    flags = classify(c["intake_phq9"], c["final_phq9"], c["sessions_attended"])
    finished = flags["finished"]
    seen = c["sessions_attended"] > 0
    change = c["intake_phq9"] - c["final_phq9"]
    ruptures = c["ruptures"].astype(float)
    dropped = c["end_type"] == 3
    with np.errstate(invalid="ignore", divide="ignore"):
        repair_share = c["repairs"].sum(axis=-1) / ruptures.sum(axis=-1)
    return {
        "dropout_rate": (c["end_type"] == 3).mean(axis=-1),
        "recovery_rate": masked_mean(flags["recovery"], finished & flags["caseness"]),
        "reliable_improvement_rate": masked_mean(flags["reliable_improvement"], finished),
        "reliable_deterioration_rate": masked_mean(flags["reliable_deterioration"], finished),
        "mean_sessions": c["sessions_attended"].mean(axis=-1),
        "mean_alliance": masked_mean(c["mean_alliance"], seen),
        "alliance_outcome_r": masked_corr(c["early_alliance"], change, seen),
        "mean_change": change.mean(axis=-1),
        "ruptures_per_client": ruptures.mean(axis=-1),
        "repair_share": repair_share,
        "alliance_dropout_d": masked_cohens_d(np.nan_to_num(c["early_alliance"]), ~dropped, seen),
        "relationship_share": masked_mean(np.isin(c["dropout_cause"], RELATIONSHIP_CAUSES), dropped),
    }
