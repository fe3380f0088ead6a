"""Richer sweep outputs ([store], [metrics]) and the scenario factor: values, storage, resume, refusals."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from experiments import load_spec, run_experiment
from experiments.cli import main
from experiments.outputs import Store, UserMetric, evaluate
from experiments.results import read_sweep
from experiments.sampling import sample
from sim.engine import Cohort
from sim.records import clients_table
from sim.run import batch_metrics, client_outcomes
from sim.scenario import load_scenario
from tests.test_experiments import write_spec

BASE = load_scenario("baseline").params
EVERYTHING = Store(
    reasons=True,
    retention=(4, 8, 12),
    curves=True,
    metrics=(
        UserMetric("early_dropout", 'end_type == "dropout" and end_session <= 4'),
        UserMetric("median_alliance", "early_alliance", "finished_course", "median"),
        UserMetric("sd_change", "intake_phq9 - final_phq9", "", "sd"),
    ),
)


@pytest.fixture(scope="module")
def batch():
    """Three parameter sets of different course lengths, and what the store's evaluator gives for them."""
    sets = [
        {**BASE, "therapist_empathy_mean": 0.3, "planned_sessions": 12},
        {**BASE, "therapist_empathy_mean": 0.9, "planned_sessions": 16},
        {**BASE, "rupture_rate": 0.2, "planned_sessions": 20},
    ]
    scalars, curves = evaluate(sets, 300, 15, 11, 1, EVERYTHING)
    return sets, scalars, pd.DataFrame(curves)


def _clients(params):
    """clients.csv of one set, recorded, with the same seed and replicate as the batch."""
    cohort = Cohort(params, 300, 15, 11, 1, record=True).run()
    return clients_table(cohort, client_outcomes(cohort)), cohort


def test_the_store_changes_no_cohort_metric(batch):
    sets, scalars, _ = batch
    plain = batch_metrics(sets, 300, 15, 11, 1)
    for name, values in plain.items():
        np.testing.assert_array_equal(scalars[name], values, err_msg=f"{name} differs when the run stores more")


def test_reason_and_retention_outputs_match_the_clients_table(batch):
    sets, scalars, _ = batch
    for k, params in enumerate(sets):
        clients, _ = _clients(params)
        dropped = clients[clients["end_type"] == "dropout"]
        for reason in ("weak_alliance", "practical_barriers", "felt_better"):
            assert scalars[f"reason_{reason}"][k] == pytest.approx(dropped[f"share_{reason}"].mean(), abs=1e-6)
        shares = dropped["dropout_category"].value_counts(normalize=True)
        for category in ("improvement", "circumstances", "dissatisfaction", "other"):
            assert scalars[f"category_{category}"][k] == pytest.approx(shares.get(category, 0.0))
        assert scalars["category_dissatisfaction"][k] == pytest.approx(scalars["relationship_share"][k])
        for session in (4, 8, 12):
            gone = ((clients["end_type"] == "dropout") & (clients["end_session"] <= session)).mean()
            assert scalars[f"retention_{session}"][k] == pytest.approx(1 - gone)
        reasons = sum(scalars[f"reason_{r}"][k] for r in ("weak_alliance", "unrepaired_rupture", "therapy_breaks"))
        reasons += sum(scalars[f"reason_{r}"][k] for r in ("low_engagement", "practical_barriers"))
        reasons += sum(scalars[f"reason_{r}"][k] for r in ("life_circumstances", "felt_better"))
        assert reasons == pytest.approx(1.0), "a dropout's reason shares sum to one, and so do their means"


def test_retention_falls_with_the_session(batch):
    _, scalars, _ = batch
    assert np.all(scalars["retention_4"] >= scalars["retention_8"]) and np.all(
        scalars["retention_8"] >= scalars["retention_12"]
    ), "fewer clients are left the later the session"


def test_user_metrics_match_pandas_on_the_clients_table(batch):
    sets, scalars, _ = batch
    for k, params in enumerate(sets):
        clients, _ = _clients(params)
        early = ((clients["end_type"] == "dropout") & (clients["end_session"] <= 4)).mean()
        assert scalars["early_dropout"][k] == pytest.approx(early)
        finished = clients[clients["finished_course"]]
        assert scalars["median_alliance"][k] == pytest.approx(finished["early_alliance"].median())
        change = clients["intake_phq9"] - clients["final_phq9"]
        assert scalars["sd_change"][k] == pytest.approx(change.std(ddof=1))


