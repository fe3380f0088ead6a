"""Safe expressions over named columns: the evaluator lives in :mod:`sim.expressions`.

It moved there so that sweep workers, which import only the engine and :mod:`experiments`, can
evaluate a spec's user metrics with the same code that checks the facts of analysis/targets.toml.
This module re-exports it for the analysis code that imports it from here.
"""

from sim.expressions import ALLOWED, FUNCTIONS, Expression, ExpressionError, evaluate, parse, shown

__all__ = ["ALLOWED", "FUNCTIONS", "Expression", "ExpressionError", "evaluate", "parse", "shown"]
