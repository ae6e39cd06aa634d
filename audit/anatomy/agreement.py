"""Agreement between the judge's segmentation of a synthetic image and its conditioning mask.

Per image and structure (RV, MYO, LV): Dice and the 95th-percentile symmetric Hausdorff
distance in millimetres with the pixel spacing -- MONAI's definitions (``compute_dice``,
``compute_hausdorff_distance``), computed batch-wise in :mod:`audit.anatomy.surface` and tested
equal to MONAI -- and, on request, the average symmetric surface distance (ASSD) from the same
surface distances. Large inputs are scored in worker processes (:func:`score_images`).

Conventions (stated in results as ``method``):

* Dice is undefined (NaN, left out of means) when the structure is absent from the
  conditioning mask -- MONAI's ``ignore_empty`` -- e.g. the RV on apical slices.
* HD95 is undefined when the structure is absent from the mask *or* the prediction; such
  images are counted (``hd95_undefined``) and never recorded as 0.
* Summaries are means over images with a subject-level cluster bootstrap 95 % CI
  (:func:`audit.core.stats.cluster_bootstrap`), ``n`` = images with a defined value.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from audit.anatomy.surface import score_chunk
from audit.core.results import metric, unavailable
from audit.core.stats import cluster_bootstrap
from cohorts.parallel import default_workers, ordered_map

log = logging.getLogger(__name__)

STRUCTURES = {1: "RV", 2: "MYO", 3: "LV"}

MIN_IMAGES_PER_WORKER = 1000
"""At most one worker process per this many images (fewer images: scored here). A spawned worker
costs about a second to start and one 128 x 128 image about 1.3 ms (three structures, HD95 and
ASSD; ``benchmarks/utility_metrics_speed.py`` on 2 busy cores), so a worker pays off from about
a thousand images."""


def _chunks(n: int, workers: int, batch: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` ranges covering ``range(n)``: at most ``batch`` images, and with several
    workers about four chunks each (load balance; per-image costs vary with the boundary length)."""
    size = batch if workers <= 1 else max(1, min(batch, math.ceil(n / (4 * workers))))
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def score_images(pred: np.ndarray, ref: np.ndarray, spacing, *, distances: bool = True, assd: bool = False,
                 batch: int = 256, workers: int | None = None) -> dict[str, np.ndarray]:
    """:func:`audit.anatomy.surface.score_chunk` over all images, chunked, in worker processes
    (:func:`cohorts.parallel.ordered_map`) when there are enough images: ``workers`` ``None`` =
    the usable cores, at most one per :data:`MIN_IMAGES_PER_WORKER` images; 1 = in this process.
    Every image is scored on its own, so the result is identical for any ``workers`` and ``batch``."""

    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(f"pred and ref must both be (N,H,W), got {pred.shape} and {ref.shape}")
    for name, a in (("pred", pred), ("ref", ref)):
        if a.size and (a.min() < 0 or a.max() > max(STRUCTURES)):
            raise ValueError(f"{name} must hold labels 0..{max(STRUCTURES)}, got {a.min()}..{a.max()}")
    sp = tuple(float(s) for s in spacing)
    n = len(pred)
    if workers is None:
        workers = default_workers(n, MIN_IMAGES_PER_WORKER) if distances else 1
    workers = max(1, int(workers))
    pred, ref = pred.astype(np.uint8, copy=False), ref.astype(np.uint8, copy=False)
    spans = _chunks(n, workers, batch)
    if workers > 1 and len(spans) > 1:
        log.debug("scoring %d images in %d chunks on %d worker processes", n, len(spans), workers)
    parts = list(ordered_map(score_chunk, [(pred[lo:hi], ref[lo:hi], sp, distances, assd) for lo, hi in spans],
                             workers=min(workers, len(spans)) or 1))
    keys = ["dice"] + (["hd95"] if distances else []) + (["assd"] if distances and assd else [])
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros((0, len(STRUCTURES))) for k in keys}


def per_image(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] | np.ndarray, batch: int = 256, *,
              distances: bool = True, assd: bool = False, workers: int | None = None) -> pd.DataFrame:
    """Dice and HD95 (mm) per image and structure; columns ``dice_RV``, ``hd95_RV``, ... (and
    ``assd_RV``, ... with ``assd``; only ``dice_*`` without ``distances``). Large inputs are
    scored in worker processes (:func:`score_images`), with the same result."""
    scores = score_images(pred, ref, spacing, distances=distances, assd=assd, batch=batch, workers=workers)
    cols = {}
    for j, name in enumerate(STRUCTURES.values()):
        for key, values in scores.items():
            cols[f"{key}_{name}"] = values[:, j]
    return pd.DataFrame(cols)


def summarise(table: pd.DataFrame, subjects: np.ndarray, *, n_boot: int = 1000, seed: int = 0, judge: str = "",
              reference: str = "conditioning mask") -> dict:
    """Results entries: mean Dice and HD95 per structure (and the mean over structures) with CIs."""
    out: dict = {"dice": {}, "hd95_mm": {}}
    how = f"judge network ({judge}) vs {reference}; mean over images, subject bootstrap 95% CI"
    for name in STRUCTURES.values():
        for kind, col, unit in (("dice", f"dice_{name}", "1"), ("hd95_mm", f"hd95_{name}", "mm")):
            v = table[col].to_numpy(float)
            ok = np.isfinite(v)
            if ok.sum() == 0:
                out[kind][name] = unavailable(f"{name} absent from every conditioning mask or prediction")
                continue
            lo, hi = cluster_bootstrap(v, subjects, n_boot=n_boot, seed=seed)
            ci = None if np.isnan(lo) else (lo, hi)
            note = None
            if kind == "hd95_mm" and (~ok).sum():
                note = f"hd95_undefined={int((~ok).sum())} images (structure absent in mask or prediction)"
            out[kind][name] = metric(float(np.nanmean(v)), unit, method=f"{'Dice' if kind == 'dice' else 'HD95'}: {how}",
                                     ci=ci, n=int(ok.sum()), notes=note)
    dice_cols = [f"dice_{s}" for s in STRUCTURES.values()]
    per_img = table[dice_cols].mean(axis=1, skipna=True).to_numpy(float)
    if np.isfinite(per_img).any():
        lo, hi = cluster_bootstrap(per_img, subjects, n_boot=n_boot, seed=seed)
        out["dice"]["mean"] = metric(float(np.nanmean(per_img)), "1",
                                     method=f"mean over RV/MYO/LV per image, then over images; {how}",
                                     ci=None if np.isnan(lo) else (lo, hi), n=int(np.isfinite(per_img).sum()))
    return out
