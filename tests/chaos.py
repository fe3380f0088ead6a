"""Chaos: SIGKILL a sweep at random moments, resume it, and compare with an uninterrupted run bit for bit.

``python -m tests.chaos --kills 20`` (``make chaos``) runs a small sweep of the real engine without
interruption on both executors (they must agree), then ``--kills`` times: starts the same command
into a new directory, kills it with SIGKILL at a random moment after it has locked its results
directory (during creation, mid-chunk, during the analysis), in every third case (and the last) the
resume as well, then runs the same command to the end and compares the outputs (every chunk), the
sample and indices.csv with the uninterrupted run's, bit for bit. It prints one line per kill and
``k of N resumed bit-identical``, and exits 1 unless all did. Even kills run on the serial executor,
odd ones on two worker processes; every other kill lands while chunks are being written, one in
five while the directory is created. tests/test_chaos.py runs a short version in ``make test``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.lock import LOCK
from experiments.store import done_chunks, read_manifest, read_outputs

ROOT = Path(__file__).resolve().parents[1]
SPEC = """
name = "chaos"
method = "sobol"
scenario = "baseline"
outputs = ["dropout_rate", "recovery_rate"]
N = 8
replicates = 2
clients = 1000
therapists = 50
seed = 11
chunk_size = 2

[options]
calc_second_order = false
num_resamples = 100

[parameters.therapist_empathy_mean]
[parameters.rupture_rate]
[parameters.planned_sessions]
"""


EXECUTORS = ("serial", "processes")  # odd kills on two worker processes, even ones in one process


@dataclass
class Kill:
    """What one kill did and how its resume compared."""

    number: int
    executor: str
    kills: list[str]
    identical: bool
    problem: str = ""

    def line(self) -> str:
        """One line of the report."""
        verdict = "resumed bit-identical" if self.identical else f"DIFFERS: {self.problem}"
        return f"kill {self.number:2d} ({self.executor}): {'; then '.join(self.kills) or 'not killed'}: {verdict}"


def command(spec: Path, out: Path, executor: str) -> list[str]:
    """The sweep's command line."""
    workers = ["--workers", "2"] if executor == "processes" else []
    return [sys.executable, "-m", "experiments", "run", str(spec), "--executor", executor, *workers, "--out", str(out)]


def stage(out: Path) -> str:
    """Where the run was when it was killed, read from what is on disk."""
    if not out.exists():
        return "creating the directory"
    try:
        manifest = read_manifest(out)
    except (OSError, ValueError):
        return "before its manifest"
    chunks = len(done_chunks(out))
    if chunks < manifest["n_chunks"]:
        return f"{chunks} of {manifest['n_chunks']} chunks on disk"
    return "computing the indices" if not (out / "indices.csv").exists() else "writing the figures"


