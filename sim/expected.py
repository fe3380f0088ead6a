"""The expected-recovery curve that routine outcome monitoring compares each client's scores with.

Feedback systems flag a client as not on track when a session's score lies above what clients who
started at the same severity usually score by that session (Lambert's expected treatment response;
Finch, Lambert & Schaalje 2001, doi:10.1002/cpp.291). The curve here is derived, as those tracks
are, from a reference sample: the model's own trajectories in the baseline scenario without feedback
(``python -m analysis expected-recovery`` refits it; ``make calibrate`` does so after every fit).
For a client with intake score ``x``, the expected score at the k-th attended session is

    expected(x, k) = x * (a(x) + (1 - a(x)) * exp(-rate * k)),  a(x) = clip(a0 + a1 * (x - 17) / 10, 0, 1),

a negatively accelerated fall toward the share ``a(x)`` of intake that clients of that severity keep.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CURVE_FILE = Path(__file__).with_name("expected_recovery.toml")
CENTRE = 17.0  # PHQ-9 intake at which the asymptote is a0 (the baseline's mean intake)


@dataclass(frozen=True)
class ExpectedRecovery:
    """The expected-recovery curve's three numbers (see the module docstring)."""

    a0: float
    a1: float
    rate: float

    def asymptote(self, intake) -> np.ndarray:
        """The share of intake severity expected to remain after many sessions, per client."""
        return np.clip(self.a0 + self.a1 * (np.asarray(intake, dtype=float) - CENTRE) / 10.0, 0.0, 1.0)

    def expected(self, intake, session) -> np.ndarray:
        """The expected PHQ-9 at the ``session``-th attended session for clients of this intake."""
        a = self.asymptote(intake)
        return np.asarray(intake, dtype=float) * (a + (1.0 - a) * np.exp(-self.rate * np.asarray(session)))


def load_curve(path: Path = CURVE_FILE) -> ExpectedRecovery:
    """The shipped curve (sim/expected_recovery.toml)."""
    with path.open("rb") as f:
        values = tomllib.load(f)["curve"]
    curve = ExpectedRecovery(float(values["a0"]), float(values["a1"]), float(values["rate"]))
    if not all(math.isfinite(v) for v in (curve.a0, curve.a1, curve.rate)) or curve.rate <= 0:
        raise ValueError(f"{path}: the expected-recovery curve needs finite a0, a1 and a positive rate")
    return curve


CURVE = load_curve()
"""The expected-recovery curve every cohort uses."""
