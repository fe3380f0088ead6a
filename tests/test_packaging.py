"""The wheel works without the checkout: built from a copy of the sources, installed into a fresh venv
and run from an unrelated directory, it finds the scenarios, the experiment and trial specs and the
targets table as package data.

Slow-ish (a fresh venv installs every dependency, from pip's cache after the first time), so it is one
test that checks everything a cluster worker or a user of ``pip install alliancesim-*.whl`` needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "results", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
TINY_SWEEP = """
name = "tiny"
method = "grid"
scenario = "feedback_informed"
outputs = ["dropout_rate"]
replicates = 1
clients = 40
therapists = 4
seed = 3

[parameters.therapist_empathy_mean]
levels = [0.3, 0.8]
"""


def _run(args, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "MPLBACKEND": "Agg"}
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)  # the build writes build/ and egg-info: not in the checkout
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(tmp_path / "dist")], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("alliancesim-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "scenarios/baseline.toml",
        "experiments/sobol_dropout.toml",
        "experiments/trials/trial_feedback.toml",
        "analysis/targets.toml",
        "sim/calibrated.toml",
    ):
        assert data in names, f"the wheel lacks {data}"
    assert not any(n.startswith(("tests/", "notebooks/", "benchmarks/")) for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    # --no-compile: byte-compiling every module of every dependency was two thirds of the install
    # (55 -> 20 s); the modules the commands below import are compiled as they load.
    _run([python, "-m", "pip", "install", "--quiet", "--no-compile", str(wheel)], tmp_path, env)

    work = tmp_path / "work"  # no sim/, scenarios/ or experiments/ here: only the installed package can answer
    work.mkdir()
    where = _run([python, "-c", "import scenarios, sim; print(sim.__file__); print(scenarios.__file__)"], work, env)
    assert all(str(venv) in line for line in where.stdout.split()), f"imported from outside the venv: {where.stdout}"

    _run([python, "-m", "sim", "run", "baseline", "--clients", "100", "--out", "baseline"], work, env)
    assert json.loads((work / "baseline" / "summary.json").read_text())["scenario"] == "baseline"
    listed = _run([python, "-m", "sim", "scenarios"], work, env).stdout
    assert "feedback_informed" in listed and "low_empathy" in listed

    (work / "tiny.toml").write_text(TINY_SWEEP)
    _run([python, "-m", "experiments", "run", "tiny.toml", "--executor", "serial", "--out", "sweep"], work, env)
    manifest = json.loads((work / "sweep" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["runs"] == 2 and (work / "sweep" / "indices.csv").is_file()

    missing = subprocess.run(
        [python, "-m", "experiments", "run", "no_such_spec"], cwd=work, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "sobol_dropout" in missing.stderr, "the shipped specs are listed by name"
    load = "from analysis.trial_spec import load_trial_spec; print(load_trial_spec('trial_feedback').arms[1].scenario)"
    assert _run([python, "-c", load], work, env).stdout.strip() == "feedback_informed"
    _run([python, "-m", "analysis", "validate", "--clients", "100", "--replicates", "2", "--out", "v"], work, env)
    assert (work / "v" / "validation.csv").is_file() and not (work / "docs").exists()
