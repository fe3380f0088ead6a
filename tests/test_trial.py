"""Virtual trials: a null comparison rejects at the nominal rate, real effects gain power with size,
results do not depend on the executor, and spec mistakes are one paragraph with exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.trial import arm_seeds, power_table, simulate, tasks
from analysis.trial_spec import TrialSpecError, load_trial_spec
from analysis.trial_stats import cluster_test, wilson_interval

NULL = """
name = "null"
outcome = "dropout"
trials = 800
clients = [60]
therapists = [6]
seed = 5

[arms.a]
scenario = "baseline"

[arms.b]
scenario = "baseline"
"""

EFFECT = """
name = "barriers"
outcome = "dropout"
trials = 40
clients = [20, 200]
caseload = 5
seed = 9

[arms.many_barriers]
scenario = "baseline"
overrides = { barriers_mean = 0.7 }

[arms.few_barriers]
scenario = "baseline"
overrides = { barriers_mean = 0.05 }
"""


def spec_file(tmp_path: Path, text: str, name: str = "trial.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_identical_arms_reject_at_the_nominal_rate(tmp_path):
    spec = load_trial_spec(spec_file(tmp_path, NULL))
    result = simulate(spec, progress=False)
    rate = result.power["power"].iloc[0]
    # 800 trials: the rejection rate's binomial SE at 5% is sqrt(.05 * .95 / 800) = 0.0077; allow 3 SE.
    se = math.sqrt(0.05 * 0.95 / spec.trials)
    assert abs(rate - 0.05) <= 3 * se, f"null rejection rate {rate:.3f}, expected 0.05 +- {3 * se:.3f}"
    assert result.power["undefined_tests"].iloc[0] == 0
    assert abs(result.power["effect_mean"].iloc[0]) < 3 * result.power["effect_sd"].iloc[0] / math.sqrt(spec.trials)


def test_a_real_effect_gains_power_with_size(tmp_path):
    spec = load_trial_spec(spec_file(tmp_path, EFFECT))
    power = simulate(spec, progress=False).power
    small, large = power["power"].to_numpy()
    assert power["effect_mean"].lt(0).all(), "clients with few practical barriers should drop out less"
    assert large > small, f"power should grow with clients per arm: {small:.2f} at 20, {large:.2f} at 200"
    assert large >= 0.8, f"a large effect with 200 clients per arm should be detected: power {large:.2f}"
    assert power["effect_sd"].iloc[1] < power["effect_sd"].iloc[0], "larger trials estimate the effect more precisely"


@pytest.mark.parametrize("test", ["gee", "mixed"])
def test_other_clustered_tests_agree_on_a_clear_effect(tmp_path, test):
    text = EFFECT.replace("trials = 40", "trials = 10").replace("clients = [20, 200]", "clients = [150]")
    spec = load_trial_spec(spec_file(tmp_path, text.replace("seed = 9", f'seed = 9\ntest = "{test}"')))
    result = simulate(spec, progress=False)
    baseline = simulate(load_trial_spec(spec_file(tmp_path, text, "ols.toml")), progress=False)
    assert result.power["power"].iloc[0] >= 0.8, f"{test} should detect the effect"
    assert np.allclose(result.trials["effect"], baseline.trials["effect"]), "the same trials whatever the test"


def test_results_do_not_depend_on_executor_or_chunking(tmp_path):
    text = NULL.replace("trials = 800", "trials = 12").replace("clients = [60]", "clients = [30, 40]")
    text = text.replace("therapists = [6]", "therapists = [6, 8]")
    spec = load_trial_spec(spec_file(tmp_path, text))
    serial = simulate(spec, progress=False).trials
    processes = simulate(spec, executor="processes", workers=2, progress=False).trials
    pd.testing.assert_frame_equal(serial, processes)
    dask = simulate(spec, executor="dask", workers=1, progress=False).trials
    pd.testing.assert_frame_equal(serial, dask)
    chunked = [t.count for t in tasks(spec, per_task=5)]
    assert chunked == [5, 5, 2, 5, 5, 2]


def test_arms_and_sizes_draw_independent_seeds():
    seeds = {s for size in range(3) for s in arm_seeds(7, size)}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    assert arm_seeds(7, 0) == arm_seeds(7, 0)


def test_cluster_test_is_undefined_without_variance_and_known_on_a_simple_case():
    arm = np.repeat([0, 1], 20)
    therapist = np.repeat(np.arange(8), 5)
    assert all(math.isnan(v) for v in cluster_test(np.zeros(40), arm, therapist, "cluster_robust", True))
    y = np.r_[np.zeros(20), np.ones(20)] + np.tile([0.0, 0.1, -0.1, 0.05, -0.05], 8)
    estimate, se, p = cluster_test(y, arm, therapist, "cluster_robust", False)
    assert estimate == pytest.approx(1.0) and p < 1e-6


def test_wilson_interval_known_answer():
    # Wilson (1927) for 37 of 100 at 95%: centre (37 + 1.96^2 / 2) / (100 + 1.96^2), half-width as below.
    z, n, k = 1.959963984540054, 100, 37
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    low, high = wilson_interval(np.array([k]), np.array([n]))
    assert (low[0], high[0]) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_power_table_counts_rejections(tmp_path):
    spec = load_trial_spec(spec_file(tmp_path, NULL.replace("trials = 800", "trials = 10")))
    trials = pd.DataFrame(
        {"size": 0, "trial": range(10), "control_mean": 0.2, "treatment_mean": 0.1, "effect": -0.1, "p": 0.01}
    )
    trials.loc[7:, "p"] = [0.2, np.nan, 0.5]
    table = power_table(spec, trials)
    assert table.loc[0, "rejections"] == 7 and table.loc[0, "power"] == 0.7 and table.loc[0, "undefined_tests"] == 1
    assert table.loc[0, "power_low"] < 0.7 < table.loc[0, "power_high"]


def test_command_writes_power_table_and_figure(tmp_path, capsys):
    path = spec_file(tmp_path, NULL.replace("trials = 800", "trials = 10"))
    out = tmp_path / "out"
    assert main(["trial", str(path), "--executor", "serial", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "clients_per_arm" in printed and "power" in printed
    power = pd.read_csv(out / "power.csv")
    assert list(power["clients_per_arm"]) == [30] and power.loc[0, "trials"] == 10
    assert len(pd.read_csv(out / "trials.csv")) == 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["arms"][0]["name"] == "a" and manifest["spec_hash"]
    assert (out / "power_curve.png").is_file() and (out / "power_curve.svg").is_file()


def test_the_shipped_spec_loads():
    spec = load_trial_spec("trial_feedback")
    assert [a.name for a in spec.arms] == ["usual_care", "feedback"]
    share = [arm.params["therapist_feedback_share"] for arm in spec.arms]
    assert share == [0.0, 1.0], "usual care without feedback, the other arm all feedback"
    assert spec.therapists == tuple(n // 20 for n in spec.clients)


BAD = {
    "unknown top key": ('colour = "red"\n', "unknown key 'colour'"),
    "bad outcome": ('outcome = "happiness"\n', 'outcome = "happiness" is not known'),
    "bad test": ('test = "ttest"\n', 'test = "ttest" is not known'),
    "alpha": ("alpha = 0.7\n", "alpha = 0.7"),
    "trials": ("trials = 3\n", "trials = 3 is not allowed"),
    "clients": ("clients = [1]\n", "clients = 1 is not allowed"),
    "repeated size": ("clients = [30, 30]\n", "lists a size twice"),
    "therapists length": ("clients = [30, 40]\ntherapists = [6]\n", "therapists has 1 entries"),
    "both": ("caseload = 5\n", "not both"),
    "too many therapists": ("clients = [5]\ntherapists = [6]\n", "6 therapists for 5 clients"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_spec_mistakes_exit_2_naming_file_and_key(tmp_path, capsys, case):
    line, message = BAD[case]
    keys = {k.split("=")[0].strip() for k in line.strip().splitlines()}
    kept = "\n".join(row for row in NULL.splitlines() if row.split("=")[0].strip() not in keys - {"caseload"})
    path = spec_file(tmp_path, line + kept, "bad.toml")
    assert main(["trial", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ('[arms.only]\nscenario = "baseline"\n', "exactly two tables"),
        ('[arms.a]\nscenario = "nowhere"\n[arms.b]\n', "[arms.a]: no scenario file"),
        (
            "[arms.a]\noverrides = { therapist_empathy_mean = 1.7 }\n[arms.b]\n",
            "therapist_empathy_mean = 1.7 is outside",
        ),
        ("[arms.a]\ncolour = 1\n[arms.b]\n", "[arms.a]: unknown key 'colour'"),
    ],
)
def test_arm_mistakes_name_the_arm(tmp_path, arms, message):
    head = NULL.split("[arms.a]")[0]
    with pytest.raises(TrialSpecError) as err:
        load_trial_spec(spec_file(tmp_path, head + arms))
    assert message in str(err.value)


def test_a_missing_spec_lists_the_shipped_ones(capsys):
    assert main(["trial", "no_such_trial"]) == 2
    assert "trial_feedback" in capsys.readouterr().err
