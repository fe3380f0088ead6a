"""Package exports imported on first use (PEP 562).

A sweep's worker process unpickles a chunk task and needs the engine alone; importing a package
that imported all of its public API up front would load Mesa, pandas, SALib and matplotlib in every
worker. :func:`lazy_exports` gives a package a module ``__getattr__`` and ``__dir__`` that import each
name from its module the first time it is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``, whose ``exports`` map name -> module."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
