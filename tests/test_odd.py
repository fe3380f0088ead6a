"""docs/ODD.md describes every parameter of the registry."""

from pathlib import Path

from sim.parameters import REGISTRY

ODD = Path(__file__).resolve().parents[1] / "docs" / "ODD.md"


def test_every_registry_parameter_is_described_in_the_odd_protocol():
    text = ODD.read_text()
    missing = [name for name in REGISTRY if f"`{name}`" not in text]
    assert not missing, f"docs/ODD.md does not describe these parameters: {', '.join(missing)}"
