"""Post-processing of the utility nets' label maps: keep the largest connected heart.

A 2D segmentation net trained on a few hundred slices leaves scattered false-positive blobs
far from the heart (in the liver, the chest wall, another bright vessel). Each one costs a
little Dice and, worse, sets the Hausdorff distance to the distance of the blob. nnU-Net
(Isensee et al. 2021, Nature Methods 18:203-211, "Postprocessing") therefore keeps only the
largest connected component of the foreground -- all structures taken together, so the RV, the
myocardium and the LV that touch one another stay -- when that helps on validation data. Here
it is the same first step, on every 2D label map, with 8-connectivity, through MONAI's
``KeepLargestConnectedComponent(independent=False)`` (MONAI Consortium, arXiv 2211.02701).
Per-structure components are not pruned: a basal RV or a myocardium cut by the slice plane can
truly be in two pieces.

Whether it is applied is ``audit.utility_postprocess`` (``largest_component`` or ``none``); the
same rule is used for the validation (early stopping) and the evaluation predictions, so a net's
stopping point and its scores see the same maps. The measured effect on real ACDC is in
BENCHMARKS.md ("Utility segmenter on real ACDC").
"""

from __future__ import annotations

import numpy as np

POSTPROCESS = ("largest_component", "none")

__all__ = ["POSTPROCESS", "keep_largest_heart", "postprocess"]


def keep_largest_heart(labels: np.ndarray) -> np.ndarray:
    """``(N,H,W)`` uint8 label maps with, per map, only the largest 8-connected component of
    the foreground (labels 1-3 together) kept; background elsewhere. A map without foreground
    is returned unchanged."""
    from monai.transforms import KeepLargestConnectedComponent  # lazy: MONAI only when post-processing

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"label maps must be (N, H, W), got shape {labels.shape}")
    keep = KeepLargestConnectedComponent(applied_labels=[1, 2, 3], independent=False, connectivity=2)
    out = labels.astype(np.uint8, copy=True)
    for i in range(len(out)):
        if out[i].any():
            out[i] = np.asarray(keep(out[i][None]))[0]
    return out


def postprocess(labels: np.ndarray, how: str) -> np.ndarray:
    """Apply the ``audit.utility_postprocess`` rule ``how`` to ``(N,H,W)`` label maps."""
    if how == "none":
        return labels
    if how == "largest_component":
        return keep_largest_heart(labels)
    raise ValueError(f"unknown post-processing {how!r} (one of {', '.join(POSTPROCESS)})")
