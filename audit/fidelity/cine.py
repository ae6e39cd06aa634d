"""Cine fidelity in judge features: ``fvd_judge`` and temporal smoothness.

Standard FVD (Unterthiner et al. 2018) is the Fréchet distance between I3D embeddings of
videos; I3D weights cannot be downloaded here and are not trained on MRI. ``fvd_judge`` keeps
the Fréchet construction and replaces the video network by per-frame judge features plus
temporal statistics. For a video of T frames with per-frame judge features ``f_t`` (288-d):

    e = [ mean_t f_t ,  std_t f_t ,  mean_t |f_{t+1} - f_t| ]          (3 x 288 = 864-d)

* ``mean_t f_t``: appearance averaged over the cardiac cycle;
* ``std_t f_t``: how much each feature moves over the cycle (amount of motion);
* ``mean_t |f_{t+1} - f_t|``: frame-to-frame change (temporal smoothness; flicker raises it).

A temporally shuffled real cine keeps the first two terms and changes only the third, which is
why the third is needed (tested). ``fvd_judge`` is the Fréchet distance between Gaussians fitted
to these embeddings (:func:`audit.fidelity.distribution.compare`, with Ledoit-Wolf shrinkage
when there are fewer videos than dimensions), labelled ``fvd_judge`` and never mixed with
image FID or I3D FVD.

Temporal smoothness: the judge segments every frame; the Dice between consecutive frames'
segmentations (per structure, then averaged) measures whether the anatomy moves smoothly. Real
cine at 20-30 frames per cycle has high frame-to-frame Dice; flicker or jumps lower it.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from audit.anatomy.agreement import per_image
from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from audit.core.stats import cluster_bootstrap
from audit.fidelity.distribution import compare

FEATURE_LABEL = "fvd_judge"


def video_embedding(frame_features) -> np.ndarray:
    """``(N, T, F)`` per-frame features (or a list of ``(T_i, F)`` arrays: real cines differ in
    frame count) -> ``(N, 3F)`` video embeddings (see the module docstring)."""
    if isinstance(frame_features, np.ndarray):
        if frame_features.ndim != 3:
            raise UserError(f"cine features: expected (videos, frames, features), got shape {frame_features.shape}")
        videos = list(frame_features)
    else:
        videos = list(frame_features)
    if not videos:
        raise UserError("cine features: no videos")
    out = []
    for f in videos:
        f = np.asarray(f, np.float64)
        if f.ndim != 2:
            raise UserError(f"cine features: each video must be (frames, features), got shape {f.shape}")
        if f.shape[0] < 2:
            raise UserError(f"cine features: a video needs at least 2 frames, got {f.shape[0]}")
        if not np.isfinite(f).all():
            raise UserError("cine features: contain NaN or Inf values")
        out.append(np.concatenate([f.mean(axis=0), f.std(axis=0), np.abs(np.diff(f, axis=0)).mean(axis=0)]))
    if len({len(e) for e in out}) != 1:
        raise UserError("cine features: videos have different feature sizes")
    return np.stack(out).astype(np.float32)


def fvd_judge(candidate, candidate_clusters, target, target_clusters, *, n_boot: int = 200,
              seed: int = 0) -> dict[str, Any]:
    """Distribution metrics of candidate vs target cine videos (``(N, T, F)`` judge features each,
    or lists of ``(T_i, F)``).

    Returns the :func:`~audit.fidelity.distribution.compare` entries computed on video
    embeddings, under the label ``fvd_judge`` (its ``fid`` entry is the FVD in judge features).
    """

    return compare(video_embedding(candidate), np.asarray(candidate_clusters), video_embedding(target),
                   np.asarray(target_clusters), n_boot=n_boot, seed=seed, feature_label=FEATURE_LABEL)


def frame_to_frame_dice(labels) -> np.ndarray:
    """Per video, the mean over consecutive frame pairs and present structures of the Dice between
    the judge's segmentations of frame t and t+1. ``labels``: ``(N, T, H, W)`` uint8 (or a list of
    ``(T_i, H, W)``) -> ``(N,)``; NaN for a video in which no structure is ever present."""

    if not isinstance(labels, np.ndarray):
        return np.concatenate([frame_to_frame_dice(np.asarray(v)[None]) for v in labels]) if len(labels) else np.zeros(0)
    lab = labels
    if lab.ndim != 4 or lab.shape[1] < 2:
        raise UserError(f"cine labels: expected (videos, frames>=2, H, W), got shape {lab.shape}")
    n, t = lab.shape[:2]
    a = lab[:, :-1].reshape(-1, *lab.shape[2:])
    b = lab[:, 1:].reshape(-1, *lab.shape[2:])
    table = per_image(a, b, (1.0, 1.0), distances=False)  # Dice only: no surface distances
    dice = table[[c for c in table.columns if c.startswith("dice_")]].to_numpy(float).reshape(n, t - 1, -1)
    with warnings.catch_warnings():  # all-NaN videos (no structure ever present) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(dice.reshape(n, -1), axis=1)


def smoothness_entry(labels, clusters, *, n_boot: int = 1000, seed: int = 0, what: str = "") -> dict[str, Any]:
    """Results entry: mean frame-to-frame judge Dice over videos, subject bootstrap CI."""
    per_video = frame_to_frame_dice(labels)
    ok = np.isfinite(per_video)
    if not ok.any():
        return unavailable(f"no cardiac structure found by the judge in any frame ({what})")
    lo, hi = cluster_bootstrap(per_video, np.asarray(clusters), n_boot=n_boot, seed=seed)
    return metric(float(np.nanmean(per_video)), "1", ci=None if np.isnan(lo) else (lo, hi), n=int(ok.sum()),
                  method=f"temporal smoothness: Dice between the judge's segmentations of consecutive frames, mean over "
                         f"structures present, frame pairs and videos; subject bootstrap 95% CI ({what})")
