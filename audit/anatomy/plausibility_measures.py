"""Raw per-image measurements behind the anatomical plausibility criteria.

:func:`measure_image` (one 2D label map) and :func:`measure` (a stack of them) return the
quantities of :data:`MEASUREMENTS` -- areas, holes and gaps, fragments, contacts, the RV-to-MYO
distance, concavity, principal-axis ratio and wall-thickness ratio -- which
:func:`audit.anatomy.plausibility.apply_thresholds` compares with the limits of
:class:`~audit.anatomy.plausibility_thresholds.Thresholds`. The definitions, digital-topology
conventions and label order are those of :mod:`audit.anatomy.plausibility`; the input checks
(:func:`check_spacing`, :func:`check_masks`) are shared with it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from audit.core.errors import UserError

from .plausibility_thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = ["MEASUREMENTS", "check_spacing", "check_masks", "measure_image", "measure_mask", "measure"]

BG, RV, MYO, LV = 0, 1, 2, 3

#: raw per-image measurements (NaN where not applicable); see :func:`measure_image`
MEASUREMENTS: dict[str, str] = {
    "heart_area_mm2": "area of the largest 8-connected component of LV u MYO u RV (mm^2)",
    "lv_area_mm2": "LV area (mm^2)",
    "myo_area_mm2": "MYO area (mm^2)",
    "rv_area_mm2": "RV area (mm^2)",
    "lv_hole_mm2": "area enclosed by the LV that is not LV (mm^2)",
    "rv_hole_mm2": "area enclosed by the RV that is not RV (mm^2)",
    "myo_hole_mm2": "area enclosed by LV u MYO, not LV/MYO, not touching the LV (mm^2)",
    "lv_myo_gap_mm2": "area enclosed by LV u MYO, not LV/MYO, touching the LV (mm^2)",
    "rv_myo_gap_mm2": "area enclosed only jointly by RV, MYO and LV (mm^2)",
    "lv_fragment_mm2": "LV area outside its largest 8-connected component (mm^2)",
    "rv_fragment_mm2": "RV area outside its largest component (mm^2)",
    "myo_fragment_mm2": "MYO area outside its largest component (mm^2)",
    "lv_rv_contact": "fraction of LV border pixels sharing an edge with RV",
    "lv_background_contact": "fraction of LV border pixels sharing an edge with background",
    "rv_myo_distance_mm": "smallest centre-to-centre distance from an RV pixel to a MYO pixel (mm; inf without MYO)",
    "rv_to_lv_myo_ratio": "RV area / (LV + MYO) area (inf without LV and MYO)",
    "lv_concavity": "deepest concavity of the LV (largest piece, holes filled) / equivalent diameter of its hull",
    "myo_concavity": "deepest concavity of the filled LV u MYO outline (largest piece) / equivalent hull diameter",
    "lv_axis_ratio": "minor / major principal axis of the LV (largest piece, holes filled; second moments, mm)",
    "myo_axis_ratio": "minor / major principal axis of the filled LV u MYO outline (largest piece)",
    "myo_thickness_ratio": "high / low percentile of the local wall thickness along the endocardium",
}


_CROSS = ndi.generate_binary_structure(2, 1)  # 4-neighbourhood
_SQUARE = ndi.generate_binary_structure(2, 2)  # 8-neighbourhood


# --------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------

def check_spacing(spacing: Any) -> tuple[float, float]:
    try:
        sp = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"plausibility: spacing must be two positive numbers (sx, sy) in mm, got {spacing!r}") from None
    if sp.shape != (2,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise UserError(f"plausibility: spacing must be two positive numbers (sx, sy) in mm, got {spacing!r}")
    return float(sp[0]), float(sp[1])


def check_masks(masks: Any, *, ndims: Sequence[int]) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}D" for d in ndims)
        raise UserError(f"plausibility: masks must be {want} label maps, got an array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"plausibility: masks must have an integer dtype (labels 0..3), got {arr.dtype}")
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise UserError(f"plausibility: masks have an empty image shape {arr.shape}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 3:
            raise UserError(f"plausibility: mask labels must be 0..3 (0 background, 1 RV, 2 MYO, 3 LV), found {lo}..{hi}")
    return arr


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------

def _fill(x: np.ndarray) -> np.ndarray:
    """Fill holes; the background is 4-connected (default cross structure) and the array
    border (one background pixel of padding around the crop) connects to the outside."""
    return ndi.binary_fill_holes(x)


def _fragment_area(x: np.ndarray) -> int:
    """Pixels of ``x`` outside its largest 8-connected component."""
    lab, n = ndi.label(x, structure=_SQUARE)
    if n <= 1:
        return 0
    sizes = np.bincount(lab.ravel())[1:]
    return int(sizes.sum() - sizes.max())


def _largest(x: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``x``, cropped to its bounding box plus one pixel."""
    lab, n = ndi.label(x, structure=_SQUARE)
    if n > 1:
        x = lab == (int(np.argmax(np.bincount(lab.ravel())[1:])) + 1)
    return _crop(x)


