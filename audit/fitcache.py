"""Cache of trained generators, keyed by everything that determines the weights.

Re-auditing a model with another policy, report or audit setting must not retrain it. The key
hashes: the generator name; ``generator_options``; the ``train``, ``data`` and ``dp`` config;
the seed and device; the cohort's data hash and the ids of the train subjects; and the sha256 of
the training code (every ``.py`` file of the ``generators`` and ``cohorts`` packages), so a code
change never serves stale weights. ``sample.*`` and ``audit.*`` are not in the key: they do not
touch training. Entries live under ``$CMR_AUDIT_CACHE/generators/<key>/`` as the generator's own
``save()`` output (``config.json`` + safetensors) plus ``losses.csv``; they are written under a
temporary name and renamed when complete. ``audit run --no-cache`` neither reads nor writes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from functools import lru_cache
from pathlib import Path
from audit import config as C
from audit.atomic import atomic_dir
from audit.paths import cache_dir
from audit.provenance import sha256_json

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the training code (generators and cohorts packages, sorted by path)."""
    import cohorts
    import generators

    h = hashlib.sha256()
    for pkg in (generators, cohorts):
        root = Path(pkg.__file__).resolve().parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def fit_key(cfg: C.RunConfig, data_hash: str, train_ids: list[str]) -> str:
    d = C.config_to_dict(cfg)
    material = {k: d[k] for k in ("generator", "generator_options", "train", "data", "dp", "seed", "device")}
    material.update(data_hash=data_hash, train_ids=sorted(map(str, train_ids)), code=code_hash())
    return sha256_json(material)[:32]


def entry_dir(key: str) -> Path:
    return cache_dir("generators", create=True) / key


def lookup(key: str) -> Path | None:
    """The cached generator directory for ``key`` if a complete entry exists."""
    d = entry_dir(key)
    return d if (d / "generator").is_dir() and (d / "COMPLETE").is_file() else None


def store(key: str, generator_dir: Path, losses: Path | None) -> None:
    with atomic_dir(entry_dir(key)) as staging:
        shutil.copytree(generator_dir, staging / "generator")
        if losses is not None and losses.is_file():
            shutil.copy2(losses, staging / "losses.csv")
        (staging / "COMPLETE").write_text(key + "\n", encoding="utf-8")
    log.info("fit cache: stored %s", key)


def restore(hit: Path, generator_dir: Path, losses: Path) -> None:
    """Copy a cached entry into a run directory (atomically per directory)."""
    with atomic_dir(generator_dir) as staging:
        shutil.copytree(hit / "generator", staging, dirs_exist_ok=True)
    if (hit / "losses.csv").is_file():
        shutil.copy2(hit / "losses.csv", losses)
