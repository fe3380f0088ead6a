"""Refresh tests/data/baseline_summary.json: ``python -m tests.refresh_baseline``.

The file holds the cohort metrics of the baseline scenario for a fixed seed and cohort size. It is
committed, and ``tests/test_run.py`` compares a fresh run with it, so that any change in model
behaviour shows up in review. Run this command only when a change in the numbers is intended
(a new mechanism, a changed default, a rewritten engine), and commit the refreshed file with it.

The file records the numerical libraries it was computed with: with the same versions a fresh run
must match bit for bit; with others (a fresh machine installs the newest releases) the last bits of
a floating-point result, and so a few clients' decisions, may differ, and the test allows for that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASELINE_FILE = Path(__file__).with_name("data") / "baseline_summary.json"
SETTINGS = {"scenario": "baseline", "clients": 1000, "seed": 20261122}


def numerical_versions() -> dict[str, str]:
    """Versions of the libraries whose arithmetic the numbers depend on."""
    from importlib.metadata import version

    return {name: version(name) for name in ("numpy", "scipy", "numba")}


def compute() -> dict[str, Any]:
    """The baseline summary: run settings, every cohort metric, and the numerical libraries used."""
    from sim.outcomes import METRICS
    from sim.run import simulate

    result = simulate(SETTINGS["scenario"], clients=SETTINGS["clients"], seed=SETTINGS["seed"])
    metrics = {m.name: result.summary[m.name] for m in METRICS}
    return {
        **SETTINGS,
        "therapists": result.summary["therapists"],
        "metrics": metrics,
        "versions": numerical_versions(),
    }


def main() -> None:
    """Recompute and write the baseline summary."""
    summary = compute()
    BASELINE_FILE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE_FILE.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"wrote {BASELINE_FILE}")
    for name, value in summary["metrics"].items():
        print(f"  {name:28} {value!r}")


if __name__ == "__main__":
    main()
