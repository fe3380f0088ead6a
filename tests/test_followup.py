"""The follow-up's relapse draw: skipping the exponential where it cannot matter changes no outcome."""

import numpy as np
from numba import njit

from sim.followup import _relapses


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
