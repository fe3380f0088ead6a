"""Virtual trials with power curves: ``python -m analysis trial SPEC.toml`` (``make trial``).

How many clients per arm, and therapists, does a trial need to detect the effect of one arm over
another (feedback-informed care against usual care, say) on dropout, recovery or change? For each
size of the spec (clients and therapists per arm), ``trials`` independent trials are simulated and
tested, and the power is the share of trials whose test rejects at ``alpha``, with a 95% Wilson
interval. The estimated effect (treatment minus control: a risk difference, or PHQ-9 points) is
reported with its spread over trials, which shows how precisely a trial of that size measures it.

Design of one simulated trial: each arm is its own cohort of the arm's scenario (its own clients and
its own therapists, who deliver that arm only, as when therapists or clinics are randomised); clients
are allocated to therapists by the scenario's matching policy. The two arms are independent draws:
parameter sets run in one engine call share their random draws (common random numbers), which would
make the arms the same people, so each arm of a size draws from its own seed and trial ``t`` is
replicate ``t`` of it. A trial's data are therefore a pure function of (spec seed, size, arm,
trial), whatever the executor, the chunking or the number of workers. Trials run in chunks on the
sweep runner's executors (serial, a process pool, Dask).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.trial_spec import OUTCOMES, TESTS, TrialSpec
from analysis.trial_stats import cluster_test, wilson_interval
from experiments.executors import WORKER_TIMEOUT
from sim.engine import Cohort
from sim.outcomes import classify
from sim.run import client_outcomes

BINARY = {"dropout", "recovery", "reliable_improvement", "deterioration"}
TRIALS_PER_TASK = 25
TRIAL_COLUMNS = ["size", "trial", "control_mean", "treatment_mean", "effect", "estimate", "se", "p"]


@dataclass(frozen=True)
class TrialTask:
    """Trials ``first`` .. ``first + count - 1`` of one size: everything a worker needs."""

    size: int
    clients: int
    therapists: int
    params: tuple[dict[str, Any], dict[str, Any]]
    seeds: tuple[int, int]
    first: int
    count: int
    outcome: str
    test: str


def arm_seeds(seed: int, size: int) -> tuple[int, int]:
    """Independent engine seeds of the two arms at one size, spawned from the spec's seed."""
    states = [np.random.SeedSequence([seed, size, arm]).generate_state(2, dtype=np.uint32) for arm in (0, 1)]
    return tuple(int(s[0]) << 31 | int(s[1]) >> 1 for s in states)  # 62-bit, non-negative


def client_values(cohort: Cohort, outcome: str) -> tuple[np.ndarray, np.ndarray]:
    """The outcome per analysed client of a one-set cohort, and each one's therapist.

    Every client randomised is analysed (intention to treat: the model assesses dropouts at the end
    of the course window as a trial's follow-up would); recovery only for clients at caseness at intake.
    """
    o = {k: np.asarray(v[0]) for k, v in client_outcomes(cohort).items()}
    flags = classify(o["intake_phq9"], o["final_phq9"], o["sessions_attended"])
    keep = flags["caseness"] if outcome == "recovery" else np.ones(len(o["therapist"]), dtype=bool)
    y = {
        "dropout": o["end_type"] == 3,
        "recovery": flags["recovery"],
        "reliable_improvement": flags["reliable_improvement"],
        "deterioration": flags["reliable_deterioration"],
        "change": o["intake_phq9"] - o["final_phq9"],
    }[outcome]
    return np.asarray(y, dtype=float)[keep], np.asarray(o["therapist"])[keep]


def run_trials(task: TrialTask) -> tuple[int, dict[str, np.ndarray]]:
    """Simulate and test ``task.count`` trials; returns the size and one array per column of :data:`TRIAL_COLUMNS`."""
    rows = []
    for trial in range(task.first, task.first + task.count):
        ys, groups, arms = [], [], []
        for arm in (0, 1):
            cohort = Cohort(task.params[arm], task.clients, task.therapists, task.seeds[arm], replicate=trial).run()
            y, therapist = client_values(cohort, task.outcome)
            ys.append(y)
            groups.append(therapist + arm * task.therapists)  # the arms' therapists are different people
            arms.append(np.full(len(y), arm))
        y, group, arm = np.concatenate(ys), np.concatenate(groups), np.concatenate(arms)
        means = [ys[0].mean() if len(ys[0]) else np.nan, ys[1].mean() if len(ys[1]) else np.nan]
        estimate, se, p = cluster_test(y, arm, group, task.test, task.outcome in BINARY)
        rows.append((task.size, trial, means[0], means[1], means[1] - means[0], estimate, se, p))
    table = np.array(rows, dtype=float)
    return task.size, {name: table[:, i] for i, name in enumerate(TRIAL_COLUMNS)}


