"""Elementary functions over arrays that give the same bits on every machine: the C library's.

numpy chooses the code of ``exp``, ``log``, ``log10``, ``log1p`` and ``power`` by the processor it runs on: on
a CPU with AVX-512 its own vectorised versions, elsewhere versions that agree with the C library.
The two differ in the last bit for a few percent of arguments (of a million uniform draws on [0, 1):
exp 4%, log1p 8%, power 5%; ``NPY_DISABLE_CPU_FEATURES=X86_V4`` gives the other machine's numbers).
The engine turns draws and parameters into decisions through these functions, so a sweep whose
chunks ran on both kinds of machine (a cluster of mixed nodes, a run resumed elsewhere) would mix
results that differ in their last bits, and, where a draw lies that close to its threshold, in a
client's course. The kernels here call the C library's function for one element at a time, as the
week kernel does, whatever the processor (``tests/test_libm.py`` runs the engine both ways).

They cost about 6 ns an element against numpy's 1 ns; the engine calls them on arrays of draws and
parameters, never per client-week.
"""

from __future__ import annotations

import numpy as np

from sim.jit import kernel


@kernel()
def _exp(x, out):
    for i in range(x.size):
        out[i] = np.exp(x[i])


@kernel()
def _log(x, out):
    for i in range(x.size):
        out[i] = np.log(x[i])


@kernel()
def _log1p(x, out):
    for i in range(x.size):
        out[i] = np.log1p(x[i])


@kernel()
def _log10(x, out):
    for i in range(x.size):
        out[i] = np.log10(x[i])


@kernel()
def _power(x, y, out):
    for i in range(x.size):
        out[i] = x[i] ** y[i]


def _apply(elementwise, *args) -> np.ndarray:
    """``elementwise`` over the broadcast float64 arguments, as a new array of their shape."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args))
    out = np.empty(arrays[0].shape)
    elementwise(*(np.ascontiguousarray(a).reshape(-1) for a in arrays), out.reshape(-1))
    return out


def exp(x) -> np.ndarray:
    """The exponential of ``x``, elementwise."""
    return _apply(_exp, x)


def log(x) -> np.ndarray:
    """Natural logarithm, elementwise (-inf at 0, NaN below)."""
    return _apply(_log, x)


def log1p(x) -> np.ndarray:
    """log(1 + x), elementwise, accurate near 0."""
    return _apply(_log1p, x)


def log10(x) -> np.ndarray:
    """Base-10 logarithm, elementwise."""
    return _apply(_log10, x)


def power(x, y) -> np.ndarray:
    """``x ** y``, elementwise, broadcast."""
    return _apply(_power, x, y)
