"""Experiment specs, samples, executors, resume and the results directory."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import load_spec, run_experiment
from experiments.cli import main
from experiments.sampling import sample, to_values
from experiments.spec import Factor
from experiments.store import StoreError, done_chunks, read_manifest, read_outputs
from sim.parameters import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("sobol_dropout", "morris_screening", "grid_empathy_humility")

TINY = """
method = "sobol"
scenario = "baseline"
outputs = ["dropout_rate", "mean_alliance"]
N = 8
replicates = 2
clients = 50
therapists = 5
seed = 7
chunk_size = 12

[parameters.therapist_empathy_mean]
low = 0.2
high = 0.9
[parameters.rupture_rate]
low = 0.02
high = 0.2
distribution = "triang"
peak = 0.06
[parameters.planned_sessions]
low = 8
high = 20
[parameters.matching_policy]
"""


def write_spec(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_spec(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def serial_run(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "out"
    run_experiment(load_spec(tiny), out, "serial", progress=False, analyse=False)
    return out


# ── specs ────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load(name):
    spec = load_spec(name)
    assert spec.outputs and spec.factors
    assert len(sample(spec)) > 0


def test_sobol_dropout_is_the_advertised_size():
    spec = load_spec("sobol_dropout")
    assert (spec.N, len(spec.factors), spec.clients, spec.therapists) == (1024, 12, 500, 25)
    assert len(sample(spec)) == 1024 * (2 * 12 + 2)
    groups = {REGISTRY[f.name].group for f in spec.factors}
    assert groups == {"therapists", "clients", "mechanisms"}, (
        "the Sobol spec should span traits, client mix, mechanisms"
    )


def test_morris_screening_covers_every_free_parameter():
    spec = load_spec("morris_screening")
    free = {p.name for p in REGISTRY.values() if p.free}
    assert free <= {f.name for f in spec.factors}
    assert len(spec.factors) > len(free)


BAD_SPECS = {
    "unknown key": ("colour = 'red'\n", "unknown key 'colour'"),
    "unknown parameter": ("[parameters.therapist_empathy_meen]\n", "unknown parameter 'therapist_empathy_meen'"),
    "outside registry": ("[parameters.bond_rate]\nlow = 0.0\nhigh = 0.5\n", "outside the registry range of bond_rate"),
    "unknown method": ("", "method = 'sobolev' is not known"),
    "unknown output": ("", "unknown output 'happiness'"),
    "unknown distribution": ("[parameters.bond_rate]\ndistribution = 'cauchy'\n", "distribution = 'cauchy'"),
    "unknown factor key": ("[parameters.bond_rate]\nlo = 0.1\n", "unknown key 'lo'"),
    "sobol N": ("", "must be a power of 2"),
}


def _bad_spec_text(case: str, extra: str) -> str:
    text = TINY
    if case == "unknown method":
        text = text.replace('method = "sobol"', 'method = "sobolev"')
    if case == "unknown output":
        text = text.replace('"mean_alliance"]', '"happiness"]')
    if case == "sobol N":
        text = text.replace("N = 8", "N = 10")
    if extra.startswith("["):
        return text + extra
    return extra + text


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_exits_2_with_a_clear_message(case, tmp_path, capsys):
    extra, expected = BAD_SPECS[case]
    path = write_spec(tmp_path, _bad_spec_text(case, extra), "bad.toml")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert str(path) in err, "the message should name the file"
    assert "Traceback" not in err
    assert err.count("\n") == 1, "one paragraph"
    assert not (tmp_path / "out").exists(), "nothing is written for a bad spec"


def test_bad_spec_from_the_command_line_has_no_traceback(tmp_path):
    path = write_spec(tmp_path, TINY + "[parameters.therapist_humility_mean]\nhigh = 1.5\n", "bad.toml")
    done = subprocess.run(
        [sys.executable, "-m", "experiments", "run", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "high = 1.5 is outside the registry range of therapist_humility_mean, [0, 1]" in done.stderr
    assert "Traceback" not in done.stderr


# ── sampling ─────────────────────────────────────────────────────────────────────────────────


def test_integer_and_choice_factors_give_every_value_equally():
    u = (np.arange(40_000) + 0.5) / 40_000
    ints = to_values(Factor("planned_sessions", "int", 8, 11), u)
    assert set(ints) == {8, 9, 10, 11}
    assert np.allclose(np.bincount(ints)[8:], 10_000)
    choices = to_values(Factor("matching_policy", "choice", choices=("a", "b", "c")), u)
    assert sorted(pd.Series(choices).value_counts().to_numpy()) == [13_333, 13_333, 13_334]


def test_truncated_distributions_stay_in_range():
    u = np.linspace(0, 1, 1001)
    for factor in (
        Factor("x", low=0.2, high=0.9, distribution="norm", mean=0.3, sd=0.5),
        Factor("x", low=0.2, high=0.9, distribution="lognorm", mean=-1.0, sd=0.5),
        Factor("x", low=0.2, high=0.9, distribution="triang", peak=0.4),
    ):
        x = to_values(factor, u)
        assert x.min() >= 0.2 and x.max() <= 0.9 and np.all(np.diff(x) >= 0), factor.distribution


def test_sample_is_reproducible_and_valid(tiny):
    spec = load_spec(tiny)
    a, b = sample(spec), sample(spec)
    pd.testing.assert_frame_equal(a, b)
    for name in ("therapist_empathy_mean", "rupture_rate", "planned_sessions", "matching_policy"):
        for value in a[name]:
            REGISTRY[name].validate(value.item() if hasattr(value, "item") else value)
    assert a["therapist_empathy_mean"].between(0.2, 0.9).all()
    other = sample(dataclasses.replace(spec, seed=8))
    assert not a.equals(other), "another seed should draw another sample"


def test_grid_and_oat_designs(tmp_path):
    grid = load_spec("grid_empathy_humility")
    frame = sample(grid)
    assert len(frame) == 81 and frame.drop_duplicates().shape[0] == 81
    text = """
