"""Fit the expected-recovery curve of routine outcome monitoring to the model's own trajectories.

Feedback systems compare each session's score with the track that clients of the same intake
severity usually follow (expected treatment response; Finch, Lambert & Schaalje 2001,
doi:10.1002/cpp.291). As those tracks come from a reference sample treated without feedback, this
fit runs the baseline scenario with no feedback-using therapists, collects every attended session's
PHQ-9 with the client's intake score and session number, and fits the curve of
:mod:`sim.expected` to the ratio score / intake by least squares. ``make calibrate`` refits it after
every calibration, so the curve follows the calibrated model.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize

from sim.engine import Cohort
from sim.expected import CENTRE, CURVE_FILE, ExpectedRecovery
from sim.scenario import load_scenario

REFERENCE = {"therapist_feedback_share": 0.0}  # the reference sample is treated without feedback


@dataclass(frozen=True)
class CurveFit:
    """A fitted curve with the sample behind it."""

    curve: ExpectedRecovery
    scenario: str
    clients: int
    seed: int
    scores: int  # attended-session scores fitted
    rmse: float  # root mean squared error of the ratio score / intake


def reference_scores(scenario: str = "baseline", clients: int = 20_000, seed: int = 1) -> np.ndarray:
    """Intake, session number and score of every attended session, shape (n_scores, 3)."""
    sc = load_scenario(scenario).with_settings(clients=clients, seed=seed, overrides=REFERENCE)
    cohort = Cohort(sc.params, sc.clients, sc.therapists, sc.seed, record=True).run()
    scores = np.stack(cohort.record.phq9)[:, 0, :]  # (weeks, clients), NaN where no session
    attended = ~np.isnan(scores)
    session = np.cumsum(attended, axis=0)
    intake = np.broadcast_to(cohort.dyads.intake[0], scores.shape)
    keep = attended & (intake > 0)
    return np.column_stack([intake[keep], session[keep], scores[keep]])


def fit_curve(data: np.ndarray) -> tuple[ExpectedRecovery, float]:
    """Least-squares fit of score / intake = a(x) + (1 - a(x)) exp(-rate k); returns the curve and RMSE."""
    intake, session, score = data.T
    ratio = score / intake

    def residuals(theta):
        curve = ExpectedRecovery(theta[0], theta[1], np.exp(theta[2]))
        return curve.expected(intake, session) / intake - ratio

    result = optimize.least_squares(residuals, x0=[0.5, 0.0, np.log(0.15)], method="trf")
    a0, a1, log_rate = result.x
    rmse = float(np.sqrt(np.mean(result.fun**2)))
    return ExpectedRecovery(float(f"{a0:.6g}"), float(f"{a1:.6g}"), float(f"{np.exp(log_rate):.6g}")), rmse


def fit(scenario: str = "baseline", clients: int = 20_000, seed: int = 1) -> CurveFit:
    """Simulate the reference sample and fit the curve."""
    data = reference_scores(scenario, clients, seed)
    curve, rmse = fit_curve(data)
    return CurveFit(curve, scenario, clients, seed, len(data), rmse)


def curve_toml(result: CurveFit) -> str:
    """The text of sim/expected_recovery.toml."""
    c = result.curve
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "\n".join(
        [
            "# The expected-recovery curve of routine outcome monitoring (sim/expected.py).",
            "# Written by `python -m analysis expected-recovery` (make calibrate) from the model's own",
            "# trajectories: the scenario below, treated without feedback.",
            "",
            "[curve]",
            f"a0 = {c.a0!r}",
            f"a1 = {c.a1!r}",
            f"rate = {c.rate!r}",
            "",
            "[fit]",
            f'date = "{date}"',
            f'scenario = "{result.scenario}"',
            f"clients = {result.clients}",
            f"seed = {result.seed}",
            f"scores = {result.scores}",
            f"rmse = {float(f'{result.rmse:.4g}')!r}",
            f"centre = {CENTRE!r}",
            "",
        ]
    )


def run(scenario: str = "baseline", clients: int = 20_000, seed: int = 1, path: Path = CURVE_FILE, log=print):
    """Fit the curve and write it to ``path``."""
    result = fit(scenario, clients, seed)
    path.write_text(curve_toml(result))
    c = result.curve
    log(
        f"expected recovery: a0 = {c.a0:.4g}, a1 = {c.a1:.4g}, rate = {c.rate:.4g} per session "
        f"({result.scores} scores of {clients} clients, RMSE {result.rmse:.3f} of score / intake); wrote {path}"
    )
    return result
