"""Calibration and evaluation slices for the int8 judge, and a per-structure Dice.

Static quantisation fixes every activation range from calibration data, so that data must look
like what the judge will see: short-axis cine slices across vendor styles and pathology groups,
preprocessed by :mod:`cohorts.judge.preprocess` exactly like real input. The default source is
the built-in phantom (:func:`cohorts.phantom.generate_subject`); any callable returning
``(slices (N,H,W), spacing (sx,sy))`` can replace it (e.g. real ACDC slices).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from cohorts.phantom import generate_subject

from .preprocess import DEFAULT_FOV, FovMode, prepare_batch

__all__ = ["LabelledSlices", "phantom_slices", "calibration_inputs", "dice_per_class", "STRUCTURES"]

STRUCTURES = ("RV", "MYO", "LV")


@dataclass
class LabelledSlices:
    """ED/ES slices in nibabel order with ground truth; ``spacing`` is per slice ``(N, 2)``."""

    images: np.ndarray  # (N, H, W) float32 -- slices may differ in size, so also a list
    masks: np.ndarray
    spacing: np.ndarray
    vendor: list[str]

    def __len__(self) -> int:
        return len(self.images)


def phantom_slices(n_subjects: int = 8, seed: int = 1234, vendors: Sequence[str] = ("A", "B", "C", "D"),
                   groups: Sequence[str] = ("NOR", "DCM", "HCM", "MINF", "ARV"),
                   labelled_only: bool = True) -> list[LabelledSlices]:
    """ED and ES slices of ``n_subjects`` phantom subjects, cycling through vendors and groups.

    Returns one :class:`LabelledSlices` per subject (subjects differ in matrix size).
    ``labelled_only`` keeps slices whose ground truth contains any structure, as the judge's
    reference Dice figures on real scans do (:mod:`cohorts.phantom.realism`).
    """

    out: list[LabelledSlices] = []
    combos = itertools.cycle(itertools.product(vendors, groups))
    for i in range(n_subjects):
        vendor, group = next(combos)
        s = generate_subject(f"judge{i:03d}", seed + i, vendor=vendor, group=group)
        imgs, msks = [], []
        for t in (s.ed, s.es):
            for z in range(s.image.shape[2]):
                m = s.mask[:, :, z, t]
                if labelled_only and not m.any():
                    continue
                imgs.append(s.image[:, :, z, t])
                msks.append(m)
        if imgs:
            sp = np.tile(np.asarray(s.spacing[:2], dtype=np.float32), (len(imgs), 1))
            out.append(LabelledSlices(np.stack(imgs).astype(np.float32), np.stack(msks).astype(np.uint8), sp, [vendor] * len(imgs)))
    return out


def calibration_inputs(source: Callable[[], list[LabelledSlices]] | None = None, max_slices: int = 96,
                       seed: int = 0, fov: FovMode = DEFAULT_FOV) -> np.ndarray:
    """Preprocessed network inputs ``(N, 1, 256, 256)`` for calibration (a random subset)."""
    sets = (source or phantom_slices)()
    batches = [prepare_batch(s.images, s.spacing[0], fov)[0] for s in sets]
    data = np.concatenate(batches)
    rng = np.random.default_rng(seed)
    if len(data) > max_slices:
        data = data[np.sort(rng.choice(len(data), max_slices, replace=False))]
    return data


def dice_per_class(pred: np.ndarray, truth: np.ndarray, labels: Sequence[int] = (1, 2, 3)) -> np.ndarray:
    """Dice per label over the whole array (NaN where the label is absent from both)."""
    out = np.full(len(labels), np.nan)
    for i, k in enumerate(labels):
        p, t = pred == k, truth == k
        denom = p.sum() + t.sum()
        if denom:
            out[i] = 2.0 * np.logical_and(p, t).sum() / denom
    return out
