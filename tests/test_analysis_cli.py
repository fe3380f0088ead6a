"""``python -m analysis validate | calibrate``: usage mistakes exit 2 with one paragraph, never a traceback.

Exit 1 is kept for a calibration fact missing its band under ``validate --strict``, so CI can tell a
miss from a broken command. Every call here writes into tmp_path (--out, --docs, --toml, --report):
a mistake that slipped through must not overwrite docs/ or sim/calibrated.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--replicates", "2", "--clients", "60"]

GOOD_FACT = """
[[fact]]
id = "x"
set = "calibration"
fact = "f"
statistic = "share"
published = 0.2
band_low = 0.1
band_high = 0.3
published_text = "p"
source = "s"
definition = "d"
y = "end_type == 'dropout'"
"""


def _validate(tmp_path: Path, *extra: str) -> list[str]:
    return ["validate", *SMALL, "--out", str(tmp_path / "out"), "--docs", str(tmp_path / "docs"), *extra]


def _calibrate(tmp_path: Path, *extra: str) -> list[str]:
    args = ["calibrate", "--replicates", "1", "--clients", "40", "--population", "10", "--generations", "1"]
    args += ["--free", "dropout_base", "--executor", "serial", "--quiet", "--out", str(tmp_path / "history")]
    files = ["--toml", str(tmp_path / "c.toml"), "--report", str(tmp_path / "c.md")]
    return [*args, *files, "--posterior", str(tmp_path / "p.csv"), *extra]


def _exit_status(argv: list[str], capsys) -> tuple[int, str]:
    """main's status, whether it returns it or argparse exits with it; and what went to stderr."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    return status, err


def _assert_usage_error(status: int, err: str, *expected: str) -> None:
    assert status == 2, f"a usage mistake should exit 2, not {status}; stderr: {err!r}"
    assert "Traceback" not in err, f"no traceback for a usage mistake: {err}"
    assert "error:" in err and "\n\n" not in err.strip(), f"one paragraph starting with error: {err!r}"
    for text in expected:
        assert text in err, f"the message should say {text!r}: {err!r}"


# ── validate ────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--seed", "-5"], ["--seed", "-5 must be at least 0"]),
        (["--therapists", "0"], ["--therapists", "0 must be at least 2"]),
        (["--therapists", "1"], ["--therapists", "1 must be at least 2"]),
        (["--replicates", "1"], ["--replicates", "1 must be at least 2"]),
        (["--clients", "0"], ["--clients", "0 must be at least 2"]),
        (["--replicates", "many"], ["--replicates", "'many' is not an integer"]),
    ],
    ids=["negative-seed", "no-therapists", "one-therapist", "one-replicate", "no-clients", "not-a-number"],
)
def test_validate_refuses_bad_numbers(tmp_path, capsys, extra, expected):
    status, err = _exit_status(_validate(tmp_path, *extra), capsys)
    _assert_usage_error(status, err, *expected)
    assert not (tmp_path / "out").exists(), "nothing should run or be written after a usage mistake"


def test_validate_refuses_an_unknown_scenario(tmp_path, capsys):
    status, err = _exit_status(_validate(tmp_path, "--scenario", "no_such_world"), capsys)
    _assert_usage_error(status, err, "no_such_world", "baseline")
    assert not (tmp_path / "out").exists(), "the scenario is checked before any directory is made"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ["no such file", "[[fact]]"]),
        ("[[fact]\nid = 'x'\n", ["not valid TOML"]),
        ("# nothing here\n", ["no facts"]),
        ("fact = 3\n", ["array of tables"]),
        (GOOD_FACT.replace("band_low = 0.1", 'band_low = "low"'), ["band_low = 'low'", "must be a finite number"]),
        (GOOD_FACT.replace('y = "end', 'y = 3\nx = "end'), ["y = 3", "must be a string"]),
        (GOOD_FACT + "overrides = { no_such_parameter = 1 }\n", ["no_such_parameter"]),
        (GOOD_FACT + "overrides = { therapist_feedback_share = 7 }\n", ["therapist_feedback_share", "outside"]),
        (GOOD_FACT.replace('statistic = "share"', 'statistic = "median"'), ["statistic = 'median'"]),
        (GOOD_FACT.replace("end_type == 'dropout'", "dropped == 1"), ["fact 'x'", "dropped", "end_type"]),
        (GOOD_FACT.replace("end_type == 'dropout'", "end_type ==="), ["fact 'x'", "cannot be evaluated"]),
        (GOOD_FACT + 'clients = "no_column > 3"\n', ["fact 'x'", "no_column"]),
    ],
    ids=[
        "missing",
        "bad-toml",
        "no-facts",
        "not-tables",
        "string-band",
        "number-expression",
        "unknown-override",
        "override-out-of-range",
        "unknown-statistic",
        "unknown-column",
        "bad-expression",
        "unknown-column-in-query",
    ],
)
def test_validate_refuses_a_bad_targets_file(tmp_path, capsys, text, expected):
    path = tmp_path / "targets.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    status, err = _exit_status(_validate(tmp_path, "--targets", str(path)), capsys)
    _assert_usage_error(status, err, str(path), *expected)
    assert not (tmp_path / "out").exists()


