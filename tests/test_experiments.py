"""Experiment specs, samples, executors, resume and the results directory."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import psutil
import pytest

import experiments.runner
from experiments import load_spec, run_experiment
from experiments.cli import main
from experiments.sampling import sample, to_values
from experiments.spec import Factor
from experiments.store import StoreError, done_chunks, read_manifest, read_outputs
from sim.outcomes import METRICS
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


# Evaluators run in worker processes, so they live at module level (pickled by reference).


def chunk_clock(param_sets, n_clients, n_therapists, seed, replicate):
    """Record which process ran the call and when, to see how many chunks ran at once and where.

    Waits first for the file named by the parameter "gate", so a test decides when chunks start.
    """
    while not Path(param_sets[0]["gate"]).exists():
        time.sleep(0.01)
    start = time.time()
    time.sleep(0.2)
    n = len(param_sets)
    return {"pid": np.full(n, os.getpid()), "start": np.full(n, start), "end": np.full(n, time.time())}


def slow(param_sets, n_clients, n_therapists, seed, replicate):
    """A stand-in model slow enough that a sweep is still running when it is killed."""
    time.sleep(0.3)
    return {"y": np.zeros(len(param_sets))}


def die(param_sets, n_clients, n_therapists, seed, replicate):
    """Kill the worker process that runs it, as the out-of-memory killer would."""
    if multiprocessing.parent_process() is None:  # never the test process itself
        raise RuntimeError("die() is meant to run in a worker process")
    os._exit(1)


def kill_after_chunks(proc: subprocess.Popen, out: Path, n: int = 2) -> None:
    """SIGKILL ``proc`` once ``n`` chunk files are in ``out``."""
    deadline = time.monotonic() + 120
    while not ((out / "chunks").is_dir() and len(done_chunks(out)) >= n):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no chunks appeared"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


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
    "unknown method": ("", 'method = "sobolev" is not known'),
    "unknown output": ("", 'unknown output "happiness"'),
    "unknown distribution": ("[parameters.bond_rate]\ndistribution = 'cauchy'\n", 'distribution = "cauchy"'),
    "unknown factor key": ("[parameters.bond_rate]\nlo = 0.1\n", "unknown key 'lo'"),
    "sobol N": ("", "must be a power of 2"),
    "option type": ("[options]\ncalc_second_order = 'yes'\n", 'calc_second_order = "yes" must be true or false'),
    "integer type": ("", "replicates = true is not allowed: use an integer"),
    "level outside registry": ("", "therapist_empathy_mean = 1.5 is outside"),
    "distribution setting": ("[parameters.bond_rate]\ndistribution = 'triang'\nmean = 0.1\n", "it takes peak."),
    # NaN passes every range comparison: it reached the engine (audit item 2)
    "NaN sd": ("[parameters.bond_rate]\ndistribution = 'norm'\nmean = 0.3\nsd = nan\n", "sd = nan must be a finite"),
    "NaN mean": (
        "[parameters.bond_rate]\ndistribution = 'norm'\nmean = nan\nsd = 0.1\n",
        "mean = nan must be a finite",
    ),
    "lognorm NaN": ("[parameters.bond_rate]\ndistribution = 'lognorm'\nmean = nan\nsd = 1\n", "mean = nan must be"),
    "infinite sd": (
        "[parameters.bond_rate]\ndistribution = 'norm'\nmean = 0.3\nsd = inf\n",
        "sd = inf must be a finite",
    ),
    "repeated choice": (
        "[parameters.outcome_measure]\nlevels = ['last_observed', 'last_observed']\n",
        "repeat a choice",
    ),
    "NaN low": ("[parameters.bond_rate]\nlow = nan\n", "low = nan must be a finite number"),
    "overflowing lognorm": ("[parameters.bond_rate]\ndistribution = 'lognorm'\nmean = 800\nsd = 1\n", "almost none"),
}


def _bad_spec_text(case: str, extra: str) -> str:
    text = TINY
    if case == "unknown method":
        text = text.replace('method = "sobol"', 'method = "sobolev"')
    if case == "unknown output":
        text = text.replace('"mean_alliance"]', '"happiness"]')
    if case == "sobol N":
        text = text.replace("N = 8", "N = 10")
    if case == "integer type":
        text = text.replace("replicates = 2", "replicates = true")
    if case == "level outside registry":
        text = 'method = "grid"\n[parameters.therapist_empathy_mean]\nlevels = [0.5, 1.5]\n'
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
    assert err.rstrip().endswith("."), f"the message should end with its sentence: {err}"
    assert not re.search(r"\b(True|False|None)\b|\('", err), f"values should read as TOML, not Python: {err}"
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
    kill_after_chunks(proc, out)
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


def test_a_distribution_that_gives_nan_never_reaches_the_engine():
    """A Factor built in Python skips the spec's checks; the sample refuses what it would draw."""
    from experiments.spec import SpecError

    spec = dataclasses.replace(
        load_spec("sobol_dropout"),
        factors=(
            Factor("bond_rate", low=0.01, high=0.6, distribution="norm", mean=float("nan"), sd=0.1),
            Factor("rupture_rate", low=0.0, high=0.5),
        ),
        N=4,
    )
    with pytest.raises(SpecError, match="bond_rate.*not numbers"):
        sample(spec)


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


