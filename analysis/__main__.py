"""``python -m analysis``: analyses of simulation outputs.

- ``sensitivity DIR``: re-make indices.csv and figures from a sweep's stored outputs;
- ``validate``: every published fact against the baseline (``make validate``);
- ``calibrate``: fit the free parameters to the calibration facts (``make calibrate``).
"""

import argparse
import sys
from pathlib import Path

from analysis.sensitivity import AnalysisError, analyse_dir
from sim.memory import keep_freed_memory


def _sensitivity(args) -> int:
    try:
        written = analyse_dir(args.dir)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {written['indices']} and {len(written['figures'])} figure files in {args.dir / 'figures'}")
    return 0


def _add_validate(sub) -> None:
    from analysis.targets import TARGETS_FILE
    from analysis.validate import DOCS

    v = sub.add_parser("validate", help="every published fact against the baseline: validation.csv and docs")
    v.add_argument("--replicates", type=int, default=20, help="replicates (default 20)")
    v.add_argument("--clients", type=int, default=2000, help="clients per replicate (default 2000)")
    v.add_argument("--therapists", type=int, default=None, help="therapists per replicate (default: caseloads of 20)")
    v.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's)")
    v.add_argument("--scenario", default="baseline", help="scenario name or path (default baseline)")
    v.add_argument("--out", type=Path, default=Path("results/validate"), help="where validation.csv goes")
    v.add_argument("--docs", type=Path, default=DOCS, help="where validation.md and figures/ go (default docs/)")
    v.add_argument("--targets", type=Path, default=TARGETS_FILE, help="the targets table (analysis/targets.toml)")
    v.add_argument("--strict", action="store_true", help="exit 1 when a calibration fact misses its band")


def _validate(args) -> int:
    from analysis.validate import calibration_missed, run

    for name in ("replicates", "clients"):
        if getattr(args, name) < 2:
            print(f"error: --{name} must be at least 2", file=sys.stderr)
            return 2
    table = run(
        out=args.out,
        docs=args.docs,
        replicates=args.replicates,
        clients=args.clients,
        therapists=args.therapists,
        seed=args.seed,
        scenario=args.scenario,
        targets_file=args.targets,
    )
    return 1 if args.strict and calibration_missed(table) else 0


def _add_calibrate(sub) -> None:
    c = sub.add_parser("calibrate", help="fit the free parameters: sim/calibrated.toml and docs/calibration.md")
    c.add_argument("--seed", type=int, default=1, help="seed of the common random numbers (default 1)")
    c.add_argument("--replicates", type=int, default=12, help="replicates per evaluation (default 12)")
    c.add_argument("--clients", type=int, default=2000, help="clients per replicate (default 2000)")
    c.add_argument("--therapists", type=int, default=None, help="therapists per replicate (default: caseloads of 20)")
    c.add_argument("--max-nfev", type=int, default=60, help="most objective evaluations (default 60)")
    c.add_argument("--free", nargs="+", default=None, metavar="NAME", help="fit only these (default: all free)")
    c.add_argument("--toml", type=Path, default=None, help="where the fitted values go (default sim/calibrated.toml)")
    c.add_argument("--report", type=Path, default=None, help="where the report goes (default docs/calibration.md)")


def _calibrate(args) -> int:
    from analysis.calibrate import REPORT_FILE, run
    from sim.parameters import CALIBRATED_FILE, ParameterError

    try:
        run(
            seed=args.seed,
            replicates=args.replicates,
            clients=args.clients,
            therapists=args.therapists,
            max_nfev=args.max_nfev,
            free=args.free,
            toml_path=args.toml or CALIBRATED_FILE,
            report_path=args.report or REPORT_FILE,
        )
    except (ParameterError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m analysis", description="Analyse stored simulation outputs.")
    sub = p.add_subparsers(dest="command", required=True)
    sens = sub.add_parser("sensitivity", help="indices.csv and figures of an experiment's results directory")
    sens.add_argument("dir", type=Path, help="the --out directory of `python -m experiments run`")
    _add_validate(sub)
    _add_calibrate(sub)
    args = p.parse_args(argv)
    keep_freed_memory()
    commands = {"sensitivity": _sensitivity, "validate": _validate, "calibrate": _calibrate}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
