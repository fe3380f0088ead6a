"""sim/libm.py: the C library's elementary functions, and an engine whose numbers do not depend on the CPU."""

import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim import libm

ROOT = Path(__file__).resolve().parents[1]


def test_each_function_is_the_c_librarys_elementwise():
    # Python's math module calls the C library: the reference, bit for bit.
    x = np.random.default_rng(1).random(20_000)
    for name, ours, reference, arg in [
        ("exp", libm.exp, math.exp, 40.0 * x - 20.0),
        ("log", libm.log, math.log, 1e3 * x),
        ("log1p", libm.log1p, math.log1p, -x),
    ]:
        got, want = ours(arg), np.array([reference(v) for v in arg])
        assert got.tobytes() == want.tobytes(), (
            f"libm.{name} differs from math.{name} in {int((got != want).sum())} values"
        )
    got = libm.power(x, 3.0 * x[::-1])
    want = np.array([math.pow(a, b) for a, b in zip(x, 3.0 * x[::-1], strict=True)])
    assert got.tobytes() == want.tobytes(), "libm.power differs from math.pow"


def test_shapes_broadcasting_and_edge_values():
    base = np.full((3, 1), 0.5)
    assert libm.power(base, np.arange(4.0)).shape == (3, 4), "power broadcasts like numpy"
    assert libm.power(base, np.arange(4.0))[0].tolist() == [1.0, 0.5, 0.25, 0.125]
    transposed = np.arange(1.0, 7.0).reshape(2, 3).T  # not C-contiguous
    assert np.array_equal(libm.log(transposed), np.log(transposed)), "a strided input keeps its layout's values"
    assert libm.log(np.array([0.0]))[0] == -np.inf, "log(0) is -inf (a uniform draw of 0 is below every log-odds)"
    assert np.isnan(libm.log(np.array([-1.0]))[0]), "log of a negative number is NaN"
    assert libm.exp(0.0).shape == () and float(libm.exp(0.0)) == 1.0, "a scalar gives a 0-d array"


def test_expressions_use_the_c_library_and_keep_integer_powers():
    from sim.expressions import evaluate

    x = np.random.default_rng(2).random(5_000) + 0.5
    columns = {"x": x, "n": np.arange(5, dtype=np.int64)}
    for name, reference in [("exp", math.exp), ("log", math.log), ("log10", math.log10), ("log1p", math.log1p)]:
        got = evaluate(f"{name}(x)", columns)
        assert got.tobytes() == np.array([reference(v) for v in x]).tobytes(), (
            f"{name}() in an expression is not libm's"
        )
    got = evaluate("x ** 1.7", columns)
    assert got.tobytes() == np.array([math.pow(v, 1.7) for v in x]).tobytes(), "a float power is not libm's"
    assert evaluate("n ** 2", columns).tolist() == [0, 1, 4, 9, 16], "an integer power stays exact"
    assert evaluate("n ** 2", columns).dtype.kind == "i", "an integer power stays an integer, as numpy's"


ENGINE_RUN = """
import hashlib
import numpy as np
from benchmarks.bench import _batch_sets
from sim.run import batch_metrics, simulate
from sim.scenario import load_scenario

digest = hashlib.sha256()
metrics = batch_metrics(_batch_sets(40), 200, 10, seed=5)
for name in sorted(metrics):
    digest.update(np.ascontiguousarray(metrics[name]).tobytes())
run = simulate(load_scenario("baseline").with_settings(clients=300))
for table in (run.clients, run.sessions, run.events):
    digest.update(table.to_csv(index=False).encode())
print(digest.hexdigest())
"""


@functools.cache  # the native run serves both comparisons
def _engine_digest(disabled: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NPY_DISABLE_CPU_FEATURES": disabled}
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_RUN], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


@pytest.mark.parametrize("disabled", ["X86_V4", "X86_V3 X86_V4"], ids=["no AVX-512", "no AVX2"])
def test_engine_results_do_not_depend_on_numpys_cpu_dispatch(disabled):
    # numpy's kernels for the processor (AVX-512 where there is one) give other last bits than those
    # of a machine without it; NPY_DISABLE_CPU_FEATURES makes this machine compute as that one would.
    # (On a machine without those instruction sets both runs take the same path.)
    native, other = _engine_digest(""), _engine_digest(disabled)
    assert native == other, (
        f"the engine's outputs change with NPY_DISABLE_CPU_FEATURES={disabled!r}: some result depends on "
        "numpy's processor-specific kernels (use sim/libm.py for exp, log, log1p and power)"
    )
