"""``describe``: what is in a cohort, at a glance.

Subjects per vendor x group, spacing range, frames, slices, matrix sizes, how many
subjects are annotated, and the LV ejection-fraction distribution computed from the masks
where ED and ES are both labelled (volume = voxel count x voxel volume; EF = (EDV - ESV) /
EDV). Works streaming from a directory (one subject in memory at a time) or on a loaded
:class:`~cohorts.types.Cohort`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .hashing import data_hash as compute_data_hash
from .loaders import iter_subjects, scan_dataset
from .types import Cohort, Subject

__all__ = ["Description", "summarise_subject", "describe"]

log = logging.getLogger(__name__)


@dataclass
class Description:
    name: str
    layout: str
    data_hash: str
    n_subjects: int
    counts: dict[str, dict[str, int]]  # vendor -> group -> n
    spacing_inplane_mm: tuple[float, float]
    spacing_slice_mm: tuple[float, float]
    frames: tuple[int, int]
    slices: tuple[int, int]
    matrix: list[str]
    n_with_masks: int
    n_labelled_frames: int
    ef: dict[str, float | int | None] = field(default_factory=dict)
    edv_ml: dict[str, float | int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_subject(s: Subject) -> dict[str, Any]:
    """The per-subject numbers :func:`describe` aggregates (small; no arrays kept)."""
    ef = s.ejection_fraction(label=3)
    return {
        "subject_id": s.subject_id,
        "vendor": s.vendor,
        "group": s.group,
        "spacing": tuple(float(v) for v in s.spacing),
        "frames": s.n_frames,
        "slices": s.n_slices,
        "matrix": f"{s.image.shape[2]}x{s.image.shape[3]}",
        "has_mask": s.mask is not None and bool(s.labelled.any()),
        "labelled_frames": int(np.count_nonzero(s.labelled)),
        "ef": None if ef is None else ef["ef"],
        "edv": None if ef is None else ef["edv"],
    }


def _dist(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "sd": None, "min": None, "median": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "sd": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()),
        "median": float(np.median(a)),
        "max": float(a.max()),
    }


def _aggregate(rows: list[dict[str, Any]], name: str, layout: str, digest: str) -> Description:
    counts: dict[str, Counter] = {}
    for r in rows:
        counts.setdefault(r["vendor"], Counter())[r["group"]] += 1
    inplane = [v for r in rows for v in r["spacing"][:2]]
    thick = [r["spacing"][2] for r in rows]
    frames = [r["frames"] for r in rows]
    nsl = [r["slices"] for r in rows]
    return Description(
        name=name,
        layout=layout,
        data_hash=digest,
        n_subjects=len(rows),
        counts={v: dict(sorted(c.items())) for v, c in sorted(counts.items())},
        spacing_inplane_mm=(min(inplane), max(inplane)) if rows else (0.0, 0.0),
        spacing_slice_mm=(min(thick), max(thick)) if rows else (0.0, 0.0),
        frames=(min(frames), max(frames)) if rows else (0, 0),
        slices=(min(nsl), max(nsl)) if rows else (0, 0),
        matrix=sorted({r["matrix"] for r in rows}),
        n_with_masks=sum(r["has_mask"] for r in rows),
        n_labelled_frames=sum(r["labelled_frames"] for r in rows),
        ef=_dist([r["ef"] for r in rows if r["ef"] is not None]),
        edv_ml=_dist([r["edv"] for r in rows if r["edv"] is not None]),
    )


def describe(source: str | Path | Cohort, *, layout: str | None = None, progress: bool = True) -> Description:
    """Describe a loaded cohort, or a dataset directory (streamed, one subject at a time)."""
    if isinstance(source, Cohort):
        rows = [summarise_subject(s) for s in source]
        return _aggregate(rows, source.name, source.layout, source.data_hash)
    manifest = scan_dataset(source, layout)
    digest = compute_data_hash(manifest.root, manifest.files) if not manifest.problems else ""
    subjects: Iterable[Subject] = iter_subjects(manifest, progress=progress, desc="describing")
    rows = [summarise_subject(s) for s in subjects]
    return _aggregate(rows, manifest.name, manifest.layout, digest)
