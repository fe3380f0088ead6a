"""Opening a results directory: created atomically, locked for the run, verified before it is resumed.

What :func:`open_store` guarantees (tests/test_store.py, tests/test_lock.py, tests/test_chaos.py):

- **One run at a time.** The run holds an exclusive lock on the directory (:mod:`experiments.lock`)
  from before it reads anything until it ends; a second run is refused with the holder named, and the
  kernel releases the lock of a killed run, so a resume is never blocked by a stale lock.
- **Atomic creation.** A new directory is built under a temporary name beside it
  (``.NAME.creating-PID``: sample, manifest, ``chunks/``) and renamed into place, so DIR either does
  not exist or holds a manifest. A creation killed half way leaves only the temporary directory,
  which the next run removes. An existing empty directory is filled in place under the lock; what a
  killed creation leaves there (no manifest and no chunk) is started over.
- **Verified resume.** The manifest records the size and SHA-256 of the sample and of each chunk as
  it is written. On resume a chunk that is missing, truncated or altered is run again, with a
  message; a damaged or deleted sample is drawn again from the spec and checked against the digest
  the manifest recorded; a deleted ``chunks/`` is recreated. A file in ``chunks/`` that this
  experiment did not write, or a chunk written for another spec, is named and refused: results are
  never mixed and nothing is skipped silently. A deleted manifest is rebuilt from the chunks, which
  carry the spec hash in their metadata.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from glob import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments import store
from experiments.extend import extend_store, grown
from experiments.lock import DirectoryLock, LockError, try_lock
from experiments.spec import ExperimentSpec, run_part
from experiments.store import CHUNKS, CURVES, MANIFEST, SAMPLE, StoreError, chunk_name

REQUIRED = {"spec_hash": str, "spec": dict, "sessions": list, "n_sets": int, "n_chunks": int}
SPEC_REQUIRED = {"chunk_size": int, "replicates": int}
# What a run writes into its directory besides the manifest: a directory without a manifest that
# holds nothing else is a run's (a creation cut short, or a deleted manifest), anything more is not.
RUN_FILES = (".lock", SAMPLE, CHUNKS, CURVES, "indices.csv", "convergence.csv", "analysis.json", "figures")
RUN_FILES += ("runs.csv", "curves.csv", "sample.csv")  # python -m experiments export DIR --csv
SHOWN = 6  # file names listed in a message before "and N more"


def warn(message: str) -> None:
    """One ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def _listed(names: list[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def open_store(
    out: Path, spec: ExperimentSpec, sample: pd.DataFrame, extra: dict[str, Any], extend: bool = False
) -> tuple[dict[str, Any], DirectoryLock]:
    """Prepare ``out`` for ``spec`` and lock it: a new directory, or the same spec's earlier run to resume.

    Args:
        out: the results directory.
        spec: the experiment.
        sample: its parameter sets, from :func:`experiments.sampling.sample`.
        extra: more manifest fields for a new directory (problem, chunk count, ...).
        extend: ``out`` may hold the same Sobol spec at a smaller N: keep its runs and add the rest
            (:mod:`experiments.extend`); otherwise such a directory is refused like any other spec's.

    Returns:
        The manifest, its ``chunks`` holding exactly the verified chunks, and the held lock; release
        it (or use it as a context manager) when the run ends.

    Raises:
        StoreError: ``out`` holds another spec's results, files this experiment did not write or an
            unreadable manifest, is a file, or cannot be created or written.
        experiments.lock.LockError: another process is using ``out``.
    """
    out = Path(out)
    digest = spec.digest()
    try:
        for _ in range(3):
            if not out.exists() and not out.is_symlink():
                created = _create(out, spec, sample, extra, digest)
                if created is not None:
                    return created
                continue  # another run created it first: open it like any existing directory
            return _open_existing(out, spec, sample, extra, digest, extend)
    except OSError as err:
        raise StoreError(
            f"--out {out}: cannot be used ({err.strerror or err}); give a directory that can be created and written."
        ) from None
    raise StoreError(f"--out {out}: it kept changing while this run tried to create it; give another --out.")


def _new_manifest(spec: ExperimentSpec, sample: pd.DataFrame, extra: dict[str, Any], digest: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "description": spec.description,
        "spec_file": str(spec.path) if spec.path else None,
        "spec_hash": digest,
        "seed": spec.seed,
        "created": store.now(),
        "complete": False,
        **extra,
        "spec": spec.to_dict(),
        "provenance": store.provenance(),
        "sample": {},
        "chunks": {},
        **({CURVES: {}} if spec.store.curves else {}),
        "sessions": [],
    }


def _fill(folder: Path, spec, sample, extra, digest) -> dict[str, Any]:
    """Write a new directory's sample, chunks/ and (last) manifest into ``folder``."""
    for part in parts(spec.to_dict()):
        (folder / part).mkdir(exist_ok=True)
    manifest = _new_manifest(spec, sample, extra, digest)
    manifest["sample"] = store.write_parquet(sample, folder / SAMPLE) | {"digest": store.frame_digest(sample)}
    store.write_json(manifest, folder / MANIFEST)
    return manifest


def _create(out: Path, spec, sample, extra, digest) -> tuple[dict[str, Any], DirectoryLock] | None:
    """Build the directory under a temporary name beside ``out`` and rename it into place.

    Returns None when ``out`` appeared meanwhile (another run's directory, or a file).
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreError(
            f"--out {out}: {out.parent} (or a folder above it) is a file, not a folder; give a directory path."
        ) from None
    _remove_abandoned_creations(out)
    tmp = out.parent / f".{out.name}.creating-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    lock = DirectoryLock(tmp).acquire()  # the open lock follows the directory through the rename
    try:
        manifest = _fill(tmp, spec, sample, extra, digest)
        try:
            os.rename(tmp, out)  # atomic; fails when out now exists and is not an empty directory
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            return None
    except BaseException:
        lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lock.directory = out
    return manifest, lock


def _remove_abandoned_creations(out: Path) -> None:
    """Remove the temporary directories of creations that were killed (their lock is free)."""
    for folder in out.parent.glob(f".{escape(out.name)}.creating-*"):
        lock = try_lock(folder) if folder.is_dir() else None
        if lock is not None:
            shutil.rmtree(folder, ignore_errors=True)
            lock.release()


def _open_existing(out: Path, spec, sample, extra, digest, extend=False) -> tuple[dict[str, Any], DirectoryLock]:
    if not out.is_dir():
        raise StoreError(f"--out {out}: a file of that name exists; give a directory.")
    _refuse_foreign(out)  # before the lock: nothing is written into a directory that is not a run's
    lock = DirectoryLock(out).acquire()
    try:
        _remove_abandoned_creations(out)  # a creation killed before another run made the directory
        return _resume(out, spec, sample, extra, digest, extend), lock
    except BaseException:
        lock.release()
        raise


def _refuse_foreign(out: Path) -> None:
    if (out / MANIFEST).exists():
        return
    foreign = [p.name for p in out.iterdir() if p.name not in RUN_FILES and not store.is_temporary(p.name)]
    if foreign or ((out / CHUNKS).exists() and not (out / CHUNKS).is_dir()):
        raise StoreError(
            f"{out} is not empty and has no {MANIFEST}, so it is not an experiment's results directory "
            f"(it holds {_listed(foreign or [CHUNKS])}). Give a new or empty --out directory."
        )


def _resume(out: Path, spec: ExperimentSpec, sample: pd.DataFrame, extra, digest: str, extend=False) -> dict[str, Any]:
    """Under the lock: the manifest, rebuilt or checked against the spec, with the sample and chunks verified."""
    if (out / MANIFEST).exists():
        manifest = checked_manifest(out)
        if extend and manifest["spec_hash"] != digest and grown(manifest, spec):
            manifest = extend_store(out, manifest, spec, sample, extra, digest)
        _match_spec(out, manifest, spec, digest)
    else:
        manifest = _without_manifest(out, spec, sample, extra, digest)
    for tmp in [*out.glob(".*.tmp-*"), *(out / CHUNKS).glob(".*.tmp-*"), *(out / CURVES).glob(".*.tmp-*")]:
        tmp.unlink(missing_ok=True)
    _verify_sample(out, manifest, sample)
    _verify_chunks(out, manifest, spec, digest)
    if manifest["spec"] != json.loads(json.dumps(spec.to_dict())):  # outputs or bootstrap settings
        manifest["spec"] = spec.to_dict()
    store.write_json(manifest, out / MANIFEST)
    return manifest


def checked_manifest(out: Path) -> dict[str, Any]:
    """The manifest of ``out``, or a StoreError if it is not one this package wrote."""
    try:
        manifest = store.read_manifest(out)
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8
        problem = f"cannot be read ({str(err)[:200]})"
    else:
        problem = _manifest_problem(manifest)
        if problem is None:
            return manifest
    raise StoreError(
        f"{out / MANIFEST} {problem}, so the results in {out} cannot be matched to a spec; it may have been "
        f"cut short or edited. Delete {out} to start over, or delete only {MANIFEST} to have it rebuilt from "
        "the chunks, or give a new --out directory."
    )


def _manifest_problem(manifest: Any) -> str | None:
    """What keeps ``manifest`` from being one this package wrote, in words; None when nothing does."""
    if not isinstance(manifest, dict):
        return "is not a JSON object"
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        return f"lacks {', '.join(missing)}"
    spec = manifest["spec"] if isinstance(manifest["spec"], dict) else {}
    wrong = [k for k, kind in REQUIRED.items() if not isinstance(manifest[k], kind) or isinstance(manifest[k], bool)]
    wrong += [f"spec.{k}" for k, kind in SPEC_REQUIRED.items() if not isinstance(spec.get(k), kind)]
    wrong += [k for k in ("chunks", "sample", CURVES) if not isinstance(manifest.get(k, {}), dict)]
    records = manifest.get("chunks") if isinstance(manifest.get("chunks"), dict) else {}
    if any(not isinstance(r, dict) for r in records.values()):
        wrong.append("a chunk's checksum")
    if wrong:
        return f"has {', '.join(wrong)} of the wrong type"
    if manifest["n_sets"] < 0 or manifest["n_chunks"] < 0 or spec["chunk_size"] < 1 or spec["replicates"] < 1:
        return "has a negative count"
    return None


def _match_spec(out: Path, manifest: dict[str, Any], spec: ExperimentSpec, digest: str) -> None:
    if manifest["spec_hash"] == digest:
        return
    old = run_part(manifest["spec"]) if isinstance(manifest["spec"], dict) else {}
    new = json.loads(json.dumps(spec.run_dict(), default=str))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed == ["N"] and spec.method == "sobol" and isinstance(old.get("N"), int):
        more = (
            f" To add base samples to its runs, give --extend {spec.N}."
            if spec.N > old["N"]
            else f" It holds N = {old['N']}: give --extend {old['N']} to resume or re-analyse it."
        )
    else:
        more = ""
    if changed or not old:
        raise StoreError(
            f"{out} holds results of a different spec (hash {str(manifest['spec_hash'])[:12]}, "
            f"this spec {digest[:12]}; changed: {', '.join(changed) or 'unknown'}). "
            "Results are never mixed: give a new --out directory, or delete this one to start over." + more
        )
    # Same runs under an older hash (one that still counted the spec's name): adopt this one.
    manifest["spec_hash"] = digest


def _without_manifest(out: Path, spec, sample, extra, digest) -> dict[str, Any]:
    """A directory with no manifest: what a killed creation left (start over), or chunks to rebuild it from."""
    chunks = [
        p
        for part in parts(spec.to_dict())
        if (out / part).is_dir()
        for p in sorted((out / part).glob("*"))
        if not store.is_temporary(p.name)
    ]
    if not any(p.parent.name == CHUNKS for p in chunks):
        if (out / SAMPLE).exists() or (out / CHUNKS).exists():
            warn(f"{out} holds only what a creation cut short leaves (no {MANIFEST}, no chunk); it is started again.")
        (out / SAMPLE).unlink(missing_ok=True)
        return _fill(out, spec, sample, extra, digest)
    foreign = []
    for path in chunks:
        try:
            meta = store.chunk_metadata(path)
        except Exception:  # noqa: BLE001 (pyarrow raises several kinds on a file that is not Parquet)
            meta = {}
        if meta.get(store.SPEC_HASH_KEY, b"").decode(errors="replace") != digest:
            foreign.append(f"{path.parent.name}/{path.name}")
    if foreign:
        raise StoreError(
            f"{out} has no {MANIFEST}, and holds chunk files that were not written for this spec: "
            f"{_listed(foreign)}. Results are never mixed: give a new --out directory, or delete {out} to start over."
        )
    manifest = _new_manifest(spec, sample, extra, digest) | {"rebuilt": store.now()}
    n = sum(p.parent.name == CHUNKS for p in chunks)
    warn(f"{out / MANIFEST} was missing; it is rebuilt from the {n} chunk files written for this spec.")
    return manifest


def _verify_sample(out: Path, manifest: dict[str, Any], sample: pd.DataFrame) -> None:
    """Check sample.parquet against the manifest; write it again from the spec when it is missing or damaged."""
    path = out / SAMPLE
    digest = store.frame_digest(sample)
    recorded = manifest.get("sample") or {}
    if recorded.get("digest", digest) != digest:
        _sample_differs(out)
    if recorded.get("sha256"):
        problem = _file_problem(path, recorded)
    elif not path.is_file():
        problem = "is missing"
    else:  # written before checksums were recorded, or a rebuilt manifest: compare what it holds
        try:
            stored = pd.read_parquet(path)
        except Exception:  # noqa: BLE001 (pyarrow raises several kinds on a damaged file)
            problem = "cannot be read"
        else:
            if not stored.astype(object).equals(sample.astype(object)):
                _sample_differs(out)
            problem = None
    if problem:
        warn(f"{path} {problem}; it is written again from the spec (the same parameter sets, checked by digest).")
        manifest["sample"] = store.write_parquet(sample, path) | {"digest": digest}
    elif not recorded.get("sha256") or "digest" not in recorded:
        manifest["sample"] = store.file_checksum(path) | {"digest": digest}


def _sample_differs(out: Path) -> None:
    raise StoreError(
        f"{out / SAMPLE} differs from the sample this spec draws now (a different SALib version?). "
        "Give a new --out directory, or delete this one to start over."
    )


def _file_problem(path: Path, recorded: dict[str, Any]) -> str | None:
    """What is wrong with a file against its recorded checksum, in words; None when it matches."""
    if not path.is_file():
        return "is missing"
    data = path.read_bytes()
    if len(data) != recorded.get("bytes"):
        return f"has {len(data):,} bytes where {recorded.get('bytes'):,} were written (truncated or changed)"
    if store.checksum(data)["sha256"] != recorded.get("sha256"):
        return "has changed since it was written (its checksum differs)"
    return None


def parts(spec: dict[str, Any]) -> tuple[str, ...]:
    """The folders a chunk's files go into: chunks/, and curves/ when the spec (as a dict) stores curves."""
    stored = spec.get("store") if isinstance(spec.get("store"), dict) else {}
    return (CHUNKS, CURVES) if stored.get("curves") else (CHUNKS,)


def _records(manifest: dict[str, Any], part: str) -> dict[str, Any]:
    """The manifest's checksums of the files in ``part`` (``chunks`` for chunks/, ``curves`` for curves/)."""
    return manifest.setdefault("chunks" if part == CHUNKS else part, {})


def _verify_chunks(out: Path, manifest: dict[str, Any], spec: ExperimentSpec, digest: str) -> None:
    """Keep in the manifest exactly the chunks whose files are all verified; refuse files that do not belong.

    A chunk with curves is two files, curves/ written first: it counts as done when both verify. A
    curves file whose chunk was never written (a run killed between the two) is removed quietly, as
    the chunk is still to run; a recorded file that is missing or damaged reruns its chunk, with a warning.
    """
    folders = parts(spec.to_dict())
    expected = {chunk_name(i): i for i in range(manifest["n_chunks"])}
    present: dict[str, dict[str, Path]] = {}
    for part in folders:
        folder, recorded = out / part, _records(manifest, part)
        if not folder.is_dir():
            if recorded:
                warn(f"{folder} is missing; its {len(recorded)} finished chunks are run again.")
            folder.mkdir()
        present[part] = {p.name: p for p in folder.iterdir() if p.name in expected and p.is_file()}
        strays = [p.name for p in folder.iterdir() if p.name not in present[part] and not store.is_temporary(p.name)]
        if strays:
            raise StoreError(
                f"{folder} holds {len(strays)} file{'s' * (len(strays) > 1)} that this experiment did not write: "
                f"{_listed(strays)} (it writes chunk-00000.parquet to {chunk_name(manifest['n_chunks'] - 1)}). "
                f"Results are never mixed and nothing is skipped silently: move them out of {folder}, then run the "
                "same command again."
            )
    bad: dict[str, str] = {}  # chunk name -> why it runs again (empty: it never finished)
    foreign = []
    for part in folders:
        recorded = _records(manifest, part)
        label = "" if part == CHUNKS else f"{part}/"
        for name in sorted(set(recorded) - set(present[part])):
            bad.setdefault(name, f"{label}{name} (missing)")
        for name, path in sorted(present[part].items()):
            if name in recorded:
                problem = _file_problem(path, recorded[name])
            else:  # finished after the manifest was last written, or written before checksums were recorded
                problem = _chunk_problem(path, expected[name], manifest, digest, part)
            if problem == "was written for another spec":
                foreign.append(f"{label}{name}")
            elif problem:
                bad.setdefault(name, f"{label}{name} ({problem})")
    if foreign:
        raise StoreError(
            f"{out} holds chunks written for another spec: {_listed(foreign)}. Results are never mixed: "
            f"move them out, or delete {out} to start over."
        )
    for name in expected:  # a chunk lacking one of its files (curves without a chunk: never finished)
        if (
            name not in bad
            and any(name in present[p] for p in folders)
            and not all(name in present[p] for p in folders)
        ):
            bad[name] = "" if name not in present[CHUNKS] else f"{name} (its curves are missing)"
    for name in bad:
        for part in folders:
            if name in present[part]:
                present[part][name].unlink()
            _records(manifest, part).pop(name, None)
    for part in folders:
        recorded = _records(manifest, part)
        for name, path in present[part].items():
            if name not in bad and name not in recorded:
                recorded[name] = store.file_checksum(path)
    rerun = [why for why in bad.values() if why]
    if rerun:
        warn(f"{len(rerun)} chunk{'s' * (len(rerun) > 1)} of {out} will be run again: {_listed(rerun)}.")


def _chunk_problem(path: Path, index: int, manifest: dict[str, Any], digest: str, part: str = CHUNKS) -> str | None:
    """Whether an unrecorded file holds what chunk ``index`` of this spec holds (in ``part``); None when it does."""
    try:
        meta = store.chunk_metadata(path)
        frame = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 (pyarrow raises several kinds on a damaged file)
        return "cannot be read"
    spec_hash = meta.get(store.SPEC_HASH_KEY)
    if spec_hash is not None and spec_hash.decode(errors="replace") != digest:
        return "was written for another spec"
    size, reps, n_sets = manifest["spec"]["chunk_size"], manifest["spec"]["replicates"], manifest["n_sets"]
    first = index * size
    n = min(size, n_sets - first)
    sets = np.repeat(np.arange(first, first + n), reps)
    replicates = np.tile(np.arange(reps), n)
    if not {"set", "replicate"} <= set(frame.columns):
        return "does not hold this chunk's parameter sets"
    if part != CHUNKS:  # curves: a run of sessions per (set, replicate), in the chunk's order
        pairs = frame[["set", "replicate"]].drop_duplicates()
        sets_ok = np.array_equal(pairs["set"], sets) and np.array_equal(pairs["replicate"], replicates)
        return None if sets_ok and "session" in frame.columns else "does not hold this chunk's parameter sets"
    if len(frame) != len(sets):
        return "does not hold this chunk's parameter sets"
    if not (np.array_equal(frame["set"], sets) and np.array_equal(frame["replicate"], replicates)):
        return "does not hold this chunk's parameter sets"
    return None


def finished(out: Path) -> dict[str, Any]:
    """The manifest of a finished run whose files all verify, for analysis; nothing is changed.

    Raises:
        StoreError: no or an unreadable manifest, chunks missing or damaged, files that do not belong.
        experiments.lock.LockError: never (the caller takes the lock).
    """
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise StoreError(f"{out} has no {MANIFEST}: give the --out directory of `python -m experiments run`.")
    manifest = checked_manifest(out)
    rerun = f"`python -m experiments run {manifest.get('spec_file') or 'SPEC'} --out {out}`"
    expected = {chunk_name(i) for i in range(int(manifest["n_chunks"]))}
    problems: dict[str, str] = {}  # chunk -> its first problem
    for part in parts(manifest["spec"]):
        folder = out / part
        on_disk = {p.name for p in folder.iterdir() if not store.is_temporary(p.name)} if folder.is_dir() else set()
        strays = sorted(on_disk - expected)
        if strays:
            raise StoreError(
                f"{folder} holds files that this experiment did not write: {_listed(strays)}. Move them out of "
                f"{folder} so nothing is mixed in, then analyse again."
            )
        label = "" if part == CHUNKS else f"{part}/"
        recorded = manifest.get("chunks" if part == CHUNKS else part)
        for name in sorted(expected - on_disk):
            problems.setdefault(name, f"{label}{name} (missing)")
        if isinstance(recorded, dict):  # manifests before checksums have none: presence is all that is known
            for name in sorted(expected & on_disk):
                problem = _file_problem(folder / name, recorded[name]) if name in recorded else "not yet verified"
                if problem:
                    problems.setdefault(name, f"{label}{name} ({problem})")
    if problems:
        raise StoreError(
            f"{out} is not a finished run: {len(problems)} of {len(expected)} chunks are missing or damaged: "
            f"{_listed(list(problems.values()))}. Finish or repair it with {rerun}; it runs only what is missing or "
            "damaged."
        )
    sample = manifest.get("sample") or {}
    problem = _file_problem(out / SAMPLE, sample) if sample.get("sha256") else None
    if problem or not (out / SAMPLE).is_file():
        raise StoreError(f"{out / SAMPLE} {problem or 'is missing'}. Repair it with {rerun}.")
    return manifest


__all__ = ["LockError", "checked_manifest", "finished", "open_store"]
