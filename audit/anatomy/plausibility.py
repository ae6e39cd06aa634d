"""Anatomical plausibility of short-axis label maps (criteria after Painchaud et al.).

The judge network segments every synthetic image; these criteria then ask whether the
segmented anatomy *could* be a short-axis slice through a heart. They need no conditioning
mask, so they work for any generator, unconditioned ones included.

References
----------
* N. Painchaud, Y. Skandarani, T. Judge, O. Bernard, A. Lalande, P.-M. Jodoin,
  "Cardiac MRI segmentation with strong anatomical guarantees", MICCAI 2019 (LNCS 11765).
* N. Painchaud, Y. Skandarani, T. Judge, O. Bernard, A. Lalande, P.-M. Jodoin,
  "Cardiac segmentation with strong anatomical guarantees", IEEE Trans. Med. Imaging 39(11),
  2020.

Painchaud et al. list anatomical errors of short-axis segmentations -- holes in a structure,
holes between two structures, fragmented structures, the LV touching the RV or the
background (the LV not enclosed by the myocardium), the RV detached from the myocardium,
concave LV or myocardium, a non-circular LV and an implausible myocardial thickness -- and
count a segmentation as anatomically plausible when it commits none of them. This module
implements its own version of that list (no code of theirs is used).

The criteria (``A(.)`` = area in mm^2, ``fill`` = hole filling, limits in :class:`Thresholds`)
----------------------------------------------------------------------------------------
``heart_present``
    ``A(largest 8-connected component of LV u MYO u RV) >= min_heart_area_mm2``.
``lv_no_holes``, ``rv_no_holes``
    ``A(fill(S) minus S) <= max_hole_area_mm2`` for S = LV, RV: nothing else inside.
``myo_no_holes``, ``lv_myo_no_gaps``
    Pixels neither LV nor MYO enclosed by ``LV u MYO`` (not LV holes): a 4-connected piece of
    them touching the LV is a *gap between* LV and MYO, one not touching it a *hole in* the
    MYO; each total ``<= max_hole_area_mm2``. The LV cavity itself is LV, so the ring's lumen
    is never a hole.
``rv_myo_no_gaps``
    Pixels enclosed by ``RV u MYO u LV`` but neither by ``fill(RV)`` nor by ``fill(LV u MYO)``:
    background trapped between the RV and the heart, ``<= max_rv_myo_gap_mm2``.
``lv_connected``, ``rv_connected``, ``myo_connected``
    ``A(S) - A(largest 8-connected component of S) <= max_fragment_area_mm2``.
``lv_rv_apart``
    fraction of LV border pixels (LV pixels with a non-LV 4-neighbour) sharing an edge with
    the RV ``<= max_lv_rv_contact``.
``lv_enclosed``
    fraction of LV border pixels sharing an edge with background ``<= max_lv_background_contact``
    on slices that show the RV (basal and mid slices; the basal myocardium is open towards the
    outflow tract), ``<= max_lv_background_contact_no_rv`` (0: Painchaud et al.'s strict rule)
    on slices without RV (apical, where the ring is closed).
``rv_attached``
    smallest distance (mm, pixel centres) from an RV pixel to a MYO pixel
    ``<= max_rv_myo_distance_mm``; an RV without any MYO fails.
``rv_proportionate`` (cmr-audit addition)
    ``A(RV) / A(LV u MYO) <= max_rv_to_lv_myo_ratio``: a short-axis cut through the ventricles
    does not show an RV many times the size of the LV with its wall.
``lv_convex``, ``myo_convex``
    concavity = (depth of the deepest convex-hull deficit - 1 pixel) / equivalent diameter
    ``2 sqrt(A(hull) / pi)`` of the LV (holes filled), resp. of ``fill(LV u MYO)`` (the
    epicardial outline), largest piece; ``<= max_lv_concavity``, ``max_myo_concavity``.
``lv_circular``, ``myo_circular`` (the latter a cmr-audit addition, so that apical slices
without an LV cavity are checked too)
    ``sqrt(lambda_min / lambda_max)`` of the second-moment matrix of the shape in mm
    (minor / major axis of the equivalent ellipse) ``>= min_lv_axis_ratio``,
    ``min_myo_axis_ratio``.
``myo_thickness_even``
    local wall thickness ``t`` at every endocardial point (LV pixel next to MYO) = distance to
    the nearest pixel that is neither LV nor MYO, minus one pixel; ``P90(t) / P10(t) <=
    max_myo_thickness_ratio``.

Differences from Painchaud et al., made so that *real* slices from base to apex pass:

* Tolerances, not zero-tolerance, where real anatomy or resampling needs them: basal slices
  have a myocardium open towards the outflow tract (so the LV touches the background over
  part of its border), apical slices have a tiny LV or none, septal hypertrophy and infarct
  thinning make the wall thickness uneven, nearest-neighbour resampling leaves specks of a
  few pixels. Every limit is in physical units (mm, mm^2) or a dimensionless ratio, so results
  do not depend on the grid.
* Shape criteria (concavity, circularity, thickness) are *not applicable* (NaN) on
  structures smaller than ``min_shape_area_mm2``, too small for a shape to be measured.
* A slice without LV or RV is no error in itself (apex, base): criteria about a structure
  apply only where it is present.

Label order is the internal ACDC order: 0 background, 1 RV, 2 MYO, 3 LV. ``spacing`` is
``(sx, sy)`` in mm along array axes 0 and 1.

Per image, every criterion is ``1.0`` (pass), ``0.0`` (violation) or ``NaN`` (not
applicable: e.g. RV criteria on a slice without RV). An image is *plausible* iff a heart is
present and every applicable criterion passes; an image with no cardiac structure at all is
not plausible (criterion ``heart_present``).

Digital-topology conventions: structures are 8-connected, their complement 4-connected
(the dual pair that makes "hole" and "component" consistent); "touching" means sharing a
pixel edge (4-neighbourhood); the world beyond the image border is background.

Calibration (``benchmarks/plausibility_calibration.py``, numbers in its JSON and in the
docstring of :class:`Thresholds`): the built-in phantom's ground-truth masks, the judge's
segmentation of real phantom images, and noise (random label maps, random blobs, the judge's
segmentation of noise images); no real ACDC data enters the calibration. Limits that real
anatomy needs beyond what the phantom shows (open basal myocardium, uneven wall thickness) are
set from the anatomy described above and are exercised by constructed masks in the tests.

Layout: the limits are :class:`~audit.anatomy.plausibility_thresholds.Thresholds`, the raw
measurements :mod:`audit.anatomy.plausibility_measures`; this module turns measurements into
criteria (:func:`apply_thresholds`, :func:`check_image`, :func:`evaluate`) and results entries
(:func:`summarise`), and re-exports the names of both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from audit.core.stats import cluster_bootstrap

from .plausibility_measures import MEASUREMENTS, check_masks, check_spacing, measure, measure_image, measure_mask
from .plausibility_thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = [
    "CRITERIA",
    "MEASUREMENTS",
    "Thresholds",
    "DEFAULT_THRESHOLDS",
    "measure_image",
    "measure",
    "apply_thresholds",
    "check_image",
    "evaluate",
    "summarise",
]

#: criterion name -> one-line description (of the *requirement*; a violation is its negation)
CRITERIA: dict[str, str] = {
    "heart_present": "a connected cardiac structure (LV, MYO and/or RV) of at least a minimum area is present",
    "lv_no_holes": "the LV blood pool has no holes",
    "rv_no_holes": "the RV has no holes",
    "myo_no_holes": "the myocardium has no holes (other than the LV cavity)",
    "lv_myo_no_gaps": "no background is enclosed between the LV and the myocardium",
    "rv_myo_no_gaps": "no background is enclosed between the RV and the myocardium",
    "lv_connected": "the LV is one connected piece",
    "rv_connected": "the RV is one connected piece",
    "myo_connected": "the myocardium is one connected piece",
    "lv_rv_apart": "the LV does not touch the RV (the septum separates them)",
    "lv_enclosed": "the myocardium encloses the LV (open towards the background only on basal slices, which show the RV)",
    "rv_attached": "the RV lies against the myocardium",
    "rv_proportionate": "the RV is not many times larger than the LV with its myocardium",
    "lv_convex": "the LV has no deep concavity",
    "myo_convex": "the outer (epicardial) outline of the myocardium has no deep concavity",
    "lv_circular": "the LV is roughly circular (principal-axis ratio above a minimum)",
    "myo_circular": "the epicardial outline (LV with its myocardium) is roughly circular",
    "myo_thickness_even": "the myocardial wall thickness varies within a plausible ratio",
}

# --------------------------------------------------------------------------------------
# criteria
# --------------------------------------------------------------------------------------

def _le(v: np.ndarray, limit: float | np.ndarray) -> np.ndarray:
    """1.0 where ``v <= limit``, 0.0 where above, NaN where ``v`` is NaN (not applicable)."""
    return np.where(np.isnan(v), np.nan, (v <= limit).astype(float))


def apply_thresholds(meas: pd.DataFrame, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Criteria (1 pass / 0 violation / NaN not applicable) and ``plausible`` from measurements.

    ``plausible`` is 1.0 iff ``heart_present`` passes and no applicable criterion fails.
    """
    t = thresholds
    g = {k: meas[k].to_numpy(float) for k in MEASUREMENTS}
    present = g["heart_area_mm2"] >= t.min_heart_area_mm2
    crit = {
        "heart_present": present.astype(float),
        "lv_no_holes": _le(g["lv_hole_mm2"], t.max_hole_area_mm2),
        "rv_no_holes": _le(g["rv_hole_mm2"], t.max_hole_area_mm2),
        "myo_no_holes": _le(g["myo_hole_mm2"], t.max_hole_area_mm2),
        "lv_myo_no_gaps": _le(g["lv_myo_gap_mm2"], t.max_hole_area_mm2),
        "rv_myo_no_gaps": _le(g["rv_myo_gap_mm2"], t.max_rv_myo_gap_mm2),
        "lv_connected": _le(g["lv_fragment_mm2"], t.max_fragment_area_mm2),
        "rv_connected": _le(g["rv_fragment_mm2"], t.max_fragment_area_mm2),
        "myo_connected": _le(g["myo_fragment_mm2"], t.max_fragment_area_mm2),
        "lv_rv_apart": _le(g["lv_rv_contact"], t.max_lv_rv_contact),
        "lv_enclosed": _le(g["lv_background_contact"],
                           np.where(g["rv_area_mm2"] > 0, t.max_lv_background_contact, t.max_lv_background_contact_no_rv)),
        "rv_attached": _le(g["rv_myo_distance_mm"], t.max_rv_myo_distance_mm),
        "rv_proportionate": _le(g["rv_to_lv_myo_ratio"], t.max_rv_to_lv_myo_ratio),
        "lv_convex": _le(g["lv_concavity"], t.max_lv_concavity),
        "myo_convex": _le(g["myo_concavity"], t.max_myo_concavity),
        "lv_circular": _le(-g["lv_axis_ratio"], -t.min_lv_axis_ratio),
        "myo_circular": _le(-g["myo_axis_ratio"], -t.min_myo_axis_ratio),
        "myo_thickness_even": _le(g["myo_thickness_ratio"], t.max_myo_thickness_ratio),
    }
    out = pd.DataFrame(crit, index=meas.index)
    # criteria of an image without a heart are not applicable (the image already fails)
    others = [c for c in CRITERIA if c != "heart_present"]
    out.loc[~present, others] = np.nan
    fails = (out[others].to_numpy() == 0.0).any(axis=1)
    out["plausible"] = (present & ~fails).astype(float)
    return out