def tasks(spec: TrialSpec, per_task: int = TRIALS_PER_TASK):
    """The chunks of trials of every size, built one at a time."""
    params = (spec.arms[0].params, spec.arms[1].params)
    for size, (n, m) in enumerate(zip(spec.clients, spec.therapists, strict=True)):
        seeds = arm_seeds(spec.seed, size)
        for first in range(0, spec.trials, per_task):
            count = min(per_task, spec.trials - first)
            yield TrialTask(size, n, m, params, seeds, first, count, spec.outcome, spec.test)


def power_table(spec: TrialSpec, trials: pd.DataFrame) -> pd.DataFrame:
    """Power per size with its Wilson interval, and the estimated effect with its spread over trials."""
    rows = []
    for size, group in trials.groupby("size"):
        p = group["p"].to_numpy()
        rejections = int((p < spec.alpha).sum())
        effect = group["effect"].to_numpy()
        rows.append(
            {
                "clients_per_arm": spec.clients[int(size)],
                "therapists_per_arm": spec.therapists[int(size)],
                "trials": len(group),
                "rejections": rejections,
                "undefined_tests": int(np.isnan(p).sum()),
                "control_mean": float(np.nanmean(group["control_mean"])),
                "treatment_mean": float(np.nanmean(group["treatment_mean"])),
                "effect_mean": float(np.nanmean(effect)),
                "effect_sd": float(np.nanstd(effect, ddof=1)),
                "effect_q025": float(np.nanquantile(effect, 0.025)),
                "effect_q975": float(np.nanquantile(effect, 0.975)),
            }
        )
    table = pd.DataFrame(rows)
    table.insert(4, "power", table["rejections"] / table["trials"])
    low, high = wilson_interval(table["rejections"].to_numpy(), table["trials"].to_numpy())
    table.insert(5, "power_low", low)
    table.insert(6, "power_high", high)
    return table


@dataclass
class TrialResult:
    """A finished virtual trial: the per-trial table, the power table and the manifest."""

    spec: TrialSpec
    trials: pd.DataFrame
    power: pd.DataFrame
    manifest: dict[str, Any]


def simulate(
    spec: TrialSpec,
    executor: str = "serial",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    worker_timeout: float = WORKER_TIMEOUT,
) -> TrialResult:
    """Simulate and test every trial of ``spec`` on an executor; the result does not depend on which."""
    from tqdm import tqdm

    from experiments.executors import make_executor
    from experiments.store import now, provenance

    started, t0 = now(), time.perf_counter()
    parts: list[dict[str, np.ndarray]] = []
    bar = tqdm(total=spec.trials * len(spec.clients), unit="trial", desc=spec.name, disable=not progress)
    with bar, make_executor(executor, workers, scheduler, worker_timeout) as pool:
        for _, columns in pool.imap_unordered(run_trials, tasks(spec)):
            parts.append(columns)
            bar.update(len(columns["trial"]))
        used = pool.workers
    trials = pd.concat([pd.DataFrame(c) for c in parts], ignore_index=True)
    trials = trials.astype({"size": int, "trial": int}).sort_values(["size", "trial"], ignore_index=True)
    trials.insert(1, "clients_per_arm", np.asarray(spec.clients)[trials["size"]])
    trials.insert(2, "therapists_per_arm", np.asarray(spec.therapists)[trials["size"]])
    trials["reject"] = trials["p"] < spec.alpha
    manifest = {
        "name": spec.name,
        "description": spec.description,
        "spec_file": str(spec.path) if spec.path else None,
        "spec_hash": spec.digest(),
        "spec": spec.to_dict(),
        "outcome_label": OUTCOMES[spec.outcome],
        "test_label": TESTS[spec.test],
        "executor": executor,
        "workers": used,
        "started": started,
        "seconds": round(time.perf_counter() - t0, 3),
        "provenance": provenance(),
    }
    return TrialResult(spec, trials, power_table(spec, trials), manifest)


