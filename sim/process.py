"""Run a command line as the process's one job, without the garbage collector's wasted walks.

A command's imports leave some 100,000 Python objects (numpy, pandas, numba and their modules; twice
as many once matplotlib is in) that live exactly as long as the process. The cyclic garbage
collector walked all of them at every full collection: while the modules load, again during the
run, and once more when the interpreter exits. Next to none of them is garbage, and those walks
were a fifth of ``python -m sim run baseline`` (0.7 of 3.2 s; docs/performance.md). So the
collector is paused while the command's modules load, the survivors are moved out of its sight
(:func:`gc.freeze`), and before exit the young garbage is collected and the rest frozen too.
Garbage made while the command runs (a figure's artists, a model's agents) is collected as usual.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn


@contextmanager
def modules_loading() -> Iterator[None]:
    """Import a command's modules inside: the collector pauses, and what they made is frozen after."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def run_command(module: str) -> NoReturn:
    """Import ``module``, call its ``main()`` and exit with the status it returns."""
    with modules_loading():
        main = importlib.import_module(module).main
    status = main()
    gc.collect(1)  # the young garbage, cheaply: its finalisers run now, as they would at exit
    gc.freeze()  # the exit's last collections would walk everything the command made and kept
    sys.exit(status)
