"""Command line: ``python -m experiments run SPEC`` and ``python -m experiments export DIR --csv``.

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
from experiments.executors import ClusterLost, ExecutorError, WorkerDied, add_arguments, check_arguments
from experiments.lock import LockError
from experiments.spec import SpecError, load_spec, with_n
from experiments.store import StoreError, done_chunks
from sim.cli import Parser, positive_int
from sim.memory import keep_freed_memory
from sim.userfiles import clean_text


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = Parser(prog="python -m experiments", description="Run sensitivity experiments.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) an experiment spec", description="Run or resume a spec.")
    run.add_argument("spec", help="a spec file, or a name in experiments/ (e.g. sobol_dropout)")
    run.add_argument("--out", default=None, help="results directory (default results/<spec name>)")
    add_arguments(run, "chunks")
    run.add_argument(
        "--extend",
        type=positive_int,
        metavar="N",
        default=None,
        help="sobol only: run the spec at base sample size N, keeping the runs --out holds at a smaller N",
    )
    run.add_argument(
        "--format",
        choices=("parquet", "csv"),
        default="parquet",
        help="csv: also write runs.csv, sample.csv (and curves.csv) for R when the run is finished (default parquet)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    export = sub.add_parser(
        "export",
        help="a finished run as CSV for R: runs.csv, sample.csv, curves.csv",
        description="Write a finished run's parameter sets and outputs as CSV (NaN as empty fields).",
    )
    export.add_argument("dir", help="the --out directory of `python -m experiments run`")
    export.add_argument("--csv", action="store_true", help="CSV files (the default and only format; Parquet is stored)")
    export.add_argument("--out", default=None, help="where to write (default: DIR itself)")
    return p


def cmd_run(args) -> int:
    """``run``: sample, run the missing chunks, write indices and figures."""
    from experiments.runner import run_experiment

    check_arguments(args)
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
    if args.format == "csv" and manifest["complete"]:
        return cmd_export(argparse.Namespace(dir=str(out), out=None))
    return 0


def cmd_export(args) -> int:
    """``export``: runs.csv, sample.csv and curves.csv of a finished run, under its lock when written beside it."""
    from experiments.export import export_csv
    from experiments.lock import DirectoryLock
    from experiments.results import ResultsError

    folder = Path(args.dir)
    if args.out is not None and not args.out.strip():
        raise StoreError("--out is empty: give the directory to write the CSV files into, e.g. --out results/csv.")
    if not folder.is_dir():
        raise StoreError(f"{folder} is not a directory: give the --out directory of `python -m experiments run`.")
    try:
        with DirectoryLock(folder).acquire("export"):
            written = export_csv(folder, args.out)
    except ResultsError as err:
        raise StoreError(str(err)) from None
    except OSError as err:
        raise StoreError(
            f"cannot write the CSV files ({err.strerror or err}); give an --out that can be written."
        ) from None
    print(f"wrote {', '.join(p.name for p in written)} in {written[0].parent}")
    return 0


def analysis_notes(out: Path, manifest: dict) -> list[str]:
    """How the run was extended, and each analysed output's noise share, from this session's analysis."""
    from analysis.sensitivity import noise_lines

    lines = []
    history = manifest.get("extended") or []
    if history:
        last, sessions = history[-1], manifest["sessions"]
        # By the session's index: the times are whole seconds and the session starts after the
        # extension is recorded, so comparing them lost this line whenever a second ticked in between.
        # (Manifests written before the index was recorded have only the times.)
        if "session" in last:
            ran_it = last["session"] == len(sessions) - 1
        else:
            ran_it = sessions[-1].get("started", "") <= last.get("at", "")
        if ran_it:
            lines.append(
                f"  extended from N = {last['from_N']} to N = {last['to_N']}: {last['kept_chunks']} chunks kept"
            )
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
        return cmd_run(args) if args.command == "run" else cmd_export(args)
    except (SpecError, StoreError, ExecutorError, LockError, AnalysisError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
