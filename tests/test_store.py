"""Resuming a results directory after anything a crash, a disk or a person can do to it: nothing lost, nothing mixed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.__main__ import main as analysis_main
from experiments import load_spec, run_experiment
from experiments.cli import main
from experiments.store import chunk_path, read_manifest, read_outputs

SPEC = """
method = "sobol"
scenario = "baseline"
outputs = ["dropout_rate", "mean_alliance"]
N = 4
replicates = 2
clients = 20
therapists = 2
seed = 5
chunk_size = 3

[parameters.therapist_empathy_mean]
[parameters.rupture_rate]
"""


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "store.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def finished(spec_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "out"
    run_experiment(load_spec(spec_path), out, "serial", progress=False)
    return out


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    return out


def resume(spec_path: Path, out: Path) -> int:
    return main(["run", str(spec_path), "--executor", "serial", "--out", str(out), "--no-progress"])


def assert_same(out: Path, finished: Path) -> None:
    manifest = read_manifest(out)
    assert manifest["complete"], "the resumed run should be complete"
    pd.testing.assert_frame_equal(read_outputs(out), read_outputs(finished), check_exact=True)
    assert (out / "indices.csv").read_text() == (finished / "indices.csv").read_text(), "the same indices"


def test_every_chunk_and_the_sample_are_recorded_with_a_checksum(finished):
    manifest = read_manifest(finished)
    assert sorted(manifest["chunks"]) == [chunk_path(finished, i).name for i in range(manifest["n_chunks"])]
    for name, record in manifest["chunks"].items():
        assert record["bytes"] == (finished / "chunks" / name).stat().st_size and len(record["sha256"]) == 64
    assert manifest["sample"]["bytes"] == (finished / "sample.parquet").stat().st_size
    assert manifest["sample"]["digest"], "a content digest, to check a sample drawn again"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "bytes where"),
        (lambda p: p.write_bytes(b""), "0 bytes where"),
        (lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\0" * 8), "checksum differs"),
        (lambda p: p.unlink(), "missing"),
    ],
    ids=["truncated", "empty", "altered", "deleted"],
)
def test_a_damaged_chunk_is_run_again_with_a_message(damage, expected, spec_path, finished, copy, capsys):
    damage(chunk_path(copy, 2))
    assert resume(spec_path, copy) == 0
    err = capsys.readouterr().err
    assert "chunk-00002.parquet" in err and expected in err and "run again" in err, err
    assert read_manifest(copy)["sessions"][-1]["chunks_run"] == 1, "only the damaged chunk is run again"
    assert_same(copy, finished)


@pytest.mark.parametrize(
    "damage",
    [lambda p: p.unlink(), lambda p: p.write_bytes(b"not parquet"), lambda p: p.write_bytes(p.read_bytes()[:100])],
    ids=["deleted", "corrupt", "truncated"],
)
def test_a_damaged_sample_is_drawn_again_and_checked(damage, spec_path, finished, copy, capsys):
    damage(copy / "sample.parquet")
    assert resume(spec_path, copy) == 0
    assert "sample.parquet" in capsys.readouterr().err
    assert read_manifest(copy)["sessions"][-1]["chunks_run"] == 0, "the chunks were fine"
    assert_same(copy, finished)
    pd.testing.assert_frame_equal(
        pd.read_parquet(copy / "sample.parquet"), pd.read_parquet(finished / "sample.parquet")
    )


def test_a_deleted_chunks_folder_is_run_again(spec_path, finished, copy, capsys):
    shutil.rmtree(copy / "chunks")
    assert resume(spec_path, copy) == 0
    assert "chunks is missing" in capsys.readouterr().err
    assert_same(copy, finished)


def test_a_deleted_manifest_is_rebuilt_from_the_chunks(spec_path, finished, copy, capsys):
    (copy / "manifest.json").unlink()
    chunk_path(copy, 4).unlink()
    assert resume(spec_path, copy) == 0
    assert "rebuilt" in capsys.readouterr().err
    manifest = read_manifest(copy)
    assert manifest["sessions"][-1]["chunks_run"] == 1, "the finished chunks are reused, only the missing one runs"
    assert_same(copy, finished)


def test_a_chunk_finished_after_the_last_manifest_write_is_verified_and_kept(spec_path, finished, copy):
    manifest = read_manifest(copy)
    del manifest["chunks"]["chunk-00003.parquet"]  # a kill between the chunk's rename and the manifest's
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert resume(spec_path, copy) == 0
    assert read_manifest(copy)["sessions"][-1]["chunks_run"] == 0
    assert "chunk-00003.parquet" in read_manifest(copy)["chunks"]


@pytest.mark.parametrize("stray", ["chunk-old.parquet", "chunk-99999.parquet", "notes.txt"])
def test_files_that_do_not_belong_are_named_and_refused(stray, spec_path, copy, capsys):
    (copy / "chunks" / stray).write_bytes(b"x")
    before = (copy / "manifest.json").read_text()
    assert resume(spec_path, copy) == 2
    err = capsys.readouterr().err
    assert stray in err and "did not write" in err and "Traceback" not in err and err.count("\n") == 1, err
    assert (copy / "manifest.json").read_text() == before, "a refused run changes nothing"
    assert analysis_main(["sensitivity", str(copy)]) == 2, "the analysis refuses it too"
    assert stray in capsys.readouterr().err


def test_a_chunk_of_another_spec_is_refused(spec_path, copy, tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("seed = 5", "seed = 6"))
    other_out = tmp_path / "other"
    run_experiment(load_spec(other), other_out, "serial", progress=False, analyse=False)
    shutil.copy(chunk_path(other_out, 1), chunk_path(copy, 1))  # same name, another spec's runs
    manifest = read_manifest(copy)
    del manifest["chunks"]["chunk-00001.parquet"]  # so its checksum cannot give it away
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert resume(spec_path, copy) == 2
    assert "written for another spec" in capsys.readouterr().err


@pytest.mark.parametrize("leftover", ["chunks only", "chunks and sample"])
def test_a_creation_killed_before_its_manifest_resumes(leftover, spec_path, finished, tmp_path):
    """What the old code left when killed in the ~30 ms between chunks/ and manifest.json."""
    out = tmp_path / "half"
    (out / "chunks").mkdir(parents=True)
    if leftover == "chunks and sample":
        shutil.copy(finished / "sample.parquet", out / "sample.parquet")
    assert resume(spec_path, out) == 0
    assert_same(out, finished)


def test_a_killed_session_is_recorded_as_such(spec_path, copy):
    manifest = read_manifest(copy)
    manifest["sessions"].append({"started": "2026-01-01T00:00:00+00:00", "executor": "serial", "chunks_run": 0})
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert resume(spec_path, copy) == 0
    sessions = read_manifest(copy)["sessions"]
    assert "killed" in sessions[-2]["ended"] and "finished" in sessions[-1]


# ── python -m analysis sensitivity on directories it cannot use (audit item 10) ──────────────


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda out: (out / "manifest.json").write_text("{not json"), "cannot be read"),
        (lambda out: (out / "manifest.json").write_text("[]"), "is not a JSON object"),
        (lambda out: (out / "manifest.json").write_text("{}"), "lacks spec_hash"),
        (lambda out: (out / "sample.parquet").unlink(), "sample.parquet is missing"),
        (lambda out: chunk_path(out, 0).write_bytes(b""), "chunk-00000.parquet (has 0 bytes"),
        (lambda out: shutil.rmtree(out / "figures") or (out / "figures").write_text("x"), "figures is a file"),
        (lambda out: (out / "indices.csv").unlink() or (out / "indices.csv").mkdir(), "indices.csv is a directory"),
        (lambda out: _edit(out, lambda m: m.pop("method")), "lacks method"),
        (lambda out: _edit(out, lambda m: m["spec"].update(outputs="dropout_rate")), "spec.outputs"),
        (lambda out: _edit(out, lambda m: m.update(n_chunks="many")), "n_chunks of the wrong type"),
    ],
    ids=[
        "not-json",
        "a-list",
        "no-keys",
        "no-sample",
        "empty-chunk",
        "figures-file",
        "indices-dir",
        "no-method",
        "outputs-text",
        "count-text",
    ],
)
def test_analysis_of_a_directory_it_cannot_use_exits_2(damage, expected, copy, capsys):
    damage(copy)
    assert analysis_main(["sensitivity", str(copy)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and err.count("\n") == 1, err


def _edit(out: Path, change) -> None:
    manifest = read_manifest(out)
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_analysis_of_a_missing_directory_exits_2(tmp_path, capsys):
    assert analysis_main(["sensitivity", str(tmp_path / "nothing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()
