"""The follow-up's relapse draw: skipping the exponential where it cannot matter changes no outcome."""

import numpy as np
from numba import njit


@njit(cache=False)
def _relapse(u, y):
    return u < 1.0 - np.exp(-y)  # as sim/followup.py's kernel compares, in compiled code


@njit(cache=False)
def _bound_holds(u, y):
    return u <= y + 1e-15  # the kernel's shortcut: above this, no relapse whatever the exponential


def test_no_draw_above_the_bound_is_a_relapse():
    """1 - exp(-y) <= y + 1e-15 in floating point, so the kernel may skip the exponential above it."""
    rng = np.random.default_rng(20261203)
    hazards = np.concatenate([10.0 ** rng.uniform(-300, 1, 20_000), rng.uniform(0, 1e-6, 20_000), [0.0, 5e-324]])
    for y in hazards:
        edge = 1.0 - np.exp(-y)  # draws around the edge, the few doubles on either side
        for u in (*np.nextafter(edge, [0.0, 1.0]), edge, y, np.nextafter(y + 1e-15, 2.0), min(1.0, 2 * y)):
            if _relapse(u, y):
                assert _bound_holds(u, y), f"a relapse (u={u!r}, y={y!r}) above the bound the kernel skips"
