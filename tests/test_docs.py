"""docs/parameters.md is generated from the registry and must not be stale."""

from dataclasses import replace
from pathlib import Path

import sim
from sim.docs import parameters_markdown
from sim.parameters import REGISTRY

DOC = Path(sim.__file__).resolve().parents[1] / "docs" / "parameters.md"


def test_parameters_doc_is_current():
    assert DOC.exists(), "docs/parameters.md is missing: run `make docs`"
    assert DOC.read_text() == parameters_markdown(), "docs/parameters.md is stale: run `make docs` and commit it"


def test_parameters_doc_lists_every_parameter():
    text = parameters_markdown()
    for name, p in REGISTRY.items():
        assert f"`{name}`" in text, name
        assert p.source.replace("|", "\\|") in text, name


def test_a_registry_change_makes_the_doc_stale(monkeypatch):
    p = REGISTRY["therapist_empathy_mean"]
    monkeypatch.setitem(REGISTRY, p.name, replace(p, default=0.61))
    assert DOC.read_text() != parameters_markdown(), "a changed default must show up as a stale doc"


def test_readme_names_every_dropout_cause():
    from sim.dynamics import DROPOUT_CAUSES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [cause for cause in DROPOUT_CAUSES[1:] if f"`{cause}`" not in readme]
    assert not missing, f"README.md should name every dropout cause researchers will find in clients.csv: {missing}"
