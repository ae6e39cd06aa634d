"""Inter-process locks for the shared caches: one process builds an entry, the others wait and reuse it.

Several runs may share one ``$CMR_AUDIT_CACHE`` at the same time (``tox -p`` runs the generator
matrix in parallel; two users may start runs together). Every cache entry that is expensive to
build (the phantom folder, a prepared cohort, the judge network and its int8 graph, a trained
generator, the shared autoencoder) is built under an exclusive lock on a sibling lock file
``.<name>.lock``, and published by renaming the finished tree into place
(:func:`audit.core.atomic.atomic_dir`). A reader therefore finds either nothing (and waits for the
lock, then re-checks) or a complete entry, never half a tree.

The locks are ``fcntl``/``msvcrt`` advisory locks through the ``filelock`` package: the operating
system releases them when their process dies, so a run killed with SIGKILL never leaves a lock
that blocks the next one. A process waiting for a lock logs who it is waiting for every
``log_every`` seconds, so a long wait (another run training the same generator) is visible.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from audit.core.atomic import atomic_dir, stale_builds
from audit.core.errors import UserError

__all__ = ["lock_path", "exclusive", "build_once"]

log = logging.getLogger(__name__)


def lock_path(target: str | Path) -> Path:
    """The lock file that guards ``target``: a hidden sibling, so it never becomes part of the entry."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive(target: str | Path, *, what: str, log_every: float = 30.0, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of ``target`` for the body (waiting as long as it takes, or ``timeout`` s).

    ``what`` names the entry in the waiting message ("the phantom", "the shared autoencoder").
    Locks on different targets are independent; do not nest two locks on the same target in one
    process (the second would wait for the first forever).
    """
    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
    except OSError as exc:
        raise UserError(f"cache folder {path.parent}: cannot create the lock file ({exc.strerror or exc}); "
                        "is $CMR_AUDIT_CACHE writable?") from None
    start = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=log_every)
            break
        except Timeout:
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                raise UserError(f"{target}: still locked by another process after {waited:.0f} s "
                                f"(lock file {path})") from None
            log.info("waiting for another process that is building %s (%s; %.0f s so far)", what, target, waited)
        except OSError as exc:
            raise UserError(f"cache folder {path.parent}: cannot lock {path.name} ({exc.strerror or exc}); "
                            "is $CMR_AUDIT_CACHE writable?") from None
    waited = time.monotonic() - start
    if waited > 1.0:
        log.info("%s: lock acquired after waiting %.0f s", what, waited)
    try:
        # holding the lock, no other process builds this entry: a half-built tree is a dead one's
        for stale in stale_builds(target):
            log.warning("%s: removing %s, left by a build that was killed before it finished", what, stale)
            shutil.rmtree(stale, ignore_errors=True)
        yield
    finally:
        lock.release()


def build_once(final: str | Path, *, ready: Callable[[Path], bool], build: Callable[[Path], None], what: str) -> Path:
    """Return ``final``, building it with ``build(staging_dir)`` unless ``ready(final)`` already holds.

    The check runs once without the lock (the common warm case costs one ``stat``) and again
    under it, so a process that waited while another built the entry reuses that entry instead of
    building it a second time. The build goes into a staging directory that replaces ``final``
    only when complete.
    """
    final = Path(final)
    if ready(final):
        return final
    with exclusive(final, what=what):
        if ready(final):
            log.info("%s: built by another process while this one waited; reusing it", what)
            return final
        with atomic_dir(final) as staging:
            build(staging)
    return final
