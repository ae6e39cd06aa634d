"""``validate(dir)``: run every check the loaders run and list *all* problems.

Checks: layout detectable; ACDC ``Info.cfg`` present with ED/ES (in range, NbFrame
consistent) or M&Ms CSV with the required columns, a row for every image and an image for
every row; each NIfTI readable (not corrupt/truncated), spacing present and non-zero,
affine invertible and consistent with the header, no NaN/Inf voxels; masks with labels in
the dataset's set and the image's shape and spacing. The loaders raise the first of these
as a :class:`~audit.core.errors.UserError`; this module keeps going.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from audit.core.errors import UserError

from .loaders import detect_layout, scan_dataset
from .loaders._common import read_subject
from .types import Problem

__all__ = ["validate"]

log = logging.getLogger(__name__)


def validate(path: str | Path, layout: str | None = None, *, progress: bool = True) -> list[Problem]:
    """All problems found in the dataset at ``path`` (empty list: it loads cleanly)."""
    root = Path(path)
    try:
        layout = layout or detect_layout(root)
        manifest = scan_dataset(root, layout)
    except UserError as exc:
        return [Problem(str(root), str(exc).removeprefix(f"{root}: "))]
    problems = list(manifest.problems)
    for rec in tqdm(manifest.records, desc=f"validating {manifest.name}", unit="subject", disable=not progress or None, leave=False):
        _, probs = read_subject(rec)
        problems += probs
    if not manifest.records and not problems:
        problems.append(Problem(str(root), "no subjects found"))
    log.info("validated %s: %d subject(s), %d problem(s)", root, len(manifest.records), len(problems))
    return problems