def test_validate_refuses_an_output_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("not a directory")
    status, err = _exit_status(_validate(tmp_path), capsys)
    _assert_usage_error(status, err, "--out", "a file of that name exists")


def test_validate_uses_the_therapists_given(tmp_path, capsys):
    assert main(_validate(tmp_path, "--therapists", "3")) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["therapists"] == 3, "an explicit --therapists should be used, not replaced by the default"
    assert manifest["replicates"] == 2 and manifest["clients"] == 60


# ── calibrate ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--replicates", "0"], ["--replicates", "0 must be at least 1"]),
        (["--clients", "0"], ["--clients", "0 must be at least 1"]),
        (["--population", "0"], ["--population", "0 must be at least 1"]),
        (["--population", "5"], ["population = 5 is not allowed"]),
        (["--generations", "0"], ["--generations", "0 must be at least 1"]),
        (["--seed", "-1"], ["--seed", "-1 must be at least 0"]),
    ],
    ids=["no-replicates", "no-clients", "no-population", "tiny-population", "no-generations", "negative-seed"],
)
def test_calibrate_refuses_bad_numbers(tmp_path, capsys, extra, expected):
    status, err = _exit_status(_calibrate(tmp_path, *extra), capsys)
    _assert_usage_error(status, err, *expected)
    assert not (tmp_path / "c.toml").exists()


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        (["no_such_parameter"], ["no_such_parameter", "python -m sim params"]),
        (["matching_policy"], ["matching_policy", "only numeric parameters can be fitted"]),
        (["dropout_base", "dropout_base"], ["dropout_base", "more than once"]),
    ],
    ids=["unknown", "choice", "repeated"],
)
def test_calibrate_refuses_bad_free_parameters(tmp_path, capsys, free, expected):
    status, err = _exit_status([*_calibrate(tmp_path), "--free", *free], capsys)
    _assert_usage_error(status, err, *expected)
    assert not (tmp_path / "c.toml").exists()


def test_calibrate_refuses_a_directory_as_the_toml_file_before_fitting(tmp_path, capsys):
    status, err = _exit_status([*_calibrate(tmp_path), "--toml", str(tmp_path)], capsys)
    _assert_usage_error(status, err, "--toml", "is a directory")
    assert not (tmp_path / "c.md").exists(), "refused before the fit, so no report either"
    assert not (tmp_path / "history").exists()


# ── what CI sees ────────────────────────────────────────────────────────────────────────────


def test_help_documents_the_exit_statuses(capsys):
    for command in ("validate", "calibrate"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
        assert "1 a calibration fact missed its band" in text, f"{command} --help should explain exit 1"
        assert "2 a usage mistake" in text, f"{command} --help should explain exit 2"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [(["--scenario", "no_such_world"], "no_such_world"), (["--seed", "-5"], "--seed")],
    ids=["scenario", "seed"],
)
def test_command_line_mistake_exits_2_without_traceback(tmp_path, extra, expected):
    argv = [sys.executable, "-m", "analysis", *_validate(tmp_path, *extra)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, f"exit 2 expected, got {done.returncode}: {done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert expected in done.stderr, done.stderr