def _touching(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels of ``a`` sharing an edge with a pixel of ``b`` (arrays are zero-padded)."""
    out = np.zeros_like(a)
    out[1:, :] |= b[:-1, :]
    out[:-1, :] |= b[1:, :]
    out[:, 1:] |= b[:, :-1]
    out[:, :-1] |= b[:, 1:]
    return out & a


def _concavity(obj: np.ndarray, sp: tuple[float, float]) -> float:
    """Depth of the deepest concavity of ``obj`` relative to its convex hull's size.

    The hull is the convex hull of the pixel squares (scikit-image ``convex_hull_image``).
    Depth = largest distance (mm) from a hull pixel not in ``obj`` to the outside of the hull,
    minus one pixel (the staircase of any digital convex shape leaves deficit pixels one pixel
    deep). Divided by the hull's equivalent diameter ``2 sqrt(A_hull / pi)`` so the measure is
    scale-free: 0 for convex shapes, ~0.5 for a crescent.
    """
    from skimage.morphology import convex_hull_image  # lazy: scikit-image only on this path

    hull = convex_hull_image(obj)
    deficit = hull & ~obj
    if not deficit.any():
        return 0.0
    depth = float(ndi.distance_transform_edt(hull, sampling=sp)[deficit].max()) - max(sp)
    diameter = 2.0 * math.sqrt(hull.sum() * sp[0] * sp[1] / math.pi)
    return max(depth, 0.0) / diameter


def _axis_ratio(obj: np.ndarray, sp: tuple[float, float]) -> float:
    """Minor / major principal axis of ``obj`` from its second moments in mm.

    Each pixel is a uniform square (adds ``s^2 / 12`` of variance per axis), so a single pixel
    has a defined ratio. 1 for a disc, b/a for an ellipse with semi-axes a >= b. Used instead
    of 4 pi A / P^2 because pixel-perimeter estimates are strongly biased on small objects.
    """
    r, c = np.nonzero(obj)
    x, y = r * sp[0], c * sp[1]
    cov = np.cov(np.vstack([x, y]), bias=True) if len(x) > 1 else np.zeros((2, 2))
    cov = cov + np.diag([sp[0] ** 2 / 12.0, sp[1] ** 2 / 12.0])
    ev = np.linalg.eigvalsh(cov)
    return float(math.sqrt(max(ev[0], 0.0) / ev[1]))


def _thickness_ratio(lv: np.ndarray, myo: np.ndarray, sp: tuple[float, float], pct: tuple[float, float]) -> float:
    """Ratio of a high to a low percentile of the local myocardial wall thickness.

    The wall is sampled at every endocardial point: each LV pixel sharing an edge with the
    MYO. There the distance ``d`` (mm) to the nearest pixel that is neither MYO nor LV
    (background or RV) crosses the wall; across a wall of k pixels ``d = (k + 1)`` pixels, so
    the local thickness is ``t = d - s`` (``s`` = mean spacing). Sampling along the
    endocardium weights every direction alike (a pixel-area weighting would let the thick
    side dominate). Percentiles rather than min/max keep single pixels and the tapering ends
    of an open basal ring from deciding the ratio. NaN when the LV does not touch the MYO.
    """
    endo = _touching(lv, myo)
    if not endo.any():
        return float("nan")
    d = ndi.distance_transform_edt(myo | lv, sampling=sp)[endo]
    t = np.maximum(d - 0.5 * (sp[0] + sp[1]), 0.5 * min(sp))
    lo, hi = np.percentile(t, pct)
    return float(hi / lo)


def _crop(mask: np.ndarray) -> np.ndarray:
    """The bounding box of the labels with one background pixel of padding all round."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    sub = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.pad(sub, 1)


def measure_image(mask: np.ndarray, spacing: tuple[float, float], *, thickness_percentiles: tuple[float, float] | None = None,
                  min_shape_area_mm2: float | None = None) -> dict[str, float]:
    """Raw measurements of one 2D label map (see :data:`MEASUREMENTS`); NaN = not applicable.

    ``thickness_percentiles`` and ``min_shape_area_mm2`` default to :data:`DEFAULT_THRESHOLDS`.

    Holes: "enclosed" means filled by hole filling with a 4-connected background.

    * ``lv_hole``: non-LV pixels enclosed by the LV alone.
    * ``myo_hole`` / ``lv_myo_gap``: pixels neither LV nor MYO enclosed by LV u MYO (and not an
      LV hole); a component of them touching the LV (8-neighbourhood) is a gap *between* LV and
      MYO, one not touching it a hole *in* the MYO (the LV cavity itself is LV, so the ring's
      lumen is never a hole).
    * ``rv_myo_gap``: pixels enclosed by RV u MYO u LV but by neither RV alone nor LV u MYO.
    """
    sp = check_spacing(spacing)
    m = check_masks(mask, ndims=(2,))
    pct = DEFAULT_THRESHOLDS.thickness_percentiles if thickness_percentiles is None else tuple(thickness_percentiles)
    min_shape = DEFAULT_THRESHOLDS.min_shape_area_mm2 if min_shape_area_mm2 is None else float(min_shape_area_mm2)
    return measure_mask(m, sp, pct, min_shape)


def measure_mask(mask: np.ndarray, sp: tuple[float, float], pct: tuple[float, float], min_shape: float) -> dict[str, float]:
    nan = float("nan")
    out = dict.fromkeys(MEASUREMENTS, nan)
    px = sp[0] * sp[1]
    if not mask.any():
        out["heart_area_mm2"] = 0.0
        return out
    m = _crop(mask)
    lv, myo, rv = m == LV, m == MYO, m == RV
    bg = m == BG
    n_lv, n_myo, n_rv = int(lv.sum()), int(myo.sum()), int(rv.sum())
    heart = ~bg
    out["heart_area_mm2"] = (n_lv + n_myo + n_rv - _fragment_area(heart)) * px  # largest component
    out["lv_area_mm2"], out["myo_area_mm2"], out["rv_area_mm2"] = n_lv * px, n_myo * px, n_rv * px

    lv_fill = _fill(lv) if n_lv else lv
    heart_lm = lv | myo
    if n_lv:
        out["lv_hole_mm2"] = float((lv_fill & ~lv).sum()) * px
        out["lv_fragment_mm2"] = _fragment_area(lv) * px
        border = _touching(lv, ~lv)
        nb = int(border.sum())
        out["lv_background_contact"] = float(_touching(lv, bg).sum()) / nb if nb else 0.0
        if n_rv:
            out["lv_rv_contact"] = float(_touching(lv, rv).sum()) / nb if nb else 0.0
    if n_rv:
        rv_fill = _fill(rv)
        out["rv_hole_mm2"] = float((rv_fill & ~rv).sum()) * px
        out["rv_fragment_mm2"] = _fragment_area(rv) * px
        out["rv_myo_distance_mm"] = float(ndi.distance_transform_edt(~myo, sampling=sp)[rv].min()) if n_myo else math.inf
        out["rv_to_lv_myo_ratio"] = n_rv / (n_lv + n_myo) if n_lv + n_myo else math.inf
    if n_myo:
        out["myo_fragment_mm2"] = _fragment_area(myo) * px
        lm_fill = _fill(heart_lm)
        enclosed = lm_fill & ~heart_lm & ~lv_fill
        if enclosed.any():
            lab, n = ndi.label(enclosed, structure=_CROSS)
            near_lv = ndi.binary_dilation(lv, structure=_SQUARE) if n_lv else np.zeros_like(lv)
            touching_ids = np.unique(lab[near_lv & enclosed])
            gap = np.isin(lab, touching_ids[touching_ids > 0])
            out["lv_myo_gap_mm2"] = float(gap.sum()) * px
            out["myo_hole_mm2"] = float((enclosed & ~gap).sum()) * px
        else:
            out["lv_myo_gap_mm2"] = out["myo_hole_mm2"] = 0.0
        if not n_lv:
            out["lv_myo_gap_mm2"] = nan  # a gap *between* LV and MYO needs an LV
        if n_rv:
            all_fill = _fill(heart_lm | rv)
            joint = all_fill & ~(heart_lm | rv) & ~lm_fill & ~rv_fill
            out["rv_myo_gap_mm2"] = float(joint.sum()) * px
        # epicardial outline: the filled LV u MYO
        if lm_fill.sum() * px >= min_shape:
            main = _largest(lm_fill)  # the shape of the main body; pieces are *_connected's business
            out["myo_concavity"] = _concavity(main, sp)
            out["myo_axis_ratio"] = _axis_ratio(main, sp)
        if n_lv and n_lv * px >= min_shape:
            out["myo_thickness_ratio"] = _thickness_ratio(lv, myo, sp, pct)
    if n_lv and n_lv * px >= min_shape:
        main = _largest(lv_fill)  # the outline of the main body: holes and pieces have their own criteria
        out["lv_concavity"] = _concavity(main, sp)
        out["lv_axis_ratio"] = _axis_ratio(main, sp)
    return out


def measure(masks: np.ndarray, spacing: tuple[float, float], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Raw measurements of ``(N, H, W)`` (or one ``(H, W)``) label maps: one row per image."""
    sp = check_spacing(spacing)
    arr = check_masks(masks, ndims=(2, 3))
    if arr.ndim == 2:
        arr = arr[None]
    pct, min_shape = tuple(thresholds.thickness_percentiles), float(thresholds.min_shape_area_mm2)
    rows = [measure_mask(arr[i], sp, pct, min_shape) for i in range(arr.shape[0])]
    return pd.DataFrame(rows, columns=list(MEASUREMENTS), dtype=float)
