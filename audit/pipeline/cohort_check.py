"""Can this cohort feed this run? Checked in the cohort stage, before any training.

A real-data folder can be valid (every file reads, labels are known) and still unable to give a
generator what it needs. Each case below is one line naming the folder and the problem
(:class:`~audit.core.errors.UserError`, exit 2), raised before the fit stage starts:

* **too few subjects for the splits**: the subject-level splits need at least one subject per
  non-empty split (:func:`cohorts.splits.make_splits`);
* **no labelled frames where the run needs masks**: every slice generator is conditioned on
  segmentation masks and the cine generator on clinical priors measured from ED/ES masks, so the
  ``train`` split (for a trained generator) and the conditioning split
  (``sample.condition_split``) need annotated frames;
* **images smaller than the preset's window**: preprocessing crops ``data.size`` pixels at
  ``data.target_spacing`` mm around the heart; when most subjects' field of view is smaller than
  that window, most of every training image would be padding. A minority of small scans is
  padded, with a warning naming them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from audit.core.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["check_cohort_for_run", "labelled_subjects", "small_field_of_view"]


def labelled_subjects(prepared: Any, ids: list[str]) -> list[str]:
    """The subjects among ``ids`` with at least one annotated frame (a mask that is not all zero)."""
    by_id = {s.subject_id: s for s in prepared.subjects}
    out = []
    for sid in ids:
        s = by_id.get(sid)
        if s is not None and s.mask is not None and s.labelled.any() and (s.mask[s.labelled] > 0).any():
            out.append(sid)
    return out


def small_field_of_view(prepared: Any) -> list[tuple[str, float, float]]:
    """``(subject id, field-of-view height mm, width mm)`` of the subjects whose resampled field of
    view is smaller than the crop window in either direction."""
    cfg = prepared.config
    window = cfg.size * cfg.target_spacing
    out = []
    for s in prepared.subjects:
        shape = s.metadata.get("resampled_shape")
        if not shape:
            continue
        fov = (shape[0] * cfg.target_spacing, shape[1] * cfg.target_spacing)
        if min(fov) < window:
            out.append((s.subject_id, *fov))
    return out


def check_cohort_for_run(prepared: Any, splits: Any, cfg: Any, generator_data: str, trainable: bool) -> None:
    """Raise a one-line :class:`UserError` naming ``cfg.data.source`` if the cohort cannot feed the run."""
    where = prepared.root or cfg.data.source
    cond = cfg.sample.condition_split
    if generator_data == "slices":
        needs = [("train", "the generator trains on image-mask pairs")] if trainable else []
        needs.append((cond, "the samples are conditioned on its masks (sample.condition_split)"))
    else:  # whole stacks: clinical priors (EF, volumes) come from the ED and ES masks
        needs = [("train", "the generator learns clinical priors from ED/ES masks")] if trainable else []
        needs.append((cond, "the samples are conditioned on its ED/ES clinical priors (sample.condition_split)"))
    for split, why in needs:
        ids = list(splits.assignments.get(split, []))
        if not labelled_subjects(prepared, ids):
            raise UserError(f"{where}: the {split} split ({len(ids)} subjects) has no labelled frames, but "
                            f"{why}; give a folder with segmentation masks (ACDC: *_gt.nii.gz)")
    small = small_field_of_view(prepared)
    if small:
        c = prepared.config
        window = f"{c.size} px x {c.target_spacing:g} mm = {c.size * c.target_spacing:g} mm"
        median = float(np.median([min(h, w) for _, h, w in small]))
        if len(small) * 2 > len(prepared.subjects):
            raise UserError(f"{where}: {len(small)} of {len(prepared.subjects)} subjects have a field of view smaller "
                            f"than the preset's window ({window}; their median {median:.0f} mm); lower data.size or "
                            "data.target_spacing (e.g. --set data.size=96)")
        log.warning("%s: %d subject(s) have a field of view smaller than the %s window and are zero-padded: %s",
                    where, len(small), window, ", ".join(s for s, _, _ in small[:10]) + (" ..." if len(small) > 10 else ""))
