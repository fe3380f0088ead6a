"""Approximate Bayesian computation by sequential Monte Carlo (ABC-SMC), batched and reproducible.

The algorithm is the population Monte Carlo ABC of Beaumont, Cornuet, Marin & Robert (2009),
Biometrika 96(4), 983-990, doi:10.1093/biomet/asp052, with the tolerance schedule of Del Moral,
Doucet & Jasra (2012), Stat. Comput. 22, 1009-1020 (each tolerance a quantile of the last
population's distances) and the optimal local covariance (OLCM) kernel of Filippi, Barnes, Cornebise
& Stumpf (2013), Stat. Appl. Genet. Mol. Biol. 12(1), 87-107:

1. generation 0: draw candidates from the prior, keep the ``population`` with the smallest distances;
2. generation t: the tolerance is the ``quantile`` of the last population's distances; draw a parent
   by weight, perturb it with a normal kernel, simulate, and accept when the distance is within the
   tolerance, until ``population`` particles are accepted; weight each by
   prior(theta) / sum_j w_j K(theta | theta_j);
3. stop at the target tolerance, when the acceptance rate falls below ``min_acceptance``, after
   ``max_generations``, or when the wall-time budget is spent.

Two things differ from the libraries that implement it (pyabc, ELFI), and are why this module exists
(docs/calibration.md): every candidate of a round is simulated in one call, so a batched simulator runs
thousands of particles at once; and every random number comes from numpy Generators seeded from the
fit's seed and the generation, candidates are proposed in fixed rounds and accepted in proposal order,
so a fit is the same, bit for bit, on any executor and any number of workers.

Parameters live on an unbounded scale ``u`` (the caller maps them, e.g. logit of the registry range);
the prior is a product of normals on that scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

Simulator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""Maps candidates shaped (n, d) to their distances (n,) and summary statistics (n, k)."""


@dataclass(frozen=True)
class Settings:
    """How the sampler runs.

    Attributes:
        population: particles per generation.
        initial: candidates drawn from the prior in generation 0, as a multiple of ``population``.
        quantile: each tolerance is this quantile of the last population's distances.
        target: stop once the tolerance is at or below this distance.
        min_acceptance: stop when a generation accepts fewer candidates than this share.
        max_generations: stop after this many generations (generation 0 included).
        round_size: candidates proposed and simulated together; a generation takes whole rounds.
        max_seconds: stop after the generation that ends past this wall time (None: no limit).
    """

    population: int = 1000
    initial: int = 4
    quantile: float = 0.5
    target: float = 0.0
    min_acceptance: float = 0.02
    max_generations: int = 12
    round_size: int = 1024
    max_seconds: float | None = None


@dataclass
class Generation:
    """One population: particles on the u scale, normalised weights, distances and statistics."""

    t: int
    epsilon: float
    particles: np.ndarray  # (population, d)
    weights: np.ndarray  # (population,), summing to 1
    distances: np.ndarray  # (population,)
    statistics: np.ndarray  # (population, k)
    proposed: int
    seconds: float

    @property
    def acceptance(self) -> float:
        """Share of the candidates proposed in this generation that were accepted."""
        return len(self.particles) / self.proposed

    @property
    def ess(self) -> float:
        """Effective sample size of the weights, 1 / sum(w^2) (Kish)."""
        return float(1.0 / np.sum(self.weights**2))


@dataclass
class Result:
    """Every generation, and why the sampler stopped."""

    generations: list[Generation] = field(default_factory=list)
    stopped: str = ""

    @property
    def last(self) -> Generation:
        """The final population: the posterior sample."""
        return self.generations[-1]