def test_renamed_spec_resumes_the_same_directory(tiny, serial_run, tmp_path):
    """The name changes no run, so a copied spec under another name reuses every stored chunk."""
    renamed = write_spec(tmp_path, 'name = "tiny_copy"\n' + tiny.read_text(), "copy.toml")
    manifest = run_experiment(load_spec(renamed), serial_run, "serial", progress=False, analyse=False)
    assert manifest["sessions"][-1]["chunks_run"] == 0, "a renamed spec should resume, not be refused"


def test_manifest_hashed_the_old_way_is_adopted(tiny, serial_run, tmp_path):
    """A directory whose stored hash still counted the name, but whose runs match, is resumed."""
    out = tmp_path / "old_hash"
    shutil.copytree(serial_run, out)
    manifest = read_manifest(out)
    manifest["spec_hash"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    resumed = run_experiment(load_spec(tiny), out, "serial", progress=False, analyse=False)
    assert resumed["sessions"][-1]["chunks_run"] == 0
    assert read_manifest(out)["spec_hash"] == load_spec(tiny).digest(), "the hash should be brought up to date"


# ── what the documentation and shipped specs claim ───────────────────────────────────────────


def test_documented_outputs_are_the_metrics():
    text = (ROOT / "docs" / "experiments.md").read_text()
    sentence = re.split(r"\.\s", text[text.index("**Outputs** are the cohort metrics") :])[0]
    named = set(re.findall(r"`([a-z_]+)`", sentence))
    metrics = {m.name for m in METRICS}
    assert named <= metrics, f"docs/experiments.md names outputs that are not metrics: {sorted(named - metrics)}"
    assert metrics <= named, f"docs/experiments.md leaves out metrics: {sorted(metrics - named)}"


def test_morris_spec_labels_exactly_the_free_parameters_as_calibrated():
    text = (ROOT / "experiments" / "morris_screening.toml").read_text()
    sections = re.split(r"^# ── ", text, flags=re.M)
    calibrated = next(part for part in sections if part.startswith("free (calibrated)"))
    labelled = set(re.findall(r"^\[parameters\.(\w+)\]", calibrated, flags=re.M))
    free = {p.name for p in REGISTRY.values() if p.free}
    assert labelled == free, f"labelled free but not: {labelled - free}; free but not labelled: {free - labelled}"


# ── executors when the cluster changes or a process dies ─────────────────────────────────────


def _most_at_once(frame: pd.DataFrame) -> int:
    """The most chunks that were running at one moment, from chunk_clock's start and end columns."""
    return max(int(((frame["start"] <= t) & (frame["end"] > t)).sum()) for t in frame["start"])


def _load_this_module() -> None:
    """Run on a worker, it imports this module (to unpickle the call), as its first chunk would."""


def test_dask_gives_chunks_to_workers_that_join_late(tiny, tmp_path):
    """A batch-queue cluster starts empty; its workers must get chunks once they join."""
    from dask.distributed import Client, LocalCluster

    gate = tmp_path / "gate"
    spec = dataclasses.replace(load_spec(tiny), replicates=1, chunk_size=2)  # 40 chunks of 0.2 s
    spec = dataclasses.replace(spec, base={**spec.base, "gate": str(gate)})
    out, outcome = tmp_path / "late", {}

    def run() -> None:
        try:
            outcome["manifest"] = run_experiment(
                spec, out, "dask", scheduler=address, evaluator=chunk_clock, progress=False, analyse=False
            )
        except BaseException as err:  # re-raised below, in the test's thread
            outcome["error"] = err

    cluster_args = {"threads_per_worker": 1, "dashboard_address": None, "silence_logs": logging.ERROR}
    with LocalCluster(n_workers=0, **cluster_args) as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 60
        while not cluster.scheduler.tasks:  # the runner has connected and submitted to a cluster of 0 workers
            assert runner.is_alive() and time.monotonic() < deadline, f"the runner submitted nothing: {outcome}"
            time.sleep(0.02)
        cluster.scale(4)
        client.wait_for_workers(4, timeout=60)
        client.run(_load_this_module)  # no worker is still importing when the chunks start: no race
        gate.touch()
        runner.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert not runner.is_alive(), "the sweep did not finish"
    chunks = read_outputs(out).drop_duplicates(["pid", "start"])
    assert len(chunks) == 40
    assert _most_at_once(chunks) > 2, "only 2 chunks ever ran at once: the late workers sat idle"
    assert chunks["pid"].nunique() > 2, f"chunks ran in only {chunks['pid'].nunique()} worker processes"
    assert outcome["manifest"]["sessions"][-1]["workers"] == 4, "the manifest should count the workers that joined"


def _is_pool_worker(process: psutil.Process) -> bool:
    """Whether a child is a spawned pool worker; a child that has exited (a zombie) or vanished is not."""
    try:
        return "spawn_main" in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):  # exited between listing and reading
        return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # an orphan's zombie waits for a reaper, but has exited
    except psutil.NoSuchProcess:
        return False


