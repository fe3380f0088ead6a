"""A short chaos run (tests/chaos.py): sweeps SIGKILLed at random moments resume bit-identical."""

from tests.chaos import SHORT_SPEC, chaos


def test_killed_sweeps_resume_bit_identical(tmp_path):
    lines = []
    results = chaos(kills=2, seed=5, folder=tmp_path, log=lines.append, spec_text=SHORT_SPEC)
    assert all(r.kills for r in results), f"every run should have been killed: {lines}"
    assert any(len(r.kills) == 2 for r in results), "one resume should have been killed too"
    assert all(r.identical for r in results), "\n".join(lines)
    assert lines[-1] == "chaos: 2 of 2 resumed bit-identical"
