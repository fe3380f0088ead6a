"""The command line as users run it: ``python -m sim ...`` in a subprocess."""

import dataclasses
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


# ── clean failures (issue 9): write failures, undefined metrics, names, small edges ─────────

from sim.cli import main  # noqa: E402 (the tests above run the command in a subprocess; these in-process)

RUN = ["run", "baseline", "--clients", "30", "--therapists", "3", "--seed", "1"]


def _one_paragraph(err: str, *expected: str) -> None:
    assert "Traceback" not in err, err
    assert err.startswith("error: ") and err.count("\n") == 1, f"one paragraph: {err!r}"
    for text in expected:
        assert text in err, f"{text!r} missing from {err!r}"


@pytest.mark.parametrize(
    ("command", "blocker"),
    [
        (RUN, "summary.json"),
        (RUN, "summary.png"),
        (["compare", "baseline", "low_empathy", "--clients", "30", "--replicates", "2"], "compare.csv"),
        (["vignette", "baseline", "--clients", "30"], "vignette.md"),
    ],
)
def test_an_output_file_that_is_a_directory_is_refused_before_the_run(command, blocker, tmp_path, capsys, monkeypatch):
    (tmp_path / "out" / blocker).mkdir(parents=True)
    monkeypatch.setattr("sim.run.Cohort.run", lambda self: pytest.fail("the simulation ran before the check"))
    assert main([*command, "--out", str(tmp_path / "out")]) == 2
    _one_paragraph(capsys.readouterr().err, f"{blocker} is a directory")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [blocker], "nothing is written"


def test_an_unwritable_out_is_refused_before_the_run(capsys, monkeypatch):
    monkeypatch.setattr("sim.run.Cohort.run", lambda self: pytest.fail("the simulation ran before the check"))
    assert main([*RUN, "--out", "/proc/self"]) == 2  # a directory nobody may write into, root included
    _one_paragraph(capsys.readouterr().err, "--out /proc/self", "cannot write into this directory")


def test_a_failure_at_write_time_is_one_paragraph(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "sessions.csv"))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    assert main([*RUN, "--out", str(tmp_path / "out")]) == 2
    _one_paragraph(capsys.readouterr().err, "sessions.csv", "No space left on device", "the simulation ran")


def test_undefined_metrics_are_json_null_and_said_in_words(tmp_path, capsys):
    """One planned session: nobody finishes two, so recovery is undefined (the audit's bare NaN token)."""
    out = tmp_path / "out"
    assert main([*RUN, "--set", "planned_sessions=1", "--out", str(out)]) == 0
    text = (out / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))
    assert summary["recovery_rate"] is None and summary["reliable_improvement_rate"] is None
    assert summary["undefined"]["recovery_rate"] == "no client at caseness finished two sessions"
    assert summary["dropout_rate"] is not None and "dropout_rate" not in summary["undefined"]
    printed = capsys.readouterr().out
    assert "recovery undefined (no client at caseness finished two sessions)" in printed, printed
    assert "nan" not in printed.lower(), printed


def test_a_sweep_says_which_metrics_are_undefined_in_some_runs(tmp_path, capsys):
    from experiments.cli import main as experiments_main

    spec = tmp_path / "short.toml"
    spec.write_text(
        'method = "grid"\nclients = 10\ntherapists = 1\noutputs = ["dropout_rate"]\n'
        "[fixed]\nplanned_sessions = 1\n[parameters.therapist_empathy_mean]\nlevels = [0.2, 0.8]\n"
    )
    assert (
        experiments_main(["run", str(spec), "--executor", "serial", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "recovery_rate: undefined in 2 of 2 runs (no client at caseness finished two sessions)" in printed, printed


def test_a_name_with_dollars_is_shown_as_plain_text(tmp_path, capsys):
    """A name with $ was parsed as mathtext: a ParseException after the CSVs were written."""
    path = tmp_path / "money.toml"
    path.write_text('name = "cost $x^{2$ and $\\\\frac{a}{"\n[run]\nclients = 30\ntherapists = 3\n')
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "summary.png").stat().st_size > 0 and (out / "summary.svg").stat().st_size > 0
    assert "cost $x^{2$" in (out / "summary.svg").read_text(), "the dollars are drawn as they are written"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("red\x1b[31m alert", "control characters"),
        ("two\nlines", "control characters"),
        ("x" * 1_000_000, "1,000,000 characters"),
        ("", "is empty"),
    ],
    ids=["ansi", "newline", "million", "empty"],
)
def test_a_name_that_cannot_be_shown_is_refused(name, expected, tmp_path, capsys):
    path = tmp_path / "odd.toml"
    path.write_text(f"name = {json.dumps(name)}\n")
    assert main([*RUN[:1], str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _one_paragraph(err, str(path), expected)
    assert "\x1b" not in err and len(err) < 600
    assert not (tmp_path / "out").exists()


def test_figures_of_names_built_in_python_are_plain_and_short(tmp_path):
    from analysis.figures import plain_text, save, summary_figure
    from sim import compare, load_scenario, simulate

    odd = "\x1b[31m$a^{b$" + "y" * 1_000_000
    assert plain_text(odd) == "\\$a^{b\\$" + "y" * 53 + "\u2026", "60 characters, escape removed, dollars escaped"
    result = simulate("baseline", clients=30, therapists=3, seed=1)
    paths = save(summary_figure(result.clients, result.sessions, title=odd), tmp_path, "odd")
    assert all(p.stat().st_size < 2_000_000 for p in paths), "no million-character title"
    renamed = dataclasses.replace(load_scenario("low_empathy"), name="$" + "z" * 1_000_000)
    compare("baseline", renamed, clients=30, replicates=2).save(tmp_path / "compare")
    assert (tmp_path / "compare" / "compare.png").is_file()


@pytest.mark.parametrize(
    ("argv", "toml", "expected"),
    [
        (["run", "{path}", "--out", "{out}"], "a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (["run", "{path}", "--out", "{out}"], "x" * 100_000 + " = 1\n", "100,000 characters"),
        (["run", "baseline", "--out", ""], None, "--out is empty"),
        (["run", "{path}", "--out", "{out}"], "[course]\nplanned_sessions = 16\n[" + "q" * 300 + "]\n", "300 char"),
    ],
    ids=["nested", "long-key", "empty-out", "long-table"],
)
def test_small_edges_exit_2_in_one_paragraph(argv, toml, expected, tmp_path, capsys):
    path = tmp_path / "edge.toml"
    if toml is not None:
        path.write_text(toml)
    argv = [a.format(path=path, out=tmp_path / "out") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    _one_paragraph(err, expected)
    assert len(err) < 1000, "a long key is not echoed whole"
    assert not (tmp_path / "out").exists()


def test_a_byte_order_mark_is_read_as_the_same_file(tmp_path):
    from sim import load_scenario

    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (ROOT / "scenarios" / "low_empathy.toml").read_bytes())
    with_bom = load_scenario(path)
    assert with_bom.params == load_scenario("low_empathy").params


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_app_refuses_a_port_that_is_not_one(port, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["app", "baseline", "--port", port])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and "Traceback" not in err


def test_app_refuses_a_port_in_use(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "baseline", "--port", str(port)]) == 2
    _one_paragraph(capsys.readouterr().err, f"--port {port}", "give another --port")