def write(result: TrialResult, out: Path) -> list[Path]:
    """power.csv, trials.csv, manifest.json and the power-curve figure (PNG and SVG) into ``out``."""
    from analysis.figures import save
    from analysis.trial_figure import power_figure

    out.mkdir(parents=True, exist_ok=True)
    result.power.to_csv(out / "power.csv", index=False, float_format="%.6g")
    result.trials.to_csv(out / "trials.csv", index=False, float_format="%.6g")
    (out / "manifest.json").write_text(json.dumps(result.manifest, indent=2, default=str) + "\n")
    figures = save(power_figure(result), out, "power_curve")
    return [out / "power.csv", out / "trials.csv", out / "manifest.json", *figures]


def report(result: TrialResult) -> str:
    """The power table for the terminal."""
    spec = result.spec
    arms = f"{spec.arms[1].name} vs {spec.arms[0].name}"
    lines = [
        f"{spec.name}: {arms}, outcome {OUTCOMES[spec.outcome]}, test {spec.test}, "
        f"alpha {spec.alpha:g}, {spec.trials} trials per size ({result.manifest['seconds']:.0f} s)"
    ]
    power = result.power
    shown = power.assign(
        power=[f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in power[["power", "power_low", "power_high"]].to_numpy()],
        effect=[f"{m:+.4g} (sd {s:.3g})" for m, s in power[["effect_mean", "effect_sd"]].to_numpy()],
    )
    columns = ["clients_per_arm", "therapists_per_arm", "power", "effect", "control_mean", "treatment_mean"]
    lines.append(shown[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines)


def run(
    spec: TrialSpec,
    out: Path,
    executor="serial",
    workers=None,
    scheduler=None,
    progress=True,
    worker_timeout=WORKER_TIMEOUT,
    log=print,
):
    """Simulate, write and report; return the result."""
    result = simulate(spec, executor, workers, scheduler, progress, worker_timeout)
    paths = write(result, Path(out))
    log(report(result))
    log(f"wrote {', '.join(p.name for p in paths)} in {out}")
    undefined = int(result.power["undefined_tests"].sum())
    if undefined:
        print(
            f"warning: {undefined} trials had no defined test (an outcome with no variance in the trial, or a fit "
            "that failed) and count as not rejecting; see undefined_tests in power.csv.",
            file=sys.stderr,
        )
    return result


def add_parser(sub) -> None:
    """The ``trial`` subcommand of ``python -m analysis``."""
    from experiments.executors import add_arguments

    p = sub.add_parser(
        "trial",
        help="a virtual two-arm trial: power by clients and therapists per arm, clustered by therapist",
        description="Simulate a two-arm trial many times at each size of a spec and test each one, clustered by "
        "therapist: power with Wilson intervals, the estimated effect and its spread, a power curve.",
        epilog="exit status: 0 done; 1 a worker process died; 2 a usage mistake (bad spec, --out or scheduler).",
    )
    p.add_argument("spec", help="a trial spec file, or a name in experiments/trials/ (e.g. trial_feedback)")
    add_arguments(p, "trials")
    p.add_argument("--out", type=Path, default=None, help="results directory (default results/<spec name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def command(args) -> int:
    """Run ``trial`` from parsed arguments."""
    from analysis.trial_spec import load_trial_spec
    from experiments.executors import WorkerDied, check_arguments
    from sim.cli import output_dir

    check_arguments(args)
    spec = load_trial_spec(args.spec)
    out = output_dir(args.out if args.out is not None else Path("results") / spec.name, "--out")
    try:
        run(spec, out, args.executor, args.workers, args.scheduler, not args.no_progress, args.worker_timeout)
    except WorkerDied:
        print(f"error: a worker process died while simulating {spec.name}; run the command again.", file=sys.stderr)
        return 1
    return 0
