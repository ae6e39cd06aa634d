"""Multi-scale test-time augmentation of the utility nets: average the class probabilities of
zoomed copies of each image.

A net trained with random isotropic scaling (:func:`audit.utility.augment.spatial_augment`,
0.85-1.15) has seen every heart at several sizes; at prediction time the same image zoomed by a
factor ``s`` (about the window's centre), segmented, and zoomed back by ``1 / s`` gives a second
opinion whose errors are partly independent of the first. Averaging the softmax maps of the
zoomed copies before the arg-max is test-time augmentation in the sense of Wang et al. 2019
("Aleatoric uncertainty estimation with test-time augmentation for medical image segmentation
with convolutional neural networks", Neurocomputing 338:34-45); nnU-Net (Isensee et al. 2021,
Nature Methods 18:203-211) does the same with mirrored copies. Mirroring is not used here: the
nets never see a mirrored heart (:mod:`audit.utility.augment`). The scales are
``audit.utility_predict_scales``; ``1`` alone is a plain prediction. The measured effect on real
ACDC is in BENCHMARKS.md ("Utility segmenter on real ACDC").

Written with ``torch.nn.functional.affine_grid`` / ``grid_sample`` rather than MONAI's
``TestTimeAugmentation``: that class draws *random* transforms per call on dictionaries of single
images to estimate uncertainty, while here a fixed, deterministic set of zooms is applied to whole
batches -- a few lines of torch, the same warp the training augmentation uses.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from audit.core.numbers import parse_floats

__all__ = ["parse_scales", "multiscale_probs"]


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.9,1,1.1"`` -> ``(0.9, 1.0, 1.1)``, sorted and unique; every scale must be in [0.5, 2].
    Raises :class:`ValueError` with the offending item."""
    out = parse_floats(text, "0.9,1,1.1")
    if not out:
        raise ValueError("give at least one scale (1 = a plain prediction)")
    bad = [s for s in out if not 0.5 <= s <= 2.0]
    if bad:
        raise ValueError(f"every scale must be in [0.5, 2], got {bad[0]:g}")
    return out


def _zoom(x: torch.Tensor, factor: float, padding: str) -> torch.Tensor:
    """``x`` ``(N,C,H,W)`` magnified by ``factor`` about the centre (bilinear)."""
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def multiscale_probs(logits_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     scales: tuple[float, ...]) -> torch.Tensor:
    """Mean softmax ``(N,K,H,W)`` of ``logits_fn`` over the copies of ``x`` ``(N,1,H,W)`` zoomed by
    each of ``scales`` and mapped back (scale 1: the image itself). Outside the zoomed-out copy's
    support the image is zero-padded (the window's own background) and the mapped-back
    probabilities take the border value."""
    total = None
    for s in scales:
        if s == 1.0:
            p = logits_fn(x).float().softmax(1)
        else:
            p = _zoom(logits_fn(_zoom(x, s, "zeros")).float().softmax(1), 1.0 / s, "border")
        total = p if total is None else total + p
    return total / len(scales)
