"""The follow-up kernel: clients side by side get the follow-up each gets alone; the relapse shortcut is exact."""

import math

import numpy as np
from numba import njit

from sim.dynamics import CASENESS
from sim.followup import ASSESSMENT_WEEKS, _follow, _relapses


@njit(cache=False)
def _relapse_by_the_exponential(u, y):
    return u < 1.0 - np.exp(-y)  # the comparison the kernel's shortcut must agree with, compiled alike


def test_the_relapse_shortcut_gives_the_exponentials_outcome():
    """Over hazards from 1e-300 to 10, draws at the edge of relapse get the outcome the exponential gives."""
    rng = np.random.default_rng(20261203)
    hazards = np.concatenate([10.0 ** rng.uniform(-300, 1, 20_000), rng.uniform(0, 1e-6, 20_000), [0.0, 5e-324]])
    for y in hazards:
        edge = 1.0 - np.exp(-y)  # draws around the edge, the few doubles on either side
        for u in (*np.nextafter(edge, [0.0, 1.0]), edge, y, np.nextafter(y + 1e-15, 2.0), min(1.0, 2 * y)):
            assert _relapses(u, y) == _relapse_by_the_exponential(u, y), f"u={u!r}, y={y!r}: another outcome"


def _inputs(n: int, rng) -> dict[str, np.ndarray]:
    """A batch of four sets (horizons 1, 4, 7 and 26 weeks) of ``n`` clients, with relapses and life events."""
    weeks = np.array([1, 4, 7, 26])
    horizon, sets = int(weeks.max()), len(weeks)
    per_set = {
        "remission": rng.uniform(0.0, 0.05, sets),
        "noise_sd": rng.uniform(0.0, 2.0, sets),
        "life_rate": rng.uniform(0.0, 0.3, sets),
        "err_sd": rng.uniform(0.0, 2.0, sets),
        "hazard0": rng.uniform(0.0, 0.2, sets),
        "decay": rng.uniform(1.0, 30.0, sets),
        "residual_weight": rng.uniform(0.0, 0.2, sets),
        "buffer": rng.uniform(0.0, 1.0, sets),
        "relapse_size": rng.uniform(0.0, 8.0, sets),
    }
    per_client = {
        "built": rng.uniform(0.0, 1.0, (sets, n)),
        "shock": rng.uniform(0.0, 6.0, (sets, n)),
        "final": rng.integers(0, 28, (sets, n)).astype(float),  # below and above caseness
    }
    draws = {
        "drift": rng.standard_normal((n, horizon)),
        "life": rng.random((n, horizon)),
        "relapse_u": rng.random((n, horizon)),
        "measure": rng.standard_normal((n, horizon)),
    }
    state = {"severity": rng.uniform(0.0, 27.0, (sets, n)), "score": per_client["final"].copy()}
    return {"weeks": weeks, **per_set, **per_client, **draws, **state}


def _one_client(x: dict, k: int, i: int) -> tuple[float, float, int, int]:
    """Client ``i`` of set ``k`` alone, one week after another: the follow-up as the model states it."""
    sev, last, final = x["severity"][k, i], x["score"][k, i], x["final"][k, i]
    recovered = final < CASENESS
    h = x["hazard0"][k] * math.exp(x["residual_weight"][k] * final) * (1.0 - x["buffer"][k] * x["built"][k, i])
    relapsed_at = caseness_at = 0
    horizon = x["weeks"][k]
    for t in range(1, horizon + 1):
        change = -x["remission"][k] * sev + x["noise_sd"][k] * x["drift"][i, t - 1]
        if x["life"][i, t - 1] < x["life_rate"][k]:
            change += x["shock"][k, i]
        fading = math.exp(-(t - 1) / x["decay"][k])
        if recovered and relapsed_at == 0 and _relapses(x["relapse_u"][i, t - 1], h * fading):
            relapsed_at = t
            change += x["relapse_size"][k]
        sev = min(max(sev + change, 0.0), 27.0)
        if t % ASSESSMENT_WEEKS == 0 or t == horizon:
            last = min(max(float(np.rint(sev + x["err_sd"][k] * x["measure"][i, t - 1])), 0.0), 27.0)
            if recovered and caseness_at == 0 and last >= CASENESS:
                caseness_at = t
    return sev, last, relapsed_at, caseness_at


def test_clients_followed_side_by_side_get_the_follow_up_each_gets_alone():
    """Every client of every set, whatever its place in a block of four and however full the last block is."""
    relapses = casenesses = 0
    for n in range(1, 10):
        x = _inputs(n, np.random.default_rng(n))
        relapse_week, caseness_week = np.zeros((4, n), dtype=np.int16), np.zeros((4, n), dtype=np.int16)
        expected = [[_one_client(x, k, i) for i in range(n)] for k in range(4)]
        severity, score = x["severity"].copy(), x["score"].copy()
        _follow(
            *(x[name] for name in ("weeks", "remission", "noise_sd", "life_rate", "err_sd", "hazard0", "decay")),
            *(x[name] for name in ("residual_weight", "buffer", "relapse_size", "shock", "built", "final")),
            *(x[name] for name in ("drift", "life", "relapse_u", "measure")),
            severity,
            score,
            relapse_week,
            caseness_week,
        )
        for k in range(4):
            for i in range(n):
                got = (severity[k, i], score[k, i], int(relapse_week[k, i]), int(caseness_week[k, i]))
                assert got == expected[k][i], f"set {k}, client {i} of {n}: {got} in the batch, {expected[k][i]} alone"
        relapses, casenesses = relapses + (relapse_week > 0).sum(), casenesses + (caseness_week > 0).sum()
    assert relapses >= 5 and casenesses >= 5, f"{relapses} relapses, {casenesses} returns to caseness: too few to test"