class Prior:
    """Independent normals on the u scale.

    Args:
        mean, sd: per parameter, shape (d,).
    """

    def __init__(self, mean, sd):
        self.mean = np.asarray(mean, dtype=float)
        self.sd = np.asarray(sd, dtype=float)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, shape (n, d)."""
        return self.mean + self.sd * rng.standard_normal((n, len(self.mean)))

    def logpdf(self, u) -> np.ndarray:
        """Log density of each row of ``u``."""
        return stats.norm.logpdf(np.asarray(u, dtype=float), self.mean, self.sd).sum(axis=-1)


def _rng(seed: int, generation: int, purpose: int) -> np.random.Generator:
    """The Generator of one generation and purpose (0: parents and kernel, 1: prior draws)."""
    return np.random.default_rng([seed, generation, purpose])


def olcm_covariances(previous: Generation, epsilon: float) -> np.ndarray:
    """The OLCM kernel's covariance for each parent, shape (population, d, d) (Filippi et al. 2013).

    Each parent's covariance is the weighted second moment, about the parent, of the particles of the
    last population that already meet the new tolerance; with fewer than d + 1 of them, twice the
    weighted covariance of the whole population (Beaumont et al. 2009) is used for every parent.
    """
    x, w = previous.particles, previous.weights
    d = x.shape[1]
    inside = previous.distances <= epsilon
    fallback = 2.0 * np.atleast_2d(np.cov(x, rowvar=False, aweights=w)) + 1e-9 * np.eye(d)
    if inside.sum() <= d:
        return np.broadcast_to(fallback, (len(x), d, d)).copy()
    xs, ws = x[inside], w[inside] / w[inside].sum()
    mean = ws @ xs
    centred = xs - mean
    spread = (centred * ws[:, None]).T @ centred
    offsets = mean[None, :] - x  # (population, d)
    cov = spread[None, :, :] + offsets[:, :, None] * offsets[:, None, :]
    return cov + 1e-9 * np.eye(d)


def _kernel_logpdf(u: np.ndarray, parents: np.ndarray, chol: np.ndarray, logdet: np.ndarray) -> np.ndarray:
    """Log K(u_i | parent_j) for every pair, shape (len(u), len(parents)); normal kernels."""
    diff = u[:, None, :] - parents[None, :, :]  # (n, p, d)
    # Solve L z = diff for each parent's Cholesky factor L.
    z = np.empty_like(diff)
    for j in range(len(parents)):
        z[:, j, :] = np.linalg.solve(chol[j], diff[:, j, :].T).T
    d = u.shape[1]
    return -0.5 * (z**2).sum(axis=-1) - 0.5 * logdet[None, :] - 0.5 * d * np.log(2 * np.pi)


def _proposals(
    previous: Generation, chol: np.ndarray, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` candidates perturbed from parents drawn by weight; returns candidates and parent indices."""
    parents = rng.choice(len(previous.particles), size=n, p=previous.weights)
    noise = rng.standard_normal((n, previous.particles.shape[1]))
    candidates = previous.particles[parents] + np.einsum("nij,nj->ni", chol[parents], noise)
    return candidates, parents