def start(cmd: list[str], out: Path) -> tuple[subprocess.Popen, float]:
    """Start ``cmd``; return it once it holds the lock of ``out`` (or of its temporary twin), with the time taken.

    That is the moment it starts work on the directory: a kill before it would only test Python's start-up.
    """
    began = time.monotonic()
    proc = subprocess.Popen([*cmd, "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mark = f"(pid {proc.pid} "
    deadline = began + 120
    while proc.poll() is None and time.monotonic() < deadline:
        locks = [out / LOCK, *out.parent.glob(f".{out.name}.creating-{proc.pid}/{LOCK}")]
        if any(mark in _read(lock) for lock in locks):
            break
        time.sleep(0.001)
    return proc, time.monotonic() - began


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def kill_at(cmd: list[str], out: Path, delay: float) -> str | None:
    """Start ``cmd`` and SIGKILL it ``delay`` seconds after it locks its directory; say where it was."""
    proc, _ = start(cmd, out)
    try:
        proc.wait(timeout=delay)
        return None  # it finished first
    except subprocess.TimeoutExpired:
        where = stage(out)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"killed {delay:.3f} s into its work ({where})"


@dataclass
class Timing:
    """When, after a run locked its directory, its chunks ran and it ended (seconds)."""

    first_chunk: float
    last_chunk: float
    end: float


def timed(cmd: list[str], out: Path) -> Timing:
    """Run ``cmd`` to its end, noting when its first and last chunk files appeared."""
    proc, _ = start(cmd, out)
    began, first, last = time.monotonic(), None, None
    n_chunks = None
    while proc.poll() is None:
        found = len(done_chunks(out)) if out.exists() else 0
        if found and first is None:
            first = time.monotonic() - began
        if n_chunks is None and (out / "manifest.json").exists():
            n_chunks = read_manifest(out)["n_chunks"]
        if n_chunks and found >= n_chunks and last is None:
            last = time.monotonic() - began
        time.sleep(0.002)
    if proc.returncode != 0:
        raise RuntimeError(f"an uninterrupted run failed: {cmd}")
    end = time.monotonic() - began
    return Timing(first if first is not None else 0.0, last if last is not None else end, end)


def draw_delay(rng: np.random.Generator, timing: Timing, number: int) -> float:
    """When to kill: one time in five within the first 50 ms (creating the directory), every other time
    while chunks are being written, otherwise anywhere in the run's work (the analysis included)."""
    if number % 5 == 0:
        return float(rng.uniform(0, 0.05))
    if number % 2 == 1:
        return float(rng.uniform(timing.first_chunk, max(timing.last_chunk, timing.first_chunk + 0.01)))
    return float(rng.uniform(0, timing.end))


def compare(out: Path, reference: Path) -> str:
    """What differs between a resumed run and the reference, or "" when nothing does."""
    if not read_manifest(out)["complete"]:
        return "the manifest is not complete"
    try:
        pd.testing.assert_frame_equal(read_outputs(out), read_outputs(reference), check_exact=True)
    except AssertionError as err:
        return f"outputs: {str(err)[:200]}"
    if (out / "sample.parquet").read_bytes() != (reference / "sample.parquet").read_bytes():
        return "sample.parquet"
    if (out / "indices.csv").read_bytes() != (reference / "indices.csv").read_bytes():
        return "indices.csv"
    leftovers = [p.name for p in (*out.glob(".*.tmp-*"), *(out / "chunks").glob(".*"))]
    return f"temporary files left: {leftovers}" if leftovers else ""


# The short version in make test: a smaller cohort and fewer outputs, the same kinds of kill.
SHORT_SPEC = SPEC.replace("clients = 1000", "clients = 40").replace("therapists = 50", "therapists = 4")
SHORT_SPEC = SHORT_SPEC.replace('outputs = ["dropout_rate", "recovery_rate"]', 'outputs = ["dropout_rate"]')


def chaos(kills: int = 20, seed: int = 1, folder: Path | None = None, log=print, spec_text: str = SPEC) -> list[Kill]:
    """Kill and resume the sweep of ``spec_text`` ``kills`` times; return what happened each time."""
    folder = Path(folder or tempfile.mkdtemp(prefix="chaos-"))
    spec = folder / "chaos.toml"
    spec.write_text(spec_text)
    reference = folder / "reference"
    timings = {executor: timed(command(spec, folder / executor, executor), folder / executor) for executor in EXECUTORS}
    shutil.copytree(folder / "processes", reference)
    problem = compare(folder / "serial", reference)
    if problem:
        raise RuntimeError(f"the executors disagree before any kill: {problem}")
    for executor, t in timings.items():
        log(
            f"uninterrupted {executor} run: chunks from {t.first_chunk:.2f} s to {t.last_chunk:.2f} s after it "
            f"locked its directory, done at {t.end:.2f} s; {read_manifest(reference)['n_chunks']} chunks"
        )
    rng = np.random.default_rng(seed)
    results = []
    for number in range(1, kills + 1):
        executor = EXECUTORS[number % 2]
        for attempt in range(5):  # a kill drawn after the run's end did not happen: draw again, afresh
            out = folder / f"kill-{number:02d}-{attempt}"
            cmd = command(spec, out, executor)
            events = [kill_at(cmd, out, draw_delay(rng, timings[executor], number))]
            if events[0]:
                break
        if number % 3 == 0 or number == kills:  # the resume is killed as well
            events.append(kill_at(cmd, out, draw_delay(rng, timings[executor], number + 1)))
        done = subprocess.run(cmd + ["--no-progress"], cwd=ROOT, capture_output=True, text=True)
        problem = f"the resume exited {done.returncode}: {done.stderr[-300:]}" if done.returncode else ""
        problem = problem or compare(out, reference)
        result = Kill(number, executor, [e for e in events if e], not problem, problem)
        log(result.line())
        results.append(result)
    identical = sum(r.identical for r in results)
    log(f"chaos: {identical} of {kills} resumed bit-identical")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when every kill resumed bit-identical."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="how many runs to kill (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill times (default 1)")
    parser.add_argument(
        "--folder", type=Path, default=None, help="where the runs go (default: a temporary folder, removed on success)"
    )
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="chaos-"))
    results = chaos(args.kills, args.seed, folder)
    if all(r.identical for r in results):
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
        return 0
    print(f"the runs are kept in {folder} for a look")
    return 1


if __name__ == "__main__":
    sys.exit(main())
