"""Command line: ``python -m experiments run SPEC``.

A user mistake (a bad spec, a results directory that belongs to another spec, is in use by another
run or cannot be created, an unreadable manifest, a scheduler address that is not one or cannot be
reached) is reported in one paragraph on stderr with exit status 2, never as a traceback. An
interrupted run (Ctrl-C) keeps every finished chunk and exits with status 130; a run whose worker
process died, or whose Dask cluster had no worker for ``--worker-timeout`` seconds or lost its
scheduler, with status 1. The same command finishes either.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analysis.sensitivity import AnalysisError
from experiments.executors import EXECUTORS, WORKER_TIMEOUT, ClusterLost, ExecutorError, WorkerDied, check_address
from experiments.lock import LockError
from experiments.spec import SpecError, load_spec, with_n
from experiments.store import StoreError, done_chunks
from sim.cli import Parser, positive_float, positive_int
from sim.memory import keep_freed_memory
from sim.userfiles import clean_text


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = Parser(prog="python -m experiments", description="Run sensitivity experiments.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) an experiment spec", description="Run or resume a spec.")
    run.add_argument("spec", help="a spec file, or a name in experiments/ (e.g. sobol_dropout)")
    run.add_argument("--executor", choices=EXECUTORS, default="processes", help="where chunks run (default processes)")
    run.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    run.add_argument("--out", default=None, help="results directory (default results/<spec name>)")
    run.add_argument(
        "--worker-timeout",
        type=positive_float,
        default=WORKER_TIMEOUT,
        metavar="SECONDS",
        help=f"end a Dask run whose cluster has had no worker this long (default {WORKER_TIMEOUT:g}; raise it for "
        "a batch queue that starts workers slowly)",
    )
    run.add_argument(
        "--extend",
        type=positive_int,
        metavar="N",
        default=None,
        help="sobol only: run the spec at base sample size N, keeping the runs --out holds at a smaller N",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cmd_run(args) -> int:
    """``run``: sample, run the missing chunks, write indices and figures."""
    from experiments.runner import run_experiment

    if args.scheduler is not None:
        if args.executor != "dask":
            raise ExecutorError(f"--scheduler {clean_text(args.scheduler)} needs --executor dask.")
        check_address(args.scheduler)
    if args.out is not None and not args.out.strip():
        raise StoreError("--out is empty: give the results directory, e.g. --out results/mine.")
    spec = load_spec(args.spec)
    if args.extend is not None:
        spec = with_n(spec, args.extend)
    out = Path(args.out) if args.out is not None else Path("results") / spec.path.stem
    try:
        manifest = run_experiment(
            spec,
            out,
            args.executor,
            args.workers,
            args.scheduler,
            progress=not args.no_progress,
            worker_timeout=args.worker_timeout,
            extend=args.extend is not None,
        )
    except KeyboardInterrupt:
        print(
            f"interrupted: {len(done_chunks(out))} chunks are saved in {out}; run the same command to finish.",
            file=sys.stderr,
        )
        return 130
    except WorkerDied:
        print(
            f"error: a worker process died (killed, out of memory, or a crash in the engine) while running "
            f"{clean_text(spec.name)}; finished chunks are kept in {out}; run the same command to finish the rest.",
            file=sys.stderr,
        )
        return 1
    except ClusterLost as err:
        print(
            f"error: {err}. Finished chunks are kept in {out}; run the same command to finish the rest.",
            file=sys.stderr,
        )
        return 1
    session = manifest["sessions"][-1]
    print(
        f"{clean_text(spec.name)}: {manifest['runs']:,} runs ({manifest['n_sets']:,} sets x {spec.replicates} "
        f"replicates) in {manifest['n_chunks']} chunks; this session ran {session['chunks_run']} chunks "
        f"in {session['seconds']:.1f} s on {session['executor']}. Results: {out}"
    )
    for line in undefined_notes(out):
        print(line)
    for line in analysis_notes(out, manifest):
        print(line)
    return 0


def analysis_notes(out: Path, manifest: dict) -> list[str]:
    """How the run was extended, and each analysed output's noise share, from this session's analysis."""
    from analysis.sensitivity import noise_lines

    lines = []
    history = manifest.get("extended") or []
    if history and manifest["sessions"][-1].get("started", "") <= history[-1].get("at", ""):
        last = history[-1]
        lines.append(f"  extended from N = {last['from_N']} to N = {last['to_N']}: {last['kept_chunks']} chunks kept")
    if "analysis_seconds" in manifest["sessions"][-1] and (out / "analysis.json").is_file():
        lines += noise_lines(json.loads((out / "analysis.json").read_text()))
    return lines


def undefined_notes(out: Path) -> list[str]:
    """A line for each stored metric that has no value in some runs, with the reason in words."""
    from experiments.store import read_outputs
    from sim.outcomes import undefined_reason

    outputs = read_outputs(out)
    lines = []
    for name in outputs.columns.drop(["set", "replicate"], errors="ignore"):
        missing = int(outputs[name].isna().sum())
        if missing:
            lines.append(
                f"  {name}: undefined in {missing:,} of {len(outputs):,} runs ({undefined_reason(name)}); "
                "stored as NaN (empty in Parquet and CSV)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parser().parse_args(argv)
    keep_freed_memory()
    try:
        return cmd_run(args)
    except (SpecError, StoreError, ExecutorError, LockError, AnalysisError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
