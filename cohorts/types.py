"""Core data types of a cohort: :class:`Subject`, :class:`Cohort` and :class:`Problem`.

Array convention (load-bearing: the judge network was trained on this orientation)::

    subject.image[t, z] == nib.load(f).get_fdata()[:, :, z, t]

i.e. ``(T, Z, H, W)`` with H = NIfTI voxel axis 0 and W = voxel axis 1, in the order the
file stores them. Nothing is reoriented to RAS or any other frame: re-orienting would flip
or transpose some datasets relative to what the judge saw during training, and the affine
(kept on every subject) is enough to recover world coordinates when they are needed.

Masks are ``uint8`` in the internal ACDC label order (0 background, 1 RV, 2 MYO, 3 LV),
whatever the source dataset uses; images are ``float32``. ``spacing`` is ``(sx, sy, sz)``
in millimetres for the ``(H, W, Z)`` axes and travels with the arrays.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from audit.core.errors import UserError

__all__ = ["LABELS", "Subject", "Cohort", "Problem"]

#: Internal label names, index == label value (ACDC order).
LABELS: tuple[str, ...] = ("background", "RV", "MYO", "LV")


@dataclass(eq=False)
class Subject:
    """One subject's cine short-axis stack plus its clinical record.

    ``labelled[t]`` says whether frame ``t`` of ``mask`` holds a real annotation: the
    public datasets annotate only ED and ES, and an all-zero frame must never be
    mistaken for "no heart here". ``mask`` is ``None`` when the subject has no
    annotation at all (e.g. ACDC testing subjects without ground truth).
    """

    subject_id: str
    vendor: str
    centre: str
    group: str
    spacing: tuple[float, float, float]
    ed: int
    es: int
    image: np.ndarray
    mask: np.ndarray | None
    labelled: np.ndarray
    source: str
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.image.shape[0])

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[1])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm^3 / 1000)."""
        sx, sy, sz = self.spacing
        return float(sx * sy * sz) / 1000.0

    def volume_ml(self, frame: int, label: int) -> float | None:
        """Volume of ``label`` in ``frame`` in mL, or ``None`` when the frame is not labelled."""
        if self.mask is None or not bool(self.labelled[frame]):
            return None
        return float(np.count_nonzero(self.mask[frame] == label)) * self.voxel_volume_ml

    def ejection_fraction(self, label: int = 3) -> dict[str, float] | None:
        """EDV, ESV (mL) and EF (%) of ``label`` (default LV) from the masks, if ED and ES are labelled."""
        edv = self.volume_ml(self.ed, label)
        esv = self.volume_ml(self.es, label)
        if edv is None or esv is None or edv <= 0:
            return None
        return {"edv": edv, "esv": esv, "ef": 100.0 * (edv - esv) / edv}

    def with_arrays(self, **changes: Any) -> "Subject":
        """A copy with some fields replaced (arrays are not copied)."""
        return replace(self, **changes)


@dataclass(eq=False)
class Cohort:
    """A set of subjects read from one dataset directory.

    ``data_hash`` identifies the bytes the cohort was read from (see
    :mod:`cohorts.hashing`); splits and caches are keyed on it so that a changed dataset
    can never silently reuse a stale split or cached array.
    """

    subjects: list[Subject]
    name: str
    layout: str
    data_hash: str
    root: str = ""

    def __post_init__(self) -> None:
        ids = [s.subject_id for s in self.subjects]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise UserError(f"{self.root or self.name}: duplicate subject ids {dupes}")

    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self.subjects)

    def __getitem__(self, subject_id: str) -> Subject:
        for s in self.subjects:
            if s.subject_id == subject_id:
                return s
        raise KeyError(subject_id)

    @property
    def ids(self) -> list[str]:
        return [s.subject_id for s in self.subjects]

    @property
    def vendors(self) -> list[str]:
        return sorted({s.vendor for s in self.subjects})

    @property
    def groups(self) -> list[str]:
        return sorted({s.group for s in self.subjects})

    def select(self, ids: Iterable[str]) -> "Cohort":
        """A cohort with only ``ids`` (in cohort order); unknown ids are a :class:`UserError`."""
        wanted = list(ids)
        known = set(self.ids)
        missing = [i for i in wanted if i not in known]
        if missing:
            raise UserError(f"{self.root or self.name}: unknown subject ids {missing[:5]}")
        keep = set(wanted)
        return replace(self, subjects=[s for s in self.subjects if s.subject_id in keep])

    def by_vendor(self) -> dict[str, list[Subject]]:
        out: dict[str, list[Subject]] = defaultdict(list)
        for s in self.subjects:
            out[s.vendor].append(s)
        return dict(sorted(out.items()))

    def by_group(self) -> dict[str, list[Subject]]:
        out: dict[str, list[Subject]] = defaultdict(list)
        for s in self.subjects:
            out[s.group].append(s)
        return dict(sorted(out.items()))

    def strata(self) -> dict[tuple[str, str], list[str]]:
        """Subject ids per (vendor, group), the unit of stratified splitting."""
        out: dict[tuple[str, str], list[str]] = defaultdict(list)
        for s in self.subjects:
            out[(s.vendor, s.group)].append(s.subject_id)
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file it concerns and what is wrong with it."""

    path: str
    message: str
    subject_id: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def as_error(self) -> UserError:
        return UserError(str(self))


def relpath(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` in POSIX form (falls back to the absolute path)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()
