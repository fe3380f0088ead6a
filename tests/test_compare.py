"""Scenarios side by side: tables, common random numbers, direction, Kaplan-Meier band, CLI."""

import numpy as np
import pandas as pd
import pytest

from analysis.compare import CSV_COLUMNS, TABLE_COLUMNS, format_table, retention_curves
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
    csv = pd.read_csv(tmp_path / "compare.csv", keep_default_na=False)
    assert list(csv.columns) == CSV_COLUMNS
    assert "dropout" in result.text() and "paired by replicate" in result.text()


def test_csv_holds_means_in_percent_and_paired_differences_in_percentage_points(result, tmp_path):
    result.save(tmp_path)
    csv = pd.read_csv(tmp_path / "compare.csv").fillna({"reference": ""}).set_index(["metric", "scenario", "reference"])
    raw = result.table.set_index(["metric", "scenario"])
    mean = csv.loc[("dropout_rate", "low_empathy", ""), "mean"]
    assert mean == pytest.approx(100 * raw.loc[("dropout_rate", "low_empathy"), "mean"]), "a share's mean is in %"
    assert csv.loc[("dropout_rate", "low_empathy", ""), "unit"] == "% of clients"
    row = csv.loc[("dropout_rate", "low_empathy", "baseline")]
    rates = result.metrics.pivot(index="replicate", columns="scenario", values="dropout_rate")
    expected = 100 * (rates["low_empathy"] - rates["baseline"]).mean()
    assert row["difference"] == pytest.approx(expected), "the paired difference is in percentage points"
    assert row["unit"] == "percentage points" and row["ci_low"] <= row["difference"] <= row["ci_high"]
    alliance = csv.loc[("mean_alliance", "low_empathy", "baseline")]
    assert alliance["unit"] == "WAI-SR 12-60", "a non-share difference keeps the metric's unit"
    causes = csv[csv.index.get_level_values("metric").str.startswith("dropout_cause:")]
    assert (causes.xs("baseline", level="reference")["unit"] == "percentage points").all()


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
    diff = result.differences.set_index("metric").loc["dropout_rate"]
    assert diff["reference"] == "baseline" and diff["difference"] == pytest.approx(low - base)


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


# ── a class's comparison: six scenarios, a chosen reference, pairs ──────────────────────────────────

SIX = [
    "baseline",
    "low_empathy",
    "cultural_mismatch",
    "cultural_mismatch_humility",
    "repair_unskilled",
    "anxious_breaks",
]


@pytest.fixture(scope="module")
def six():
    return compare(*SIX, clients=100, therapists=5, seed=3, replicates=2)


def test_six_scenarios_print_within_100_columns(six):
    text = six.text()
    wide = [line for line in text.splitlines() if len(line) > 100]
    assert not wide, f"{len(wide)} lines wider than 100 columns, e.g. {wide[0]!r}"
    for name in SIX[1:]:
        assert name.split("_")[0] in text, name
    narrow = format_table(six.table, six.differences, 2, width=60)
    assert max(len(line) for line in narrow.splitlines()) <= 60, "the width is kept for any width asked"


def _overlaps(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]


def test_six_scenarios_figure_labels_never_collide_and_no_panel_has_two_axes(six):
    import matplotlib.pyplot as plt

    fig = six.figure()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.axes) == 6, f"six panels, no twinned axes: {len(fig.axes)} axes"
    for ax in fig.axes:
        assert ax.yaxis.get_label_position() == "left", f"{ax.get_title()!r} has a right-hand axis"
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            clash = _overlaps(boxes)
            assert not clash, f"{ax.get_title()!r}: tick labels collide: {[labels[i].get_text() for i, _ in clash]}"
    names = [t for t in fig.legends[0].get_texts()]
    assert [t.get_text() for t in names] == SIX
    assert not _overlaps([t.get_window_extent(renderer) for t in names]), "scenario legend entries collide"
    cause_panel = fig.axes[4]
    assert [t.get_text() for t in cause_panel.get_yticklabels()] == SIX, "scenario names sit on the bars' axis"
    plt.close(fig)


def test_reference_and_pairs_choose_what_is_compared(six):
    ref = compare(*SIX[:3], clients=60, therapists=3, seed=3, replicates=2, reference="low_empathy")
    assert set(ref.differences["reference"]) == {"low_empathy"}
    assert set(ref.differences["scenario"]) == {"baseline", "cultural_mismatch"}
    pairs = [("cultural_mismatch", "cultural_mismatch_humility"), ("baseline", "low_empathy")]
    paired = compare(*SIX[:4], clients=60, therapists=3, seed=3, replicates=2, pairs=pairs)
    assert paired.pairs == [("cultural_mismatch_humility", "cultural_mismatch"), ("low_empathy", "baseline")]
    humility = paired.differences.set_index(["metric", "scenario"]).loc[("dropout_rate", "cultural_mismatch_humility")]
    wide = paired.metrics.pivot(index="replicate", columns="scenario", values="dropout_rate")
    expected = (wide["cultural_mismatch_humility"] - wide["cultural_mismatch"]).mean()
    assert humility["difference"] == pytest.approx(expected), "humility is compared with mismatch, not baseline"
    assert "minus" in paired.text()
    with pytest.raises(ScenarioError, match="not one of the scenarios compared"):
        compare("baseline", "low_empathy", clients=20, replicates=2, reference="repair_skilled")
    with pytest.raises(ScenarioError, match="paired with itself"):
        compare("baseline", "low_empathy", clients=20, replicates=2, pairs=[("baseline", "baseline")])


def test_cli_compare_reference_and_pair(tmp_path, capsys):
    r = cli("compare", "baseline", "low_empathy", "repair_skilled", "--clients", 60, "--replicates", 2,
            "--reference", "repair_skilled", "--out", tmp_path / "ref", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    csv = pd.read_csv(tmp_path / "ref" / "compare.csv").fillna({"reference": ""})
    assert set(csv.loc[csv["reference"] != "", "reference"]) == {"repair_skilled"}
    assert "difference from repair_skilled" in r.stdout
    r = cli("compare", "baseline", "low_empathy", "--clients", 60, "--replicates", 2,
            "--pair", "low_empathy:baseline", "--out", tmp_path / "pair", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    csv = pd.read_csv(tmp_path / "pair" / "compare.csv").fillna({"reference": ""})
    compared = csv[csv["reference"] != ""]
    assert set(zip(compared["scenario"], compared["reference"], strict=True)) == {("baseline", "low_empathy")}
    from sim.cli import main

    for args, message in (
        (["--pair", "baseline-low_empathy"], "REFERENCE:SCENARIO"),
        (["--reference", "anxious_breaks"], "not one of the scenarios compared"),
    ):
        status = main(["compare", "baseline", "low_empathy", "--clients", "20", "--replicates", "2", *args,
                       "--out", str(tmp_path / "bad")])  # fmt: skip
        err = capsys.readouterr().err
        assert status == 2 and message in err, err
