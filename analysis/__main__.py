"""``python -m analysis``: analyses of simulation outputs.

- ``sensitivity DIR``: re-make indices.csv and figures from a sweep's stored outputs;
- ``validate``: every published fact against the baseline (``make validate``);
- ``calibrate``: fit the free parameters to the calibration facts (``make calibrate``);
- ``expected-recovery``: refit routine outcome monitoring's expected-recovery curve (``make calibrate``);
- ``discover DIR``: scenario discovery on a sweep, PRIM boxes and feature scores (``make discover``);
- ``trial SPEC``: a virtual two-arm trial, power by clients and therapists per arm (``make trial``).

Exit status: 0 when the command ran (for ``validate`` whatever the table says, it is a report); 1
only under ``validate --strict``, when a calibration fact misses its band; 2 for a usage mistake (a
bad argument, scenario, targets file, parameter name or output path), reported in one paragraph on
stderr, never as a traceback. CI can so tell a calibration miss (1) from a broken command (2).
"""

import sys
from pathlib import Path

from analysis import discover, trial
from analysis.calibrate import CalibrationError
from analysis.sensitivity import AnalysisError, analyse_dir
from analysis.targets import TargetsError
from analysis.trial_spec import TrialSpecError
from experiments.executors import ExecutorError
from experiments.lock import LockError
from experiments.results import ResultsError
from sim.cli import OutputError, Parser, at_least_two, output_dir, positive_float, positive_int, seed_int, writing
from sim.memory import keep_freed_memory
from sim.parameters import ParameterError
from sim.posterior import PosteriorError
from sim.scenario import ScenarioError
from sim.userfiles import remove_created

EXIT_STATUS = (
    "exit status: 0 done; 1 a calibration fact missed its band (validate --strict only); "
    "2 a usage mistake (bad argument, scenario, targets file or output path)."
)


class UsageError(ValueError):
    """A command-line value that cannot be used; the message says which and what is allowed."""


USER_ERRORS = (UsageError, OutputError, ScenarioError, ParameterError, TargetsError, AnalysisError, LockError)
USER_ERRORS += (ResultsError, discover.DiscoveryError, TrialSpecError, ExecutorError, CalibrationError, PosteriorError)


