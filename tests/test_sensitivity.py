"""Sensitivity indices through the runner and analysis, checked on functions with known answers."""

from __future__ import annotations

import dataclasses
import gc
import math
import weakref

import numpy as np
import pandas as pd
import pytest
from SALib.test_functions import Ishigami

from analysis import sensitivity, sensitivity_figures
from analysis.__main__ import main as analysis_main
from analysis.sensitivity import FAST_NOTE, analysis_seed, replicate_means
from experiments import ExperimentSpec, Factor, run_experiment
from experiments.spec import OPTIONS, from_dict

# Ishigami & Homma (1990) with a = 7, b = 0.1: analytic first-order and total indices.
ISHIGAMI_S1 = {"x1": 0.3139, "x2": 0.4424, "x3": 0.0}
ISHIGAMI_ST = {"x1": 0.5576, "x2": 0.4424, "x3": 0.2437}
ISHIGAMI_S13 = 0.2437


def ishigami(param_sets, n_clients, n_therapists, seed, replicate):
    """The runner's evaluator signature, with the model swapped for the Ishigami function."""
    X = np.array([[p["x1"], p["x2"], p["x3"]] for p in param_sets])
    return {"y": Ishigami.evaluate(X)}


def linear(param_sets, n_clients, n_therapists, seed, replicate):
    """y = 2 x1 + x2."""
    return {"y": np.array([2 * p["x1"] + p["x2"] for p in param_sets])}


def noisy_linear(param_sets, n_clients, n_therapists, seed, replicate):
    """y = 2 x1 + x2 + noise with sd 0.5 that depends only on (seed, replicate, x): chunk-invariant."""
    x = np.array([[p["x1"], p["x2"]] for p in param_sets])
    noise = [np.random.default_rng([seed, replicate, int(a * 1e9), int(b * 1e9)]).normal(0, 0.5) for a, b in x]
    return {"y": 2 * x[:, 0] + x[:, 1] + np.asarray(noise)}


def spec_for(method, N, factors, options=None, replicates=1, chunk_size=500):
    return ExperimentSpec(
        name=f"test_{method}",
        method=method,
        factors=tuple(factors),
        outputs=("y",),
        N=N,
        replicates=replicates,
        clients=1,
        therapists=1,
        seed=20261122,
        chunk_size=chunk_size,
        options={**OPTIONS[method], **(options or {})},
    )


PI_FACTORS = [Factor(f"x{i}", low=-math.pi, high=math.pi) for i in (1, 2, 3)]


def run(tmp_path, spec, evaluator=ishigami) -> pd.DataFrame:
    run_experiment(spec, tmp_path / spec.name, "serial", evaluator=evaluator, progress=False)
    return pd.read_csv(tmp_path / spec.name / "indices.csv")


def test_sobol_recovers_the_ishigami_indices(tmp_path):
    spec = spec_for("sobol", 2048, PI_FACTORS, {"num_resamples": 200})
    table = run(tmp_path, spec)
    single = table[table["parameter_2"].isna()].set_index("parameter")
    for name in ISHIGAMI_S1:
        assert single.loc[name, "S1"] == pytest.approx(ISHIGAMI_S1[name], abs=0.05), f"S1 of {name}"
        assert single.loc[name, "ST"] == pytest.approx(ISHIGAMI_ST[name], abs=0.05), f"ST of {name}"
        assert 0 < single.loc[name, "S1_conf"] < 0.1, f"S1 interval of {name}"
    pairs = table[table["parameter_2"].notna()].set_index(["parameter", "parameter_2"])
    assert pairs.loc[("x1", "x3"), "S2"] == pytest.approx(ISHIGAMI_S13, abs=0.08)
    assert abs(pairs.loc[("x1", "x2"), "S2"]) < 0.08
    assert (tmp_path / spec.name / "figures" / "sobol_y.png").is_file()
    assert (tmp_path / spec.name / "figures" / "sobol_y.svg").is_file()


@pytest.mark.parametrize(("method", "N"), [("fast", 1024), ("rbd_fast", 2048)])
def test_other_methods_recover_ishigami_first_order(tmp_path, method, N):
    table = run(tmp_path, spec_for(method, N, PI_FACTORS, {"num_resamples": 20})).set_index("parameter")
    for name, s1 in ISHIGAMI_S1.items():
        assert table.loc[name, "S1"] == pytest.approx(s1, abs=0.08), f"{method} S1 of {name}"


