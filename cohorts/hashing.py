"""The cohort ``data_hash``: which bytes a cohort was read from.

Definition (format ``cmr-audit-data-v1``)::

    file_digest(f) = sha256(bytes of f)                       # streamed, 1 MiB chunks
    data_hash      = sha256("cmr-audit-data-v1\\n"
                            + "".join(f"{rel}\\0{size}\\0{file_digest(f)}\\n"
                                      for rel in sorted(relative POSIX paths)))

Only the files a loader actually reads are hashed (NIfTI images and masks, ``Info.cfg``,
the M&Ms CSV), so unrelated files written beside a dataset (split files, notes, a
``phantom.json``) do not change its identity, while renaming, adding, removing or editing
any input does. Relative paths make the hash independent of where the dataset is mounted.

Hashing a large dataset means reading every byte, which defeats the purpose of a cache.
So per-file digests are memoised in ``cache_dir("file-digests")`` keyed by (absolute path,
size, mtime in ns), the same trade-off git's index makes: a file edited without changing
its size *and* mtime would go unnoticed. ``verify=True`` (``--rehash`` on the CLI) always
re-reads. A corrupt memo is ignored and rewritten, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable

from audit.core.atomic import atomic_write_json
from audit.core.paths import cache_dir

__all__ = ["FORMAT", "file_digest", "data_hash"]

log = logging.getLogger(__name__)

FORMAT = "cmr-audit-data-v1"
_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _memo_path(root: Path) -> Path:
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return cache_dir("file-digests") / f"{key}.json"


def _read_memo(path: Path, root: Path) -> dict[str, list]:
    try:
        memo = json.loads(path.read_text(encoding="utf-8"))
        if memo.get("format") != FORMAT or memo.get("root") != str(root.resolve()):
            return {}
        files = memo["files"]
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(v, list) and len(v) == 3}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def data_hash(root: str | Path, files: Iterable[str | Path], *, verify: bool = False, memo: bool = True) -> str:
    """The ``data_hash`` of ``files`` (all under ``root``); see the module docstring."""
    root = Path(root)
    rels: dict[str, Path] = {}
    for f in files:
        f = Path(f)
        try:
            rel = f.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = f.resolve().as_posix()
        rels[rel] = f
    memo_file = _memo_path(root) if memo else None
    cached = _read_memo(memo_file, root) if (memo_file and not verify) else {}
    fresh: dict[str, list] = {}
    h = hashlib.sha256(f"{FORMAT}\n".encode())
    for rel in sorted(rels):
        st = os.stat(rels[rel])
        entry = cached.get(rel)
        if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
            digest = str(entry[2])
        else:
            digest = file_digest(rels[rel])
        fresh[rel] = [st.st_size, st.st_mtime_ns, digest]
        h.update(f"{rel}\0{st.st_size}\0{digest}\n".encode())
    if memo_file is not None and fresh != cached:
        try:
            atomic_write_json(memo_file, {"format": FORMAT, "root": str(root.resolve()), "files": fresh}, indent=0)
        except OSError as exc:  # a read-only cache must not stop loading
            log.warning("could not write digest memo %s: %s", memo_file, exc)
    return h.hexdigest()