def check_image(mask: np.ndarray, spacing: tuple[float, float], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Criteria for one 2D label map: ``{name: 1.0 pass | 0.0 violation | nan not applicable}``.

    Also carries ``plausible`` (1.0 iff a heart is present and no applicable criterion fails).
    """
    sp = check_spacing(spacing)
    m = check_masks(mask, ndims=(2,))
    meas = pd.DataFrame([measure_mask(m, sp, tuple(thresholds.thickness_percentiles), float(thresholds.min_shape_area_mm2))],
                        columns=list(MEASUREMENTS), dtype=float)
    return {k: float(v) for k, v in apply_thresholds(meas, thresholds).iloc[0].items()}


def evaluate(masks: np.ndarray, spacing: tuple[float, float], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """``(N, H, W)`` label maps -> one row per image: every criterion (1/0/NaN) + ``plausible``."""
    return apply_thresholds(measure(masks, spacing, thresholds), thresholds)


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------

def summarise(table: pd.DataFrame, subjects: np.ndarray, *, n_boot: int = 1000, seed: int = 0, source: str = "") -> dict:
    """Results entries: ``{"plausible_rate": entry, "criteria": {name: entry}}``.

    Each entry is a pass rate among the images where the criterion applies, with a
    subject-level cluster bootstrap 95 % CI (:func:`audit.core.stats.cluster_bootstrap`) and
    ``n`` = number of applicable images; a criterion applicable to no image is recorded as
    unavailable, never as 0. ``source`` says whose masks were checked (e.g. "judge
    segmentation of synthetic images").
    """
    subjects = np.asarray(subjects)
    if len(subjects) != len(table):
        raise UserError(f"plausibility summary: {len(subjects)} subject ids for {len(table)} images")
    missing = [c for c in [*CRITERIA, "plausible"] if c not in table.columns]
    if missing:
        raise UserError(f"plausibility summary: table lacks column(s) {', '.join(missing)} (use evaluate())")
    of = f" of {source}" if source else ""
    base = ("Painchaud et al. (MICCAI 2019, IEEE TMI 2020) anatomical criteria, cmr-audit tolerances"
            f"{of}; pass rate among applicable images, subject-level cluster bootstrap 95% CI")

    def entry(col: str, what: str, notes: str | None = None) -> dict:
        v = table[col].to_numpy(float)
        ok = np.isfinite(v)
        if not ok.any():
            return unavailable(f"{col}: no image{of} where it applies" if len(v) else f"{col}: no images{of}")
        lo, hi = cluster_bootstrap(v, subjects, n_boot=n_boot, seed=seed)
        return metric(float(v[ok].mean()), "1", method=f"{what}: {base}", ci=None if np.isnan(lo) else (lo, hi),
                      n=int(ok.sum()), notes=notes)

    notes = None
    if len(table):
        viol = {c: int((table[c].to_numpy(float) == 0.0).sum()) for c in CRITERIA}
        top = sorted(((k, v) for k, v in viol.items() if v), key=lambda kv: -kv[1])[:3]
        if top:
            notes = "most frequent violations: " + ", ".join(f"{k} ({v} images)" for k, v in top)
    return {
        "plausible_rate": entry("plausible", "fraction of images with a heart and no violated criterion", notes),
        "criteria": {name: entry(name, CRITERIA[name]) for name in CRITERIA},
    }