method = "oat"
clients = 50
therapists = 5
[parameters.therapist_empathy_mean]
levels = [0.2, 0.8]
[parameters.matching_policy]
levels = ["random", "cultural_match"]
"""
    oat = sample(load_spec(write_spec(tmp_path, text, "oat.toml")))
    assert len(oat) == 1 + 2 + 2
    assert oat.iloc[0].tolist() == [REGISTRY["therapist_empathy_mean"].default, REGISTRY["matching_policy"].default]


# ── executors, resume and the results directory ──────────────────────────────────────────────


def test_serial_run_stores_every_chunk(serial_run):
    manifest = read_manifest(serial_run)
    outputs = read_outputs(serial_run)
    assert manifest["complete"] and len(done_chunks(serial_run)) == manifest["n_chunks"] == 7
    assert len(outputs) == manifest["runs"] == 8 * (2 * 4 + 2) * 2
    assert set(outputs["replicate"]) == {0, 1}
    assert manifest["provenance"]["packages"]["SALib"]
    assert manifest["sessions"][0]["runs_per_second"] > 0
    assert not list((serial_run / "chunks").glob(".*")), "no temporary files are left"


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executors_give_bit_identical_outputs(executor, tiny, serial_run, tmp_path):
    out = tmp_path / executor
    run_experiment(load_spec(tiny), out, executor, workers=2, progress=False, analyse=False)
    pd.testing.assert_frame_equal(read_outputs(out), read_outputs(serial_run), check_exact=True)
    assert read_manifest(out)["sessions"][0]["workers"] == 2


def test_chunk_size_does_not_change_outputs(tiny, serial_run, tmp_path):
    spec = dataclasses.replace(load_spec(tiny), chunk_size=37)
    out = tmp_path / "other_chunks"
    run_experiment(spec, out, "serial", progress=False, analyse=False)
    pd.testing.assert_frame_equal(read_outputs(out), read_outputs(serial_run), check_exact=True)


def test_killed_run_resumes_to_bit_identical_outputs(tmp_path, serial_run):
    # Small chunks so the sweep is still running when the first chunks are on disk.
    spec_path = write_spec(tmp_path, TINY.replace("chunk_size = 12", "chunk_size = 1"), "tiny.toml")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "experiments", "run", str(spec_path), "--executor", "serial", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((out / "chunks").is_dir() and len(done_chunks(out)) >= 2):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no chunks appeared"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_chunks = read_manifest(out)["n_chunks"]
    killed_at = len(done_chunks(out))
    assert 2 <= killed_at < n_chunks, "the kill should land mid-sweep"
    assert main(["run", str(spec_path), "--executor", "serial", "--out", str(out), "--no-progress"]) == 0
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["sessions"][-1]["chunks_run"] == n_chunks - killed_at
    pd.testing.assert_frame_equal(read_outputs(out), read_outputs(serial_run), check_exact=True)
    assert (out / "indices.csv").is_file()


def test_changed_spec_is_refused(tiny, serial_run, tmp_path, capsys):
    changed = write_spec(tmp_path, tiny.read_text().replace("seed = 7", "seed = 8"), "tiny.toml")
    with pytest.raises(StoreError, match="different spec"):
        run_experiment(load_spec(changed), serial_run, "serial", progress=False, analyse=False)
    assert main(["run", str(changed), "--out", str(serial_run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "changed: seed" in err and "new --out" in err


def test_unrelated_directory_is_refused(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an experiment's results directory"):
        run_experiment(load_spec(tiny), tmp_path, "serial", progress=False, analyse=False)


def test_morris_over_full_ranges_runs(tmp_path):
    """Every free parameter at the edges of its range runs without errors or empty outputs."""
    spec = dataclasses.replace(load_spec("morris_screening"), N=2, clients=40, therapists=4, replicates=1)
    out = tmp_path / "morris"
    run_experiment(spec, out, "serial", progress=False, analyse=False)
    outputs = read_outputs(out)
    assert outputs["dropout_rate"].between(0, 1).all()
    assert outputs["mean_alliance"].notna().all()


def test_changed_outputs_reuse_the_stored_runs(tiny, serial_run, tmp_path):
    text = tiny.read_text().replace('"mean_alliance"]', '"recovery_rate"]') + "[options]\nnum_resamples = 50\n"
    spec = load_spec(write_spec(tmp_path, text, "tiny.toml"))
    manifest = run_experiment(spec, serial_run, "serial", progress=False)
    assert manifest["sessions"][-1]["chunks_run"] == 0, "analysis settings should not re-run the sweep"
    indices = pd.read_csv(serial_run / "indices.csv")
    assert set(indices["output"]) == {"dropout_rate", "recovery_rate"}
