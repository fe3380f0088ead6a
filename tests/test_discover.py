"""Scenario discovery: PRIM finds a planted region of a sweep back; the command's files and errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.discover import discover
from experiments import load_spec, run_experiment
from experiments.results import ResultsError, read_sweep

# Dropout is high exactly when therapist empathy is below 0.4 and practical barriers above 0.3.
EMPATHY_BELOW, BARRIERS_ABOVE = 0.4, 0.3
SPEC = """
name = "planted"
method = "rbd_fast"
scenario = "baseline"
outputs = ["dropout_rate", "recovery_rate"]
N = 600
replicates = 2
clients = 20
therapists = 2
seed = 3
chunk_size = 200

[parameters.therapist_empathy_mean]
low = 0.2
high = 0.9
[parameters.barriers_mean]
low = 0.05
high = 0.5
[parameters.rupture_rate]
low = 0.02
high = 0.2
[parameters.planned_sessions]
low = 8
high = 20
[parameters.matching_policy]
"""


def planted(param_sets, n_clients, n_therapists, seed, replicate):
    """A known model: dropout 0.45 inside the planted box, 0.15 outside, plus replicate noise."""
    empathy = np.array([p["therapist_empathy_mean"] for p in param_sets])
    barriers = np.array([p["barriers_mean"] for p in param_sets])
    noise = np.random.default_rng([seed, replicate, len(param_sets)]).normal(0.0, 0.03, len(param_sets))
    dropout = np.where((empathy < EMPATHY_BELOW) & (barriers > BARRIERS_ABOVE), 0.45, 0.15) + noise
    return {"dropout_rate": dropout, "recovery_rate": 0.5 - dropout / 2}


def planted_choice(param_sets, n_clients, n_therapists, seed, replicate):
    """Dropout is high for long courses (16 sessions or more) under random matching: an integer and a choice."""
    sessions = np.array([p["planned_sessions"] for p in param_sets])
    random = np.array([p["matching_policy"] == "random" for p in param_sets])
    dropout = np.where((sessions >= 16) & random, 0.5, 0.1)
    return {"dropout_rate": dropout, "recovery_rate": 0.5 - dropout / 2}


def _sweep(tmp_path: Path, evaluator, name: str) -> Path:
    spec_path = tmp_path / f"{name}.toml"
    spec_path.write_text(SPEC)
    out = tmp_path / name
    run_experiment(load_spec(spec_path), out, evaluator=evaluator, progress=False, analyse=False)
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return _sweep(tmp_path_factory.mktemp("discover"), planted, "planted")


def test_prim_finds_the_planted_box(sweep_dir):
    d = discover(read_sweep(sweep_dir), "dropout_rate", "above", 0.3)
    box = d.boxes.set_index("parameter")
    assert set(box.index) == {"therapist_empathy_mean", "barriers_mean"}, (
        f"PRIM should restrict exactly the two planted parameters, restricted {sorted(box.index)}"
    )
    # Sets are 600 Latin-hypercube points: neighbours lie about 0.001 apart, PRIM peels 5% at a time.
    assert box.loc["therapist_empathy_mean", "upper"] == pytest.approx(EMPATHY_BELOW, abs=0.02)
    assert box.loc["therapist_empathy_mean", "lower"] == pytest.approx(0.2, abs=0.01), "no planted lower limit"
    assert box.loc["barriers_mean", "lower"] == pytest.approx(BARRIERS_ABOVE, abs=0.02)
    chosen = d.chosen().iloc[0]
    assert chosen["coverage"] >= 0.9 and chosen["density"] >= 0.9, chosen.to_dict()
    assert (box[["qp_lower", "qp_upper"]].min(axis=1) < 1e-6).all(), "planted limits should be highly significant"
    top_two = set(d.features["parameter"][:2])
    assert top_two == {"therapist_empathy_mean", "barriers_mean"}, f"extra trees rank the planted two first: {top_two}"


def test_below_finds_the_same_region_on_another_output(sweep_dir):
    d = discover(read_sweep(sweep_dir), "recovery_rate", "below", 0.3)  # recovery = 0.5 - dropout / 2
    assert set(d.boxes["parameter"]) == {"therapist_empathy_mean", "barriers_mean"}
    assert d.settings["cases_of_interest"] == int((d.values < 0.3).sum()) > 0


def test_prim_handles_integers_and_choices(tmp_path):
    d = discover(read_sweep(_sweep(tmp_path, planted_choice, "choice")), "dropout_rate", "above", 0.3)
    box = d.boxes.set_index("parameter")
    assert set(box.index) == {"planned_sessions", "matching_policy"}, box
    assert box.loc["matching_policy", "categories"] == "random"
    assert (box.loc["planned_sessions", "lower"], box.loc["planned_sessions", "upper"]) == (16, 20), (
        "integer limits are whole sessions"
    )
    assert d.chosen().iloc[0]["density"] == 1.0


def test_peeling_trajectory_trades_coverage_for_density(sweep_dir):
    d = discover(read_sweep(sweep_dir), "dropout_rate", "above", 0.3)
    steps = d.peeling[d.peeling["box"] == 1]
    assert steps["coverage"].iloc[0] == 1.0 and steps["mass"].iloc[0] == 1.0, "the trajectory starts at the whole space"
    assert steps["density"].iloc[0] == pytest.approx(d.settings["base_rate"])
    assert steps["chosen"].sum() == 1
    chosen = steps[steps["chosen"]].iloc[0]
    reaching = steps[steps["density"] >= d.min_density]
    assert chosen["coverage"] == reaching["coverage"].max(), "the chosen step: highest coverage at min density"


def test_command_writes_tables_and_figures_deterministically(sweep_dir, tmp_path, capsys):
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["discover", str(sweep_dir), "--above", "0.3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "therapist_empathy_mean" in printed and "coverage" in printed
    names = {p.relative_to(outs[0]).as_posix() for p in outs[0].rglob("*") if p.is_file()}
    for stem in ("tradeoff", "box_limits", "feature_scores", "scatter"):
        assert {f"figures/{stem}.png", f"figures/{stem}.svg"} <= names
    for table in ("peeling.csv", "boxes.csv", "features.csv", "summary.json"):
        assert (outs[0] / table).read_bytes() == (outs[1] / table).read_bytes(), f"{table} differs between runs"
    summary = json.loads((outs[0] / "summary.json").read_text())  # strict JSON: NaN would not parse back as null
    assert summary["boxes"][0]["restrictions"] and summary["output"] == "dropout_rate"
    assert pd.read_csv(outs[0] / "peeling.csv")["chosen"].sum() == 1


def test_default_out_is_inside_the_sweep(sweep_dir):
    assert main(["discover", str(sweep_dir), "--output", "recovery_rate", "--below", "0.3"]) == 0
    assert (sweep_dir / "discovery" / "recovery_rate-below-0.3" / "boxes.csv").is_file()


def test_no_box_reaching_min_density_reports_the_densest_with_a_warning(sweep_dir, capsys):
    d = discover(read_sweep(sweep_dir), "dropout_rate", "above", 0.16)  # half the sets: noise around 0.15
    assert d.notes and "no box reaches density" in d.notes[0]
    assert d.chosen().iloc[0]["density"] == d.peeling["density"].max()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--above", "0.3", "--output", "alliance"], "stores no output 'alliance'"),
        (["--above", "1.5"], "outside the range of dropout_rate"),
        (["--above", "nan"], "finite"),
        (["--above", "0.9"], "no parameter set"),
        (["--below", "0.9"], "every parameter set"),
        (["--above", "0.3", "--min-density", "0"], "--min-density"),
        (["--above", "0.3", "--box", "9999"], "--box 9999"),
    ],
)
def test_bad_questions_exit_2_in_one_paragraph(sweep_dir, tmp_path, capsys, args, message):
    assert main(["discover", str(sweep_dir), *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert err.strip().count("\n") == 0, "one paragraph"


def test_a_directory_that_is_not_a_finished_sweep_exits_2(sweep_dir, tmp_path, capsys):
    assert main(["discover", str(tmp_path / "nowhere"), "--above", "0.3"]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(sweep_dir, partial)
    next((partial / "chunks").glob("chunk-*.parquet")).unlink()
    with pytest.raises(ResultsError, match="is not a finished run: 1 of 3 chunks are missing"):
        read_sweep(partial)
    assert main(["discover", str(partial), "--above", "0.3"]) == 2


def test_set_means_average_replicates(sweep_dir):
    sweep = read_sweep(sweep_dir)
    means = sweep.set_means("dropout_rate")
    first = sweep.outputs[sweep.outputs["set"] == 0]["dropout_rate"]
    assert sweep.replicates() == 2 and len(means) == 600
    assert math.isclose(means.iloc[0], first.mean())
