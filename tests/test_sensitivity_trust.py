"""Sensitivity you can trust: convergence over N, --extend, estimation and degeneracy warnings, S2 heatmaps,
analysis options and stale figures."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main as analysis_main
from analysis.sensitivity_checks import ABOVE_TOTAL, NEGATIVE, degenerate_worlds, estimation_notes
from experiments import Factor, load_spec, run_experiment
from experiments.cli import main as experiments_main
from experiments.sampling import sample
from experiments.spec import with_n
from experiments.store import read_manifest
from tests.test_experiments import write_spec
from tests.test_sensitivity import PI_FACTORS, ishigami, spec_for


def ishigami_two(param_sets, n_clients, n_therapists, seed, replicate):
    """Two outputs: the Ishigami function and its first term alone."""
    y = ishigami(param_sets, n_clients, n_therapists, seed, replicate)["y"]
    return {"y": y, "z": np.array([math.sin(p["x1"]) for p in param_sets])}


def degenerate_when_x1_is_high(param_sets, n_clients, n_therapists, seed, replicate):
    """A stand-in dropout rate: above 0.9 where x1 is in the top 20% of its range."""
    x1 = np.array([p["x1"] for p in param_sets])
    return {"dropout_rate": np.where(x1 > 0.8, 0.95, 0.2 + 0.1 * x1), "y": x1}


def test_sobol_samples_nest(tmp_path):
    spec = spec_for("sobol", 64, PI_FACTORS)
    small = sample(with_n(spec, 16))
    pd.testing.assert_frame_equal(sample(spec).iloc[: len(small)], small, obj="the first sets of N = 64")


def test_convergence_at_smaller_n_equals_a_run_of_that_n(tmp_path):
    big = spec_for("sobol", 64, PI_FACTORS, {"num_resamples": 50})
    run_experiment(big, tmp_path / "big", "serial", evaluator=ishigami, progress=False)
    small = spec_for("sobol", 16, PI_FACTORS, {"num_resamples": 50})
    run_experiment(small, tmp_path / "small", "serial", evaluator=ishigami, progress=False)
    convergence = pd.read_csv(tmp_path / "big" / "convergence.csv")
    assert sorted(convergence["N"].unique()) == [16, 32, 64]
    indices = pd.read_csv(tmp_path / "big" / "indices.csv")
    at_n = convergence[convergence["N"] == 64].set_index("parameter")
    single = indices[indices["parameter_2"].isna()].set_index("parameter")
    for column in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_allclose(at_n[column], single.loc[at_n.index, column], err_msg=f"{column} at N")
    # At N/4, the same estimator and bootstrap on the first sets: the indices of a run of N = 16 from scratch.
    quarter = convergence[convergence["N"] == 16].set_index("parameter")
    alone = pd.read_csv(tmp_path / "small" / "indices.csv")
    alone = alone[alone["parameter_2"].isna()].set_index("parameter")
    for column in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_allclose(quarter[column], alone.loc[quarter.index, column], rtol=1e-5, err_msg=column)
    assert (tmp_path / "big" / "figures" / "convergence_y.png").is_file()
    assert (tmp_path / "big" / "figures" / "sobol_s2_y.svg").is_file()


def test_no_s2_heatmap_without_second_order(tmp_path):
    spec = spec_for("sobol", 32, PI_FACTORS, {"num_resamples": 20, "calc_second_order": False})
    run_experiment(spec, tmp_path / "first", "serial", evaluator=ishigami, progress=False)
    figures = {p.name for p in (tmp_path / "first" / "figures").iterdir()}
    assert "sobol_y.png" in figures and "convergence_y.png" in figures
    assert not any(name.startswith("sobol_s2_") for name in figures)


EXTEND = """
method = "sobol"
outputs = ["dropout_rate", "mean_alliance", "retention_8"]
N = 8
replicates = 2
clients = 30
therapists = 3
seed = 9
chunk_size = 12

[options]
num_resamples = 30

[store]
retention = true
curves = true

