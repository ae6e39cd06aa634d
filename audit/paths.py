"""Where cmr-audit keeps caches (judge weights, preprocessed cohorts, features).

``$CMR_AUDIT_CACHE`` overrides the default, which is the platform's user cache
directory (``~/.cache/cmr-audit`` on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return the cache directory (or a sub-directory of it), creating it if asked."""
    root = os.environ.get("CMR_AUDIT_CACHE")
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("cmr-audit"))
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
