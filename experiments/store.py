"""The results directory of one experiment, and how it is written so a crash loses nothing finished.

Layout of ``DIR``::

    manifest.json             spec and its hash, seed, git commit, package versions, timings
    sample.parquet            the parameter sets, one row per set (see experiments.sampling)
    chunks/chunk-00012.parquet  outputs of chunk 12: one row per (set, replicate), every metric
    indices.csv, figures/     written by ``python -m analysis sensitivity DIR``

Every file is written to a temporary name in the same directory and then renamed (``os.replace``
is atomic on POSIX), so a chunk file on disk is always complete and a killed run resumes by running
only the chunks whose files are missing. A directory belongs to one spec hash; a changed spec
pointed at it is refused, never mixed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.spec import ExperimentSpec, run_part
from sim.userfiles import output_dir

MANIFEST = "manifest.json"
SAMPLE = "sample.parquet"
CHUNKS = "chunks"
PACKAGES = ("alliancesim", "numpy", "scipy", "pandas", "SALib", "mesa", "numba", "pyarrow", "dask", "distributed")
REPO = Path(__file__).resolve().parents[1]


class StoreError(RuntimeError):
    """A results directory that cannot be used for this spec; the message says what to do."""


def chunk_path(out: Path, index: int) -> Path:
    """The file of chunk ``index``."""
    return out / CHUNKS / f"chunk-{index:05d}.parquet"


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as Parquet, atomically."""
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, engine="pyarrow"))


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of ``out``."""
    return json.loads((out / MANIFEST).read_text())


def _checked_manifest(out: Path) -> dict[str, Any]:
    """The manifest of ``out``, or a StoreError if it is not one this package wrote."""
    try:
        manifest = read_manifest(out)
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8
        problem = f"cannot be read ({err})"
    else:
        missing = [k for k in ("spec_hash", "spec", "sessions") if not isinstance(manifest, dict) or k not in manifest]
        if not missing:
            return manifest
        problem = f"lacks {', '.join(missing)}"
    raise StoreError(
        f"{out / MANIFEST} {problem}, so the results in {out} cannot be matched to a spec; it may have been "
        f"cut short or edited. Delete {out} to start over, or give a new --out directory."
    )


def done_chunks(out: Path) -> set[int]:
    """Indices of the chunks whose files are on disk."""
    return {int(p.stem.split("-")[1]) for p in (out / CHUNKS).glob("chunk-*.parquet")}


def read_outputs(out: Path) -> pd.DataFrame:
    """Every stored output, one row per (set, replicate), sorted."""
    out = Path(out)
    files = sorted((out / CHUNKS).glob("chunk-*.parquet"))
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.sort_values(["set", "replicate"], kind="stable").reset_index(drop=True)


def provenance() -> dict[str, Any]:
    """Git commit, package versions and platform, for the manifest."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_store(out: Path, spec: ExperimentSpec, sample: pd.DataFrame, extra: dict[str, Any]) -> dict[str, Any]:
    """Prepare ``out`` for ``spec``: a new directory, or the same spec's earlier run to resume.

    Args:
        out: the results directory.
        spec: the experiment.
        sample: its parameter sets, from :func:`experiments.sampling.sample`.
        extra: more manifest fields for a new directory (problem, chunk count, ...).

    Returns:
        The manifest.

    Raises:
        StoreError: ``out`` holds another spec's results, files that are not a run's or an unreadable
            manifest, is a file, or cannot be created.
    """
    digest = spec.digest()
    output_dir(out, StoreError)
    if (out / MANIFEST).exists():
        manifest = _checked_manifest(out)
        if manifest["spec_hash"] != digest:
            old = run_part(manifest["spec"])
            new = json.loads(json.dumps(spec.run_dict(), default=str))
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if changed:
                raise StoreError(
                    f"{out} holds results of a different spec (hash {manifest['spec_hash'][:12]}, "
                    f"this spec {digest[:12]}; changed: {', '.join(changed)}). "
                    "Results are never mixed: give a new --out directory, or delete this one to start over."
                )
            # Same runs under an older hash (one that still counted the spec's name): adopt this one.
            manifest["spec_hash"] = digest
            write_json(manifest, out / MANIFEST)
        stored = pd.read_parquet(out / SAMPLE)
        if not stored.astype(object).equals(sample.astype(object)):
            raise StoreError(
                f"{out}/{SAMPLE} differs from the sample this spec draws now (a different SALib version?). "
                "Give a new --out directory, or delete this one to start over."
            )
        for tmp in (out / CHUNKS).glob(".*.tmp-*"):  # left by a killed run
            tmp.unlink(missing_ok=True)
        if manifest["spec"] != json.loads(json.dumps(spec.to_dict())):  # outputs or bootstrap settings
            manifest["spec"] = spec.to_dict()
            write_json(manifest, out / MANIFEST)
        return manifest
    if out.exists() and any(out.iterdir()):
        raise StoreError(
            f"{out} is not empty and has no {MANIFEST}, so it is not an experiment's results directory. "
            "Give a new or empty --out directory."
        )
    output_dir(out / CHUNKS, StoreError)
    write_parquet(sample, out / SAMPLE)
    manifest = {
        "name": spec.name,
        "description": spec.description,
        "spec_file": str(spec.path) if spec.path else None,
        "spec_hash": digest,
        "seed": spec.seed,
        "created": now(),
        "complete": False,
        **extra,
        "spec": spec.to_dict(),
        "provenance": provenance(),
        "sessions": [],
    }
    write_json(manifest, out / MANIFEST)
    return manifest
