"""The notebooks run top to bottom without errors, each within its time budget, and are stored clean.

Each notebook is executed with nbclient on the ``python3`` kernel (ipykernel in this venv: jupyter
starts it with the interpreter running the tests) with notebooks/ as the working directory.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell; generous for a loaded CI machine
BUDGET = 60  # seconds per notebook on a developer machine (README: "each in under a minute")


def test_the_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {
        "01_quickstart.ipynb",
        "02_dropout_mechanisms.ipynb",
        "03_sensitivity.ipynb",
        "04_scenario_discovery.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"
    missing = [i for i, c in enumerate(nb.cells) if not c.get("id")]
    assert not missing, f"{path.name}: cells {missing} have no id (nbformat 4.5 requires one)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    started = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}")
    seconds = time.perf_counter() - started
    print(f"{path.name}: {seconds:.1f} s")
    # Twice the budget before failing: the machine running the suite may be busy.
    assert seconds < 2 * BUDGET, f"{path.name} took {seconds:.0f} s; keep each notebook under {BUDGET} s"
