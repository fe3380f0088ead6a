"""Sensitivity experiments: TOML specs, SALib samples, chunked sweeps on an executor, resumable results.

``python -m experiments run SPEC`` runs a spec (see docs/experiments.md); from Python::

    from experiments import load_spec, run_experiment
    run_experiment(load_spec("sobol_dropout"), "results/sobol_dropout", executor="processes")
"""

from experiments.runner import run_experiment
from experiments.spec import ExperimentSpec, Factor, SpecError, load_spec

__all__ = ["ExperimentSpec", "Factor", "SpecError", "load_spec", "run_experiment"]