def test_curves_match_the_recorded_sessions(batch):
    sets, _, curves = batch
    for k, params in enumerate(sets):
        rows = curves[curves["set"] == k].set_index("session")
        assert list(rows.index) == list(range(1, params["planned_sessions"] + params["extra_weeks"] + 1)), (
            "a set's curve runs over its own session slots"
        )
        _, cohort = _clients(params)
        from sim.records import sessions_table

        sessions = sessions_table(cohort)
        attended = sessions[sessions["attended"]].groupby("session")
        np.testing.assert_allclose(rows["alliance"].loc[attended.groups.keys()], attended["alliance"].mean(), atol=2e-3)
        np.testing.assert_allclose(rows["phq9"].loc[attended.groups.keys()], attended["phq9"].mean(), atol=1e-4)
        running = sessions.groupby("session").size() / 300
        np.testing.assert_allclose(rows["in_therapy"].loc[running.index], running.to_numpy())
        assert rows["in_therapy"].is_monotonic_decreasing and rows["retained"].is_monotonic_decreasing
        assert (rows["retained"].to_numpy()[:-1] >= rows["in_therapy"].to_numpy()[1:] - 1e-12).all(), (
            "whoever is still in therapy at a session had not dropped out by the end of the one before"
        )
        assert rows["retained"].iloc[-1] > rows["in_therapy"].iloc[-1] - rows["attended"].iloc[-1], (
            "completers count as retained after their course ends"
        )


def test_a_set_gives_the_same_curves_alone_and_in_a_batch(batch):
    sets, _, curves = batch
    _, alone = evaluate([sets[1]], 300, 15, 11, 1, EVERYTHING)
    alone = pd.DataFrame(alone).drop(columns="set").reset_index(drop=True)
    in_batch = curves[curves["set"] == 1].drop(columns="set").reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, in_batch)


RICH = """
method = "grid"
outputs = ["dropout_rate", "reason_weak_alliance", "retention_8", "early_dropout"]
replicates = 2
clients = 60
therapists = 6
seed = 5
chunk_size = 2

[store]
reasons = true
retention = true
curves = true

[metrics.early_dropout]
y = 'end_type == "dropout" and end_session <= 4'
label = "dropout by session 4"
unit = "share of clients"

[metrics]
finisher_alliance = { y = "early_alliance", clients = "finished_course", statistic = "median" }

[parameters.scenario]
levels = ["baseline", "low_empathy", "high_barriers"]

[parameters.rupture_rate]
levels = [0.03, 0.12]
"""


@pytest.fixture(scope="module")
def rich_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rich")
    spec = load_spec(write_spec(folder, RICH, "rich.toml"))
    out = folder / "out"
    run_experiment(spec, out, "serial", progress=False)
    return spec, out


def test_a_sweep_stores_what_its_spec_asks(rich_run):
    spec, out = rich_run
    sweep = read_sweep(out)
    assert {"reason_felt_better", "category_other", "retention_12", "early_dropout", "finisher_alliance"} <= set(
        sweep.metrics
    )
    assert sweep.manifest["metrics"]["early_dropout"]["label"] == "dropout by session 4"
    curves = sweep.curves()
    slots = BASE["planned_sessions"] + BASE["extra_weeks"]
    assert len(curves) == len(sweep.outputs) * slots, "a row per run and session slot (no level changes the course)"
    table = pd.read_csv(out / "indices.csv")
    assert set(table["output"]) == set(spec.outputs)
    assert (out / "figures" / "curves.png").is_file() and (out / "figures" / "grid_early_dropout.svg").is_file()


def test_the_scenario_factor_runs_each_scenario(rich_run):
    _, out = rich_run
    sweep = read_sweep(out)
    means = sweep.outputs.groupby("set").mean().join(sweep.factors)
    by = means.groupby("scenario")["mean_alliance"].mean()
    assert by["low_empathy"] < by["baseline"], "the low_empathy level should lower the alliance"
    low = load_scenario("low_empathy")
    direct = batch_metrics([{**BASE, **low.overrides, "rupture_rate": 0.12}], 60, 6, 5, 1)
    row = sweep.factors.index[(sweep.factors["scenario"] == "low_empathy") & (sweep.factors["rupture_rate"] == 0.12)]
    stored = sweep.outputs[(sweep.outputs["set"] == row[0]) & (sweep.outputs["replicate"] == 1)]
    assert stored["dropout_rate"].item() == direct["dropout_rate"][0], "a level is its scenario's overrides on the base"


def test_a_run_with_curves_resumes_bit_identical(rich_run, tmp_path):
    spec, out = rich_run
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(out, copy)
    (copy / "curves" / "chunk-00001.parquet").unlink()  # a chunk whose curves are gone is run again
    (copy / "chunks" / "chunk-00002.parquet").unlink()  # and so is one whose outputs are gone (its curves stay)
    run_experiment(spec, copy, "serial", progress=False, analyse=False)
    for folder in ("chunks", "curves"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(copy / folder), pd.read_parquet(out / folder), obj=f"{folder} after resume"
        )