def test_delta_runs_and_separates_influential_factors(tmp_path):
    # The delta method's S1 estimator is rough at small N; check what it reliably shows.
    table = run(tmp_path, spec_for("delta", 512, PI_FACTORS, {"num_resamples": 10})).set_index("parameter")
    assert (table["delta"] > 0.05).all() and (table["delta_conf"] > 0).all()
    assert table.loc["x3", "S1"] < 0.05 < min(table.loc["x1", "S1"], table.loc["x2", "S1"])


def test_morris_ranks_ishigami_factors(tmp_path):
    table = run(tmp_path, spec_for("morris", 50, PI_FACTORS, {"num_resamples": 100})).set_index("parameter")
    assert table["mu_star"].idxmax() == "x1", "x1 has the largest effect"
    assert table.loc["x3", "sigma"] > table.loc["x3", "mu"], "x3 acts only through its interaction with x1"
    assert (table["mu_star_conf"] > 0).all()
    assert (tmp_path / "test_morris" / "figures" / "morris_y.png").is_file()


def test_grid_main_effects_of_an_additive_function(tmp_path):
    factors = [Factor("x1", levels=(0.0, 0.5, 1.0)), Factor("x2", levels=(0.0, 0.5, 1.0))]
    table = run(tmp_path, spec_for("grid", None, factors), linear).set_index("parameter")
    # Var(2 x1) / Var(2 x1 + x2) = 4 / 5 and 1 / 5 on this grid.
    assert table.loc["x1", "S1"] == pytest.approx(0.8)
    assert table.loc["x2", "S1"] == pytest.approx(0.2)
    assert table.loc["x1", "effect_range"] == pytest.approx(2.0)
    assert (tmp_path / "test_grid" / "figures" / "grid_y.png").is_file()


def test_replicate_noise_is_reported_beside_the_indices(tmp_path):
    factors = [Factor("x1"), Factor("x2")]
    table = run(tmp_path, spec_for("sobol", 256, factors, {"num_resamples": 50}, replicates=4), noisy_linear)
    row = table.iloc[0]
    assert row["replicates"] == 4
    assert row["replicate_sd"] == pytest.approx(0.5, rel=0.1), "noise sd is 0.5"
    # Var(2 x1 + x2) = 5 / 12 for uniform x; noise in a 4-replicate mean: 0.25 / 4.
    expected = (0.25 / 4) / (5 / 12 + 0.25 / 4)
    assert row["noise_share"] == pytest.approx(expected, abs=0.05)


def test_replicate_means_without_replicates():
    outputs = pd.DataFrame({"set": [0, 1, 2], "replicate": [0, 0, 0], "y": [1.0, 2.0, 4.0]})
    means, noise = replicate_means(outputs, "y", 3)
    assert means.tolist() == [1.0, 2.0, 4.0]
    assert noise["replicates"] == 1 and np.isnan(noise["noise_share"])


def test_analysis_seed_is_never_zero():
    assert all(analysis_seed(s) > 0 for s in range(200))
    assert analysis_seed(5) == analysis_seed(5)


def test_analysis_cli_remakes_indices_and_figures(tmp_path, capsys):
    spec = spec_for("sobol", 64, PI_FACTORS, {"num_resamples": 20})
    out = tmp_path / spec.name
    first = run(tmp_path, spec)
    (out / "indices.csv").unlink()
    for path in (out / "figures").iterdir():
        path.unlink()
    assert analysis_main(["sensitivity", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "indices.csv"), first)
    assert {p.name for p in (out / "figures").iterdir()} >= {"histograms.png", "histograms.svg", "sobol_y.png"}