def _file(path: Path, flag: str) -> Path:
    """Check an output file's place before a long fit, which would otherwise fail only at its end."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty: give the path of the file to write.")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give the path of the file to write.")
    output_dir(path.parent, f"{flag} (its folder)")
    return path


def _sensitivity(args) -> int:
    from experiments.executors import available_cores
    from experiments.lock import DirectoryLock

    if not args.dir.is_dir():
        raise AnalysisError(f"{args.dir} is not a directory: give the --out directory of `python -m experiments run`.")
    if (args.dir / "figures").exists() and not (args.dir / "figures").is_dir():
        raise UsageError(f"{args.dir / 'figures'} is a file, where the figures folder is to be written; move it away.")
    output_dir(args.dir, "the results directory", files=("indices.csv",))
    with DirectoryLock(args.dir).acquire("analysis"), writing(args.dir, "analysis"):  # never beside a run writing there
        written = analyse_dir(args.dir, args.outputs, args.resamples, args.conf_level, available_cores())
    also = f", {written['convergence']}" if written["convergence"] else ""
    figures = f"{len(written['figures'])} figure files in {args.dir / 'figures'}"
    removed = f"; removed {len(written['removed'])} of outputs no longer analysed" if written["removed"] else ""
    print(f"wrote {written['indices']}{also} and {figures}{removed}")
    for line in written["summary"]:
        print(line)
    return 0


def _add_sensitivity(sub) -> None:
    s = sub.add_parser(
        "sensitivity",
        help="indices.csv and figures of an experiment's results directory",
        description="Sensitivity indices, convergence (Sobol) and figures from a finished sweep's stored runs. "
        "Options change this analysis only; the spec's outputs and [options] are the defaults.",
        epilog=EXIT_STATUS,
    )
    s.add_argument("dir", type=Path, help="the --out directory of `python -m experiments run`")
    s.add_argument("--outputs", nargs="+", metavar="NAME", default=None, help="the stored outputs to analyse")
    s.add_argument("--resamples", type=at_least_two, default=None, help="bootstrap resamples for the intervals")
    s.add_argument(
        "--conf-level", type=positive_float, default=None, metavar="LEVEL", help="level of the intervals, e.g. 0.9"
    )


def _add_validate(sub) -> None:
    from analysis.targets import TARGETS_FILE
    from analysis.validate import DEFAULT_CLIENTS, DEFAULT_REPLICATES, DOCS

    v = sub.add_parser(
        "validate",
        help="every published fact against the baseline: validation.csv and docs",
        description="Every published fact of the targets table against a scenario, over replicates.",
        epilog=EXIT_STATUS,
    )
    v.add_argument(
        "--replicates",
        type=at_least_two,
        default=DEFAULT_REPLICATES,
        help=f"replicates, 2 or more for an interval (default {DEFAULT_REPLICATES})",
    )
    v.add_argument(
        "--clients",
        type=at_least_two,
        default=DEFAULT_CLIENTS,
        help=f"clients per replicate (default {DEFAULT_CLIENTS})",
    )
    v.add_argument(
        "--therapists",
        type=at_least_two,
        default=None,
        help="therapists per replicate, 2 or more (default: the scenario's caseload)",
    )
    v.add_argument("--seed", type=seed_int, default=None, help="seed, 0 or more (default: the scenario's)")
    v.add_argument("--scenario", default="baseline", help="scenario name or path (default baseline)")
    v.add_argument("--out", type=Path, default=Path("results/validate"), help="where every file goes")
    v.add_argument("--docs", type=Path, default=None, help=f"also write validation.md and figures/ here (e.g. {DOCS})")
    v.add_argument("--targets", type=Path, default=TARGETS_FILE, help="the targets table (analysis/targets.toml)")
    v.add_argument("--strict", action="store_true", help="exit 1 when a calibration fact misses its band")
    v.add_argument(
        "--posterior",
        type=at_least_two,
        default=None,
        metavar="K",
        help="also run K replicates with parameters drawn from the posterior (sim/posterior.csv): both intervals",
    )
    v.add_argument(
        "--pass-on",
        choices=("point", "posterior"),
        default="point",
        help="what --strict judges: the point values (default) or the posterior predictive (needs --posterior)",
    )


def _validate(args) -> int:
    from analysis.targets import check_expressions, load_targets
    from analysis.validate import calibration_missed, run
    from sim.run import simulate
    from sim.scenario import load_scenario

    # Mistakes in the inputs are reported before any directory is made or anything runs; a small
    # cohort of the scenario tries every fact's expressions, which the long run would meet at its end.
    targets = load_targets(args.targets)
    load_scenario(args.scenario)
    if args.pass_on == "posterior" and not args.posterior:
        raise UsageError("--pass-on posterior judges the posterior predictive: give --posterior K as well (e.g. 40).")
    if args.posterior:
        from sim.posterior import load_posterior

        load_posterior()
    check_expressions(targets, args.targets, simulate(args.scenario, clients=200, therapists=10, seed=0).clients)
    output_dir(args.out, "--out", files=("validation.csv", "replicates.csv", "manifest.json"))
    if args.docs is not None:
        output_dir(args.docs, "--docs", files=("validation.md",))
        output_dir(args.docs / "figures", "--docs", files=("validation_forest.png", "validation_forest.svg"))
    with writing(args.out, "validation"):
        table = run(
            out=args.out,
            docs=args.docs,
            replicates=args.replicates,
            clients=args.clients,
            therapists=args.therapists,
            seed=args.seed,
            scenario=args.scenario,
            targets_file=args.targets,
            posterior=args.posterior,
        )
    return 1 if args.strict and calibration_missed(table, on=args.pass_on) else 0


def _add_calibrate(sub) -> None:
    from analysis.calibrate import SPEC_FILE

    c = sub.add_parser(
        "calibrate",
        help="ABC-SMC of the free parameters: sim/posterior.csv, sim/calibrated.toml, docs/calibration.md",
        description="A posterior over the free parameters from the calibration facts, by ABC-SMC "
        "(settings: analysis/calibration.toml; options here override them).",
        epilog=EXIT_STATUS,
    )
    c.add_argument("--spec", type=Path, default=SPEC_FILE, help="the settings (default analysis/calibration.toml)")
    c.add_argument("--seed", type=seed_int, default=None, help="seed of the common random numbers and the sampler")
    c.add_argument("--replicates", type=positive_int, default=None, help="cohorts every candidate runs")
    c.add_argument("--clients", type=positive_int, default=None, help="clients per cohort")
    c.add_argument("--population", type=positive_int, default=None, help="particles per generation")
    c.add_argument("--generations", type=positive_int, default=None, help="most generations (generation 0 included)")
    c.add_argument("--minutes", type=float, default=None, help="wall-time budget in minutes")
    c.add_argument("--free", nargs="+", default=None, metavar="NAME", help="fit only these (default: all free)")
    c.add_argument("--executor", choices=("serial", "processes", "dask"), default="processes")
    c.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: all cores)")
    c.add_argument("--scheduler", default=None, help="a running Dask scheduler, e.g. tcp://host:8786")
    c.add_argument("--out", type=Path, default=Path("results/calibration"), help="where the history goes")
    c.add_argument("--toml", type=Path, default=None, help="point values (default sim/calibrated.toml)")
    c.add_argument("--posterior", type=Path, default=None, help="the posterior (default sim/posterior.csv)")
    c.add_argument("--report", type=Path, default=None, help="the report (default docs/calibration.md)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_argument(
        "--from-history",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the posterior, point values and report again from a stored fit's history, without sampling",
    )


def _calibrate(args) -> int:
    from analysis.calibrate import REPORT_FILE, calibrate, load_spec
    from analysis.calibration_report import write_all
    from sim.parameters import CALIBRATED_FILE
    from sim.posterior import POSTERIOR_FILE

    spec = load_spec(
        args.spec,
        seed=args.seed,
        replicates=args.replicates,
        clients=args.clients,
        population=args.population,
        max_generations=args.generations,
        max_minutes=args.minutes,
        free=args.free,
    )
    # Every output's place is checked before the fit, which would otherwise fail only at its end.
    toml = _file(args.toml or CALIBRATED_FILE, "--toml")
    posterior = _file(args.posterior or POSTERIOR_FILE, "--posterior")
    report = _file(args.report or REPORT_FILE, "--report")
    if args.from_history is not None:
        from analysis.calibrate import load_fit

        fit = load_fit(args.from_history, spec)
        with writing("the calibration's outputs", "calibration"):
            write_all(fit, toml, posterior, report, None)
        return 0
    output_dir(args.out, "--out")
    executor = "dask" if args.scheduler else args.executor
    fit = calibrate(spec, executor, args.workers, args.scheduler, progress=not args.quiet)
    with writing("the calibration's outputs", "calibration"):
        write_all(fit, toml, posterior, report, args.out)
    return 0


def _add_expected(sub) -> None:
    e = sub.add_parser(
        "expected-recovery",
        help="refit the expected-recovery curve of routine outcome monitoring: sim/expected_recovery.toml",
        description="Fit the expected-recovery curve to the baseline's trajectories without feedback.",
        epilog=EXIT_STATUS,
    )
    e.add_argument(
        "--clients", type=at_least_two, default=20_000, help="clients of the reference sample (default 20000)"
    )
    e.add_argument("--seed", type=seed_int, default=1, help="seed (default 1)")
    e.add_argument("--toml", type=Path, default=None, help="where the curve goes (default sim/expected_recovery.toml)")


def _expected(args) -> int:
    from analysis.expected_recovery import run
    from sim.expected import CURVE_FILE

    run(clients=args.clients, seed=args.seed, path=_file(args.toml or CURVE_FILE, "--toml"))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1: a calibration miss under --strict, 2: a usage mistake)."""
    p = Parser(prog="python -m analysis", description="Analyse stored simulation outputs.", epilog=EXIT_STATUS)
    sub = p.add_subparsers(dest="command", required=True)
    _add_sensitivity(sub)
    _add_validate(sub)
    _add_calibrate(sub)
    _add_expected(sub)
    discover.add_parser(sub)
    trial.add_parser(sub)
    args = p.parse_args(argv)
    keep_freed_memory()
    commands = {
        "sensitivity": _sensitivity,
        "validate": _validate,
        "calibrate": _calibrate,
        "expected-recovery": _expected,
        "discover": discover.command,
        "trial": trial.command,
    }
    try:
        return commands[args.command](args)
    except USER_ERRORS as err:
        remove_created()
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
