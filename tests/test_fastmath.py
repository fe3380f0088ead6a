"""The week kernel's one fast-math flag (no value is NaN) changes no result: a build without it gives the same bits."""

from unittest import mock

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import dynamics, parameters
from sim.engine import Cohort
from sim.run import client_outcomes
from tests.conftest import PARAM_VECTORS

# The same code compiled without the flag (compiled once, at its first call).
STRICT_ADVANCE = numba.njit(error_model="numpy")(dynamics._advance.py_func)


def _outcomes(ps: dict, seed: int) -> dict[str, np.ndarray]:
    return client_outcomes(Cohort(parameters.validate(ps), 150, 10, seed=seed, replicate=1).run())


def test_the_week_kernel_assumes_no_nan_and_nothing_else():
    fastmath = dynamics._advance.targetoptions.get("fastmath")
    assert fastmath == {"nnan"}, f"_advance has fastmath={fastmath}: only the no-NaN flag keeps results bit-identical"


# Parameter vectors over the registry's whole ranges, bounds included; derandomized, so CI is judged on the code.
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(ps=PARAM_VECTORS, seed=st.integers(0, 2**32))
def test_the_week_kernel_gives_the_bits_of_a_build_without_fast_math(ps, seed):
    shipped = _outcomes(ps, seed)
    with mock.patch.object(dynamics, "_advance", STRICT_ADVANCE):
        strict = _outcomes(ps, seed)
    for key, value in shipped.items():
        assert np.asarray(value).tobytes() == np.asarray(strict[key]).tobytes(), (
            f"{key} differs between the shipped week kernel and a build without fast-math: the no-NaN flag changed it"
        )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_parameter_never_reaches_the_kernel(bad):
    params = parameters.resolve()
    params["dropout_base"] = bad  # as a notebook could pass it, past validation
    with pytest.raises(ValueError, match="dropout_base"):
        Cohort(params, 10, 2, seed=0)
