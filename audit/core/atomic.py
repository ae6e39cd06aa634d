"""Atomic file writes: the one helper every module uses to write files.

A write goes to a temporary file in the destination directory, is flushed and
``fsync``-ed, then ``os.replace``-d over the destination (atomic on POSIX and
Windows for the same filesystem), and finally the directory entry is fsync-ed.
A crash at any point leaves either the old file or the new one, never a half file
that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

__all__ = [
    "atomic_dir",
    "jsonable",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save_npz",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; replace ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        kwargs = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _publish_dir(staging: Path, path: Path, attempts: int = 5) -> None:
    """Rename the finished tree ``staging`` to ``path``; an existing ``path`` is first moved aside
    (to a hidden sibling) and deleted only after the new tree is in place.

    ``rename`` cannot replace a non-empty directory, so the old tree has to leave first; moving it
    aside (instead of deleting it in place, which takes time and leaves half a tree to readers)
    keeps the window in which ``path`` is missing to two renames. A concurrent publisher that wins
    that window makes the rename fail with "not empty": the loop then moves its tree aside too.
    """

    for attempt in range(attempts):
        aside = None
        if path.exists():
            aside = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(path, aside)
            except FileNotFoundError:  # another publisher moved it away first
                aside = None
        try:
            os.rename(staging, path)
        except OSError:
            if aside is not None:
                with contextlib.suppress(OSError):
                    os.rename(aside, path)  # put the old tree back; nothing was published
                if aside.exists():  # another publisher's tree is in place: ours is stale
                    shutil.rmtree(aside, ignore_errors=True)
            if attempt == attempts - 1:
                raise
            continue
        _fsync_dir(path.parent)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        return


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary sibling name; it replaces ``path`` only when the
    body finishes (the old tree is moved aside, the new one renamed in, then the old one
    deleted). An interrupted build is removed and never looks complete. Concurrent builders of
    one cache entry should also hold :func:`audit.core.locks.exclusive`, so only one of them builds."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide run artefacts from colleagues
        yield staging
        _publish_dir(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def stale_builds(path: str | os.PathLike) -> list[Path]:
    """The hidden siblings :func:`atomic_dir` leaves next to ``path`` when its process is killed
    (SIGKILL, out of memory, power loss) before it can clean up: staging trees
    (``.NAME.<8 random>``) and old trees moved aside (``.NAME.old-<8 hex>``). Only a caller that
    holds the entry's lock (:func:`audit.core.locks.exclusive`) may delete them: then no other
    process is building that entry."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(old-[0-9a-f]{{8}}|[a-z0-9_]{{8}})")
    try:
        return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())
    except OSError:
        return []


def jsonable(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: NumPy arrays/scalars converted, dict keys as strings,
    non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` to JSON (sorted keys, UTF-8) and write it atomically.

    Serialisation happens before the file is opened, so an unserialisable object
    never touches the destination.
    """
    text = json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_save_npz(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez(_compressed)`` through :func:`atomic_open` (the name is kept as given)."""
    saver = np.savez_compressed if compressed else np.savez
    with atomic_open(path, "wb") as fh:
        saver(fh, **arrays)
    return Path(path)
