"""The command line as users run it: ``python -m sim ...`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import sim

ROOT = Path(sim.__file__).resolve().parents[1]

CLIENT_COLUMNS = [
    "client_id", "therapist_id", "attachment_style", "attachment_anxiety", "attachment_avoidance",
    "cultural_match", "expectancy", "therapist_empathy", "perceived_empathy", "intake_phq9", "final_phq9",
    "followup_phq9", "sessions_attended", "end_type", "end_session", "dropout_cause", "early_alliance",
    "mean_alliance", "early_goal_agreement", "ruptures", "repairs", "reliable_improvement",
    "reliable_deterioration", "recovery", "reliable_recovery", "sudden_gain",
]  # fmt: skip
SESSION_COLUMNS = [
    "client_id", "session", "attended", "bond", "goal", "task", "alliance", "disclosure", "hope",
    "engagement", "phq9", "event",
]  # fmt: skip
EVENT_COLUMNS = ["session", "client_id", "therapist_id", "event", "cause", "text"]
SUMMARY_KEYS = [
    "dropout_rate", "recovery_rate", "reliable_improvement_rate", "reliable_deterioration_rate",
    "mean_sessions", "alliance_outcome_r", "scenario", "seed", "version",
]  # fmt: skip


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "sim", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_run_writes_every_contract_file(tmp_path):
    out = tmp_path / "out"
    r = cli("run", "baseline", "--clients", 80, "--therapists", 5, "--seed", 3,
            "--set", "therapist_empathy_mean=0.5", "--out", out, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    for name in ("clients.csv", "sessions.csv", "events.csv", "summary.json", "summary.png", "summary.svg"):
        assert (out / name).stat().st_size > 0, f"{name} missing or empty"
    clients = pd.read_csv(out / "clients.csv", keep_default_na=False)
    assert set(CLIENT_COLUMNS) <= set(clients.columns), set(CLIENT_COLUMNS) - set(clients.columns)
    assert len(clients) == 80
    assert set(clients["end_type"]) <= {"completed", "good_enough", "dropout"}
    assert ((clients["dropout_cause"] == "") == (clients["end_type"] != "dropout")).all(), (
        "dropout_cause is empty unless the client dropped out"
    )
    sessions = pd.read_csv(out / "sessions.csv")
    assert list(sessions.columns[: len(SESSION_COLUMNS)]) == SESSION_COLUMNS or set(SESSION_COLUMNS) <= set(
        sessions.columns
    )
    assert sessions.groupby("client_id")["attended"].sum().sum() == clients["sessions_attended"].sum()
    events = pd.read_csv(out / "events.csv")
    assert set(EVENT_COLUMNS) <= set(events.columns)
    assert events["text"].str.startswith("session ").all()
    summary = json.loads((out / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary)
    assert summary["seed"] == 3 and summary["scenario"] == "baseline"
    assert summary["dropout_rate"] == pytest.approx((clients["end_type"] == "dropout").mean())


def test_params_prints_the_registry(tmp_path):
    r = cli("params", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name, p in sim.REGISTRY.items():
        assert name in r.stdout
        assert f"source: {p.source}" in r.stdout, f"{name}'s source should be printed"
    for title in ("Therapist population", "Client population", "Mechanisms", "Course"):
        assert title in r.stdout, f"the {title} group should have a heading"


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "toml", "extra", "needles"),
    [
        ("missing file", None, [], ["no_such.toml"]),
        ("TOML syntax", "[therapists\ntherapist_empathy_mean = 0.4\n", [], ["not valid TOML"]),
        ("unknown key", "[therapists]\nempathy = 0.4\n", [], ["empathy", "unknown parameter"]),
        ("wrong type", "[therapists]\ntherapist_empathy_mean = 'high'\n", [], ["therapist_empathy_mean", "[0, 1]"]),
        ("out of range", "[course]\nplanned_sessions = 100\n", [], ["planned_sessions", "100", "[1, 40]"]),
        ("infinite integer", "[course]\nplanned_sessions = inf\n", [], ["planned_sessions", "inf", "[1, 40]"]),
        ("NaN integer", "[course]\nplanned_sessions = nan\n", [], ["planned_sessions", "nan", "[1, 40]"]),
        ("overflowing float", "[course]\nplanned_sessions = 1e400\n", [], ["planned_sessions", "[1, 40]"]),
        ("huge integer", "[therapists]\ntherapist_empathy_mean = " + "9" * 400 + "\n", [], ["400 digits", "[0, 1]"]),
        ("--set infinite", "", ["--set", "planned_sessions=inf"], ["planned_sessions", "[1, 40]"]),
        ("unknown --set", "", ["--set", "empathy=0.5"], ["empathy", "unknown parameter"]),
        (
            "--set out of range",
            "",
            ["--set", "therapist_empathy_mean=1.4"],
            ["therapist_empathy_mean", "1.4", "[0, 1]"],
        ),
    ],
)
def test_bad_input_exits_2_with_one_clear_message(tmp_path, case, toml, extra, needles):
    path = tmp_path / "no_such.toml" if toml is None else _bad(tmp_path, "scenario.toml", toml)
    r = cli("run", path, "--clients", 10, "--out", tmp_path / "out", *extra, cwd=tmp_path)
    assert r.returncode == 2, f"{case}: exit {r.returncode}, stderr {r.stderr!r}"
    assert "Traceback" not in r.stderr, f"{case}: a user mistake must not print a traceback"
    message = r.stderr.strip()
    assert message and "\n\n" not in message, f"{case}: one paragraph expected, got {message!r}"
    if toml is not None and "--set" not in extra:
        assert str(path) in message, f"{case}: the message should name the file: {message!r}"
    for needle in needles:
        assert needle in message, f"{case}: the message should mention {needle!r}: {message!r}"
    assert not (tmp_path / "out").exists(), f"{case}: nothing should be written"


def test_a_scenario_that_is_not_utf8_text_is_refused(tmp_path):
    path = tmp_path / "scenario.toml"
    path.write_bytes(b'name = "x"\n\xff\xfe\n')
    r = cli("run", path, "--clients", 10, "--out", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert str(path) in r.stderr and "UTF-8" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "command", [["run", "baseline"], ["compare", "baseline", "low_empathy"], ["vignette", "baseline"]]
)
def test_out_naming_a_file_is_refused_before_anything_runs(tmp_path, command):
    taken = tmp_path / "results"
    taken.write_text("not a directory")
    r = cli(*command, "--clients", 10, "--out", taken, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "a file of that name exists" in r.stderr, r.stderr
    assert taken.read_text() == "not a directory", "the file must be left as it was"
