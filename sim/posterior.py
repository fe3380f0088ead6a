"""The posterior over the free parameters, and parameter sets drawn from it for predictions.

``make calibrate`` writes sim/posterior.csv: the final population of an ABC-SMC fit, one particle per row
(the free parameters' values), with its ``weight`` and ``distance`` (docs/calibration.md). A prediction
that carries parameter uncertainty (``--posterior K``) runs K replicates, replicate r with the free
parameters of particle ``draw_indices(K, seed)[r]``: the particles are resampled by weight from a
Generator seeded by the run's seed, so the same seed draws the same particles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim import parameters

POSTERIOR_FILE = Path(__file__).with_name("posterior.csv")
_STREAM = 0x706F7374  # "post": the draws' own stream, apart from the engine's


class PosteriorError(ValueError):
    """A posterior file that cannot be used; the message says which and what to do."""


@dataclass(frozen=True)
class Posterior:
    """Weighted particles over the free parameters.

    Attributes:
        names: the parameters, in column order.
        values: shape (n_particles, n_parameters).
        weights: normalised, shape (n_particles,).
    """

    names: tuple[str, ...]
    values: np.ndarray
    weights: np.ndarray

    def draw_indices(self, k: int, seed: int) -> np.ndarray:
        """``k`` particle indices resampled by weight, the same for the same seed."""
        rng = np.random.default_rng([int(seed), _STREAM])
        return rng.choice(len(self.weights), size=k, p=self.weights)

    def draws(self, k: int, seed: int) -> list[dict[str, Any]]:
        """``k`` parameter dicts (the free parameters only) drawn by weight."""
        integer = {n for n in self.names if parameters.REGISTRY[n].kind == "int"}
        return [
            {n: (round(v) if n in integer else float(v)) for n, v in zip(self.names, self.values[i], strict=True)}
            for i in self.draw_indices(k, seed)
        ]


def load_posterior(path: str | Path = POSTERIOR_FILE) -> Posterior:
    """Read a posterior file, checking every column against the registry.

    Raises:
        PosteriorError: a missing or malformed file, an unknown parameter, a value outside its range,
            or weights that are not finite and positive.
    """
    path = Path(path)
    how = "run `make calibrate` to write it"
    if not path.is_file():
        raise PosteriorError(f"{path}: no posterior file; {how}.")
    try:
        header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError, IndexError) as err:
        raise PosteriorError(f"{path}: not a posterior table ({err}); {how}.") from None
    if "weight" not in header or data.shape[1] != len(header) or len(data) == 0:
        raise PosteriorError(f"{path}: expected a header with the parameters and weight, and rows below it; {how}.")
    names = tuple(h for h in header if h not in ("weight", "distance"))
    for name in names:
        try:
            p = parameters.lookup(name, str(path))
        except parameters.ParameterError as err:
            raise PosteriorError(str(err)) from None
        column = data[:, header.index(name)]
        if not (np.isfinite(column).all() and (column >= p.low).all() and (column <= p.high).all()):
            raise PosteriorError(f"{path}: {name} has values outside {p.allowed}; {how}.")
    weights = data[:, header.index("weight")]
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise PosteriorError(f"{path}: the weights must be finite, non-negative and not all 0; {how}.")
    values = data[:, [header.index(n) for n in names]]
    return Posterior(names, values, weights / weights.sum())


def posterior_sets(base: dict[str, Any], k: int, seed: int, keep: set[str] | None = None) -> list[dict[str, Any]]:
    """``k`` complete parameter sets: ``base`` with the free parameters drawn from the posterior.

    Args:
        base: a complete parameter dict (e.g. a scenario's ``params``).
        k: how many (one per replicate).
        seed: the run's seed.
        keep: parameters that stay as in ``base`` (a scenario's own settings, a sweep's factors).
    """
    keep = keep or set()
    return [{**base, **{n: v for n, v in draw.items() if n not in keep}} for draw in load_posterior().draws(k, seed)]
