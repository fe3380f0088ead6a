"""Command line: ``python -m experiments run SPEC``.

A user mistake (a bad spec, a results directory that belongs to another spec or cannot be
created, an unreadable manifest, an unreachable scheduler) is reported in one paragraph on stderr
with exit status 2, never as a traceback. An interrupted run (Ctrl-C) keeps every finished chunk
and exits with status 130, a run whose worker process died with status 1; the same command
finishes either.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.executors import EXECUTORS, ExecutorError, WorkerDied
from experiments.lock import LockError
from experiments.spec import SpecError, load_spec
from experiments.store import StoreError, done_chunks
from sim.cli import positive_int
from sim.memory import keep_freed_memory


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = argparse.ArgumentParser(prog="python -m experiments", description="Run sensitivity experiments.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) an experiment spec", description="Run or resume a spec.")
    run.add_argument("spec", help="a spec file, or a name in experiments/ (e.g. sobol_dropout)")
    run.add_argument("--executor", choices=EXECUTORS, default="processes", help="where chunks run (default processes)")
    run.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    run.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    run.add_argument("--out", type=Path, default=None, help="results directory (default results/<spec name>)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cmd_run(args) -> int:
    """``run``: sample, run the missing chunks, write indices and figures."""
    from experiments.runner import run_experiment

    if args.scheduler and args.executor != "dask":
        raise SpecError(f"--scheduler {args.scheduler} needs --executor dask.")
    spec = load_spec(args.spec)
    out = args.out or Path("results") / spec.path.stem
    try:
        manifest = run_experiment(spec, out, args.executor, args.workers, args.scheduler, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(
            f"interrupted: {len(done_chunks(out))} chunks are saved in {out}; run the same command to finish.",
            file=sys.stderr,
        )
        return 130
    except WorkerDied:
        print(
            f"error: a worker process died (killed, out of memory, or a crash in the engine) while running "
            f"{spec.name}; finished chunks are kept in {out}; run the same command to finish the rest.",
            file=sys.stderr,
        )
        return 1
    session = manifest["sessions"][-1]
    print(
        f"{spec.name}: {manifest['runs']:,} runs ({manifest['n_sets']:,} sets x {spec.replicates} replicates) "
        f"in {manifest['n_chunks']} chunks; this session ran {session['chunks_run']} chunks "
        f"in {session['seconds']:.1f} s on {session['executor']}. Results: {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parser().parse_args(argv)
    keep_freed_memory()
    try:
        return cmd_run(args)
    except (SpecError, StoreError, ExecutorError, LockError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
