"""Therapist and client traits drawn from the population distributions in the registry.

Traits on a bounded scale are truncated normals, drawn by inverse transform from one uniform per
agent: the uniforms are shared by all parameter sets of a replicate, so raising a mean shifts every
agent's trait monotonically instead of reshuffling the population (common random numbers).
Attachment anxiety and avoidance are a correlated pair (a Gaussian copula) on the ECR-R 1-7 scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from sim import libm
from sim.streams import Streams

ATTACHMENT_STYLES = ("secure", "anxious", "avoidant", "fearful")
# Responsiveness is normal about 1, truncated: below 0 a client worsens with the work of therapy,
# and no client responds more than three times as fast as the average.
RESPONSIVENESS_RANGE = (-1.0, 3.0)
CULTURE_GROUPS = 3  # group 0 is the majority; 1 and 2 share the minority share equally


def truncated_normal(u: np.ndarray, mean, sd, low, high) -> np.ndarray:
    """Inverse-transform draw from a normal(mean, sd) truncated to [low, high].

    Args:
        u: uniforms on [0, 1), shape (n,) or (n_sets, n).
        mean, sd, low, high: arrays shaped (n_sets, 1) or scalars; ``sd == 0`` gives ``mean``.

    Returns:
        Draws shaped (n_sets, n), or (n,) when every argument is a scalar.
    """
    if np.ndim(u) > 1:
        return _truncated_normal(u, mean, sd, low, high)
    return by_distinct_rows(lambda *row: _truncated_normal(u, *row), mean, sd, low, high)


def by_distinct_rows(draw: Callable[..., np.ndarray], *columns) -> np.ndarray:
    """``draw(*columns)``, computed once for each distinct row of the columns and given to every set.

    In a sweep most parameter sets share most population parameters, and the inverse normal is the
    costly part of drawing a population: the sets that share a row share its draws, as they would
    computed set by set.

    Args:
        draw: takes the columns shaped (n_rows, 1) and returns draws shaped (n_rows, n).
        columns: per-set values, arrays shaped (n_sets, 1) or scalars.
    """
    columns = [np.asarray(x, dtype=float) for x in columns]
    if all(c.ndim == 0 for c in columns):
        return draw(*columns)
    table = np.hstack(np.broadcast_arrays(*(c.reshape(-1, 1) for c in columns)))
    distinct, index = _distinct_rows(table)
    if len(distinct) == len(table):  # all distinct: no gather needed
        return draw(*(table[:, [j]] for j in range(table.shape[1])))
    return draw(*(distinct[:, [j]] for j in range(table.shape[1])))[index]


def _distinct_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 2-D float table and, for each row, the index of its distinct row.

    A lexicographic sort of the columns: ``np.unique(axis=0)`` sorts rows as opaque bytes, about ten
    times slower on a sweep's thousands of sets.
    """
    order = np.lexsort(table.T[::-1])
    ordered = table[order]
    first = np.ones(len(table), dtype=bool)
    first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    index = np.empty(len(table), dtype=np.intp)
    index[order] = np.cumsum(first) - 1
    return ordered[first], index


def _truncated_normal(u, mean, sd, low, high):
    mean = np.asarray(mean, dtype=float)
    sd = np.asarray(sd, dtype=float)
    safe_sd = np.where(sd > 0, sd, 1.0)
    lo, hi = ndtr((low - mean) / safe_sd), ndtr((high - mean) / safe_sd)
    p = np.clip(lo + u * (hi - lo), 1e-12, 1 - 1e-12)
    x = mean + safe_sd * ndtri(p)
    return np.where(sd > 0, np.clip(x, low, high), np.clip(mean, low, high))


def culture_group(u: np.ndarray, minority_share) -> np.ndarray:
    """Culture group from a uniform: 1 or 2 with total probability ``minority_share``, else 0."""
    half = np.asarray(minority_share) / 2
    return np.where(u < half, 1, np.where(u < 2 * half, 2, 0)).astype(np.int8)


def attachment_style(anxiety: np.ndarray, avoidance: np.ndarray, cutoff) -> np.ndarray:
    """Index into :data:`ATTACHMENT_STYLES` (secure, anxious, avoidant, fearful)."""
    return ((anxiety >= cutoff).astype(np.int8) + 2 * (avoidance >= cutoff)).astype(np.int8)


