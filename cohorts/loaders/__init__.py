"""Dataset loaders: ``load_cohort(path)`` detects the layout (ACDC or M&Ms) and reads it.

The phantom (``cohorts.phantom``) writes the same two layouts, so it goes through exactly
this code. Strict by design: the first problem found is raised as a one-line
:class:`~audit.core.errors.UserError` naming the file; :func:`cohorts.validate.validate` runs the
same checks and lists all of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from audit.core.errors import UserError

from ..hashing import data_hash
from ..types import Cohort, Problem, Subject
from . import acdc, mnms
from ._common import Manifest, SubjectRecord, read_subject

__all__ = ["LAYOUTS", "detect_layout", "scan_dataset", "iter_subjects", "load_cohort", "Manifest", "SubjectRecord"]

log = logging.getLogger(__name__)

LAYOUTS = ("acdc", "mnms")


def detect_layout(path: str | Path) -> str:
    """``"mnms"`` if a CSV with an ``External code`` column is found, ``"acdc"`` if patient folders are."""
    root = Path(path)
    if not root.exists():
        raise UserError(f"{root}: no such directory")
    if not root.is_dir():
        raise UserError(f"{root}: not a directory")
    if mnms.looks_like(root):
        return "mnms"
    if acdc.looks_like(root):
        return "acdc"
    raise UserError(
        f"{root}: no ACDC layout (patientNNN/Info.cfg) or M&Ms layout (CSV with 'External code') found"
    )


def scan_dataset(path: str | Path, layout: str | None = None) -> Manifest:
    """List subjects and files without reading any NIfTI data (problems are collected)."""
    root = Path(path)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    return (acdc if layout == "acdc" else mnms).scan(root)


def _raise_first(problems: list[Problem]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `audit data validate` to list them)" if len(problems) > 1 else ""
        raise UserError(f"{problems[0]}{more}")


def iter_subjects(manifest: Manifest, *, progress: bool = True, desc: str = "reading") -> Iterator[Subject]:
    """Read subjects one at a time (raising the first problem), so callers can stream."""
    _raise_first(manifest.problems)
    for rec in tqdm(manifest.records, desc=f"{desc} {manifest.name}", unit="subject", disable=not progress or None, leave=False):
        subject, problems = read_subject(rec)
        _raise_first(problems)
        assert subject is not None
        yield subject


def load_cohort(
    path: str | Path,
    layout: str | None = None,
    *,
    name: str | None = None,
    verify_hash: bool = False,
    progress: bool = True,
) -> Cohort:
    """Read a whole dataset (ACDC or M&Ms layout, detected unless given) into a :class:`Cohort`.

    Raises :class:`UserError` naming the file for the first problem found.
    """
    manifest = scan_dataset(path, layout)
    _raise_first(manifest.problems)
    if not manifest.records:
        raise UserError(f"{manifest.root}: no subjects found")
    digest = data_hash(manifest.root, manifest.files, verify=verify_hash)
    subjects = list(iter_subjects(manifest, progress=progress))
    log.info("loaded %d subjects from %s (%s layout)", len(subjects), manifest.root, manifest.layout)
    return Cohort(subjects=subjects, name=name or manifest.name, layout=manifest.layout, data_hash=digest, root=str(manifest.root))
