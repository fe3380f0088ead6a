"""What SIMD lanes over parameter sets would buy the week kernel: a measurement on a reduced body.

``python -m benchmarks.loop_order`` runs one reduced week body (attendance, bond and goal growth,
symptom change, dropout: the shape of :func:`sim.dynamics._advance` with a fifth of its work) two
ways on the same numbers and prints both times and their ratio:

- per dyad, all weeks in registers (the engine's loop order): one dyad after another, its state
  loaded once, the week loop innermost, leaving the loop when the dyad ends;
- in lanes: the week loop outermost and the sets innermost, a branch-free body the compiler turns
  into SIMD instructions (the draws are shared by every set of a client, which is what makes the
  sets a natural vector), every state value read and written each week, every lane run to the end.

Both give bit-identical states (checked). The ratio is what the redesign discussed in
docs/performance.md could expect from the loop order alone.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

N_SETS, N_WEEKS, REPEATS = 2_000, 16, 300


@njit(error_model="numpy")
def per_dyad(bond, goal, severity, active, target, speed, rate, threshold, draws):
    """The engine's order: each dyad through all its weeks, its state in registers."""
    for k in range(bond.shape[0]):
        if not active[k]:
            continue
        b, g, s, a = bond[k], goal[k], severity[k], True
        target_k, speed_k, rate_k, threshold_k = target[k], speed[k], rate[k], threshold[k]
        for t in range(draws.shape[0]):
            if not a:
                break
            attended = draws[t, 0] < threshold_k - (1.0 - g)
            if attended:
                b = min(max(b + speed_k * (target_k - b), 0.0), 1.0)
                g = g + rate_k * (b - g)
            s = min(max(s - rate_k * (b + g) / 3.0 * s + 0.5 * draws[t, 2], 0.0), 27.0)
            if attended and draws[t, 1] < 0.02 * (1.0 - b):
                a = False
        bond[k], goal[k], severity[k], active[k] = b, g, s, a


@njit(error_model="numpy")
def in_lanes(bond, goal, severity, active, target, speed, rate, threshold, draws):
    """Weeks outermost, sets innermost and branch-free: the compiler vectorises the set loop."""
    for t in range(draws.shape[0]):
        u_attend, u_dropout, z = draws[t, 0], draws[t, 1], draws[t, 2]
        for k in range(bond.shape[0]):
            a = active[k]
            attended = a & (u_attend < threshold[k] - (1.0 - goal[k]))
            b = bond[k]
            grown = min(max(b + speed[k] * (target[k] - b), 0.0), 1.0)
            bond[k] = grown if attended else b
            g = goal[k]
            goal[k] = g + rate[k] * (grown - g) if attended else g
            s = severity[k]
            changed = min(max(s - rate[k] * (bond[k] + goal[k]) / 3.0 * s + 0.5 * z, 0.0), 27.0)
            severity[k] = changed if a else s
            active[k] = a & ~(attended & (u_dropout < 0.02 * (1.0 - bond[k])))


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    state = (np.full(N_SETS, 0.3), np.full(N_SETS, 0.3), np.full(N_SETS, 15.0), np.ones(N_SETS, dtype=np.bool_))
    constants = (rng.random(N_SETS), 0.3 * rng.random(N_SETS), 0.1 * rng.random(N_SETS), 3.0 * rng.random(N_SETS))
    return state, constants, rng.random((N_WEEKS, 3))


def _seconds(kernel) -> float:
    """Best of five: the mean time of ``REPEATS`` calls, each on a fresh copy of the state."""
    state, constants, draws = _inputs()
    best = np.inf
    for _ in range(5):
        copies = [tuple(x.copy() for x in state) for _ in range(REPEATS)]
        start = time.perf_counter()
        for copy in copies:
            kernel(*copy, *constants, draws)
        best = min(best, (time.perf_counter() - start) / REPEATS)
    return best


def main() -> int:
    state, constants, draws = _inputs()
    results = []
    for kernel in (per_dyad, in_lanes):
        copy = tuple(x.copy() for x in state)
        kernel(*copy, *constants, draws)  # compiles
        results.append(copy)
    same = all(np.array_equal(x, y) for x, y in zip(*results, strict=True))
    dyad_s, lanes_s = _seconds(per_dyad), _seconds(in_lanes)
    weeks = N_SETS * N_WEEKS
    print(f"reduced week body, {N_SETS:,} sets x {N_WEEKS} weeks; states bit-identical: {same}")
    print(f"per dyad, weeks innermost: {dyad_s * 1e6:7.1f} us ({dyad_s / weeks * 1e9:.2f} ns per set-week)")
    print(f"in lanes, sets innermost:  {lanes_s * 1e6:7.1f} us ({lanes_s / weeks * 1e9:.2f} ns per set-week)")
    print(f"lanes against per dyad: {dyad_s / lanes_s:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
