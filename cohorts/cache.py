"""Prepared-cohort cache: preprocessed arrays keyed by (data hash, preprocessing config).

Entry layout, in ``cache_dir("cohorts", key)`` with ``key = cache_key(data_hash, config)``::

    arrays.npz   uncompressed (reading speed is the point): per subject i
                 ``{i}_image`` float32 (T,Z,S,S), ``{i}_mask`` uint8 (if any),
                 ``{i}_labelled`` bool (T,), ``{i}_affine`` float64 (4,4)
    meta.json    format, key, data hash, config, npz size, and per subject its fields,
                 metadata and the shapes/dtypes of its arrays

The entry is written into a staging folder (``arrays.npz`` first, ``meta.json`` last as the
commit marker) that is renamed into place when complete; a cold load prepares the cohort under
the entry's lock (:mod:`audit.core.locks`), so concurrent runs wait for one builder and reuse its
entry. On reading, everything is checked (format, key, hash, config, file size, every array's
presence, shape and dtype; the zip CRC-32 of each array is verified by ``zipfile`` as it is
read). Any failure means the entry is corrupt: it is logged, deleted (under the lock) and
rebuilt, never trusted. A warm load opens no NIfTI file: the data hash comes from the scan plus the
digest memo of :mod:`cohorts.hashing`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audit.core.atomic import atomic_dir, atomic_save_npz, atomic_write_json, jsonable
from audit.core.errors import UserError
from audit.core.locks import exclusive
from audit.core.logs import progress_disabled
from audit.core.paths import cache_dir

from .hashing import data_hash as compute_data_hash
from .loaders import _raise_first, scan_dataset
from .loaders._common import read_subject
from .parallel import ordered_map
from .preprocess import PreparedCohort, PreprocessConfig, prepare_subject
from .types import Subject

__all__ = ["CACHE_FORMAT", "CorruptCacheEntry", "cache_key", "entry_dir", "store", "load", "load_prepared"]

log = logging.getLogger(__name__)

CACHE_FORMAT = "cmr-audit-cohort-cache-v1"


class CorruptCacheEntry(Exception):
    """A cache entry that exists but cannot be trusted (internal; triggers a rebuild)."""


def cache_key(data_hash: str, config: PreprocessConfig) -> str:
    """Cache key: sha256 over format, data hash and config digest (24 hex chars)."""
    payload = f"{CACHE_FORMAT}\n{data_hash}\n{config.key()}"
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def entry_dir(key: str, *, create: bool = False) -> Path:
    return cache_dir("cohorts", key, create=create)


def store(prepared: PreparedCohort, key: str | None = None) -> Path:
    """Write ``prepared`` to its cache entry: both files into a staging folder that is renamed into
    place when complete (:func:`audit.core.atomic.atomic_dir`), so a reader never sees a partial entry.
    Callers that may race with other processes hold :func:`audit.core.locks.exclusive` on the entry."""
    key = key or cache_key(prepared.data_hash, prepared.config)
    d = entry_dir(key, create=False)
    with atomic_dir(d) as staging:
        _write_entry(staging, prepared, key)
    log.info("cached %d prepared subjects in %s", len(prepared.subjects), d)
    return d


def _write_entry(d: Path, prepared: PreparedCohort, key: str) -> None:
    """``arrays.npz`` then ``meta.json`` (the commit marker) into the folder ``d``."""
    meta_path = d / "meta.json"
    arrays: dict[str, np.ndarray] = {}
    subjects_meta = []
    for i, s in enumerate(prepared.subjects):
        arrays[f"{i}_image"] = np.ascontiguousarray(s.image, dtype=np.float32)
        arrays[f"{i}_labelled"] = np.asarray(s.labelled, dtype=bool)
        arrays[f"{i}_affine"] = np.asarray(s.affine, dtype=np.float64)
        if s.mask is not None:
            arrays[f"{i}_mask"] = np.ascontiguousarray(s.mask, dtype=np.uint8)
        subjects_meta.append(
            {
                "subject_id": s.subject_id,
                "vendor": s.vendor,
                "centre": s.centre,
                "group": s.group,
                "spacing": list(s.spacing),
                "ed": int(s.ed),
                "es": int(s.es),
                "source": s.source,
                "metadata": jsonable(s.metadata),
                "arrays": {k.split("_", 1)[1]: [list(arrays[k].shape), str(arrays[k].dtype)] for k in arrays if k.startswith(f"{i}_")},
            }
        )
    npz = d / "arrays.npz"
    atomic_save_npz(npz, compressed=False, **arrays)
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "data_hash": prepared.data_hash,
        "config": prepared.config.to_dict(),
        "name": prepared.name,
        "layout": prepared.layout,
        "root": prepared.root,
        "npz_size": npz.stat().st_size,
        "subjects": subjects_meta,
    }
    atomic_write_json(meta_path, meta)


def _load_entry(d: Path, key: str, data_hash: str, config: PreprocessConfig) -> PreparedCohort:
    meta_path, npz = d / "meta.json", d / "arrays.npz"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptCacheEntry(f"meta.json unreadable ({exc})") from None
    try:
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            raise CorruptCacheEntry("format or key mismatch")
        if meta.get("data_hash") != data_hash or PreprocessConfig.from_dict(meta["config"]) != config:
            raise CorruptCacheEntry("data hash or config mismatch")
        if not npz.is_file() or npz.stat().st_size != int(meta["npz_size"]):
            raise CorruptCacheEntry("arrays.npz missing or of the wrong size")
        subjects = []
        with np.load(npz, allow_pickle=False) as z:
            names = set(z.files)
            for i, sm in enumerate(meta["subjects"]):
                arrs: dict[str, np.ndarray] = {}
                for part, (shape, dtype) in sm["arrays"].items():
                    k = f"{i}_{part}"
                    if k not in names:
                        raise CorruptCacheEntry(f"array {k} missing")
                    a = z[k]  # zipfile verifies the member's CRC-32 while reading
                    if list(a.shape) != list(shape) or str(a.dtype) != dtype:
                        raise CorruptCacheEntry(f"array {k} has shape {a.shape} {a.dtype}, expected {shape} {dtype}")
                    arrs[part] = a
                if "image" not in arrs or "labelled" not in arrs:
                    raise CorruptCacheEntry(f"subject {i} incomplete")
                subjects.append(
                    Subject(
                        subject_id=sm["subject_id"],
                        vendor=sm["vendor"],
                        centre=sm["centre"],
                        group=sm["group"],
                        spacing=tuple(float(v) for v in sm["spacing"]),  # type: ignore[arg-type]
                        ed=int(sm["ed"]),
                        es=int(sm["es"]),
                        image=arrs["image"],
                        mask=arrs.get("mask"),
                        labelled=arrs["labelled"],
                        source=sm["source"],
                        affine=arrs.get("affine", np.eye(4)),
                        metadata=sm["metadata"],
                    )
                )
    except CorruptCacheEntry:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, ValueError, KeyError, ...: all mean "corrupt"
        raise CorruptCacheEntry(f"{type(exc).__name__}: {exc}") from None
    return PreparedCohort(
        subjects=subjects, name=meta["name"], layout=meta["layout"], data_hash=data_hash, root=meta.get("root", ""), config=config
    )


def load(data_hash: str, config: PreprocessConfig, *, discard_corrupt: bool = True) -> PreparedCohort | None:
    """The cached prepared cohort, or ``None`` if absent, partial or corrupt.

    A corrupt entry is removed (and logged) only with ``discard_corrupt``: callers that do not
    hold the entry's lock pass ``False``, because what looks corrupt to them may be an entry that
    another process is publishing at that moment.
    """
    key = cache_key(data_hash, config)
    d = entry_dir(key)
    if not (d / "meta.json").is_file():
        return None
    try:
        return _load_entry(d, key, data_hash, config)
    except CorruptCacheEntry as exc:
        if discard_corrupt:
            log.warning("cohort cache entry %s is corrupt (%s); rebuilding it", d, exc)
            shutil.rmtree(d, ignore_errors=True)
        return None


def _read_and_prepare(rec, config: PreprocessConfig) -> Subject:
    """One subject of a manifest, read (first problem raised, naming its file) and prepared."""
    subject, problems = read_subject(rec)
    _raise_first(problems)
    assert subject is not None
    return prepare_subject(subject, config)


def load_prepared(
    path: str | Path,
    config: PreprocessConfig = PreprocessConfig(),
    *,
    layout: str | None = None,
    use_cache: bool = True,
    verify_hash: bool = False,
    progress: bool = True,
) -> PreparedCohort:
    """Load and prepare the dataset at ``path``, through the cache.

    Warm: scan the folder (text files only), hash (digest memo), read ``arrays.npz``.
    Cold: read and prepare every subject (in worker processes for larger cohorts; the result
    does not depend on how many), store the entry.
    """
    manifest = scan_dataset(path, layout)
    _raise_first(manifest.problems)
    if not manifest.records:
        raise UserError(f"{manifest.root}: no subjects found")
    digest = compute_data_hash(manifest.root, manifest.files, verify=verify_hash)
    if not use_cache:
        return _prepare(manifest, digest, config, progress)
    key = cache_key(digest, config)
    hit = load(digest, config, discard_corrupt=False)
    if hit is None:
        # one process prepares the cohort while concurrent runs wait for it, then all read the entry
        with exclusive(entry_dir(key), what=f"the prepared cohort {manifest.name}"):
            hit = load(digest, config)
            if hit is None:
                prepared = _prepare(manifest, digest, config, progress)
                try:
                    store(prepared, key)
                except OSError as exc:
                    log.warning("could not write the cohort cache: %s", exc)
                return prepared
    log.info("cohort cache hit for %s (%s)", manifest.root, key)
    hit.root = str(manifest.root)
    return hit


def _prepare(manifest, digest: str, config: PreprocessConfig, progress: bool) -> PreparedCohort:
    """Read and prepare every subject of ``manifest`` (no cache)."""

    # read + prepare each subject in worker processes (cohorts.parallel), gathered in manifest order
    work = ordered_map(_read_and_prepare, [(rec, config) for rec in manifest.records])
    subjects = list(tqdm(work, total=len(manifest.records), desc=f"reading {manifest.name}", unit="subject",
                         disable=not progress or progress_disabled(), leave=False))
    return PreparedCohort(subjects=subjects, name=manifest.name, layout=manifest.layout, data_hash=digest,
                          root=str(manifest.root), config=config)
