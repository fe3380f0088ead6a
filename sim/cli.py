"""Command line: ``python -m sim run | compare | vignette | params | scenarios | app``.

A user mistake (a bad scenario, an unknown parameter, a value out of range) is reported in one
paragraph on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

from analysis.vignette import PICKS
from sim import parameters, userfiles
from sim.memory import keep_freed_memory
from sim.parameters import ParameterError
from sim.scenario import ScenarioError, list_scenarios, load_scenario
from sim.vignette import VignetteError


class OutputError(ValueError):
    """The output directory cannot be used (a file of that name, no permission)."""


USER_ERRORS = (ScenarioError, ParameterError, VignetteError, OutputError)
APP_SCENARIO_VARIABLE = "ALLIANCESIM_SCENARIO"  # how ``app`` tells sim/app.py which scenario to start from


def _integer(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{value} must be at least {lowest}")
    return value


def at_least_two(text: str) -> int:
    """Argument type: an integer of 2 or more (an interval over replicates needs two)."""
    return _integer(text, 2)


def positive_int(text: str) -> int:
    """Argument type: an integer of 1 or more (clients, therapists, replicates, workers)."""
    return _integer(text, 1)


def seed_int(text: str) -> int:
    """Argument type: a seed, an integer of 0 or more."""
    return _integer(text, 0)


def write_run(result, out: Path) -> list[Path]:
    """Write a run's tables, summary and figure into ``out``; return the files written."""
    from analysis.figures import save, summary_figure

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("clients", "sessions", "events"):
        path = out / f"{name}.csv"
        getattr(result, name).to_csv(path, index=False)
        written.append(path)
    path = out / "summary.json"
    path.write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n")
    written.append(path)
    fig = summary_figure(result.clients, result.sessions, title=f"Scenario: {result.summary['scenario']}")
    written += save(fig, out, "summary")
    return written


def output_dir(out: str | Path, flag: str = "--out") -> Path:
    """Create the output directory, or refuse it before any simulation runs (nothing computed is lost)."""
    return userfiles.output_dir(out, OutputError, flag)


def cmd_run(args) -> int:
    """``run``: one scenario, its tables, summary and figure."""
    from sim.run import simulate

    overrides = dict(parameters.parse_assignment(a) for a in args.set)
    scenario = load_scenario(args.scenario)
    out = output_dir(args.out)
    result = simulate(scenario, clients=args.clients, therapists=args.therapists, seed=args.seed, overrides=overrides)
    write_run(result, out)
    s = result.summary
    print(
        f"{s['scenario']}: {s['clients']} clients, {s['therapists']} therapists, seed {s['seed']}\n"
        f"  dropout {s['dropout_rate']:.1%}, recovery {s['recovery_rate']:.1%}, "
        f"reliable improvement {s['reliable_improvement_rate']:.1%}, "
        f"deterioration {s['reliable_deterioration_rate']:.1%}\n"
        f"  mean sessions {s['mean_sessions']:.1f}, r(alliance, outcome) = {s['alliance_outcome_r']:.2f}\n"
        f"  written to {args.out}/"
    )
    return 0


def cmd_compare(args) -> int:
    """``compare``: scenarios side by side on common random numbers, over replicates."""
    from sim.comparison import compare

    pairs = [_pair(text) for text in args.pair]
    out = output_dir(args.out)
    result = compare(
        *args.scenarios,
        clients=args.clients,
        therapists=args.therapists,
        seed=args.seed,
        replicates=args.replicates,
        reference=args.reference,
        pairs=pairs or None,
    )
    result.save(out)
    s = result.settings
    heading = (
        f"{', '.join(result.scenarios)}: {s['clients']} clients, {s['therapists']} therapists, seed {s['seed']}, "
        f"{s['replicates']} replicates on common random numbers"
    )
    print(
        f"{textwrap.fill(heading, 100)}\n\n{result.text()}\n\n"
        f"written to {args.out}/ (compare.csv, compare.png, compare.svg)"
    )
    return 0


