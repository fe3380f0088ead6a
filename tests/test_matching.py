"""Matching policies at intake."""

import numpy as np
import pytest

from sim import parameters
from sim.engine import Cohort
from sim.matching import fill
from sim.parameters import MATCHING_POLICIES

WORLD = {"client_minority_share": 0.4, "therapist_minority_share": 0.4}


def _cohort(policy, n_clients=1000, n_therapists=50, seed=3, **overrides):
    return Cohort(parameters.resolve({**WORLD, **overrides, "matching_policy": policy}), n_clients, n_therapists, seed)


def test_fill_known_answer():
    chosen, loads = fill(np.zeros(3), np.array([1.0, 2.0, 1.0]), 4)
    # Places offered at keys load/capacity: t0 0, 1; t1 0, 0.5, 1; t2 0, 1. Ties go to the lower index.
    assert chosen.tolist() == [0, 1, 2, 1]
    assert loads.tolist() == [1, 2, 1]


@pytest.mark.parametrize("policy", MATCHING_POLICIES)
def test_every_client_gets_one_therapist(policy):
    c = _cohort(policy)
    a = c.assignment[0]
    assert a.shape == (1000,)
    assert a.min() >= 0 and a.max() < 50
    assert c.caseload[0].sum() == 1000


def _matched_share(c):
    return float((c.therapists.culture[0][c.assignment[0]] == c.clients.culture[0]).mean())


def test_cultural_match_raises_matched_dyads():
    random_share = np.mean([_matched_share(_cohort("random", seed=s)) for s in (1, 2, 3)])
    matched_share = np.mean([_matched_share(_cohort("cultural_match", seed=s)) for s in (1, 2, 3)])
    assert matched_share > random_share + 0.2, (
        f"cultural matching should raise the share of culturally matched dyads (random {random_share:.3f}, "
        f"cultural_match {matched_share:.3f})"
    )


def test_cultural_match_fills_each_group_up_to_its_room():
    c = _cohort("cultural_match", n_clients=1000, n_therapists=40, therapist_capacity_mean=20.0)
    t_culture, c_culture = c.therapists.culture[0], c.clients.culture[0]
    capacity = c.therapists.capacity[0]
    matched = t_culture[c.assignment[0]] == c_culture
    for g in range(3):
        clients = c_culture == g
        room = int(capacity[t_culture == g].sum())
        # Clients beyond the group's room overflow to the least loaded therapists, of any group.
        assert matched[clients].sum() >= min(clients.sum(), room), f"group {g}: match everyone the group has room for"
        if room >= clients.sum():
            assert matched[clients].all(), f"group {g} has room for all its clients: all should be matched"


def test_lowest_caseload_balances_caseloads():
    def spread(c):
        rel = c.caseload[0] / c.therapists.capacity[0]
        return rel.max() - rel.min()

    random_spread = spread(_cohort("random"))
    balanced = _cohort("lowest_caseload")
    assert spread(balanced) < random_spread, (
        f"lowest_caseload should balance relative caseloads (spread random {random_spread:.3f}, "
        f"lowest_caseload {spread(balanced):.3f})"
    )
    # Greedy filling: no therapist holds a place ranked above a place another therapist still offers.
    load, cap = balanced.caseload[0], balanced.therapists.capacity[0]
    last_taken = ((load - 1) / cap)[load > 0].max()
    next_offered = (load / cap).min()
    assert last_taken <= next_offered + 1e-12


def _specialist(c):
    relational = c.therapists.empathy[0] + c.therapists.repair_skill[0]
    return relational >= np.median(relational)


def test_attachment_informed_sends_insecure_clients_to_relational_specialists():
    c = _cohort("attachment_informed", n_clients=600, n_therapists=40, therapist_capacity_mean=40.0)
    r = _cohort("random", n_clients=600, n_therapists=40, therapist_capacity_mean=40.0)
    insecure = c.clients.attachment_style[0] > 0
    to_specialist = _specialist(c)[c.assignment[0]]
    random_to_specialist = _specialist(r)[r.assignment[0]]
    assert insecure.sum() > 100
    assert to_specialist[insecure].mean() == 1.0, (
        "with room to spare, every insecure client should go to a therapist with above-median empathy + repair skill"
    )
    assert not to_specialist[~insecure].any(), "secure clients should go to the other therapists while they have room"
    assert to_specialist[insecure].mean() > random_to_specialist[insecure].mean() + 0.3


def test_attachment_informed_overflows_when_specialists_are_full():
    c = _cohort("attachment_informed", n_clients=1000, n_therapists=20, therapist_capacity_mean=10.0)
    assert c.caseload[0].sum() == 1000, "clients beyond every caseload's capacity are still assigned"


def test_random_assignment_ignores_traits():
    a = _cohort("random", therapist_empathy_mean=0.2).assignment
    b = _cohort("random", therapist_empathy_mean=0.8).assignment
    assert np.array_equal(a, b), "random matching should depend only on the matching draws"
