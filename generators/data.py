"""Training data for 2D generators: labelled short-axis slices of the ``train`` split.

A :class:`SliceSet` is what ``Generator.fit`` receives: flattened slices of a prepared
cohort (see :func:`cohorts.preprocess.slices`) with their conditioning labels. Slices of
frames without an annotation keep ``labelled=False`` (their mask is all zero and must not
be read as "no heart"): semi-supervised models use their images only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from audit.core.errors import UserError
from cohorts.preprocess import slices


@dataclass
class SliceSet:
    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    masks: np.ndarray  # (N, H, W) uint8, ACDC labels
    labelled: np.ndarray  # (N,) bool
    subject_ids: np.ndarray  # (N,) str
    vendor: np.ndarray  # (N,) str
    group: np.ndarray  # (N,) str
    spacing: np.ndarray  # (2,) float32 mm
    frame: np.ndarray | None = None  # (N,) int: the cine frame of each slice (ED/ES stacks), None if unknown

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @classmethod
    def from_prepared(cls, prepared, ids: Iterable[str], frames: str = "ed_es") -> "SliceSet":
        ids = list(ids)
        if not ids:
            raise UserError("no subjects in the requested split: cannot build training slices")
        images, masks, index = slices(prepared, ids, frames=frames)
        if images.shape[0] == 0:
            raise UserError(f"the split's {len(ids)} subjects have no slices for frames={frames!r}")
        spacing = prepared[ids[0]].spacing[:2]
        return cls(
            images=images,
            masks=masks,
            labelled=index["labelled"].to_numpy(bool),
            subject_ids=index["subject_id"].to_numpy(str),
            vendor=index["vendor"].to_numpy(str),
            group=index["group"].to_numpy(str),
            spacing=np.asarray(spacing, np.float32),
            frame=index["frame"].to_numpy(np.int64),
        )

    @classmethod
    def concat(cls, parts: "list[SliceSet]") -> "SliceSet":
        """The slices of ``parts`` one after the other (the first part's spacing; callers check the grid)."""
        cat = np.concatenate
        return cls(cat([p.images for p in parts]), cat([p.masks for p in parts]), cat([p.labelled for p in parts]),
                   cat([np.asarray(p.subject_ids).astype(str) for p in parts]),
                   cat([np.asarray(p.vendor).astype(str) for p in parts]),
                   cat([np.asarray(p.group).astype(str) for p in parts]), parts[0].spacing,
                   None if any(p.frame is None for p in parts) else cat([p.frame for p in parts]))

    def subset(self, idx: np.ndarray) -> "SliceSet":
        return SliceSet(
            self.images[idx], self.masks[idx], self.labelled[idx], self.subject_ids[idx],
            self.vendor[idx], self.group[idx], self.spacing, None if self.frame is None else self.frame[idx],
        )

    def require_masks(self, who: str) -> None:
        """Mask-conditioned models need annotated slices; say so clearly if there are none."""
        if not self.labelled.any():
            raise UserError(f"generator '{who}' is mask-conditioned but the training split has no annotated slices")


@dataclass
class StackSet:
    """Whole prepared subjects of a split (every frame and slice): what a 4D generator such as
    ``cine`` receives instead of a :class:`SliceSet` (``Generator.data == "subjects"``)."""

    subjects: list  # cohorts.types.Subject, preprocessed (T, Z, H, W)

    def __len__(self) -> int:
        return len(self.subjects)

    @classmethod
    def from_prepared(cls, prepared, ids: Iterable[str]) -> "StackSet":
        ids = list(ids)
        if not ids:
            raise UserError("no subjects in the requested split: cannot build training stacks")
        return cls([prepared[i] for i in ids])

    @property
    def n_slices(self) -> int:
        """Number of 2D images (frames x slices) in all subjects."""
        return int(sum(s.n_frames * s.n_slices for s in self.subjects))
