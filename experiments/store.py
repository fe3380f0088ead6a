"""The results directory of one experiment: its layout, and how each file is written so a crash loses nothing.

Layout of ``DIR``::

    manifest.json               spec and its hash, seed, git commit, package versions, sessions, and the
                                size and SHA-256 of the sample and of every finished chunk
    sample.parquet              the parameter sets, one row per set (see experiments.sampling)
    chunks/chunk-00012.parquet  outputs of chunk 12: one row per (set, replicate), every metric; its
                                Parquet metadata names the spec hash and the chunk
    curves/chunk-00012.parquet  with [store] curves = true: the per-session curves of chunk 12, one row
                                per (set, replicate, session), written just before the chunk
    indices.csv, figures/       written by ``python -m analysis sensitivity DIR``
    .lock                       the lock of the process using DIR (experiments.lock)

Every file is written to a temporary name in the same directory, flushed to disk and then renamed
(``os.replace`` is atomic on POSIX), so a file on disk is always complete. How a directory is created,
locked and verified on resume is :mod:`experiments.resume`.
"""

from __future__ import annotations

import hashlib
import json
import math
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

from sim.memory import release_freed_memory

MANIFEST = "manifest.json"
SAMPLE = "sample.parquet"
CHUNKS = "chunks"
CURVES = "curves"
SPEC_HASH_KEY = b"alliancesim.spec_hash"  # Parquet metadata of a chunk: the spec it was run for
CHUNK_KEY = b"alliancesim.chunk"
PACKAGES = ("alliancesim", "numpy", "scipy", "pandas", "SALib", "mesa", "numba", "pyarrow", "dask", "distributed")
REPO = Path(__file__).resolve().parents[1]


class StoreError(RuntimeError):
    """A results directory that cannot be used for this spec; the message says what to do."""


def chunk_name(index: int) -> str:
    """The file name of chunk ``index``."""
    return f"chunk-{index:05d}.parquet"


def chunk_path(out: Path, index: int, folder: str = CHUNKS) -> Path:
    """The file of chunk ``index`` in ``folder`` (the outputs; CURVES for its curves)."""
    return Path(out) / folder / chunk_name(index)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`write_atomic` (left behind only by a killed write)."""
    return name.startswith(".") and ".tmp-" in name


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(data: bytes, path: Path) -> dict[str, Any]:
    """Write ``data`` to ``path`` atomically; return its :func:`checksum`."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return checksum(data)


def checksum(data: bytes) -> dict[str, Any]:
    """Size and SHA-256 of ``data``, as the manifest records them."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_checksum(path: Path) -> dict[str, Any]:
    """:func:`checksum` of a file's contents."""
    return checksum(Path(path).read_bytes())


def parquet_bytes(frame: pd.DataFrame, metadata: dict[bytes, bytes] | None = None) -> bytes:
    """``frame`` as Parquet, with ``metadata`` added to the schema's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet(frame: pd.DataFrame, path: Path, metadata: dict[bytes, bytes] | None = None) -> dict[str, Any]:
    """Write ``frame`` as Parquet, atomically; return its checksum."""
    return write_bytes(parquet_bytes(frame, metadata), path)


def write_chunk(out: Path, index: int, frame: pd.DataFrame, spec_hash: str, folder: str = CHUNKS) -> dict[str, Any]:
    """Write chunk ``index`` into ``folder``, its metadata naming the spec and the chunk; return its checksum."""
    metadata = {SPEC_HASH_KEY: spec_hash.encode(), CHUNK_KEY: str(index).encode()}
    return write_parquet(frame, chunk_path(out, index, folder), metadata)


def chunk_metadata(path: Path) -> dict[bytes, bytes]:
    """The Parquet schema metadata of a chunk file (raises on a file that is not Parquet)."""
    import pyarrow.parquet as pq

    return pq.read_schema(path).metadata or {}


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names, types and values: the same sample gives the same digest."""
    h = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        h.update(f"{name}\x1f{column.dtype}\x1e".encode())
        if column.dtype.kind in "biuf":
            h.update(column.to_numpy().tobytes())
        else:
            h.update("\x1f".join(map(str, column.tolist())).encode())
    return h.hexdigest()


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float as None, so the JSON is valid (``null``, never ``NaN``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON, atomically; undefined numbers (NaN, inf) as null."""
    text = json.dumps(json_ready(data), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of ``out``."""
    return json.loads((Path(out) / MANIFEST).read_text())


def done_chunks(out: Path, folder: str = CHUNKS) -> set[int]:
    """Indices of the chunk files on disk (verified or not; see :mod:`experiments.resume`)."""
    folder = Path(out) / folder
    if not folder.is_dir():
        return set()
    found = set()
    for p in folder.glob("chunk-*.parquet"):
        number = p.name[len("chunk-") : -len(".parquet")]
        if number.isdigit():
            found.add(int(number))
    return found


def read_outputs(out: Path, folder: str = CHUNKS) -> pd.DataFrame:
    """Every stored output, one row per (set, replicate), sorted.

    With ``folder=CURVES``: the per-session curves, one row per (set, replicate, session).
    """
    out = Path(out)
    files = [chunk_path(out, i, folder) for i in sorted(done_chunks(out, folder))]
    if not files:
        return pd.DataFrame()
    import pyarrow as pa
    import pyarrow.parquet as pq

    # One table from all chunks, converted once: a third faster than a DataFrame per chunk concatenated.
    frame = pa.concat_tables([pq.read_table(f) for f in files]).to_pandas()
    keys = ["set", "replicate", "session"] if folder == CURVES else ["set", "replicate"]
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    # The chunks' buffers are freed by now, but Arrow's allocator and glibc (sim/memory.py) keep them
    # for reuse; the analysis that follows allocates little, so they go back to the system.
    release_freed_memory()
    return frame


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