@dataclass
class Therapists:
    """Therapist traits, each shape (n_sets, n_therapists)."""

    empathy: np.ndarray
    humility: np.ndarray
    repair_skill: np.ndarray
    consistency: np.ndarray
    competence: np.ndarray
    uses_feedback: np.ndarray
    culture: np.ndarray
    capacity: np.ndarray
    retention: np.ndarray


@dataclass
class Clients:
    """Client traits, each shape (n_sets, n_clients); attachment on the ECR-R 1-7 scale."""

    intake_phq9: np.ndarray
    attachment_anxiety: np.ndarray
    attachment_avoidance: np.ndarray
    attachment_style: np.ndarray
    culture: np.ndarray
    salience: np.ndarray
    expectancy: np.ndarray
    readiness: np.ndarray
    barriers: np.ndarray
    support: np.ndarray
    perception_noise: np.ndarray
    responsiveness: np.ndarray


def draw_therapists(p: dict, n: int, streams: Streams) -> Therapists:
    """Draw ``n`` therapists for every parameter set in ``p`` (arrays shaped (n_sets, 1))."""
    u = streams["therapists"].random((7, n))
    z_capacity = streams["therapists"].standard_normal(n)

    def trait(i, key):
        return truncated_normal(u[i], p[f"therapist_{key}_mean"], p[f"therapist_{key}_sd"], 0, 1)

    # Caseload capacity varies about its mean (lognormal, mean-preserving).
    sd = p["therapist_capacity_sd"]
    capacity = np.maximum(1.0, np.round(p["therapist_capacity_mean"] * libm.exp(sd * z_capacity - sd**2 / 2)))
    return Therapists(
        empathy=trait(0, "empathy"),
        humility=trait(1, "humility"),
        repair_skill=trait(2, "repair"),
        consistency=trait(3, "consistency"),
        competence=trait(4, "competence"),
        uses_feedback=u[5] < p["therapist_feedback_share"],
        culture=culture_group(u[6], p["therapist_minority_share"]),
        capacity=capacity,
        retention=truncated_normal(
            streams["therapist_retention"].random(n), p["therapist_retention_mean"], p["therapist_retention_sd"], 0, 1
        ),
    )


def draw_clients(p: dict, n: int, streams: Streams) -> Clients:
    """Draw ``n`` clients for every parameter set in ``p`` (arrays shaped (n_sets, 1))."""
    rng = streams["clients"]
    u = rng.random((7, n))
    z = rng.standard_normal((3, n))

    # Gaussian copula: correlated normals turned into uniforms, then truncated to the ECR-R range.
    def avoidance_draw(rho, mean, sd):
        return _truncated_normal(ndtr(rho * z[0] + np.sqrt(1 - rho**2) * z[1]), mean, sd, 1, 7)

    sd = p["attachment_sd"]
    anxiety = truncated_normal(ndtr(z[0]), p["attachment_anxiety_mean"], sd, 1, 7)
    avoidance = by_distinct_rows(avoidance_draw, p["attachment_correlation"], p["attachment_avoidance_mean"], sd)

    def trait(i, key):
        return truncated_normal(u[i], p[f"{key}_mean"], p[f"{key}_sd"], 0, 1)

    intake = truncated_normal(u[0], p["intake_phq9_mean"], p["intake_phq9_sd"], p["intake_phq9_min"], 27)
    return Clients(
        # PHQ-9 is an integer score; a score at the admission floor stays admitted.
        intake_phq9=np.maximum(np.round(intake), np.ceil(p["intake_phq9_min"] - 1e-9)),
        attachment_anxiety=anxiety,
        attachment_avoidance=avoidance,
        attachment_style=attachment_style(anxiety, avoidance, p["attachment_cutoff"]),
        culture=culture_group(u[1], p["client_minority_share"]),
        salience=trait(2, "cultural_salience"),
        expectancy=trait(3, "expectancy"),
        readiness=trait(4, "readiness"),
        barriers=trait(5, "barriers"),
        support=trait(6, "support"),
        perception_noise=np.broadcast_to(z[2], anxiety.shape),
        responsiveness=truncated_normal(
            streams["responsiveness"].random(n), 1.0, p["responsiveness_sd"], *RESPONSIVENESS_RANGE
        ),
    )
