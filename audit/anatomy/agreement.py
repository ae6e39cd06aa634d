"""Agreement between the judge's segmentation of a synthetic image and its conditioning mask.

Per image and structure (RV, MYO, LV): Dice and the 95th-percentile symmetric Hausdorff
distance in millimetres, both from MONAI (``compute_dice``, ``compute_hausdorff_distance``
with the pixel spacing).

Conventions (stated in results as ``method``):

* Dice is undefined (NaN, left out of means) when the structure is absent from the
  conditioning mask -- MONAI's ``ignore_empty`` -- e.g. the RV on apical slices.
* HD95 is undefined when the structure is absent from the mask *or* the prediction; such
  images are counted (``hd95_undefined``) and never recorded as 0.
* Summaries are means over images with a subject-level cluster bootstrap 95 % CI
  (:func:`audit.stats.cluster_bootstrap`), ``n`` = images with a defined value.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from audit.results import metric, unavailable
from audit.stats import cluster_bootstrap

STRUCTURES = {1: "RV", 2: "MYO", 3: "LV"}


def _one_hot(labels: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(labels.astype(np.int64))
    return torch.nn.functional.one_hot(t, 4).permute(0, 3, 1, 2).float()


def per_image(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] | np.ndarray, batch: int = 256) -> pd.DataFrame:
    """Dice and HD95 (mm) per image and structure; columns ``dice_RV``, ``hd95_RV``, ..."""
    from monai.metrics import compute_dice, compute_hausdorff_distance

    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(f"pred and ref must both be (N,H,W), got {pred.shape} and {ref.shape}")
    spacing = [float(s) for s in spacing]
    dice, hd = [], []
    for lo in range(0, len(pred), batch):
        p, r = _one_hot(pred[lo:lo + batch]), _one_hot(ref[lo:lo + batch])
        dice.append(compute_dice(p, r, include_background=False, ignore_empty=True).numpy())
        with warnings.catch_warnings():  # empty structures are expected and handled below
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)  # MONAI 1.5+ deprecation inside its own helper
            h = compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=spacing).numpy()
        p_empty = p[:, 1:].sum(dim=(2, 3)).numpy() == 0
        r_empty = r[:, 1:].sum(dim=(2, 3)).numpy() == 0
        h = np.where(p_empty | r_empty | ~np.isfinite(h), np.nan, h)
        hd.append(h)
    dice_a, hd_a = np.concatenate(dice), np.concatenate(hd)
    cols = {}
    for j, name in enumerate(STRUCTURES.values()):
        cols[f"dice_{name}"] = dice_a[:, j]
        cols[f"hd95_{name}"] = hd_a[:, j]
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