def _weights(accepted: np.ndarray, prior: Prior, previous: Generation, chol, logdet) -> np.ndarray:
    """Importance weights prior(u) / sum_j w_j K(u | u_j), normalised (computed in logs)."""
    log_kernel = _kernel_logpdf(accepted, previous.particles, chol, logdet)
    log_mix = np.logaddexp.reduce(log_kernel + np.log(previous.weights)[None, :], axis=1)
    log_w = prior.logpdf(accepted) - log_mix
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def run(
    simulate: Simulator,
    prior: Prior,
    settings: Settings,
    seed: int,
    log: Callable[[str], None] = print,
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Run ABC-SMC.

    Args:
        simulate: the batched simulator (see :data:`Simulator`); it may fan a batch out to workers.
        prior: the prior on the u scale.
        settings: :class:`Settings`.
        seed: the fit's seed; with the same simulator, the same seed gives the same result.
        log: a line per generation.
        progress: called with the number of candidates simulated after each round (a progress bar).

    Returns:
        The :class:`Result`, the posterior sample in ``result.last``.
    """
    result = Result()
    start = time.perf_counter()
    s = settings
    # Generation 0: the best `population` of `initial * population` prior draws (rejection ABC with
    # the tolerance set by the draws themselves).
    t0 = time.perf_counter()
    candidates = prior.sample(_rng(seed, 0, 1), s.initial * s.population)
    distances, statistics = _simulate_rounds(simulate, candidates, s.round_size, progress)
    order = np.argsort(distances, kind="stable")[: s.population]
    epsilon = float(distances[order[-1]])
    weights = np.full(len(order), 1.0 / len(order))
    gen = Generation(
        0,
        epsilon,
        candidates[order],
        weights,
        distances[order],
        statistics[order],
        len(candidates),
        time.perf_counter() - t0,
    )
    result.generations.append(gen)
    log(_line(gen))
    while True:
        stop = _stop_reason(result, s, time.perf_counter() - start)
        if stop:
            result.stopped = stop
            return result
        gen = _next_generation(simulate, prior, result.last, s, seed, progress)
        result.generations.append(gen)
        log(_line(gen))


def _next_generation(simulate, prior: Prior, previous: Generation, s: Settings, seed: int, progress) -> Generation:
    t0 = time.perf_counter()
    t = previous.t + 1
    epsilon = max(float(np.quantile(previous.distances, s.quantile)), s.target)
    cov = olcm_covariances(previous, epsilon)
    chol = np.linalg.cholesky(cov)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    rng = _rng(seed, t, 0)
    accepted_u, accepted_d, accepted_s = [], [], []
    proposed = 0
    max_proposals = int(np.ceil(s.population / max(s.min_acceptance, 1e-9))) + s.round_size
    while sum(len(a) for a in accepted_u) < s.population and proposed < max_proposals:
        candidates, _ = _proposals(previous, chol, rng, s.round_size)
        distances, statistics = _simulate_rounds(simulate, candidates, s.round_size, progress)
        keep = distances <= epsilon
        need = s.population - sum(len(a) for a in accepted_u)
        # Accept in proposal order, so a generation does not depend on which worker finished first.
        chosen = np.flatnonzero(keep)[:need]
        taken = chosen[-1] + 1 if len(chosen) == need else len(candidates)
        proposed += taken
        accepted_u.append(candidates[chosen])
        accepted_d.append(distances[chosen])
        accepted_s.append(statistics[chosen])
    u = np.concatenate(accepted_u)
    if len(u) == 0:
        raise RuntimeError(f"generation {t}: no candidate met the tolerance {epsilon:.4g} in {proposed} proposals")
    weights = _weights(u, prior, previous, chol, logdet)
    return Generation(
        t,
        epsilon,
        u,
        weights,
        np.concatenate(accepted_d),
        np.concatenate(accepted_s),
        proposed,
        time.perf_counter() - t0,
    )


def _simulate_rounds(simulate, candidates: np.ndarray, round_size: int, progress) -> tuple[np.ndarray, np.ndarray]:
    distances, statistics = [], []
    for start in range(0, len(candidates), round_size):
        d, stat = simulate(candidates[start : start + round_size])
        distances.append(np.asarray(d, dtype=float))
        statistics.append(np.asarray(stat, dtype=float))
        if progress is not None:
            progress(len(d))
    distances = np.concatenate(distances)
    return np.where(np.isfinite(distances), distances, np.inf), np.concatenate(statistics)


def _stop_reason(result: Result, s: Settings, elapsed: float) -> str:
    last = result.last
    if last.epsilon <= s.target:
        return f"the tolerance reached its target ({last.epsilon:.4g} <= {s.target:g})"
    if last.t > 0 and last.acceptance < s.min_acceptance:
        return f"the acceptance rate fell to {last.acceptance:.3f} (< {s.min_acceptance:g})"
    if len(result.generations) >= s.max_generations:
        return f"{s.max_generations} generations"
    if s.max_seconds is not None and elapsed >= s.max_seconds:
        return f"the wall-time budget of {s.max_seconds:.0f} s"
    return ""


def _line(g: Generation) -> str:
    return (
        f"generation {g.t}: tolerance {g.epsilon:.4g}, {len(g.particles)} accepted of {g.proposed} "
        f"({100 * g.acceptance:.1f}%), ESS {g.ess:.0f}, {g.seconds:.0f} s"
    )


def chunks(array: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` pieces of ``array``, for fanning a round out to workers."""
    for start in range(0, len(array), size):
        yield start, array[start : start + size]
