"""One run at a time per results directory: the lock, and sweeps started at the same moment into one place."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import load_spec, run_experiment
from experiments.cli import main
from experiments.lock import LOCK, DirectoryLock, LockError
from experiments.store import read_manifest, read_outputs

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
method = "sobol"
scenario = "baseline"
outputs = ["dropout_rate"]
N = 4
replicates = 1
clients = 20
therapists = 2
seed = {seed}
chunk_size = 3

[parameters.therapist_empathy_mean]
[parameters.rupture_rate]
"""


def spec_file(folder: Path, seed: int) -> Path:
    path = folder / f"spec_{seed}.toml"
    path.write_text(SPEC.format(seed=seed))
    return path


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process that takes the lock of ``folder`` and sleeps; returns once it holds it."""
    script = (
        "import sys, time; from experiments.lock import DirectoryLock; "
        f"DirectoryLock({str(folder)!r}).acquire(); print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[int, pd.DataFrame]:
    """Each seed's outputs from a lone serial run: what a directory must hold, bit for bit."""
    folder = tmp_path_factory.mktemp("references")
    outputs = {}
    for seed in (1, 2):
        out = folder / str(seed)
        run_experiment(load_spec(spec_file(folder, seed)), out, "serial", progress=False, analyse=False)
        outputs[seed] = read_outputs(out)
    return outputs


def test_a_held_lock_refuses_a_second_run_and_names_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = hold_lock(out)
    try:
        assert (
            main(["run", str(spec_file(tmp_path, 1)), "--executor", "serial", "--out", str(out), "--no-progress"]) == 2
        )
        err = capsys.readouterr().err
        assert f"in use by another run (pid {holder.pid}" in err, err
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert os.listdir(out) == [LOCK], "a refused run writes nothing"
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the killed holder's lock: the same command now runs.
    assert main(["run", str(spec_file(tmp_path, 1)), "--executor", "serial", "--out", str(out), "--no-progress"]) == 0
    assert read_manifest(out)["complete"]


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with DirectoryLock(tmp_path):
        with pytest.raises(LockError, match="in use by another run .* so this analysis is refused"):
            DirectoryLock(tmp_path).acquire("analysis")
    DirectoryLock(tmp_path).acquire().release()  # free again once released


def test_analysis_is_refused_while_a_run_holds_the_directory(tmp_path, capsys):
    from analysis.__main__ import main as analysis_main

    out = tmp_path / "out"
    run_experiment(load_spec(spec_file(tmp_path, 1)), out, "serial", progress=False, analyse=False)
    holder = hold_lock(out)
    try:
        assert analysis_main(["sensitivity", str(out)]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert not (out / "indices.csv").exists()
    finally:
        holder.kill()
        holder.wait()


# A holder caught between taking the lock and writing who it is (the lock's own order, slowed down).
SLOW_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(0.05)
os.write(fd, f"run (pid {os.getpid()})".encode())
time.sleep(600)
"""


def test_a_refusal_names_a_holder_that_has_only_just_taken_the_lock(tmp_path):
    """Two sweeps started together: the loser must still say who holds the directory."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_HOLDER, str(tmp_path / LOCK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked", "the holder should report that it holds the lock"
        with pytest.raises(LockError) as refused:
            DirectoryLock(tmp_path).acquire()
        assert f"in use by another run (pid {proc.pid})" in str(refused.value), (
            f"the refusal should name the holder once it has written itself: {refused.value}"
        )
    finally:
        proc.kill()
        proc.wait()


def _start_at(gate: Path, spec: Path, out: Path) -> subprocess.Popen:
    """A sweep that waits for ``gate`` to exist, so two start at the same moment."""
    script = (
        "import sys, time, pathlib; from experiments.cli import main\n"
        f"while not pathlib.Path({str(gate)!r}).exists(): time.sleep(0.001)\n"
        f"sys.exit(main(['run', {str(spec)!r}, '--executor', 'serial', '--out', {str(out)!r}, '--no-progress']))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("seeds", [(1, 2), (2, 1), (1, 1), (2, 2)], ids=["ab", "ba", "aa", "bb"])
def test_sweeps_started_together_never_mix(seeds, references, tmp_path):
    """The audit's race: two sweeps into one empty directory at the same moment, 1 in 16 mixed."""
    out, gate = tmp_path / "shared", tmp_path / "gate"
    out.mkdir()  # the empty directory of the audit; creation races on a missing one are covered too
    procs = [_start_at(gate, spec_file(tmp_path, seed), out) for seed in seeds]
    time.sleep(1.0)  # both are waiting at the gate (imports done)
    gate.touch()
    results = [(seed, *p.communicate(timeout=300)) for seed, p in zip(seeds, procs, strict=True)]
    statuses = [p.returncode for p in procs]
    ok = [seed for (seed, _, _), status in zip(results, statuses, strict=True) if status == 0]
    for (_, _, err), status in zip(results, statuses, strict=True):
        assert "Traceback" not in err, err
        if status:
            assert status == 2 and ("in use by another run" in err or "different spec" in err), err
    assert ok, f"one of the runs should have finished: {results}"
    assert len(set(ok)) == 1, f"two different specs both finished into one directory: {results}"
    manifest = read_manifest(out)
    assert manifest["seed"] == ok[0] and manifest["complete"]
    assert len(manifest["sessions"]) == len(ok), "every finished run's session is recorded, and only those"
    pd.testing.assert_frame_equal(read_outputs(out), references[ok[0]], check_exact=True)


def test_a_missing_directory_raced_by_two_creations_is_created_once(references, tmp_path):
    out, gate = tmp_path / "new" / "shared", tmp_path / "gate"
    procs = [_start_at(gate, spec_file(tmp_path, seed), out) for seed in (1, 2)]
    time.sleep(1.0)
    gate.touch()
    for p in procs:
        p.communicate(timeout=300)
    assert sorted(p.returncode for p in procs) == [0, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    pd.testing.assert_frame_equal(read_outputs(out), references[manifest["seed"]], check_exact=True)
    assert not list(out.parent.glob(".shared.creating-*")), "no temporary directory is left behind"


def test_a_killed_creation_is_cleaned_up_and_the_run_proceeds(references, tmp_path):
    out = tmp_path / "out"
    abandoned = tmp_path / ".out.creating-999999"  # what a run killed while creating leaves
    (abandoned / "chunks").mkdir(parents=True)
    (abandoned / "sample.parquet").write_bytes(b"half")
    assert main(["run", str(spec_file(tmp_path, 1)), "--executor", "serial", "--out", str(out), "--no-progress"]) == 0
    assert not abandoned.exists(), "the abandoned creation (its lock free) is removed"
    pd.testing.assert_frame_equal(read_outputs(out), references[1], check_exact=True)
    (abandoned / "chunks").mkdir(parents=True)  # left by a creation that lost the race to another run
    assert main(["run", str(spec_file(tmp_path, 1)), "--executor", "serial", "--out", str(out), "--no-progress"]) == 0
    assert not abandoned.exists(), "removed on resume too"


def test_a_creation_in_progress_is_left_alone(tmp_path):
    busy = tmp_path / ".out.creating-1"
    busy.mkdir()
    holder = hold_lock(busy)
    try:
        run_experiment(load_spec(spec_file(tmp_path, 1)), tmp_path / "out", "serial", progress=False, analyse=False)
        assert busy.is_dir(), "a temporary directory whose creator lives is not touched"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
