"""Analytic cine short-axis bSSFP phantom: one subject, all frames, with ground-truth masks.

Geometry (all in millimetres, per subject):

* The LV is a truncated ellipsoid of revolution about the long axis, with endocardial radius
  ``R * g(s) * shape(theta)`` at material long-axis coordinate ``s`` (0 = base, 1 = endocardial
  apex), ``g(s) = (1 - s**p) ** (1/p)`` and a low-order Fourier ``shape``. The epicardium is
  the same profile, ``w(theta)`` thicker, ending ``w_apex`` beyond the endocardial apex.
* Motion: the base descends by ``descent`` towards the (fixed) apex, so a physical slice at
  depth ``z`` sees material ``s(t) = (z - phi(t) * descent) / (L - phi(t) * descent)``; the
  endocardium moves inwards by ``1 - c(theta) * phi(t)``; the epicardium follows from
  conservation of myocardial volume per material slab (``r_epi^2 - r_endo^2`` grows by
  ``L_ed / L_t``), so the wall thickens at constant myocardial volume. ``phi`` is 0 at ED
  (frame 0), 1 at ES, with rapid filling, diastasis and atrial kick afterwards.
* Slices are fixed in space (clinical planning): the first one sits just below the base's
  end-systolic position, so every slice cuts the ventricles in every frame. Whole-heart
  myocardial volume is conserved (tested with a fine stack covering the heart); within the
  default stack the basal ring descends into the top slice during systole, so the stack's
  myocardial volume is 10-25 % larger at ES than at ED (through-plane motion, as in real
  cine stacks; ``info["myo_volume_ml"]`` lists it per frame).
* The RV is an ellipse wrapped around the septum (the part outside the LV epicardium is the
  RV cavity), with a thin free wall; it ends before the LV apex.
* Tissue context: body outline with subcutaneous fat and chest-wall muscle, lungs with
  vessels, liver, stomach, spine with canal, descending aorta, IVC, epicardial fat
  concentrated in the grooves, papillary muscles and trabeculation (labelled LV cavity, as
  in the ACDC ground truth).

Rendering is vectorised with numpy float32 per slice over all frames; the heart is drawn in
a patch around it and pasted into the static per-slice background. Image formation per
vendor: coil bias field, Gaussian PSF, Rician noise (magnitude of complex Gaussian noise;
Gudbjartsson & Patz, MRM 34:910, 1995), gamma and intensity scaling.

This module assembles a subject (:func:`generate_subject`) and its ground truth; the parts live
beside it: :mod:`~cohorts.phantom.sampling` (parameters, overrides, sizing to the targets),
:mod:`~cohorts.phantom.primitives` (profiles, contraction phase, partial-volume painting),
:mod:`~cohorts.phantom.background` (tissues and thorax), :mod:`~cohorts.phantom.heart` (the
beating ventricles and atria) and :mod:`~cohorts.phantom.imaging` (image formation, orientation).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.core.errors import UserError

from .background import Tissues, background
from .heart import render_heart
from .imaging import (
    ORIENTATION,
    bias_field,
    display_shape,
    form_image,
    paste_patches,
    patch_grid,
    rician_noise,
    to_nifti_order,
)
from .params import VENDOR_STYLES, VendorStyle, normalise_group, normalise_vendor
from .primitives import contraction_phase
from .sampling import OVERRIDES, sample_params, solve_size, validate_overrides

__all__ = ["PhantomSubject", "generate_subject", "OVERRIDES", "ORIENTATION"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PhantomSubject:
    """One phantom subject.

    ``image`` float32 and ``mask`` uint8 are ``(X, Y, Z, T)`` in nibabel array order;
    ``mask`` holds ACDC labels (0 background, 1 RV, 2 MYO, 3 LV) for every frame.
    ``spacing`` is ``(sx, sy, sz)`` in mm; ``ed``/``es`` are 0-based frame indices.
    ``info`` carries the clinical record and the ground truth computed from the masks.
    """

    subject_id: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    ed: int
    es: int
    vendor: str
    group: str
    frame_interval_ms: float
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.image.shape[3])

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[2])


def _lv_centres(p: dict) -> np.ndarray:
    """LV centre per slice, (Z, 2) mm in the display frame (long axis slightly oblique to the slice normal)."""
    zmid = float(np.mean(p["z"]))
    return np.stack([p["heart_c"][0] + p["tilt"][0] * (p["z"] - zmid),
                     p["heart_c"][1] + p["tilt"][1] * (p["z"] - zmid)], axis=1)


def _render_cine(p: dict, style: VendorStyle, tis: Tissues, rng: np.random.Generator,
                 H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored cine (before rounding) and its labels, both (H, W, Z, T) in the display frame."""
    px = p["pixel_mm"]
    n, T, es = p["n_slices"], p["n_frames"], p["es"]
    phi = contraction_phase(T, es)
    centres = _lv_centres(p)
    re_ed = p["R"] + p["wall"]
    bg = background(p, tis, rng, H, W, centres, re_ed)

    sig = style.blur / px  # PSF sigma in pixels
    trim = int(math.ceil(3.0 * sig)) + 1
    extent = re_ed * (1.0 + 0.4 * p["septal_extra"]) + p["rv_width"] * 1.5 + 14.0
    half = int(math.ceil(extent / px)) + trim
    grid = patch_grid(centres, px, H, W, half, trim)
    pad, win = grid.pad, grid.win
    bgp = np.pad(bg, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    bg_patches = np.stack([bgp[k][win[k]] for k in range(n)])
    heart, hmask = render_heart(p, tis, phi, rng, grid.cen_rel, half, bg_patches)

    # image formation on the clean images: coil field, PSF, gamma and scaling are applied to
    # the static background once per slice and to the (small) heart patches per frame;
    # then Rician noise on the assembled cine.
    bias = np.pad(bias_field(rng, H, W, style.bias), pad, mode="edge")
    bgf = form_image(bgp * bias[None], style, sig)
    heart = form_image(heart * np.stack([bias[w] for w in win])[:, None], style, sig)
    full, mask = paste_patches(bgf, heart, hmask, grid, H, W)
    ns = style.noise * p["noise_scale"] * style.scale * (style.blood ** style.gamma)
    full = rician_noise(full, ns, rng)
    np.rint(full, out=full)
    np.clip(full, 0, 32767, out=full)
    return full, mask


def generate_subject(subject_id: str, seed: int, vendor: str = "A", group: str = "NOR",
                     **overrides: Any) -> PhantomSubject:
    """Generate one cine short-axis subject (see the module docstring for the model).

    ``info`` holds the clinical record (height_cm, weight_kg, bsa_m2), the ground truth
    computed from the masks (edv_ml, esv_ml, ef_percent, rv_edv_ml, rv_esv_ml,
    rv_ef_percent, lv_mass_g = ED myocardial volume x 1.05 g/ml, myo_volume_ml per frame;
    volume = voxel count x voxel volume), the wall thickness parameters and the targets.

    ``seed`` fully determines the subject together with ``vendor``, ``group`` and
    ``overrides`` (names in :data:`OVERRIDES`). Raises :class:`UserError` for an unknown
    vendor, group or override, or an out-of-range value.
    """
    vendor = normalise_vendor(vendor)
    group = normalise_group(group)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"phantom seed {seed!r} must be a non-negative integer")
    ov = validate_overrides(overrides)
    rng = np.random.default_rng(int(seed))
    p = sample_params(rng, vendor, group, ov)
    style = VENDOR_STYLES[vendor]
    solve_size(p)
    tis = Tissues(style, rng)
    nx, ny = p["matrix"]
    H, W = display_shape(nx, ny)
    full, mask = _render_cine(p, style, tis, rng, H, W)

    image = to_nifti_order(full)
    mask_n = to_nifti_order(mask)
    px, T, es = p["pixel_mm"], p["n_frames"], p["es"]
    spacing = (float(px), float(px), float(p["slice_mm"]))
    info = _ground_truth(p, mask_n, spacing, T, es, vendor, group)
    return PhantomSubject(subject_id=str(subject_id), image=image, mask=mask_n, spacing=spacing,
                          ed=0, es=int(es), vendor=vendor, group=group,
                          frame_interval_ms=float(p["frame_interval_ms"]), seed=int(seed), info=info)