def _pair(text: str) -> tuple[str, str]:
    """``--pair REFERENCE:SCENARIO`` as a (reference, scenario) pair."""
    reference, sep, scenario = text.partition(":")
    if not sep or not reference or not scenario:
        raise ScenarioError(
            f"--pair {text!r} is not of the form REFERENCE:SCENARIO, e.g. "
            "--pair cultural_mismatch:cultural_mismatch_humility."
        )
    return reference, scenario


def cmd_vignette(args) -> int:
    """``vignette``: one dyad's course as a timeline and a plain-language account; a what-if beside it."""
    from sim.vignette import parse_what_if, vignette

    what_if = parse_what_if(args.what_if)
    out = output_dir(args.out)
    result = vignette(
        args.scenario,
        args.client,
        pick=args.pick,
        nth=args.nth,
        random=args.random,
        clients=args.clients,
        seed=args.seed,
        what_if=what_if or None,
        other_therapist=args.other_therapist,
    )
    result.save(out)
    print(f"{result.text()}\nwritten to {args.out}/ (vignette.md, vignette.png, vignette.svg)")
    return 0


def cmd_params(args) -> int:
    """``params``: the registry, as a table or as docs/parameters.md."""
    from sim.docs import parameters_markdown

    if args.markdown:
        sys.stdout.write(parameters_markdown())
        return 0
    for group, title in parameters.GROUPS.items():
        if args.group and group != args.group:
            continue
        print(f"\n{title.capitalize()} (--group {group})")
        for p in (p for p in parameters.REGISTRY.values() if p.group == group):
            free = " [free: fitted by make calibrate]" if p.free else ""
            print(f"  {p.name:32} {p.default!s:>15}  {p.allowed:28} {p.unit:18} {p.meaning}{free}")
            print(f"  {'':32} {'':>15}  source: {p.source}")
    return 0


def cmd_scenarios(args) -> int:
    """``scenarios``: every scenario with its one-line description."""
    for s in list_scenarios():
        print(f"{s.name:32} {s.description}")
    return 0


