"""Where cmr-audit keeps caches (judge weights, preprocessed cohorts, features).

``$CMR_AUDIT_CACHE`` overrides the default, which is the platform's user cache
directory (``~/.cache/cmr-audit`` on Linux).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs

from audit.core.errors import UserError

#: the environment variable that moves the cache
CACHE_ENV = "CMR_AUDIT_CACHE"


def _unusable(path: Path, exc: OSError) -> UserError:
    """The one-line error for a cache folder that cannot be created or written, naming the
    folder and how to move it (the cache is the user's environment, not a bug: exit 2)."""
    hint = (f"${CACHE_ENV} is {os.environ[CACHE_ENV]}: point it at a writable folder" if os.environ.get(CACHE_ENV)
            else f"set ${CACHE_ENV} to a writable folder")
    return UserError(f"cache folder {path} is not writable ({exc.strerror or exc}); {hint}")


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return the cache directory (or a sub-directory of it), creating it if asked."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("cmr-audit"))
    path = base.joinpath(*parts)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, a file in the way, a name too long
            raise _unusable(path, exc) from None
    return path


def check_cache_writable() -> Path:
    """Create the cache root and write (and remove) a probe file in it; :class:`UserError` if
    that fails. ``audit run`` calls it before any stage, so that a read-only ``$CMR_AUDIT_CACHE``
    is one line at the start instead of a traceback minutes later, in whichever stage first
    caches something. The sub-folders that already exist (one per kind of entry: phantom,
    cohorts, judge, generators, ...) are probed too: a run writes into them. Cheap: a few empty files."""
    path = cache_dir()
    for folder in [path, *sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))]:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise _unusable(folder, exc) from None
    return path
