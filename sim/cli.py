"""Command line: ``python -m sim run | compare | vignette | params | scenarios | app``.

A user mistake (a bad scenario, an unknown parameter, a value out of range) is reported in one
paragraph on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from analysis.vignette import PICKS
from sim import parameters, userfiles
from sim.memory import keep_freed_memory
from sim.parameters import ParameterError
from sim.posterior import PosteriorError
from sim.scenario import ScenarioError, list_scenarios, load_scenario
from sim.userfiles import clean_text
from sim.vignette import VignetteError


class OutputError(ValueError):
    """The output directory cannot be used (a file of that name, no permission)."""


USER_ERRORS = (ScenarioError, ParameterError, VignetteError, OutputError, PosteriorError)
APP_SCENARIO_VARIABLE = "ALLIANCESIM_SCENARIO"  # how ``app`` tells sim/app.py which scenario to start from
RUN_FILES = ("clients.csv", "sessions.csv", "events.csv", "summary.json", "summary.png", "summary.svg")
COMPARE_FILES = ("compare.csv", "compare.png", "compare.svg")
VIGNETTE_FILES = ("vignette.md", "vignette.png", "vignette.svg")


class Parser(argparse.ArgumentParser):
    """argparse, its error line cleaned of control characters and cut short: it quotes the arguments given."""

    def error(self, message: str):
        """Print the usage and the cleaned message, exit 2."""
        super().error(clean_text(message, 400))


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


def positive_float(text: str) -> float:
    """Argument type: a finite number above 0 (seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def seed_int(text: str) -> int:
    """Argument type: a seed, an integer of 0 or more."""
    return _integer(text, 0)


def port_int(text: str) -> int:
    """Argument type: a TCP port, 1 to 65535."""
    value = _integer(text, 1)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: use 1 to 65535")
    return value


def summary_json(summary: dict) -> str:
    """A run's summary as JSON: an undefined metric is ``null``, with the reason under ``undefined``."""
    from sim.outcomes import METRICS, undefined_reason

    undefined = {
        m.name: undefined_reason(m.name)
        for m in METRICS
        if isinstance(summary.get(m.name), float) and not math.isfinite(summary[m.name])
    }
    data = {k: (None if k in undefined else v) for k, v in summary.items()}
    if undefined:
        data["undefined"] = undefined
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def rate(summary: dict, key: str, digits: str = ".1%") -> str:
    """A metric of the summary for the terminal: its value, or "undefined" and why; with posterior draws, its range."""
    from sim.outcomes import undefined_reason

    value = summary[key]
    if isinstance(value, float) and not math.isfinite(value):
        return f"undefined ({undefined_reason(key)})"
    interval = summary.get("intervals", {}).get(key)
    if interval and all(math.isfinite(v) for v in interval):
        return f"{format(value, digits)} [{format(interval[0], digits)}, {format(interval[1], digits)}]"
    return format(value, digits)


@contextmanager
def writing(out: Path | str, what: str = "simulation") -> Iterator[None]:
    """Turn a failure to write the outputs into ``out`` (disk full, permissions changed) into one paragraph."""
    try:
        yield
    except OSError as err:
        raise OutputError(
            f"cannot write {err.filename or out} ({err.strerror or err}): the {what} ran, but its outputs could "
            f"not all be saved in {out}. Free some space or fix the permissions, and run the command again."
        ) from None


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
    path.write_text(summary_json(result.summary))
    written.append(path)
    fig = summary_figure(result.clients, result.sessions, title=f"Scenario: {result.summary['scenario']}")
    written += save(fig, out, "summary")
    return written


def output_dir(out: str | Path, flag: str = "--out", files: tuple[str, ...] = ()) -> Path:
    """Create the output directory and check ``files`` can be written into it, before any simulation runs."""
    return userfiles.output_dir(out, OutputError, flag, files)


def cmd_run(args) -> int:
    """``run``: one scenario, its tables, summary and figure."""
    from sim.run import simulate

    overrides = dict(parameters.parse_assignment(a) for a in args.set)
    settings = {"clients": args.clients, "therapists": args.therapists, "seed": args.seed, "overrides": overrides}
    scenario = load_scenario(args.scenario).with_settings(**settings)  # checked before any directory is made
    if args.posterior:
        from sim.posterior import load_posterior

        load_posterior()  # a missing or broken posterior is reported before any directory is made
    out = output_dir(args.out, files=RUN_FILES)
    result = simulate(scenario, posterior=args.posterior)
    with writing(out):
        write_run(result, out)
    s = result.summary
    cohorts = (
        f", {args.posterior} cohorts with posterior draws (range of the cohorts in brackets)" if args.posterior else ""
    )
    print(
        f"{clean_text(s['scenario'])}: {s['clients']} clients, {s['therapists']} therapists, "
        f"seed {s['seed']}{cohorts}\n"
        f"  dropout {rate(s, 'dropout_rate')}, recovery {rate(s, 'recovery_rate')}, "
        f"reliable improvement {rate(s, 'reliable_improvement_rate')}, "
        f"deterioration {rate(s, 'reliable_deterioration_rate')}\n"
        f"  mean sessions {rate(s, 'mean_sessions', '.1f')}, "
        f"r(alliance, outcome) = {rate(s, 'alliance_outcome_r', '.2f')}\n"
        f"  written to {out.resolve()}/"
    )
    return 0


def cmd_compare(args) -> int:
    """``compare``: scenarios side by side on common random numbers, over replicates."""
    from sim.comparison import compare

    pairs = [_pair(text) for text in args.pair]
    if args.posterior:
        from sim.posterior import load_posterior

        load_posterior()  # a missing or broken posterior is reported before any directory is made
    out = output_dir(args.out, files=COMPARE_FILES)
    result = compare(
        *args.scenarios,
        clients=args.clients,
        therapists=args.therapists,
        seed=args.seed,
        replicates=args.replicates,
        reference=args.reference,
        pairs=pairs or None,
        posterior=args.posterior,
    )
    with writing(out):
        result.save(out)
    s = result.settings
    names = ", ".join(clean_text(name, 40) for name in result.scenarios)
    heading = (
        f"{names}: {s['clients']} clients, {s['therapists']} therapists, seed {s['seed']}, "
        f"{s['replicates']} replicates on common random numbers"
    )
    print(
        f"{textwrap.fill(heading, 100)}\n\n{result.text()}\n\n"
        f"written to {out.resolve()}/ (compare.csv, compare.png, compare.svg)"
    )
    return 0


def _pair(text: str) -> tuple[str, str]:
    """``--pair REFERENCE:SCENARIO`` as a (reference, scenario) pair."""
    reference, sep, scenario = text.partition(":")
    if not sep or not reference or not scenario:
        raise ScenarioError(
            f"--pair {clean_text(repr(text), 60)} is not of the form REFERENCE:SCENARIO, e.g. "
            "--pair cultural_mismatch:cultural_mismatch_humility."
        )
    return reference, scenario


def cmd_vignette(args) -> int:
    """``vignette``: one dyad's course as a timeline and a plain-language account; a what-if beside it."""
    from sim.vignette import parse_what_if, vignette

    what_if = parse_what_if(args.what_if)
    load_scenario(args.scenario)  # a bad name or file is reported before any directory is made
    out = output_dir(args.out, files=VIGNETTE_FILES)
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
    with writing(out):
        result.save(out)
    print(f"{result.text()}\nwritten to {out.resolve()}/ (vignette.md, vignette.png, vignette.svg)")
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
    with socket.socket() as probe:  # solara would fail on a taken port with a traceback of its own
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as err:
            print(
                f"error: --port {args.port}: cannot listen on 127.0.0.1:{args.port} ({err.strerror or err}); another "
                "program may be using it: give another --port.",
                file=sys.stderr,
            )
            return 2
    print(f"scenario {clean_text(scenario.name)}: open http://127.0.0.1:{args.port} (Ctrl-C stops the app)", flush=True)
    return serve(*app_command(args.scenario, args.port))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m sim``."""
    parser = Parser(prog="python -m sim", description="alliancesim: therapy courses as agents")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write its tables and figures")
    run.add_argument("scenario", help="a scenario name from scenarios/ or a path to a .toml file")
    run.add_argument("--clients", type=positive_int, help="clients in the cohort (therapists scale with them)")
    run.add_argument("--therapists", type=positive_int, help="therapists in the cohort (default: the caseload kept)")
    run.add_argument("--seed", type=seed_int, help="the run's seed")
    run.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="change a parameter")
    run.add_argument("--out", required=True, help="directory for the outputs")
    run.add_argument(
        "--posterior",
        type=at_least_two,
        metavar="K",
        help="K cohorts, each with parameters drawn from the posterior (sim/posterior.csv): intervals",
    )
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
    comp.add_argument("--out", required=True, help="directory for compare.csv, compare.png and compare.svg")
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
    comp.add_argument(
        "--posterior",
        type=at_least_two,
        metavar="K",
        help="K replicates, replicate r with parameters drawn from the posterior (sim/posterior.csv) for all",
    )
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
    vig.add_argument("--out", required=True, help="directory for vignette.md, vignette.png and vignette.svg")
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
    vig.set_defaults(func=cmd_vignette)

    params = sub.add_parser("params", help="print the parameter registry")
    params.add_argument("--group", choices=list(parameters.GROUPS), help="only this group")
    params.add_argument("--markdown", action="store_true", help="print docs/parameters.md")
    params.set_defaults(func=cmd_params)

    scenarios = sub.add_parser("scenarios", help="list the scenarios with one line each")
    scenarios.set_defaults(func=cmd_scenarios)

    app = sub.add_parser("app", help="the interactive browser app on localhost, starting from a scenario")
    app.add_argument("scenario", nargs="?", default="baseline", help="a scenario name or path (default baseline)")
    app.add_argument("--port", type=port_int, default=8765, help="localhost port, 1 to 65535 (default 8765)")
    app.set_defaults(func=cmd_app)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a user mistake)."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.func(args)
    except USER_ERRORS as err:
        userfiles.remove_created()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 0
