"""make validate: facts wired to the estimators, the CSV contract, and --strict's exit status."""

import dataclasses
import filecmp

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import analysis.validate as validate
from analysis.__main__ import main as analysis_main
from analysis.facts import compute_batch, override_groups, simulate_facts, stacked_table
from analysis.targets import load_targets
from analysis.validation_figure import forest_plot
from sim import records
from sim.engine import Cohort
from sim.run import client_outcomes
from sim.scenario import load_scenario

SMALL = ["--replicates", "3", "--clients", "300"]


@pytest.fixture(scope="module")
def targets():
    return load_targets()


@pytest.fixture(scope="module")
def cohort():
    base = load_scenario("baseline").params
    sets = [base, {**base, "bond_empathy_weight": 0.9}, {**base, "therapist_feedback_share": 0.5}]
    return Cohort(sets, 600, 30, seed=5, replicate=1, record=True).run()


def test_batch_facts_equal_target_compute_set_by_set(targets, cohort):
    table = stacked_table(cohort)
    outcomes = client_outcomes(cohort)
    per_set = [records.clients_table(cohort, outcomes, s) for s in range(cohort.n_sets)]
    for t in targets:
        batch = compute_batch(t, table, cohort.n_sets)
        reference = [t.compute(df) for df in per_set]
        np.testing.assert_allclose(batch, reference, rtol=1e-10, atol=1e-12, err_msg=f"{t.id}: batch != compute")


def test_facts_match_direct_computations(targets, cohort):
    """Each kind of fact against the raw per-client arrays, computed here without the estimators."""
    by_id = {t.id: t for t in targets}
    o = {k: v[0] for k, v in client_outcomes(cohort).items()}
    values = dict(zip(by_id, simulate_facts(targets, cohort.param_sets[:1], 600, 30, 5, [1])[0, 0], strict=True))
    dropout = o["end_type"] == 3  # index of "dropout" in sim.dynamics.END_TYPES
    assert values["dropout"] == pytest.approx(dropout.mean(), abs=1e-12), "dropout = share with end_type == dropout"
    finished = o["sessions_attended"] >= 2
    change = (o["intake_phq9"] - o["final_phq9"])[finished]
    r = stats.pearsonr(np.round(o["early_alliance"][finished], 3), change).statistic
    assert values["alliance_outcome"] == pytest.approx(r, abs=1e-9), "alliance_outcome = r(early alliance, change)"
    seen = o["sessions_attended"] >= 1
    a, b = o["early_alliance"][seen & ~dropout].round(3), o["early_alliance"][seen & dropout].round(3)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    d = (a.mean() - b.mean()) / pooled
    assert values["alliance_dropout"] == pytest.approx(d, abs=1e-9), "alliance_dropout = d, completers minus dropouts"
    deteriorated = (o["final_phq9"] - o["intake_phq9"] >= 6)[finished]
    assert values["deterioration"] == pytest.approx(deteriorated.mean(), abs=1e-12)
    early = (o["sessions_attended"][dropout] <= 3).mean()
    assert values["early_dropout_share"] == pytest.approx(early, abs=1e-12)


def test_override_facts_come_from_their_own_run(targets):
    groups = override_groups(targets)
    assert groups[0] == {} and {"therapist_feedback_share": 0.5} in groups
    fb = [t for t in targets if t.overrides]
    values = simulate_facts(fb, [load_scenario("baseline").params], 300, 15, 3, 1)
    assert np.isfinite(values).all(), "feedback facts need feedback-using therapists in their run"


def test_cli_writes_table_report_and_figure(tmp_path, targets):
    out, docs = tmp_path / "results", tmp_path / "docs"
    assert analysis_main(["validate", *SMALL, "--out", str(out), "--docs", str(docs)]) == 0
    table = pd.read_csv(out / "validation.csv")
    assert list(table.columns) == validate.COLUMNS
    assert list(table["fact"]) == [t.id for t in targets]
    assert set(table["status"]) <= {"pass", "miss"}
    inside = (table["band_low"] <= table["simulated"]) & (table["simulated"] <= table["band_high"])
    assert (table["status"].eq("pass") == inside).all(), "pass exactly when the simulated value is in the band"
    assert (table["ci_low"] <= table["simulated"]).all() and (table["simulated"] <= table["ci_high"]).all()
    text = (docs / "validation.md").read_text()
    assert all(t.id in text for t in targets)
    for miss in table.loc[table["status"] == "miss", "fact"]:
        assert f"- **{miss}**" in text, f"a miss needs its sentence in validation.md: {miss}"
    assert (docs / "figures" / "validation_forest.png").stat().st_size > 0
    assert (docs / "figures" / "validation_forest.svg").stat().st_size > 0


