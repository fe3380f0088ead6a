"""Sensitivity experiments: TOML specs, SALib samples, chunked sweeps on an executor, resumable results.

``python -m experiments run SPEC`` runs a spec (see docs/experiments.md); from Python::

    from experiments import load_spec, run_experiment
    run_experiment(load_spec("sobol_dropout"), "results/sobol_dropout", executor="processes")
"""

from importlib import import_module

# Imported on first use (PEP 562): a worker that unpickles a chunk task imports experiments.chunk
# and the engine only, not SALib, scipy.stats or pandas.
_EXPORTS = {
    "ExperimentSpec": "experiments.spec",
    "Factor": "experiments.spec",
    "SpecError": "experiments.spec",
    "load_spec": "experiments.spec",
    "run_experiment": "experiments.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'experiments' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
