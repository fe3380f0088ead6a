"""The kernels' one fast-math flag (no value is NaN) changes no result: builds without it give the same bits."""

import numba
import numpy as np
import pytest

from sim import dynamics, followup, parameters
from sim.engine import Cohort
from sim.parameters import REGISTRY
from sim.run import client_outcomes


def _random_sets(n: int, seed: int) -> list[dict]:
    """``n`` parameter sets, every parameter drawn over its whole registry range."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        values = {}
        for name, p in REGISTRY.items():
            if p.kind == "choice":
                values[name] = p.choices[rng.integers(len(p.choices))]
            elif p.kind == "int":
                values[name] = int(rng.integers(int(p.low), int(p.high) + 1))
            else:
                values[name] = float(rng.uniform(p.low, p.high))
        sets.append(parameters.validate(values))
    return sets


def _outcomes(sets) -> dict[str, np.ndarray]:
    return client_outcomes(Cohort(sets, 150, 10, seed=4, replicate=1).run())


def test_kernels_give_the_bits_of_builds_without_fast_math(monkeypatch):
    sets = _random_sets(60, seed=11)
    shipped = _outcomes(sets)
    for module, name in [(dynamics, "_advance"), (followup, "_follow")]:
        kernel = getattr(module, name)
        assert kernel.targetoptions.get("fastmath") == {"nnan"}, f"{name} is expected to assume no NaN"
        strict = numba.njit(error_model="numpy")(kernel.py_func)  # the same code, no fast-math flag
        monkeypatch.setattr(module, name, strict)
    strict_outcomes = _outcomes(sets)
    for key, value in shipped.items():
        assert np.asarray(value).tobytes() == np.asarray(strict_outcomes[key]).tobytes(), (
            f"{key} differs between the shipped kernels and builds without fast-math: the no-NaN flag changed a result"
        )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_parameter_never_reaches_the_kernels(bad):
    params = parameters.resolve()
    params["dropout_base"] = bad  # as a notebook could pass it, past validation
    with pytest.raises(ValueError, match="dropout_base"):
        Cohort(params, 10, 2, seed=0)