def test_export_writes_csv_for_r(rich_run, tmp_path, capsys):
    _, out = rich_run
    assert main(["export", str(out), "--csv", "--out", str(tmp_path / "csv")]) == 0
    runs = pd.read_csv(tmp_path / "csv" / "runs.csv")
    sweep = read_sweep(out)
    assert list(runs.columns[:4]) == ["set", "replicate", "scenario", "rupture_rate"]
    np.testing.assert_array_equal(runs["dropout_rate"], sweep.outputs["dropout_rate"])
    assert set(runs["scenario"]) == {"baseline", "low_empathy", "high_barriers"}
    curves = pd.read_csv(tmp_path / "csv" / "curves.csv")
    pd.testing.assert_frame_equal(curves, sweep.curves(), check_dtype=False)
    assert len(pd.read_csv(tmp_path / "csv" / "sample.csv")) == len(sweep.factors)


def test_run_format_csv_writes_the_csv_files(tmp_path, capsys):
    path = write_spec(tmp_path, RICH.replace("[store]\n", "[store]\n").replace("curves = true\n", ""), "csv.toml")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--executor", "serial", "--no-progress", "--format", "csv"]) == 0
    assert {"runs.csv", "sample.csv"} <= {p.name for p in out.iterdir()}
    assert not (out / "curves.csv").exists(), "no curves stored, none exported"
    assert "runs.csv" in capsys.readouterr().out


def test_a_spec_without_store_hashes_as_before():
    spec = load_spec("sobol_dropout")
    assert "store" not in spec.to_dict() and "scenarios" not in spec.to_dict(), (
        "an empty [store] must not change the digest of older results directories"
    )


def test_oat_scenario_factor_starts_from_the_spec_scenario(tmp_path):
    text = 'method = "oat"\nclients = 20\ntherapists = 2\n[parameters.scenario]\nlevels = ["low_empathy"]\n'
    spec = load_spec(write_spec(tmp_path, text, "oat.toml"))
    assert list(sample(spec)["scenario"]) == ["baseline", "low_empathy"]
    run_experiment(spec, tmp_path / "out", "serial", progress=False)
    assert read_sweep(tmp_path / "out").outputs["dropout_rate"].notna().all()


STORE_ERRORS = {
    "unknown store key": ("[store]\nreason = true\n", "unknown key 'reason' in [store]"),
    "store type": ("[store]\nreasons = 'yes'\n", 'reasons = "yes" must be true or false'),
    "retention list": ("[store]\nretention = [0, 4]\n", "retention = [0, 4] must be true"),
    "metric name": ("[metrics]\n'2x' = 'ruptures'\n", "is not allowed: use letters"),
    "metric clash": ("[metrics]\ndropout_rate = 'ruptures'\n", "is the name of a stored output"),
    "metric column": ("[metrics]\nx = 'ruptres > 1'\n", "[metrics.x] y: 'ruptres > 1' names 'ruptres'"),
    "metric syntax": ("[metrics]\nx = '__import__(\"os\")'\n", "calling __import__"),
    "metric text": ("[metrics]\nx = 'end_type'\n", "y: it gives text"),
    "metric statistic": ("[metrics.x]\ny = 'ruptures'\nstatistic = 'mode'\n", 'statistic = "mode" is not known'),
    "metric selection": ("[metrics.x]\ny = 'ruptures'\nclients = 'ruptures'\n", "clients must give true or false"),
    "metric recorded": ("[metrics]\nx = 'sudden_gain'\n", "use sudden_gain_events (sudden gains"),
    "metric no y": ("[metrics.x]\nclients = 'finished_course'\n", "y is missing"),
    "unknown extra output": ("", 'unknown output "retention_4"'),
    "scenario level": ("[parameters.scenario]\nlevels = ['baseline', 'nosuch']\n", 'levels: "nosuch": no scenario'),
    "scenario one level": ("[parameters.scenario]\nlevels = ['baseline']\n", "at least two scenarios"),
    "scenario clash": (
        "[parameters.scenario]\nlevels = ['baseline', 'low_empathy']\n",
        'the scenario "low_empathy" sets therapist_empathy_mean',
    ),
}


@pytest.mark.parametrize("case", list(STORE_ERRORS))
def test_bad_store_metrics_and_scenario_levels_exit_2(case, tmp_path, capsys):
    from tests.test_experiments import TINY

    extra, expected = STORE_ERRORS[case]
    text = TINY.replace('"mean_alliance"]', '"retention_4"]') if case == "unknown extra output" else TINY
    path = write_spec(tmp_path, text + extra, "bad.toml")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert str(path) in err and "Traceback" not in err and err.count("\n") == 1, err
    assert err.rstrip().endswith("."), err
    if not case.startswith("metric"):  # expressions have True and False in their own grammar
        assert not re.search(r"\b(True|False|None)\b", err), f"values should read as TOML: {err}"
    assert not (tmp_path / "out").exists()
