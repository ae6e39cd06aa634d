"""Resolve a run's ``data.source`` to a dataset directory.

``phantom`` means the built-in phantom: it is generated once per (subjects, seed, phantom
version) into ``$CMR_AUDIT_CACHE/phantom/<key>/`` and reused. The directory is written under
a temporary name and renamed into place when complete, so an interrupted generation is
never mistaken for a finished dataset; concurrent runs wait for the one that writes it
(:mod:`audit.core.locks`). Anything else is a path to an ACDC or M&Ms download.
"""

from __future__ import annotations

import logging
from pathlib import Path

from audit.core.atomic import atomic_write_text
from audit.core.errors import UserError
from audit.core.locks import build_once
from audit.core.logs import progress_disabled
from audit.core.paths import cache_dir
from cohorts import phantom

log = logging.getLogger(__name__)

PHANTOM = "phantom"


def phantom_dir(n_subjects: int, seed: int, layout: str = "acdc") -> Path:
    """Directory of the cached phantom with these parameters, generating it if needed."""

    version = phantom.PHANTOM_VERSION
    root = cache_dir("phantom")
    final = root / f"{layout}-n{n_subjects}-seed{seed}-v{version}"

    def build(staging: Path) -> None:
        log.info("generating the phantom (%d subjects, seed %d, %s layout) into the cache", n_subjects, seed, layout)
        phantom.write_dataset(staging, n_subjects=n_subjects, seed=seed, layout=layout, progress=not progress_disabled())
        atomic_write_text(staging / ".complete", "ok\n")

    # one process writes it while concurrent runs wait, then read the published folder
    return build_once(final, ready=lambda d: (d / ".complete").is_file(), build=build, what="the phantom")


def resolve(source: str, *, phantom_subjects: int, phantom_seed: int) -> Path:
    """A dataset directory for ``source`` (``phantom`` or a path)."""
    if source == PHANTOM:
        return phantom_dir(phantom_subjects, phantom_seed)
    return check_folder(source)


def check_folder(source: str) -> Path:
    """The dataset folder ``source`` names; :class:`UserError` if it is missing or not a folder
    (``audit run`` checks it before any stage)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"dataset directory {path} does not exist (use --data phantom for the built-in phantom)")
    if not path.is_dir():
        raise UserError(f"dataset path {path} is not a directory")
    return path
