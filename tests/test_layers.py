"""Dependencies point one way: the engine in sim/ never imports analysis/ or experiments/.

analysis/ and experiments/ build on the engine; an import the other way would tie the model to its
figures and sweeps, and load them in every worker of a sweep. Only the faces a user calls, which
present what the engine computed, may reach up: the command line, and the notebook API's
comparisons and vignettes (their tables, narratives and figures live in analysis/).
"""

from __future__ import annotations

import ast
from pathlib import Path

import sim

UPPER = ("analysis", "experiments", "benchmarks")
FACES = {"cli", "comparison", "vignette"}  # the app and `python -m sim` reach up only through cli


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_engine_modules_never_import_analysis_or_experiments():
    modules = sorted(Path(sim.__file__).parent.glob("*.py"))
    engine = [p for p in modules if p.stem not in FACES]
    assert len(engine) > 20, f"found only {len(engine)} engine modules in sim/: is the package where it should be?"
    upward = {
        p.name: sorted(m for m in _imported(p) if m.split(".")[0] in UPPER)
        for p in engine
        if any(m.split(".")[0] in UPPER for m in _imported(p))
    }
    assert not upward, f"engine modules import from above the engine (only {sorted(FACES)} may): {upward}"


def test_the_faces_allowed_to_reach_up_exist():
    """A face renamed or removed must leave this list, or the exemption would cover a future engine module."""
    stems = {p.stem for p in Path(sim.__file__).parent.glob("*.py")}
    assert FACES <= stems, f"faces listed here but not in sim/: {sorted(FACES - stems)}"
