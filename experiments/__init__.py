"""Sensitivity experiments: TOML specs, SALib samples, chunked sweeps on an executor, resumable results.

``python -m experiments run SPEC`` runs a spec (see docs/experiments.md); from Python::

    from experiments import load_spec, run_experiment
    run_experiment(load_spec("sobol_dropout"), "results/sobol_dropout", executor="processes")
"""

from sim.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