def _ground_truth(p: dict, mask: np.ndarray, spacing: tuple[float, float, float], T: int, es: int,
                  vendor: str, group: str) -> dict[str, Any]:
    """Clinical indices from the masks: volume = voxel count x voxel volume."""
    vox_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    m2 = mask.reshape(-1, T)
    counts = np.stack([(m2 == lab).sum(axis=0) for lab in (1, 2, 3)])  # (3, T)
    vol = counts * vox_ml
    edv, esv = float(vol[2, 0]), float(vol[2, es])
    rv_edv, rv_esv = float(vol[0, 0]), float(vol[0, es])
    myo = vol[1]
    return {
        "height_cm": p["height_cm"],
        "weight_kg": p["weight_kg"],
        "bsa_m2": round(p["bsa_m2"], 4),
        "edv_ml": round(edv, 3),
        "esv_ml": round(esv, 3),
        "ef_percent": round(100.0 * (edv - esv) / edv, 3) if edv > 0 else None,
        "rv_edv_ml": round(rv_edv, 3),
        "rv_esv_ml": round(rv_esv, 3),
        "rv_ef_percent": round(100.0 * (rv_edv - rv_esv) / rv_edv, 3) if rv_edv > 0 else None,
        "lv_mass_g": round(float(myo[0]) * 1.05, 3),  # myocardial density 1.05 g/ml
        "myo_volume_ml": [round(float(v), 3) for v in myo],
        "wall_thickness_mm": round(p["wall"], 3),
        "max_wall_thickness_mm": round(p["wall"] * (1.0 + p["septal_extra"]), 3),  # septum, ED
        "n_slices": int(mask.shape[2]),
        "n_frames": int(T),
        "ed": 0,
        "es": int(es),
        "frame_interval_ms": p["frame_interval_ms"],
        "vendor": vendor,
        "group": group,
        "target_edv_ml": round(p["edv_target"], 3),
        "target_ef_percent": round(p["ef_target"], 3),
    }
