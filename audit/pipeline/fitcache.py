"""Cache of trained generators, keyed by everything that determines the weights.

Re-auditing a model with another policy, report or audit setting must not retrain it. The key
hashes: the generator name; ``generator_options`` as resolved (what ``config.json`` holds, so runs
that differ only in spelling out a default share an entry); the ``train``, ``data`` and ``dp`` config;
the seed and device; the cohort's data hash and the ids of the train subjects; and the sha256 of
the training code (every ``.py`` file of the ``generators`` and ``cohorts`` packages), so a code
change never serves stale weights. ``sample.*`` and ``audit.*`` are not in the key: they do not
touch training. Entries live under ``$CMR_AUDIT_CACHE/generators/<key>/`` as the generator's own
``save()`` output (``config.json`` + safetensors) plus ``losses.csv``; they are written under a
temporary name and renamed when complete. ``audit run --no-cache`` neither reads nor writes.

Concurrency and integrity: a run that misses the cache trains under the entry's lock
(:func:`building`), so a second run with the same key waits and then reuses the first one's model
instead of training it again. ``COMPLETE`` holds the sha256 of every file of the entry; a lookup
verifies them all, and an entry that does not match (a bit flip, a truncated copy) is discarded
with a warning and retrained, never restored into a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from functools import lru_cache
from pathlib import Path

import cohorts
import generators
from audit.core.atomic import atomic_dir, atomic_write_json
from audit.core.locks import exclusive
from audit.core.paths import cache_dir
from audit.core.provenance import sha256_file, sha256_json
from audit.pipeline import config as C

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the training code (generators and cohorts packages, sorted by path)."""

    h = hashlib.sha256()
    for pkg in (generators, cohorts):
        root = Path(pkg.__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fit_key(cfg: C.RunConfig, data_hash: str, train_ids: list[str]) -> str:
    """The entry of a run's config (its ``generator_options`` resolved, as :func:`audit.pipeline.run.prepare`
    leaves them), cohort data hash and train subjects."""
    d = C.config_to_dict(cfg)
    material = {k: d[k] for k in ("generator", "generator_options", "train", "data", "dp", "seed", "device")}
    material.update(data_hash=data_hash, train_ids=sorted(map(str, train_ids)), code=code_hash())
    return sha256_json(material)[:32]


def entry_dir(key: str) -> Path:
    return cache_dir("generators", create=True) / key


MANIFEST_FORMAT = "cmr-audit/fit-cache/v2"


def _manifest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except ``COMPLETE`` itself, by relative POSIX path."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "COMPLETE"}


def _problem(d: Path, key: str) -> str | None:
    """Why the entry ``d`` cannot be trusted, or ``None`` if every file matches its stored sha256."""
    try:
        doc = json.loads((d / "COMPLETE").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return f"COMPLETE unreadable ({exc})"
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or doc.get("key") != key:
        return "COMPLETE is not a current fit-cache manifest"
    stored, found = doc.get("sha256") or {}, _manifest(d)
    for name in sorted(set(stored) | set(found)):
        if name not in found:
            return f"{name} is missing"
        if name not in stored:
            return f"{name} is not in the manifest"
        if stored[name] != found[name]:
            return f"{name} has sha256 {found[name][:12]}..., stored {str(stored[name])[:12]}..."
    return None if found else "the entry is empty"


def lookup(key: str, *, discard_corrupt: bool = True) -> Path | None:
    """The cached generator directory for ``key`` if a complete entry exists whose files all match
    their stored sha256. A corrupt entry is discarded with a warning (only with ``discard_corrupt``:
    callers without the entry's lock pass ``False``) and ``None`` is returned, so it is retrained."""
    d = entry_dir(key)
    if not ((d / "generator").is_dir() and (d / "COMPLETE").is_file()):
        return None
    problem = _problem(d, key)
    if problem is None:
        return d
    if discard_corrupt:
        log.warning("fit cache entry %s is corrupt (%s); discarding it and retraining", d, problem)
        shutil.rmtree(d, ignore_errors=True)
    return None


def building(key: str):
    """The entry's lock: held from a cache miss to :func:`store`, so concurrent runs train once."""
    return exclusive(entry_dir(key), what=f"the generator of fit-cache entry {key}")


def store(key: str, generator_dir: Path, losses: Path | None) -> None:
    with atomic_dir(entry_dir(key)) as staging:
        shutil.copytree(generator_dir, staging / "generator")
        if losses is not None and losses.is_file():
            shutil.copy2(losses, staging / "losses.csv")
        atomic_write_json(staging / "COMPLETE", {"format": MANIFEST_FORMAT, "key": key, "sha256": _manifest(staging)})
    log.info("fit cache: stored %s", key)


def restore(hit: Path, generator_dir: Path, losses: Path) -> None:
    """Copy a cached entry into a run directory (atomically per directory)."""
    with atomic_dir(generator_dir) as staging:
        shutil.copytree(hit / "generator", staging, dirs_exist_ok=True)
    if (hit / "losses.csv").is_file():
        shutil.copy2(hit / "losses.csv", losses)