def test_pool_workers_exit_when_the_main_process_is_killed(tmp_path):
    spec_path = write_spec(tmp_path, TINY.replace("chunk_size = 12", "chunk_size = 1"), "tiny.toml")
    out = tmp_path / "orphans"
    script = (
        "from experiments import load_spec, run_experiment; from tests.test_experiments import slow; "
        f"run_experiment(load_spec({str(spec_path)!r}), {str(out)!r}, 'processes', workers=2, evaluator=slow, "
        "progress=False, analyse=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stderr=subprocess.DEVNULL)
    main_process = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while len(workers := [p for p in main_process.children() if _is_pool_worker(p)]) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the pool's workers never started"
        time.sleep(0.02)
    kill_after_chunks(proc, out, 1)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p.pid for p in workers if _alive(p)]
    for pid in left:  # leave no orphan behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived the killed main process"


def _check_one_paragraph(err: str, *expected: str) -> None:
    for text in expected:
        assert text in err, f"{text!r} missing from: {err}"
    assert "Traceback" not in err
    assert err.count("\n") == 1, f"one paragraph: {err}"


def test_unreachable_scheduler_exits_2(tmp_path, capsys):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    spec = write_spec(tmp_path)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        status = main(
            [
                "run",
                str(spec),
                "--executor",
                "dask",
                "--scheduler",
                address,
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
    assert status == 2
    _check_one_paragraph(capsys.readouterr().err, f"cannot reach the Dask scheduler at {address}")


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_dead_worker_exits_1_and_keeps_the_results(executor, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(experiments.runner, "run_experiment", functools.partial(run_experiment, evaluator=die))
    out = tmp_path / "died"
    args = ["run", str(write_spec(tmp_path)), "--executor", executor, "--workers", "1", "--out", str(out)]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # give up at the first death
        status = main([*args, "--no-progress"])
    assert status == 1
    _check_one_paragraph(
        capsys.readouterr().err,
        "a worker process died",
        f"finished chunks are kept in {out}; run the same command to finish the rest.",
    )
    assert read_manifest(out)["sessions"][-1]["interrupted"], "the manifest should record the cut-short session"


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_out_that_cannot_be_a_directory_exits_2(where, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    out = blocker if where == "a file" else blocker / "results"
    assert main(["run", str(write_spec(tmp_path)), "--executor", "serial", "--out", str(out), "--no-progress"]) == 2
    _check_one_paragraph(capsys.readouterr().err, str(out), "give")
    assert blocker.read_text() == "not a directory", "the file in the way must be left alone"


@pytest.mark.parametrize("content", ["{not json", "[]", "{}"])
def test_corrupt_manifest_exits_2(content, tmp_path, capsys):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "manifest.json").write_text(content)
    assert main(["run", str(write_spec(tmp_path)), "--executor", "serial", "--out", str(out), "--no-progress"]) == 2
    _check_one_paragraph(capsys.readouterr().err, str(out / "manifest.json"), f"Delete {out} to start over")
    assert (out / "manifest.json").read_text() == content, "an unreadable manifest is reported, never overwritten"


# ── Dask edges (audit item 9) ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "address", ["not a url", "http://127.0.0.1:1", "tcp://127.0.0.1:99999", "tcp://:8786", "tcp://a b:1", "tcp://h"]
)
def test_a_scheduler_address_that_is_not_one_exits_2_before_anything(address, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["run", str(write_spec(tmp_path)), "--executor", "dask", "--scheduler", address, "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 2
    _check_one_paragraph(capsys.readouterr().err, "--scheduler", "tcp://10.0.0.5:8786")
    assert not out.exists(), "refused before anything is written"


def slow_linear(param_sets, n_clients, n_therapists, seed, replicate):
    """A known function of the parameters, slow enough for the cluster to change under it."""
    time.sleep(0.05)
    return {"y": np.array([2 * p["therapist_empathy_mean"] + p["rupture_rate"] + replicate for p in param_sets])}


def test_a_cluster_left_without_workers_ends_with_a_message_and_resumes(tiny, tmp_path, capsys, monkeypatch):
    from dask.distributed import LocalCluster

    lone = functools.partial(run_experiment, evaluator=slow_linear, analyse=False)  # y is no metric to analyse
    monkeypatch.setattr(experiments.runner, "run_experiment", lone)
    spec = write_spec(tmp_path, TINY.replace("chunk_size = 12", "chunk_size = 4"), "tiny.toml")  # 20 chunks
    out, outcome = tmp_path / "lost", {}
    cluster_args = {"threads_per_worker": 1, "dashboard_address": None, "silence_logs": logging.ERROR}
    with LocalCluster(n_workers=1, **cluster_args) as cluster:
        args = ["run", str(spec), "--executor", "dask", "--scheduler", cluster.scheduler_address, "--out", str(out)]
        args += ["--worker-timeout", "2", "--no-progress"]
        runner = threading.Thread(target=lambda: outcome.setdefault("status", main(args)))
        runner.start()
        deadline = time.monotonic() + 120
        while len(done_chunks(out)) < 2:
            assert runner.is_alive() and time.monotonic() < deadline, "the sweep never got going"
            time.sleep(0.05)
        cluster.scale(0)  # every worker gone, as when a batch job's time runs out
        runner.join(timeout=120)
        assert not runner.is_alive(), "the run hung on a cluster without workers"
        assert outcome["status"] == 1
        _check_one_paragraph(capsys.readouterr().err, "has had no worker for 2 s", "run the same command to finish")
        kept = done_chunks(out)
        assert 2 <= len(kept) < read_manifest(out)["n_chunks"] and read_manifest(out)["sessions"][-1]["interrupted"]
        cluster.scale(1)
        cluster.wait_for_workers(1, timeout=60)
        assert main([*args[:-3], "--worker-timeout", "60", "--no-progress"]) == 0, capsys.readouterr().err
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["sessions"][-1]["chunks_before"] == len(kept)
    reference = tmp_path / "reference"
    run_experiment(load_spec(spec), reference, "serial", evaluator=slow_linear, progress=False, analyse=False)
    pd.testing.assert_frame_equal(read_outputs(out), read_outputs(reference), check_exact=True)
