"""``--extend N``: more base samples for a finished (or unfinished) Sobol' run, reusing every run it holds.

Saltelli's sample for N base points is the first sets of the sample for any larger power of two drawn
with the same seed (scipy's scrambled Sobol' sequence nests; see
:mod:`analysis.sensitivity_convergence`), and an engine run depends only on its parameter set, so the
runs of a sweep at N are exactly the first runs of the same sweep at 2N. Extending therefore keeps
every stored chunk that is full, runs the rest, and gives bit for bit the outputs, and the indices, of
a run of the larger N from scratch (tests/test_extend.py checks it).

How the directory changes, under its lock:

1. The new sample (the old one's rows first, checked by digest) is written.
2. The last chunk, if the old sample ended inside it, is removed: at the larger N it holds more sets.
3. Every kept chunk file is rewritten with the new spec hash in its metadata (the values untouched),
   so a manifest rebuilt from the chunks later still recognises them.
4. The manifest takes the new spec, hash and counts, and an ``extended`` entry (from N, to N, when, and
   the index of the session that runs it).

A run killed in between is safe: the same command again finds the kept chunks (a file already
carrying the new hash is taken, one still verifying against its recorded checksum is rewritten, any
other runs again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from experiments import store
from experiments.spec import ExperimentSpec, run_part
from experiments.store import CHUNKS, MANIFEST, SAMPLE, StoreError, chunk_name


def grown(manifest: dict[str, Any], spec: ExperimentSpec) -> tuple[int, int] | None:
    """(old N, new N) when ``spec`` is the manifest's Sobol spec with only N larger; else None."""
    old = run_part(manifest["spec"]) if isinstance(manifest.get("spec"), dict) else {}
    new = json.loads(json.dumps(spec.run_dict(), default=str))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    old_n = old.get("N")
    if changed != ["N"] or spec.method != "sobol" or not isinstance(old_n, int) or spec.N is None:
        return None
    return (old_n, spec.N) if spec.N > old_n else None


def _rehash(path: Path, digest: str) -> dict[str, Any]:
    """Rewrite a chunk file with ``digest`` as its spec hash, values untouched; return its new checksum."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), store.SPEC_HASH_KEY: digest.encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return store.write_bytes(sink.getvalue().to_pybytes(), path)


def _checksum_matches(path: Path, record: Any) -> bool:
    if not isinstance(record, dict) or not path.is_file():
        return False
    data = path.read_bytes()
    return len(data) == record.get("bytes") and store.checksum(data)["sha256"] == record.get("sha256")


def extend_store(
    out: Path, manifest: dict[str, Any], spec: ExperimentSpec, sample: pd.DataFrame, extra: dict[str, Any], digest: str
) -> dict[str, Any]:
    """Turn the manifest and files of ``out`` into those of ``spec``'s larger N, keeping every full chunk.

    Args:
        out: the results directory (locked by the caller).
        manifest: its manifest, of the same spec at a smaller N (:func:`grown` says so).
        spec: the spec at the larger N.
        sample: ``spec``'s sample.
        extra: the manifest fields of ``spec`` (counts, problem, metrics).
        digest: ``spec``'s hash.

    Returns:
        The manifest, written.

    Raises:
        StoreError: the stored sample is not the start of the new one (another SALib version).
    """
    from experiments.resume import parts

    old_n, old_sets = manifest["spec"]["N"], manifest["n_sets"]
    recorded_digest = (manifest.get("sample") or {}).get("digest")
    if recorded_digest and store.frame_digest(sample.iloc[:old_sets]) != recorded_digest:
        raise StoreError(
            f"--extend: the sample of N = {spec.N} does not begin with the {old_sets:,} sets stored in {out / SAMPLE} "
            "(another SALib or scipy version?), so the runs cannot be reused. Give a new --out directory."
        )
    manifest["sample"] = store.write_parquet(sample, out / SAMPLE) | {"digest": store.frame_digest(sample)}
    keep = {chunk_name(i) for i in range(old_sets // spec.chunk_size)}  # full chunks only
    for part in parts(spec.to_dict()):
        key = "chunks" if part == CHUNKS else part
        records = manifest.get(key) if isinstance(manifest.get(key), dict) else {}
        kept = {}
        for name in sorted(set(records) | {p.name for p in (out / part).glob("chunk-*.parquet")}):
            path = out / part / name
            if name not in keep:
                path.unlink(missing_ok=True)
                continue
            try:
                meta = store.chunk_metadata(path) if path.is_file() else {}
            except Exception:  # noqa: BLE001 (pyarrow raises several kinds on a damaged file)
                meta = {}
            if meta.get(store.SPEC_HASH_KEY, b"").decode(errors="replace") == digest:  # rewritten before a kill
                kept[name] = store.file_checksum(path)
            elif _checksum_matches(path, records.get(name)):
                kept[name] = _rehash(path, digest)
            else:
                path.unlink(missing_ok=True)
        manifest[key] = kept
    history = manifest.get("extended") if isinstance(manifest.get("extended"), list) else []
    session = len(manifest.get("sessions") or [])  # the index of the session that runs the extension
    manifest |= extra | {
        "spec_hash": digest,
        "spec": spec.to_dict(),
        "complete": False,
        "extended": [
            *history,
            {"from_N": old_n, "to_N": spec.N, "at": store.now(), "kept_chunks": len(keep), "session": session},
        ],
    }
    store.write_json(manifest, out / MANIFEST)
    return manifest