[parameters.therapist_empathy_mean]
low = 0.2
high = 0.9
[parameters.rupture_rate]
low = 0.02
high = 0.2
[parameters.matching_policy]
"""


def test_extend_gives_the_runs_and_indices_of_the_larger_n_from_scratch(tmp_path, capsys, monkeypatch):
    # Every timestamp a second after the last: the extension's note must not hang on the clock (it
    # was lost whenever a second ticked between recording the extension and starting the session).
    from experiments import store

    seconds = iter(range(10**6))
    monkeypatch.setattr(store, "now", lambda: f"2026-12-03T{next(seconds):09d}")
    path = write_spec(tmp_path, EXTEND, "ext.toml")
    extended, fresh = tmp_path / "extended", tmp_path / "fresh"
    assert experiments_main(["run", str(path), "--out", str(extended), "--executor", "serial", "--no-progress"]) == 0
    args = ["run", str(path), "--out", str(extended), "--executor", "serial", "--no-progress", "--extend", "16"]
    assert experiments_main(args) == 0
    assert "extended from N = 8 to N = 16: 5 chunks kept" in capsys.readouterr().out
    bigger = write_spec(tmp_path, EXTEND.replace("N = 8", "N = 16"), "big.toml")
    assert experiments_main(["run", str(bigger), "--out", str(fresh), "--executor", "serial", "--no-progress"]) == 0
    for name in ("indices.csv", "convergence.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(extended / name), pd.read_csv(fresh / name), obj=name)
    for folder in ("chunks", "curves"):
        pd.testing.assert_frame_equal(pd.read_parquet(extended / folder), pd.read_parquet(fresh / folder))
    manifest = read_manifest(extended)
    assert manifest["spec_hash"] == read_manifest(fresh)["spec_hash"] and manifest["n_sets"] == 16 * (2 * 3 + 2)
    expected = {"from_N": 8, "to_N": 16, "at": None, "kept_chunks": 5, "session": 1}
    assert manifest["extended"][-1] | {"at": None} == expected, "the extension is the second session's"


def test_an_extended_run_resumes_rebuilds_and_refuses_clearly(tmp_path, capsys):
    path = write_spec(tmp_path, EXTEND, "ext.toml")
    out = tmp_path / "out"
    spec = load_spec(path)
    run_experiment(spec, out, "serial", progress=False, analyse=False)
    run_experiment(with_n(spec, 16), out, "serial", progress=False, analyse=False, extend=True)
    before = pd.read_parquet(out / "chunks")
    # Every kept chunk carries the new hash, so a lost manifest is rebuilt from all of them.
    (out / "manifest.json").unlink()
    manifest = run_experiment(with_n(spec, 16), out, "serial", progress=False, analyse=False)
    assert manifest["sessions"][-1]["chunks_run"] == 0, "nothing runs again after the manifest is rebuilt"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "chunks"), before)
    capsys.readouterr()
    # The spec file still says N = 8: running it into the extended directory says how to go on.
    assert experiments_main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "It holds N = 16: give --extend 16" in capsys.readouterr().err
    assert experiments_main(["run", str(path), "--out", str(out), "--no-progress", "--extend", "12"]) == 2
    assert "must be a power of 2" in capsys.readouterr().err
    assert experiments_main(["run", str(path), "--out", str(tmp_path / "none"), "--extend", "16"]) == 2
    assert "holds no run to extend" in capsys.readouterr().err
    morris = write_spec(
        tmp_path, "method = 'morris'\nN = 4\n[parameters.bond_rate]\n[parameters.rupture_rate]\n", "m.toml"
    )
    assert experiments_main(["run", str(morris), "--out", str(tmp_path / "m"), "--extend", "8"]) == 2
    assert "only sobol samples nest" in capsys.readouterr().err
    bigger = write_spec(tmp_path, EXTEND.replace("N = 8", "N = 32"), "big.toml")
    assert experiments_main(["run", str(bigger), "--out", str(out), "--no-progress"]) == 2
    assert "give --extend 32" in capsys.readouterr().err


def test_estimation_notes_flag_indices_beyond_their_bounds():
    table = pd.DataFrame(
        {
            "output": ["y"] * 4,
            "parameter": ["a", "b", "c", "a"],
            "parameter_2": [np.nan, np.nan, np.nan, "b"],
            "S1": [0.50, -0.20, 0.1, np.nan],
            "S1_conf": [0.02, 0.05, 0.3, np.nan],
            "ST": [0.30, 0.10, -0.1, np.nan],
            "ST_conf": [0.02, 0.05, 0.3, np.nan],
            "S2": [np.nan, np.nan, np.nan, -0.3],
            "S2_conf": [np.nan, np.nan, np.nan, 0.1],
        }
    )
    messages = estimation_notes(table, "sobol", 0.95, 64)
    assert table["note"].tolist() == [ABOVE_TOTAL, NEGATIVE, "", NEGATIVE], "within its interval, c is not flagged"
    assert len(messages) == 2 and all("--extend 128" in m for m in messages)
    assert "2 of 7 sobol indices are below 0" in messages[0] and "S2 a x b = -0.300" in messages[0]
    assert "S1 exceeds ST" in messages[1] and "a: S1 = 0.500" in messages[1]


def test_a_share_of_degenerate_worlds_is_warned_with_the_factors_that_lead_there(tmp_path, capsys):
    factors = [Factor("x1"), Factor("x2")]
    spec = spec_for("sobol", 64, factors, {"num_resamples": 20})
    run_experiment(spec, tmp_path / "deg", "serial", evaluator=degenerate_when_x1_is_high, progress=False)
    err = capsys.readouterr().err
    assert "dropout_rate is above 0.9 in" in err and "narrow the ranges of x1 (high end)" in err, err
    record = json.loads((tmp_path / "deg" / "analysis.json").read_text())
    found = record["degenerate"]["dropout_rate"]
    assert found["share"] == pytest.approx(0.2, abs=0.05) and list(found["factors"]) == ["x1"]
    assert any("dropout_rate is above 0.9" in w for w in record["warnings"])


def test_degenerate_worlds_are_rare_in_the_shipped_ranges():
    """The shipped Morris and Sobol ranges: few worlds where nearly every client drops out (issue 14)."""
    from experiments.sampling import sample as draw
    from sim.run import batch_metrics

    for name, share in (("morris_screening", 0.02), ("sobol_dropout", 0.01)):
        spec = load_spec(name)
        spec = with_n(spec, 8) if spec.method == "sobol" else dataclasses.replace(spec, N=6)
        drawn = draw(spec)
        names = [f.name for f in spec.factors]
        sets = [{**spec.base, **dict(zip(names, row, strict=True))} for row in drawn[names].itertuples(index=False)]
        dropout = batch_metrics(sets, 200, 10, spec.seed, 0)["dropout_rate"]
        outputs = pd.DataFrame({"set": range(len(sets)), "replicate": 0, "dropout_rate": dropout})
        manifest = {"problem": {"names": [f.name for f in spec.factors]}, "n_sets": len(sets)}
        found, _ = degenerate_worlds(manifest, drawn, outputs)
        assert found["dropout_rate"]["share"] <= share, f"{name}: {found['dropout_rate']}"


def test_analysis_options_and_stale_figures(tmp_path, capsys):
    spec = spec_for("sobol", 32, PI_FACTORS, {"num_resamples": 20})
    spec = dataclasses.replace(spec, outputs=("y", "z"))
    out = tmp_path / "opts"
    run_experiment(spec, out, "serial", evaluator=ishigami_two, progress=False)
    (out / "figures" / "my_notes.png").write_bytes(b"not ours")
    before = pd.read_csv(out / "indices.csv")
    assert analysis_main(["sensitivity", str(out), "--outputs", "y", "--resamples", "40", "--conf-level", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "removed 6" in printed, printed  # sobol_z, sobol_s2_z, convergence_z: PNG and SVG
    figures = {p.name for p in (out / "figures").iterdir()}
    assert not any("_z." in name for name in figures), "figures of an output no longer analysed are removed"
    assert {"sobol_y.png", "my_notes.png", "histograms.svg"} <= figures, "the analysis's own and the user's stay"
    after = pd.read_csv(out / "indices.csv")
    assert set(after["output"]) == {"y"}
    narrower = after.set_index(["parameter", "parameter_2"])["S1_conf"].dropna()
    wider = before[before["output"] == "y"].set_index(["parameter", "parameter_2"])["S1_conf"].dropna()
    assert (narrower < wider).all(), "a 50% interval is narrower than a 95% one"
    record = json.loads((out / "analysis.json").read_text())
    assert record["outputs"] == ["y"] and record["options"]["num_resamples"] == 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--outputs", "w"], "stored no output w; the runs stored: y, z"),
        (["--conf-level", "1.5"], "--conf-level 1.5 must lie strictly between 0 and 1"),
        (["--resamples", "1"], "must be at least 2"),
    ],
)
def test_bad_analysis_options_exit_2(tmp_path, capsys, args, message):
    spec = spec_for("sobol", 8, PI_FACTORS, {"num_resamples": 10})
    spec = dataclasses.replace(spec, outputs=("y", "z"))
    run_experiment(spec, tmp_path / "o", "serial", evaluator=ishigami_two, progress=False, analyse=False)
    try:
        status = analysis_main(["sensitivity", str(tmp_path / "o"), *args])
    except SystemExit as done:  # argparse refuses what its argument types refuse
        status = done.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_resamples_are_refused_for_a_method_without_bootstrap(tmp_path, capsys):
    factors = [Factor("x1", levels=(0.0, 1.0)), Factor("x2", levels=(0.0, 1.0))]
    spec = spec_for("grid", None, factors)
    from tests.test_sensitivity import linear

    run_experiment(spec, tmp_path / "g", "serial", evaluator=linear, progress=False)
    assert analysis_main(["sensitivity", str(tmp_path / "g"), "--resamples", "50"]) == 2
    assert "--resamples is not used by method grid" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "g")


def four_outputs(param_sets, n_clients, n_therapists, seed, replicate):
    """Four smooth functions of three inputs: enough figures for the analysis to draw them in workers."""
    x = np.array([[p["x1"], p["x2"], p["x3"]] for p in param_sets])
    return {f"y{k}": np.sin(x[:, 0]) + k * x[:, 1] ** 2 + 0.1 * k * x[:, 0] * x[:, 2] for k in range(4)}


def test_figures_drawn_in_workers_are_the_same_bytes(tmp_path):
    from analysis.sensitivity import analyse_dir
    from analysis.sensitivity_figures import PARALLEL_FROM

    spec = dataclasses.replace(
        spec_for("sobol", 16, PI_FACTORS, {"num_resamples": 10}), outputs=("y0", "y1", "y2", "y3")
    )
    run_experiment(spec, tmp_path / "a", "serial", evaluator=four_outputs, progress=False, analyse=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    serial = analyse_dir(tmp_path / "a", workers=1)["figures"]
    parallel = analyse_dir(tmp_path / "b", workers=2)["figures"]
    assert len(serial) >= 2 * PARALLEL_FROM, "enough figures to be drawn in workers"
    assert [p.name for p in serial] == [p.name for p in parallel]
    for a, b in zip(serial, parallel, strict=True):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs when drawn in a worker"


def test_a_flag_chance_explains_is_noted_but_not_warned():
    """Among 66 S2 pairs of true value 0, one or two fall below their 95% interval by chance alone."""
    k = 66
    table = pd.DataFrame(
        {
            "output": ["y"] * k,
            "parameter": [f"a{i}" for i in range(k)],
            "parameter_2": [f"b{i}" for i in range(k)],
            "S2": [-0.05] + [0.0] * (k - 1),
            "S2_conf": [0.02] * k,
        }
    )
    assert estimation_notes(table, "sobol", 0.95, 1024) == [], "one flag in 66 is what chance gives"
    assert table["note"].tolist()[:2] == [NEGATIVE, ""], "the row is still marked in indices.csv"
    table.loc[:5, "S2"] = -0.05
    assert len(estimation_notes(table, "sobol", 0.95, 1024)) == 1, "six in 66 is more than chance gives"
