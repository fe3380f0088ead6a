"""Scenarios side by side: tables, common random numbers, direction, Kaplan-Meier band, CLI."""

import numpy as np
import pandas as pd
import pytest

from analysis.compare import TABLE_COLUMNS, paired_differences, retention_curves
from sim import compare
from sim.outcomes import METRICS
from sim.scenario import ScenarioError
from tests.test_cli import cli

SETTINGS = {"clients": 300, "therapists": 15, "seed": 5}


@pytest.fixture(scope="module")
def result():
    return compare("baseline", "low_empathy", replicates=3, **SETTINGS)


def test_table_has_every_metric_for_every_scenario(result):
    table = result.table
    assert list(table.columns) == TABLE_COLUMNS
    assert set(table["scenario"]) == {"baseline", "low_empathy"}
    assert {m.name for m in METRICS} <= set(table["metric"])
    assert table["metric"].str.startswith("dropout_cause:").any()
    rates = table[table["metric"] == "dropout_rate"]
    assert (rates["ci_low"] <= rates["mean"]).all() and (rates["mean"] <= rates["ci_high"]).all()
    assert result.settings == {**SETTINGS, "replicates": 3}
    assert sorted(result.clients["replicate"].unique()) == [0, 1, 2]


def test_save_writes_csv_and_figure(result, tmp_path):
    paths = result.save(tmp_path)
    assert {p.name for p in paths} == {"compare.csv", "compare.png", "compare.svg"}
    assert all(p.stat().st_size > 0 for p in paths)
    csv = pd.read_csv(tmp_path / "compare.csv")
    assert list(csv.columns) == TABLE_COLUMNS
    assert "dropout" in result.text() and "paired by replicate" in result.text()


def test_common_random_numbers_same_seed_same_tables():
    a = compare("baseline", "low_empathy", clients=120, therapists=8, seed=2, replicates=2)
    b = compare("baseline", "low_empathy", clients=120, therapists=8, seed=2, replicates=2)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.clients, b.clients)
    alone = compare("baseline", clients=120, therapists=8, seed=2, replicates=2)
    in_batch = a.metrics[a.metrics["scenario"] == "baseline"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        alone.metrics.drop(columns="scenario"), in_batch.drop(columns="scenario"), obj="baseline alone vs in a batch"
    )


def test_low_empathy_raises_dropout(result):
    rates = result.metrics.pivot(index="replicate", columns="scenario", values="dropout_rate")
    low, base = rates["low_empathy"].mean(), rates["baseline"].mean()
    assert low > base, f"lower therapist empathy should raise dropout: baseline {base:.3f}, low_empathy {low:.3f}"
    diff = paired_differences(result.metrics, "baseline").set_index("metric").loc["dropout_rate"]
    assert diff["mean"] == pytest.approx(low - base)


def test_kaplan_meier_band_contains_curve(result):
    curves = retention_curves(result.clients)
    ok = curves[["ci_low", "ci_high"]].notna().all(axis=1)
    assert ok.mean() > 0.9
    c = curves[ok]
    assert (c["ci_low"] <= c["survival"] + 1e-12).all() and (c["survival"] <= c["ci_high"] + 1e-12).all()
    for _, curve in curves.groupby("scenario"):
        assert np.all(np.diff(curve["survival"]) <= 0), "retention can only fall"
    dropped = (result.clients["end_type"] == "dropout").groupby(result.clients["scenario"], observed=True).mean()
    final = curves.groupby("scenario")["survival"].last()
    assert (final <= 1 - dropped + 1e-9).all(), "censoring completers keeps KM retention at or below the raw share"


def test_bad_arguments_are_user_errors():
    with pytest.raises(ScenarioError, match="twice"):
        compare("baseline", "baseline", clients=10)
    with pytest.raises(ScenarioError, match="at least one"):
        compare()


def test_cli_compare_writes_outputs(tmp_path):
    r = cli("compare", "baseline", "low_empathy", "--clients", 100, "--replicates", 2, "--seed", 1,
            "--out", tmp_path / "out", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for name in ("compare.csv", "compare.png", "compare.svg"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    assert "dropout" in r.stdout and "low_empathy" in r.stdout


def test_cli_compare_bad_input_exits_2(tmp_path):
    r = cli("compare", "baseline", "baseline", "--out", tmp_path, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "twice" in r.stderr


def test_cli_compare_one_replicate_is_refused_not_a_traceback(tmp_path):
    r = cli("compare", "baseline", "low_empathy", "--replicates", 1, "--out", tmp_path, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "2 or more" in r.stderr, r.stderr


def test_intervals_stay_within_what_a_metric_can_take():
    result = compare("baseline", "low_empathy", clients=60, therapists=3, seed=5, replicates=2)
    table = result.table
    shares = table[table["metric"].str.startswith("dropout_cause:") | table["metric"].str.endswith("_rate")]
    assert (shares["ci_low"] >= 0).all() and (shares["ci_high"] <= 1).all(), "a share's interval left [0, 1]"
    alliance = table[table["metric"] == "mean_alliance"]
    assert (alliance["ci_low"] >= 12).all() and (alliance["ci_high"] <= 60).all(), "WAI-SR interval left 12-60"