def test_out_alone_writes_only_into_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray relative path would land here
    docs_before = {p: p.stat().st_mtime_ns for p in validate.DOCS.rglob("*") if p.is_file()}
    out = tmp_path / "only"
    assert analysis_main(["validate", *SMALL, "--out", str(out)]) == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == [
        f"only/{name}"
        for name in (
            "figures/validation_forest.png",
            "figures/validation_forest.svg",
            "manifest.json",
            "replicates.csv",
            "validation.csv",
            "validation.md",
        )
    ]
    docs_after = {p: p.stat().st_mtime_ns for p in validate.DOCS.rglob("*") if p.is_file()}
    assert docs_after == docs_before, "validate --out must not touch docs/ (make docs-validation does)"


def _with_bands(monkeypatch, bands):
    """Make the validate command see targets with some bands replaced: {id: (low, high)}."""
    real = validate.load_targets

    def patched(path):
        out = []
        for t in real(path):
            low, high = bands.get(t.id, (t.band_low, t.band_high))
            out.append(dataclasses.replace(t, band_low=low, band_high=high))
        return out

    monkeypatch.setattr(validate, "load_targets", patched)
    monkeypatch.setattr("analysis.validation_figure.forest_plot", lambda *a, **k: [])  # drawn in the test above


@pytest.mark.parametrize(
    ("impossible", "strict_status"),
    [("dropout", 1), ("sudden_gain_rate", 0)],
    ids=["calibration-miss", "validation-miss-only"],
)
def test_strict_exit_follows_calibration_statuses(tmp_path, monkeypatch, targets, impossible, strict_status):
    wide = {t.id: (-1e9, 1e9) for t in targets if t.set == "calibration"}
    _with_bands(monkeypatch, {**wide, impossible: (50.0, 60.0)})
    args = ["validate", *SMALL, "--out", str(tmp_path), "--docs", str(tmp_path)]
    assert analysis_main([*args, "--strict"]) == strict_status
    table = pd.read_csv(tmp_path / "validation.csv")
    assert table.set_index("fact").loc[impossible, "status"] == "miss"
    assert analysis_main(args) == 0, "without --strict the exit status is 0 whatever the table says"


def test_shipped_calibration_passes_every_calibration_fact(targets):
    """The real check behind `make validate-strict`: the baseline with sim/calibrated.toml, at make's size."""
    table, _ = validate.validation_table(
        targets, "baseline", replicates=validate.DEFAULT_REPLICATES, clients=validate.DEFAULT_CLIENTS
    )
    calibration = table[table["set"] == "calibration"]
    assert len(calibration) == sum(t.set == "calibration" for t in targets), "every calibration fact is reported"
    misses = calibration[calibration["status"] != "pass"]
    listed = "; ".join(
        f"{r.fact}: simulated {r.simulated:.3f}, band [{r.band_low:g}, {r.band_high:g}]" for r in misses.itertuples()
    )
    assert misses.empty, f"calibration facts outside their bands with the shipped calibration: {listed}"


def _synthetic_table(targets) -> pd.DataFrame:
    rows = [
        [t.id, t.set, t.published, t.band_low, t.band_high, t.published, t.published - 0.01, t.published + 0.01, "pass"]
        for t in targets
    ]
    return pd.DataFrame(rows, columns=validate.COLUMNS)


def test_forest_plot_files_are_byte_identical_for_identical_data(tmp_path, targets):
    """A regenerated docs figure shows no diff unless its data changed (no date, no random ids)."""
    settings = {"scenario": "baseline", "replicates": 3, "clients": 300, "therapists": 15, "seed": 1}
    first = forest_plot(_synthetic_table(targets), targets, tmp_path / "first", settings)
    second = forest_plot(_synthetic_table(targets), targets, tmp_path / "second", settings)
    assert [p.suffix for p in first] == [".png", ".svg"]
    for a, b in zip(first, second, strict=True):
        assert filecmp.cmp(a, b, shallow=False), f"{a.name} differs between two saves of the same figure"
    svg = first[1].read_text()
    assert "<dc:date>" not in svg, "the SVG should carry no date of saving"
