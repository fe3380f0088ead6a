"""Matching policies: which therapist takes each client at intake.

Clients arrive in index order. Every policy but ``random`` fills caseloads greedily: each client goes
to the eligible therapist whose caseload, relative to capacity, is lowest (ties to the lower index).
That greedy order has a closed form, used by :func:`fill`: a therapist with ``c`` clients and
capacity ``k`` offers its next place at key ``c / k``, and clients take places in key order.
"""

from __future__ import annotations

import numpy as np

from sim.parameters import MATCHING_POLICIES
from sim.population import Clients, Therapists


def fill(loads: np.ndarray, capacity: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Assign ``n`` arriving clients to therapists by lowest relative caseload.

    Args:
        loads: current caseloads, shape (k,).
        capacity: caseload capacities (> 0), shape (k,).
        n: number of clients, who arrive in order.

    Returns:
        The therapist index (into ``loads``) of each client, shape (n,), and the updated loads.
    """
    k = len(loads)
    if n == 0 or k == 0:
        return np.zeros(0, dtype=np.int64), loads.copy()
    # Water-filling bound: no therapist ends above relative load (n + sum(loads)) / sum(capacity)
    # by more than one place, so this many places per therapist always suffice.
    level = (n + loads.sum()) / capacity.sum() + 1 / capacity.min()
    extra = int(np.ceil(level * capacity.max() - loads.min())) + 1
    slots = loads[:, None] + np.arange(extra)[None, :]
    keys = slots / capacity[:, None]
    owner = np.broadcast_to(np.arange(k)[:, None], keys.shape)
    order = np.lexsort((owner.ravel(), keys.ravel()))[:n]
    chosen = owner.ravel()[order]
    return chosen, loads + np.bincount(chosen, minlength=k)


def _pooled(client_pool: np.ndarray, therapist_pool: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Assign each client within its pool while the pool has room, the rest to anyone."""
    assignment = np.empty(len(client_pool), dtype=np.int64)
    loads = np.zeros(len(therapist_pool))
    overflow = []
    for pool in np.unique(client_pool):
        clients = np.flatnonzero(client_pool == pool)
        members = np.flatnonzero(therapist_pool == pool)
        room = int(max(0.0, capacity[members].sum() - loads[members].sum())) if len(members) else 0
        inside = clients[:room]
        chosen, loads[members] = fill(loads[members], capacity[members], len(inside))
        assignment[inside] = members[chosen]
        overflow.append(clients[room:])
    rest = np.sort(np.concatenate(overflow))
    chosen, _ = fill(loads, capacity, len(rest))
    assignment[rest] = chosen
    return assignment


def assign(policy: str, therapists: Therapists, clients: Clients, u_match: np.ndarray, s: int) -> np.ndarray:
    """Therapist index of every client in parameter set ``s``, shape (n_clients,).

    Args:
        policy: one of :data:`sim.parameters.MATCHING_POLICIES`.
        therapists, clients: traits of all sets; row ``s`` is used.
        u_match: uniforms shaped (n_clients,) for random assignment.
        s: the parameter set.
    """
    k = therapists.empathy.shape[1]
    capacity = therapists.capacity[s]
    if policy == "random":
        return np.minimum((u_match * k).astype(np.int64), k - 1)
    if policy == "lowest_caseload":
        return fill(np.zeros(k), capacity, len(u_match))[0]
    if policy == "cultural_match":
        return _pooled(clients.culture[s], therapists.culture[s], capacity)
    if policy == "attachment_informed":
        # Insecure clients go to the therapists most skilled at relationships (above-median
        # empathy plus repair skill); secure clients to the others.
        relational = therapists.empathy[s] + therapists.repair_skill[s]
        specialist = (relational >= np.median(relational)).astype(np.int8)
        insecure = (clients.attachment_style[s] > 0).astype(np.int8)
        return _pooled(insecure, specialist, capacity)
    raise ValueError(f"matching_policy {policy!r} is not one of {', '.join(MATCHING_POLICIES)}")
