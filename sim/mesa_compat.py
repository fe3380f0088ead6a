"""Work-arounds for the Mesa release this project runs on (3.3, the newest for Python 3.11)."""

from __future__ import annotations

import mesa


def let_go_of_finished(model: mesa.Model) -> None:
    """Drop ``model`` from Mesa's class-level counter of agent ids, so it can be garbage-collected.

    Mesa 3.3 keeps every model it has seen in ``mesa.Agent._ids``: a finished model, its agents and
    whatever they hold are never freed, 8 MB a run of this project's models and gigabytes over a
    ``mesa.batch_run`` (mesa/mesa#3179, fixed after the last release for Python 3.11). Call it once
    the model will make no more agents; remove it with the move to a Mesa that has the fix.
    """
    mesa.Agent._ids.pop(model, None)