def test_analysis_of_an_incomplete_directory_says_how_to_finish(tmp_path, capsys):
    spec = spec_for("sobol", 64, PI_FACTORS, chunk_size=100)
    out = tmp_path / spec.name
    run_experiment(spec, out, "serial", evaluator=ishigami, progress=False, analyse=False)
    (out / "chunks" / "chunk-00001.parquet").unlink()
    assert analysis_main(["sensitivity", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 of 6 chunks are missing" in err and "python -m experiments run" in err


# ── the real engine through every method the Ishigami tests above do not reach ─────────────────

REAL_OUTPUTS = ["dropout_rate", "mean_alliance"]  # both vary with empathy and rupture rate at 50 clients
COMMON = ["output", "method", "parameter", "replicates", "replicate_sd", "noise_share", "nan_sets"]
REAL = {
    # method: (spec settings, index columns that must be finite)
    "oat": (
        {
            "replicates": 2,
            "parameters": {
                "therapist_empathy_mean": {"levels": [0.2, 0.8]},
                "rupture_rate": {"low": 0.02, "high": 0.2, "steps": 3},
            },
        },
        ["effect_range", "min", "max", "base", "replicate_sd"],
    ),
    "fast": ({"N": 65, "options": {"num_resamples": 20}}, ["S1", "S1_conf", "ST", "ST_conf"]),
    "rbd_fast": ({"N": 32, "options": {"num_resamples": 20}}, ["S1", "S1_conf"]),
    "delta": (
        {"N": 64, "options": {"num_resamples": 10}},
        ["delta", "delta_conf", "delta_raw", "delta_raw_conf", "S1", "S1_conf"],
    ),
}
SAMPLED_FACTORS = {"therapist_empathy_mean": {"low": 0.2, "high": 0.9}, "rupture_rate": {"low": 0.02, "high": 0.2}}


@pytest.mark.parametrize("method", list(REAL))
def test_method_runs_end_to_end_on_the_real_engine(tmp_path, capsys, method):
    settings, columns = REAL[method]
    data = {"name": f"real_{method}", "method": method, "outputs": REAL_OUTPUTS, "clients": 50, "therapists": 5}
    data |= {"seed": 3, "parameters": SAMPLED_FACTORS} | settings
    spec = from_dict(data, f"<{method} test spec>")
    out = tmp_path / spec.name
    run_experiment(spec, out, "serial", progress=False)  # the default evaluator: sim.run.run_batch
    table = pd.read_csv(out / "indices.csv")
    assert list(table.columns) == COMMON[:3] + [c for c in columns if c not in COMMON] + COMMON[3:] + ["note"], (
        f"{method}: columns of indices.csv"
    )
    assert sorted(table["output"].unique()) == sorted(REAL_OUTPUTS)
    for output in REAL_OUTPUTS:
        rows = table[table["output"] == output]
        assert sorted(rows["parameter"]) == sorted(SAMPLED_FACTORS), f"{method}: a row per parameter for {output}"
        for col in columns:
            assert np.isfinite(rows[col]).all(), f"{method}: {col} of {output} should be finite: {rows[col].tolist()}"
    if method == "oat":
        assert (table["min"] <= table["base"]).all() and (table["base"] <= table["max"]).all(), "base within range"
        # indices.csv keeps 6 significant digits; mean_alliance is about 40, so differences agree to 1e-3.
        np.testing.assert_allclose(
            table["effect_range"], table["max"] - table["min"], atol=1e-3, err_msg="range = max - min"
        )
    if method == "fast":
        assert table["S1"].between(0, 1).all() and table["ST"].between(0, 1).all(), "FAST indices are shares"
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in ["histograms", *(f"{method}_{o}" for o in REAL_OUTPUTS)]:
        for ext in ("png", "svg"):
            assert f"{stem}.{ext}" in figures, f"{method}: figure {stem}.{ext} missing from {sorted(figures)}"
    captured = capsys.readouterr()
    assert "Bin Merge Notice" not in captured.out + captured.err, "SALib's delta binning notices are noise"
    assert captured.out == "", f"the analysis prints nothing to stdout: {captured.out!r}"
    assert captured.err.count(FAST_NOTE) == (1 if method == "fast" else 0), "FAST's interval caveat once per analysis"


def linear_and_constant(param_sets, n_clients, n_therapists, seed, replicate):
    """y = 2 x1 + x2, and an output that is 0.25 whatever the parameters."""
    y = np.array([2 * p["x1"] + p["x2"] for p in param_sets])
    return {"y": y, "flat": np.full(len(y), 0.25)}


@pytest.mark.parametrize(("method", "N"), [("sobol", 64), ("fast", 65), ("rbd_fast", 64), ("delta", 64)])
def test_constant_output_has_undefined_indices_and_a_warning(tmp_path, capsys, method, N):
    factors = [Factor("x1"), Factor("x2")]
    spec = dataclasses.replace(spec_for(method, N, factors, {"num_resamples": 10}), outputs=("y", "flat"))
    table = run(tmp_path, spec, linear_and_constant)
    err = capsys.readouterr().err
    index_columns = [c for c in table.columns if c.startswith(("S1", "ST", "S2", "delta"))]
    flat, varying = table[table["output"] == "flat"], table[table["output"] == "y"]
    assert len(flat) == len(varying), f"{method}: a constant output keeps its rows (parameters and pairs)"
    assert flat[index_columns].isna().all().all(), f"{method}: a constant output's indices should be NaN: {flat}"
    single = varying[varying["parameter_2"].isna()] if "parameter_2" in varying else varying
    assert single[["S1", "S1_conf"]].notna().all().all(), f"{method}: the varying output keeps its indices"
    lines = [line for line in err.splitlines() if "flat" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: flat is 0.25 in every parameter set"), err
    assert "no variance to apportion" in lines[0]
    assert err.count(FAST_NOTE) == (1 if method == "fast" else 0), f"{method}: FAST's caveat once, two outputs: {err}"


def undefined_and_narrow(param_sets, n_clients, n_therapists, seed, replicate):
    """y = 2 x1 + x2; ``none`` has no value anywhere; ``narrow`` differs only in its last bits (one float apart)."""
    y = np.array([2 * p["x1"] + p["x2"] for p in param_sets])
    narrow = np.where(np.arange(len(y)) % 2, np.nextafter(0.3, 1.0), 0.3)
    return {"y": y, "none": np.full(len(y), np.nan), "narrow": narrow}


@pytest.mark.parametrize(
    ("method", "N", "extra"),
    [
        ("sobol", 16, {}),
        ("morris", 8, {}),
        ("fast", 65, {}),
        ("rbd_fast", 64, {}),
        ("delta", 64, {}),
        ("grid", None, {"levels": (0.1, 0.5, 0.9)}),
        ("oat", None, {"levels": (0.1, 0.9)}),
    ],
)
def test_an_output_without_any_value_gets_empty_indices_and_a_warning(tmp_path, capsys, method, N, extra):
    """The audit's KeyError 'S1' (morris: 'mu_star') and the histogram's 'Too many bins'."""
    factors = [Factor("x1", **extra), Factor("x2", **extra)]
    options = {"num_resamples": 10} if method != "grid" and method != "oat" else {}
    spec = dataclasses.replace(
        spec_for(method, N, factors, options), outputs=("y", "none", "narrow"), base={"x1": 0.5, "x2": 0.5}
    )
    table = run(tmp_path, spec, undefined_and_narrow)
    err = capsys.readouterr().err
    none = table[table["output"] == "none"]
    index_columns = [c for c in table.columns if c not in ("output", "method", "parameter", "parameter_2")]
    index_columns = [c for c in index_columns if c not in ("replicates", "replicate_sd", "noise_share", "nan_sets")]
    assert len(none) == len(table[table["output"] == "y"]), "the undefined output keeps a row per parameter"
    assert none[index_columns].isna().all().all(), f"{method}: empty indices for an output with no value: {none}"
    assert f"warning: none has no value in any of the {len(sample_sets(tmp_path, spec))} parameter sets" in err, err
    assert "Traceback" not in err
    assert (tmp_path / spec.name / "figures" / "histograms.png").is_file()


def sample_sets(tmp_path, spec) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / spec.name / "sample.parquet")


def test_the_audits_repair_share_case_on_the_real_engine(tmp_path, capsys):
    """No rupture can happen, so repair_share is undefined in every set: empty indices and the reason."""
    spec = from_dict(
        {
            "method": "morris",
            "N": 2,
            "outputs": ["repair_share", "dropout_rate"],
            "clients": 2,
            "therapists": 1,
            "fixed": {"rupture_rate": 0.0},
            "parameters": {"therapist_empathy_mean": {}, "bond_rate": {}},
        },
        "<repair share>",
    )
    out = tmp_path / "repair"
    run_experiment(spec, out, "serial", progress=False)
    err = capsys.readouterr().err
    assert "repair_share has no value in any of the" in err and "(no rupture happened)" in err, err
    table = pd.read_csv(out / "indices.csv")
    assert table.loc[table["output"] == "repair_share", "mu_star"].isna().all()
    assert analysis_main(["sensitivity", str(out)]) == 0, "the analysis command gives the same"


def test_the_runs_tables_are_let_go_of_before_the_figures_draw(tmp_path, monkeypatch):
    """The figures are the analysis's peak of memory; the sample and outputs, which grow with N, are gone by then."""
    spec = spec_for("sobol", 64, PI_FACTORS, {"num_resamples": 20})
    run_experiment(spec, tmp_path / spec.name, "serial", evaluator=ishigami, progress=False, analyse=False)
    read, tables, alive = sensitivity.load, [], []

    def load(out):
        manifest, sample, outputs = read(out)
        tables.extend(weakref.ref(t) for t in (sample, outputs))
        return manifest, sample, outputs

    def render(figures, out, pool=None):
        gc.collect()
        alive.extend(t() is not None for t in tables)
        return draw(figures, out, pool)

    draw = sensitivity_figures.render
    monkeypatch.setattr(sensitivity, "load", load)
    monkeypatch.setattr(sensitivity_figures, "render", render)
    sensitivity.analyse_dir(tmp_path / spec.name)
    assert alive == [False, False], "the sample and the outputs should be freed before the figures are drawn"
