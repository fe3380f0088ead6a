"""Why clients leave: a dropout's chance of leaving, decomposed into the contributions of its reasons.

The weekly dropout hazard is a logistic model, ``p = expit(base + sum(terms))``, each term a risk
factor that is zero when the factor is absent (a strong alliance, no open rupture, full engagement,
no barriers, no missed sessions, no improvement yet, no break in therapy to react to) and positive
otherwise. For every dropout the
chance ``p`` of leaving that week is split over the terms by their Shapley values on the probability
scale (Shapley 1953; the same attribution as SHAP, Lundberg & Lee 2017): each factor gets its
average marginal contribution to ``p`` over every order in which the factors could be added to the
background. The background share ``expit(base) / p`` is the part of leaving that no risk in therapy
explains (life circumstances: a move, a new job, illness). The shares are non-negative, sum to one,
give exactly zero to an absent factor, and grow with their factor (docs/ODD.md says why Shapley
values rather than a counterfactual removal).

Missed sessions say how a client drifts away, not why. Each missed session's chance of being missed
is split the same way over what lowered attendance (practical barriers, low engagement, a break in
therapy, and the background rate of missing); when missed sessions push a client out, their share is
credited back to those causes in proportion to the missed run's accumulated shares.

Reasons are grouped into the categories that client surveys of unilateral termination use
(improvement or no longer needed; practical or circumstantial constraints; dissatisfaction with the
therapy or the relationship; other): Pekarik (1983), J. Clin. Psychol. 39(6), 909-913; Bados,
Balaguer & Saldana (2007), J. Clin. Psychol. 63(6), 585-592, doi:10.1002/jclp.20368.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel

REASONS = (
    "weak_alliance",
    "unrepaired_rupture",
    "therapy_breaks",
    "low_engagement",
    "practical_barriers",
    "life_circumstances",
    "felt_better",
)
"""Dropout reasons, in the order of the per-reason share columns."""

WEAK_ALLIANCE, UNREPAIRED_RUPTURE, THERAPY_BREAKS, LOW_ENGAGEMENT, PRACTICAL_BARRIERS, LIFE, FELT_BETTER = range(7)

CATEGORIES = ("improvement", "circumstances", "dissatisfaction", "other")
"""Reason categories as client surveys report them."""

CATEGORY_OF = {
    "weak_alliance": "dissatisfaction",
    "unrepaired_rupture": "dissatisfaction",
    "therapy_breaks": "dissatisfaction",
    "low_engagement": "other",
    "practical_barriers": "circumstances",
    "life_circumstances": "circumstances",
    "felt_better": "improvement",
}

CATEGORY_TEXT = {
    "improvement": "improvement: no longer needed",
    "circumstances": "practical or circumstantial constraints",
    "dissatisfaction": "dissatisfaction with the therapy or the relationship",
    "other": "other (motivation, not ready)",
}

REASON_TEXT = {
    "weak_alliance": "a weak working alliance",
    "unrepaired_rupture": "an unrepaired rupture",
    "therapy_breaks": "breaks in therapy (cancellations, a holiday) that broke the thread",
    "low_engagement": "fading engagement",
    "practical_barriers": "practical barriers",
    "life_circumstances": "life circumstances outside therapy (a move, a new job, illness)",
    "felt_better": "feeling better: therapy seemed no longer needed",
}

REASON_COLOURS = {
    "weak_alliance": "#d62728",
    "unrepaired_rupture": "#ff7f0e",
    "therapy_breaks": "#e7969c",
    "low_engagement": "#9467bd",
    "practical_barriers": "#1f77b4",
    "life_circumstances": "#9ecae1",
    "felt_better": "#2ca02c",
}
"""One colour per reason for every figure (CLI, app, notebooks): reds for the relationship, blues for
circumstances, green for improvement, purple for the rest."""

# The hazard's terms, in the order the kernel passes them, and the reason each is put down to
# (-1: missed sessions, credited back to what made the client miss them).
HAZARD_TERMS = ("alliance", "rupture", "engagement", "barriers", "missed", "improved", "breaks")
TERM_REASON = np.array(
    [WEAK_ALLIANCE, UNREPAIRED_RUPTURE, LOW_ENGAGEMENT, PRACTICAL_BARRIERS, -1, FELT_BETTER, THERAPY_BREAKS]
)
MISSED_TERM = 4

# What a missed session is put down to, in the order of the kernel's miss credit.
MISS_CAUSES = ("practical_barriers", "low_engagement", "therapy_breaks", "life_circumstances")
MISS_REASON = np.array([PRACTICAL_BARRIERS, LOW_ENGAGEMENT, THERAPY_BREAKS, LIFE])
N_MISS_CAUSES = len(MISS_CAUSES)


def category_index() -> np.ndarray:
    """The category (index into CATEGORIES) of each reason, shape (n_reasons,)."""
    return np.array([CATEGORIES.index(CATEGORY_OF[r]) for r in REASONS])


def category_shares(shares: np.ndarray) -> np.ndarray:
    """Per-category shares from per-reason shares (last axis), shape (..., n_categories)."""
    index = category_index()
    return np.stack([shares[..., index == c].sum(axis=-1) for c in range(len(CATEGORIES))], axis=-1)


@kernel()
def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


@kernel()
def shapley_scratch(n):
    """Working memory for :func:`shapley_shares_into` over up to ``n`` terms.

    ``present`` (n,) int, ``work`` (2 * 2**n + n,) float and ``members`` (2**n,) int: the present
    terms, then each coalition's log-odds and chance and the Shapley weights, and each coalition's size.
    """
    return np.empty(n, np.int64), np.empty(2 * (1 << n) + n), np.empty(1 << n, np.int64)


@kernel()
def shapley_shares(base, terms, out):
    """Shares of ``p = expit(base + sum(terms))`` due to each term, written to ``out``.

    Exact Shapley values over the terms that are present (a zero term is a dummy player and gets
    zero), each divided by ``p``. Returns the background share ``expit(base) / p``; with the
    shares in ``out`` it sums to one.

    This runs at every dropout, over up to 2^7 coalitions: a coalition's log-odds is its largest
    member's term added to the coalition without it (the same additions, in the same order, as
    summing its members from the first), and its size is that one's plus one, so each coalition
    costs one addition and one exponential.

    Args:
        base: log-odds with no risk factor.
        terms: non-negative log-odds terms, shape (n,), n <= 16.
        out: shape (n,), overwritten.
    """
    present, work, members = shapley_scratch(terms.shape[0])
    return shapley_shares_into(base, terms, out, present, work, members)


@kernel()
def shapley_shares_into(base, terms, out, present, work, members):
    """:func:`shapley_shares` in working memory the caller keeps (from :func:`shapley_scratch`).

    The week kernel calls it at every dropout; allocating the memory there took some 75 ns of the
    300 to 650 a dropout's shares take over five or six terms. Memory too small for ``terms`` is
    refused (compiled code does not check bounds).
    """
    n = terms.shape[0]
    assert present.shape[0] >= n and work.shape[0] >= 2 * (1 << n) + n and members.shape[0] >= 1 << n
    m = 0
    total = base
    for j in range(n):
        out[j] = 0.0
        total += terms[j]
        if terms[j] > 0.0:
            present[m] = j
            m += 1
    p = _expit(total)
    size = 1 << m
    log_odds, value, weight = work[:size], work[size : 2 * size], work[2 * size : 2 * size + m]
    log_odds[0], value[0], members[0] = base, _expit(base), 0
    largest = -1
    for mask in range(1, size):
        if mask & (mask - 1) == 0:  # a power of two: the coalitions from here on have a new largest member
            largest += 1
        rest = mask ^ (1 << largest)
        log_odds[mask] = log_odds[rest] + terms[present[largest]]
        members[mask] = members[rest] + 1
        value[mask] = _expit(log_odds[mask])
    # weight of a coalition of s others: s! (m - s - 1)! / m!
    for s in range(m):
        w = 1.0 / m
        for q in range(1, s + 1):
            w *= q / (m - q)  # builds s! (m-1-s)! / (m-1)! one factor at a time, divided by m
        weight[s] = w
    for a in range(m):
        bit = 1 << a
        phi = 0.0
        for mask in range(size):
            if mask & bit:
                continue
            phi += weight[members[mask]] * (value[mask | bit] - value[mask])
        out[present[a]] = phi / p
    return value[0] / p


@kernel()
def miss_shares(odds_attend, x0, x1, x2):
    """Shares of a missed session's chance of being missed due to three log-odds terms.

    The chance of missing is ``expit(-base + x0 + x1 + x2)`` with ``base`` the attendance log-odds
    without the terms, given as ``odds_attend = exp(base)``. Returns the three shares and the
    background share, summing to one (see :func:`miss_shares_exp`).
    """
    return miss_shares_exp(odds_attend, np.exp(-x0), np.exp(-x1), np.exp(-x2))


@kernel()
def miss_shares_exp(odds_attend, e0, e1, e2):
    """:func:`miss_shares` from the terms' ``exp(-x)``, so a caller can keep those it already has.

    The Shapley values of the three terms are written out in closed form, every coalition's chance
    from the exponentials (``expit(-base + sum x) = 1 / (1 + odds_attend * prod exp(-x))``): this
    runs at every missed session.
    """
    a0, a1, a2 = odds_attend * e0, e1, e2
    v = 1.0 / (1.0 + odds_attend)
    v0, v1, v2 = 1.0 / (1.0 + a0), 1.0 / (1.0 + odds_attend * a1), 1.0 / (1.0 + odds_attend * a2)
    v01, v02, v12 = 1.0 / (1.0 + a0 * a1), 1.0 / (1.0 + a0 * a2), 1.0 / (1.0 + odds_attend * a1 * a2)
    v012 = 1.0 / (1.0 + a0 * a1 * a2)
    third, sixth = 1.0 / 3.0, 1.0 / 6.0
    s0 = third * (v0 - v) + sixth * (v01 - v1) + sixth * (v02 - v2) + third * (v012 - v12)
    s1 = third * (v1 - v) + sixth * (v01 - v0) + sixth * (v12 - v2) + third * (v012 - v02)
    s2 = third * (v2 - v) + sixth * (v02 - v0) + sixth * (v12 - v1) + third * (v012 - v01)
    return s0 / v012, s1 / v012, s2 / v012, v / v012