def app_command(scenario: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that serve sim/app.py on localhost, with nothing asked of the internet.

    Solara would otherwise check PyPI for a newer version at start, send usage telemetry, and fetch
    any front-end file missing from solara-assets from a public CDN: ``--no-check-version``, the
    telemetry switch and a CDN address on a closed local port stop all three.
    """
    app = Path(__file__).with_name("app.py")
    env = {
        **os.environ,
        APP_SCENARIO_VARIABLE: scenario,
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",
        "SOLARA_ASSETS_CDN": "http://127.0.0.1:9/",  # a miss fails here instead of going to jsdelivr
        "SOLARA_THEME_SHOW_BANNER": "False",  # Solara's corner banner would cover the last chart on a projector
    }
    command = [sys.executable, "-m", "solara", "run", str(app), "--host", "127.0.0.1", "--port", str(port)]
    return [*command, "--production", "--no-check-version"], env


def _end_with_parent() -> None:  # pragma: no cover (runs in the child between fork and exec)
    """Ask Linux to send the server SIGTERM when this process dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def serve(command: list[str], env: dict[str, str], grace: float = 10.0) -> int:
    """Run the server as a child that ends with this process: on SIGTERM, SIGINT or SIGHUP, and on its death.

    A signal is passed on to the server as SIGTERM, which then gets ``grace`` seconds to close
    its connections before it is killed. Returns the server's exit status, or 0 when stopped by a signal.
    """
    import subprocess

    stop = threading.Event()
    preexec = _end_with_parent if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(command, env=env, preexec_fn=preexec)  # the parent runs no other threads

    def forward(signum, frame):
        stop.set()
        if proc.poll() is None:
            proc.terminate()

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if stop.is_set():
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stop.is_set() else proc.returncode


def cmd_app(args) -> int:
    """``app``: the interactive browser app (sim/app.py) on localhost, starting from a scenario."""
    import importlib.util

    scenario = load_scenario(args.scenario)  # a bad name or file is reported here, not in the browser
    if importlib.util.find_spec("solara") is None:
        print(
            "error: the app needs the viz extra (solara and its offline assets): run `make app`, or "
            '`pip install -e ".[viz]"` and try again.',
            file=sys.stderr,
        )
        return 2
    print(f"scenario {scenario.name}: open http://127.0.0.1:{args.port} (Ctrl-C stops the app)", flush=True)
    return serve(*app_command(args.scenario, args.port))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sim``."""
    parser = argparse.ArgumentParser(prog="python -m sim", description="alliancesim: therapy courses as agents")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write its tables and figures")
    run.add_argument("scenario", help="a scenario name from scenarios/ or a path to a .toml file")
    run.add_argument("--clients", type=positive_int, help="clients in the cohort (therapists scale with them)")
    run.add_argument("--therapists", type=positive_int, help="therapists in the cohort (default: the caseload kept)")
    run.add_argument("--seed", type=seed_int, help="the run's seed")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="change a parameter")
    run.add_argument("--out", required=True, help="directory for the outputs")
    run.set_defaults(func=cmd_run)

    comp = sub.add_parser("compare", help="compare scenarios on common random numbers")
    comp.add_argument(
        "scenarios", nargs="+", metavar="SCENARIO", help="scenario names or paths, e.g. baseline low_empathy"
    )
    comp.add_argument("--clients", type=positive_int, help="clients per cohort (default: the first scenario's)")
    comp.add_argument(
        "--therapists", type=positive_int, help="therapists per cohort (default: the first scenario's caseload kept)"
    )
    comp.add_argument("--seed", type=seed_int, help="the seed shared by all scenarios (default: the first scenario's)")
    comp.add_argument(
        "--replicates", type=positive_int, default=10, help="cohorts per scenario, 2 or more (default 10)"
    )
    versus = comp.add_mutually_exclusive_group()
    versus.add_argument(
        "--reference", metavar="NAME", help="report each scenario's difference from this one (default: the first)"
    )
    versus.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="REFERENCE:SCENARIO",
        help="report this pair's difference instead (repeatable), e.g. cultural_mismatch:cultural_mismatch_humility",
    )
    comp.add_argument("--out", required=True, help="directory for compare.csv, compare.png and compare.svg")
    comp.set_defaults(func=cmd_compare)

    vig = sub.add_parser("vignette", help="follow one client's course: timeline and plain-language account")
    vig.add_argument("scenario", help="a scenario name from scenarios/ or a path to a .toml file")
    vig.add_argument("--client", type=int, metavar="ID", help="the client's id (default 0)")
    vig.add_argument(
        "--pick",
        action="append",
        choices=list(PICKS),
        help="a client whose course went this way, the lowest id (repeat it: a client matching every pick)",
    )
    vig.add_argument("--nth", type=positive_int, metavar="K", help="the Kth client the pick (or --random) matches")
    vig.add_argument(
        "--random", action="store_true", help="a client at random among the matches, seeded by the run's seed"
    )
    vig.add_argument("--clients", type=positive_int, help="clients in the cohort (therapists scale with them)")
    vig.add_argument("--seed", type=seed_int, help="the run's seed")
    vig.add_argument(
        "--what-if",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also follow the same client, with the same luck, under this parameter value (repeatable)",
    )
    vig.add_argument(
        "--other-therapist",
        type=int,
        metavar="ID",
        help="also follow the same client, with the same luck, with this therapist",
    )
    vig.add_argument("--out", required=True, help="directory for vignette.md, vignette.png and vignette.svg")
    vig.set_defaults(func=cmd_vignette)

    params = sub.add_parser("params", help="print the parameter registry")
    params.add_argument("--group", choices=list(parameters.GROUPS), help="only this group")
    params.add_argument("--markdown", action="store_true", help="print docs/parameters.md")
    params.set_defaults(func=cmd_params)

    scenarios = sub.add_parser("scenarios", help="list the scenarios with one line each")
    scenarios.set_defaults(func=cmd_scenarios)

    app = sub.add_parser("app", help="the interactive browser app on localhost, starting from a scenario")
    app.add_argument("scenario", nargs="?", default="baseline", help="a scenario name or path (default baseline)")
    app.add_argument("--port", type=positive_int, default=8765, help="localhost port (default 8765)")
    app.set_defaults(func=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a user mistake)."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 0
