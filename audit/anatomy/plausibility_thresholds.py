"""The limits of the anatomical plausibility criteria (:mod:`audit.anatomy.plausibility`).

:class:`Thresholds` holds every numeric limit in mm, mm^2 or as a dimensionless ratio, with how
each was calibrated; :data:`DEFAULT_THRESHOLDS` is the calibrated set the audit uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from audit.core.errors import UserError

__all__ = ["Thresholds", "DEFAULT_THRESHOLDS"]


@dataclass(frozen=True)
class Thresholds:
    """Every numeric limit of the criteria, in mm, mm^2 or as a dimensionless ratio.

    How they were calibrated (``benchmarks/plausibility_calibration.py``; numbers in
    ``benchmarks/results/plausibility_calibration.json``): on the built-in phantom only -- the
    ground-truth masks of two 40-subject phantoms (seed 0 at 1.5 mm / 128 px, seed 7 at
    2.0 mm / 96 px) and the int8 judge's segmentation of their real held-out images -- and on
    noise (the judge's segmentation of noise images, random label maps, random blobs). No real
    ACDC masks were available on the calibration machine. Rule: a limit lies beyond the most
    extreme value seen on real anatomy (not only the 1st/99th percentile) with slack of at
    least ~50 % or a few pixels, and is widened further where real anatomy is known to go
    beyond the phantom (marked *anatomy*: the phantom has no open basal rings, no asymmetric
    hypertrophy and no grossly dilated RV). One exception keeps Painchaud et al.'s zero
    tolerance: an LV touching the background on a slice without RV (the apical ring is
    closed). None of the limits is set to separate one particular case.

    Results on the calibration data (phantom; see the JSON): ground truth 100 % plausible
    (1,470 slices), the judge on real held-out images 96.8 % (310; its failures are genuine
    segmentation errors such as a second blob below an apical slice), the judge on noise
    images 0.4 % (256).
    """

    #: ``heart_present``: the largest 8-connected component of LV u MYO u RV must cover at least
    #: this (mm^2). Phantom minimum ~410 mm^2 (ground truth), ~610 mm^2 (judge); 50 mm^2 is an
    #: 8 mm disc, smaller than an apical cap of myocardium, larger than the pixel specks the
    #: judge scatters over noise.
    min_heart_area_mm2: float = 50.0
    #: holes in the LV, RV or MYO and gaps between LV and MYO: tolerated enclosed area (mm^2).
    #: Painchaud et al. tolerate none; ground truth has none, the judge leaves holes of up to
    #: 18 mm^2 (a few pixels) in real images.
    max_hole_area_mm2: float = 25.0
    #: ``rv_myo_no_gaps``: tolerated background enclosed between RV and MYO (mm^2). The judge
    #: leaves pockets of up to 45 mm^2 at the RV insertion points of real images (where the
    #: unlabelled RV wall and fat do lie between the RV cavity and the myocardium).
    max_rv_myo_gap_mm2: float = 70.0
    #: ``*_connected``: tolerated area outside a structure's largest component (mm^2).
    #: Ground truth resampled to the working grid keeps specks of up to 16 mm^2 (4 pixels at
    #: 2 mm); real pieces broken off a structure are larger.
    max_fragment_area_mm2: float = 25.0
    #: ``lv_rv_apart``: tolerated fraction of LV border pixels touching the RV (a few pixels
    #: where a thin basal septum is lost in the pixel grid). 0 in every real phantom image.
    max_lv_rv_contact: float = 0.05
    #: ``lv_enclosed`` on slices that show the RV: tolerated fraction of LV border pixels
    #: touching background. *anatomy*: basal slices, where the myocardium is open towards the
    #: outflow tract; ACDC contours the LV there while the myocardium covers about half of it.
    max_lv_background_contact: float = 0.5
    #: ``lv_enclosed`` on slices without RV (apical: the myocardial ring is closed, as in
    #: Painchaud et al.'s rule). 0 in every real phantom image.
    max_lv_background_contact_no_rv: float = 0.0
    #: ``rv_attached``: largest RV-to-MYO distance (mm, between pixel centres: touching = the
    #: spacing). The RV cavity lies against the septum on every real slice (phantom: always
    #: one pixel apart); 5 mm allows a pixel or two of background at 1.5-2 mm.
    max_rv_myo_distance_mm: float = 5.0
    #: ``rv_proportionate``: largest RV / (LV + MYO) area ratio. Phantom maximum 1.2 (ground
    #: truth) / 1.6 (judge). *anatomy*: grossly dilated RVs on basal slices where little LV is
    #: cut reach a few times the LV + MYO area; 8 leaves room for them.
    max_rv_to_lv_myo_ratio: float = 8.0
    #: ``lv_convex``: largest concavity depth / hull equivalent diameter of the LV. Phantom
    #: maximum 0.03 (ground truth) / 0.04 (judge); a kidney shape is ~0.2, a crescent ~0.5.
    #: *anatomy*: trabeculae and papillary muscles lie inside the ACDC LV contour.
    max_lv_concavity: float = 0.15
    #: ``myo_convex``: the same for the filled epicardial outline (LV u MYO). Phantom maximum
    #: 0.02 (ground truth) / 0.03 (judge).
    max_myo_concavity: float = 0.15
    #: ``lv_circular``: smallest LV minor / major principal-axis ratio. Phantom minimum 0.68
    #: (ground truth), 0.79 at the judge's 1st percentile. *anatomy*: a septum flattened by RV
    #: pressure overload gives ~0.5 (eccentricity index 2).
    min_lv_axis_ratio: float = 0.4
    #: ``myo_circular``: the same for the filled epicardial outline (LV u MYO), which also
    #: covers apical slices without an LV cavity. Phantom minimum 0.85 (ground truth) / 0.82
    #: (judge). *anatomy*: basal and septum-flattened outlines are rounder than the LV inside
    #: them; 0.5 = a 2:1 ellipse.
    min_myo_axis_ratio: float = 0.5
    #: ``myo_thickness_even``: largest ratio of the high to the low percentile of local wall
    #: thickness along the endocardium. Phantom maximum 3.1 (ground truth); 2.5 at the judge's
    #: 99th percentile. *anatomy*: asymmetric septal hypertrophy (~25-30 mm septum vs ~8 mm
    #: lateral wall) and thinned infarct scars (~3 mm vs ~12 mm) reach ~4; 6 leaves room.
    max_myo_thickness_ratio: float = 6.0
    #: the (low, high) percentiles of local wall thickness whose ratio is tested; robust to the
    #: tapering ends of an open basal ring and to single pixels.
    thickness_percentiles: tuple[float, float] = (10.0, 90.0)
    #: shape criteria (``lv_convex``, ``lv_circular``, ``myo_thickness_even``) apply only when
    #: the LV covers at least this (mm^2), ``myo_convex`` and ``myo_circular`` when LV u MYO
    #: does: ~18 pixels at 1.5 mm, below which pixel staircases dominate any shape measure.
    min_shape_area_mm2: float = 40.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            for x in vals:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                    raise UserError(f"plausibility threshold {f.name}: expected a finite number >= 0, got {v!r}")
        pct = self.thickness_percentiles
        if len(pct) != 2 or not (0 <= pct[0] < pct[1] <= 100):
            raise UserError(f"plausibility threshold thickness_percentiles: expected (low, high) with 0 <= low < high <= 100, "
                            f"got {self.thickness_percentiles!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for provenance and calibration records)."""
        d = asdict(self)
        d["thickness_percentiles"] = list(self.thickness_percentiles)
        return d


DEFAULT_THRESHOLDS = Thresholds()
