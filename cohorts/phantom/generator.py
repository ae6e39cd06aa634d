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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from audit.core.errors import UserError

from .params import (
    GROUP_RANGES,
    VENDOR_STYLES,
    VendorStyle,
    bsa_mosteller,
    normalise_group,
    normalise_vendor,
)

__all__ = ["PhantomSubject", "generate_subject", "OVERRIDES", "ORIENTATION"]

log = logging.getLogger(__name__)

#: Display frame -> nibabel array order. The heart is drawn in a "radiological display"
#: frame (rows = anterior to posterior, columns = patient right to left) and mapped to the
#: stored (X, Y) axes with ``np.rot90(k)`` then an optional transpose. Chosen empirically
#: as the orientation the ACDC-trained judge segments best (see benchmarks/phantom_realism.py).
ORIENTATION: dict[str, Any] = {"rot90": 0, "transpose": False}

#: Overrides accepted by :func:`generate_subject` (name -> description).
OVERRIDES: dict[str, str] = {
    "n_slices": "number of short-axis slices (8-12 by default)",
    "n_frames": "number of frames per cycle (20-30 by default)",
    "pixel_mm": "in-plane spacing in mm",
    "slice_mm": "slice spacing (= thickness) in mm",
    "matrix": "in-plane matrix (nx, ny) in nibabel order",
    "edv_ml": "target LV end-diastolic volume in ml",
    "ef_percent": "target LV ejection fraction in %",
    "wall_mm": "end-diastolic wall thickness of normal segments in mm",
    "height_cm": "body height in cm",
    "weight_kg": "body weight in kg",
    "noise_scale": "multiplier of the vendor's Rician noise level (>= 0)",
    "first_slice_mm": "depth of the first slice below the end-diastolic base in mm (may be negative)",
}


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


# ---------------------------------------------------------------------------------------
# small helpers


def _g(s: np.ndarray, p: float) -> np.ndarray:
    """Long-axis radius profile: 1 at the base (s <= 0), 0 at and beyond s = 1."""
    s = np.clip(s, 0.0, 1.0)
    return np.power(np.clip(1.0 - np.power(s, p), 0.0, 1.0), 1.0 / p)


def _alpha(inside_mm: np.ndarray, px: float) -> np.ndarray:
    """Partial-volume coverage of a pixel from a signed distance (positive inside), in mm."""
    return np.clip(inside_mm / px + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, alpha: np.ndarray, value: np.ndarray | float) -> np.ndarray:
    return img + alpha * (value - img)


def _ang_bump(theta: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Smooth angular bump in [0, 1], 1 at ``centre``, ~0 beyond ``width`` radians."""
    d = np.angle(np.exp(1j * (theta - centre)))
    return np.exp(-0.5 * (d / (0.5 * width)) ** 2).astype(np.float32)


def _phase(n_frames: int, es: int) -> np.ndarray:
    """Contraction phase phi(t): 0 at ED (t = 0), 1 at ES; filling, diastasis, atrial kick."""
    t = np.arange(n_frames, dtype=np.float64)
    phi = np.empty(n_frames)
    sys = t <= es
    phi[sys] = 0.5 * (1.0 - np.cos(np.pi * t[sys] / es))
    u = (t[~sys] - es) / (n_frames - es)

    def sstep(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0)
        return x * x * (3.0 - 2.0 * x)

    fill = 0.72 * sstep(u / 0.45) + 0.28 * sstep((u - 0.68) / 0.32)
    phi[~sys] = 1.0 - fill
    return phi


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (Gaussian-filtered white noise)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return f / (f.std() + 1e-6)


def _check_range(name: str, value: float, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"phantom parameter {name}={value!r} is not a number") from None
    if not math.isfinite(v) or v < lo or v > hi:
        raise UserError(f"phantom parameter {name}={value!r} is out of range [{lo}, {hi}]")
    return v


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"phantom parameter {name}={value!r} must be an integer")
    if value < lo or value > hi:
        raise UserError(f"phantom parameter {name}={value!r} is out of range [{lo}, {hi}]")
    return int(value)


# ---------------------------------------------------------------------------------------
# parameter sampling


def _sample_params(rng: np.random.Generator, vendor: str, group: str, ov: dict[str, Any]) -> dict[str, Any]:
    style = VENDOR_STYLES[vendor]
    gr = GROUP_RANGES[group]
    u = rng.uniform
    p: dict[str, Any] = {}

    height = ov.get("height_cm", float(np.clip(rng.normal(171.0, 9.0), 150.0, 198.0)))
    bmi = float(np.clip(rng.normal(25.0, 3.5), 18.5, 36.0))
    weight = ov.get("weight_kg", bmi * (height / 100.0) ** 2)
    p["height_cm"] = round(float(height), 1)
    p["weight_kg"] = round(float(weight), 1)
    bsa = bsa_mosteller(p["height_cm"], p["weight_kg"])
    p["bsa_m2"] = bsa

    edv = ov.get("edv_ml", u(*gr.edvi) * bsa)
    ef = ov.get("ef_percent", u(*gr.ef))
    p["edv_target"] = float(edv)
    p["ef_target"] = float(ef)
    p["wall"] = float(ov.get("wall_mm", u(*gr.wall)))
    p["septal_extra"] = u(*gr.septal_extra)
    p["rv_ratio"] = u(*gr.rv_ratio)
    p["rv_ef_target"] = u(*gr.rv_ef)
    p["infarct"] = gr.infarct

    # long axis (endocardial base-to-apex length) grows with the cube root of the volume
    p["L"] = float(np.clip(84.0 * (edv / 140.0) ** (1.0 / 3.0) * u(0.94, 1.06), 62.0, 118.0))
    p["p"] = u(2.1, 2.8)  # profile exponent (larger = more cylindrical)
    # mitral annular plane systolic excursion: ~12-16 mm normal, reduced with low EF
    p["descent"] = float(np.clip((0.06 + 0.11 * ef / 65.0) * p["L"] * u(0.9, 1.1), 4.0, 17.0))

    # acquisition
    pix = ov.get("pixel_mm", round(u(*style.pixel), 4))
    p["pixel_mm"] = float(pix)
    if "matrix" in ov:
        nx, ny = ov["matrix"]
    else:
        nx = int(rng.choice(style.matrix))
        ny = int(max(192, nx - int(rng.choice([0, 16, 24, 32, 40]))))
    p["matrix"] = (int(nx), int(ny))
    n_frames = ov.get("n_frames", int(rng.integers(20, 31)))
    p["n_frames"] = int(n_frames)
    lo, hi = math.ceil(0.35 * n_frames), math.floor(0.40 * n_frames)
    p["es"] = int(rng.integers(lo, hi + 1)) if hi >= lo else int(round(0.375 * n_frames))
    p["rr_ms"] = u(750.0, 1100.0)
    p["frame_interval_ms"] = round(p["rr_ms"] / n_frames, 2)

    # slice placement: the first slice is just below where the base sits at end-systole,
    # so every slice crosses the LV in every frame (the usual clinical planning). The
    # ``first_slice_mm`` override (depth below the ED base, may be negative) moves the
    # stack; slices above the base show the atria and the aortic root, unlabelled.
    wall_apex = 0.8 * p["wall"]
    first = ov.get("first_slice_mm", p["descent"] + u(0.5, 3.0))
    s0 = first / p["L"]
    span = p["L"] * (1.0 - s0) + 0.45 * wall_apex  # from first slice to near the apex tip
    if "slice_mm" in ov and "n_slices" in ov:
        dz, n = float(ov["slice_mm"]), int(ov["n_slices"])
    elif "slice_mm" in ov:
        dz = float(ov["slice_mm"])
        n = int(np.clip(int(span // dz) + 1, 8, 12))
    elif "n_slices" in ov:
        n = int(ov["n_slices"])
        dz = float(np.clip(span / max(n - 1, 1), 8.0, 10.0))
    else:
        dz = round(u(8.0, 10.0) * 2.0) / 2.0
        n = int(span // dz) + 1
        if n > 12:
            n = 12
            dz = float(np.clip(span / 11.0, 8.0, 10.0))
        elif n < 8:
            n = 8
            dz = float(np.clip(span / 7.0, 8.0, 10.0))
    p["slice_mm"] = round(float(dz), 3)
    p["n_slices"] = int(n)
    p["z"] = s0 * p["L"] + np.arange(n) * p["slice_mm"]  # depth below the ED base, mm
    p["wall_apex"] = wall_apex

    # in-plane placement (display frame: x to the right, y down = posterior), mm
    p["heart_c"] = (u(-6.0, 18.0), u(-16.0, 6.0))
    p["tilt"] = (u(-0.15, 0.15), u(-0.12, 0.12))
    p["theta_rv"] = math.pi + u(0.05, 0.45)
    p["rot_body"] = u(-0.15, 0.15)
    p["shape_a"] = rng.normal(0.0, 0.025, 3)
    p["shape_b"] = rng.normal(0.0, 0.025, 3)
    p["infarct_theta"] = float(p["theta_rv"] + math.pi + u(-1.6, 1.6))  # not the septum
    p["infarct_width"] = u(1.1, 1.7)
    p["infarct_thin"] = u(0.45, 0.65)
    p["pm_r"] = u(3.5, 5.0) * (1.25 if group == "HCM" else 1.0)
    p["pm_off"] = (u(-0.25, 0.25), u(-0.25, 0.25))
    p["trab"] = (int(rng.integers(9, 16)), u(0, 2 * math.pi), u(0.35, 0.7))
    p["rv_width_k"] = u(0.5, 0.65) * (p["rv_ratio"] ** 0.9)  # x (R + 8 mm), set in _solve_r_c
    p["rv_beta"] = u(0.95, 1.1) * (1.0 + 0.18 * (p["rv_ratio"] - 1.0))
    # RV free wall + pericardium appear as a 4-6 mm dark band between the RV blood and the
    # epicardial fat (wall ~3-5 mm, Kawel-Boehm 2015); the judge relies on that band.
    p["rv_wall"] = u(4.0, 5.5) + (0.8 if group == "RV" else 0.0)
    p["rv_end"] = u(0.82, 0.95)
    p["rv_ant"] = u(0.05, 0.18)
    p["fat"] = (u(0.5, 1.5), u(3.0, 8.0), u(1.5, 4.0))  # base, groove, RV free-wall extra
    p["noise_scale"] = float(ov.get("noise_scale", 1.0))
    return p


# ---------------------------------------------------------------------------------------
# rendering


class _Tissues:
    def __init__(self, st: VendorStyle, rng: np.random.Generator):
        j = lambda: float(rng.uniform(0.92, 1.08))  # noqa: E731 - per-subject jitter
        self.blood = st.blood
        self.rv_blood = st.blood * float(rng.uniform(0.94, 1.0))
        self.myo = st.myo * j()
        self.fat = st.fat * j()
        self.liver = st.liver * j()
        self.lung = st.lung
        self.muscle = st.myo * float(rng.uniform(0.95, 1.2))
        self.marrow = 0.45 * j()
        self.csf = 0.85 * st.blood
        self.aorta = st.blood * float(rng.uniform(0.75, 0.95))
        self.stomach = float(rng.choice([0.08, 0.55])) * j()
        self.vessel = 0.5 * st.blood


def _background(p: dict, tis: _Tissues, rng: np.random.Generator, H: int, W: int,
                centres: np.ndarray, re_ed: float) -> np.ndarray:
    """Static tissue context for every slice, (Z, H, W) float32 in the display frame."""
    px = p["pixel_mm"]
    n = p["n_slices"]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    X = (xx - (W - 1) / 2.0) * px
    Y = (yy - (H - 1) / 2.0) * px
    hc = np.asarray(p["heart_c"], dtype=np.float32)
    u = rng.uniform

    rot = p["rot_body"]
    cr, sr = math.cos(rot), math.sin(rot)
    ax, ay = u(150.0, 195.0), u(105.0, 135.0)
    f_sc = u(6.0, 22.0)
    m_w = u(8.0, 16.0)
    # the heart sits just behind the anterior chest wall, separated by a little lung / fat:
    # anterior extent of the RV horn above the LV centre (see _render_heart) plus a gap
    ant = re_ed * (0.8 + 0.55 * p["rv_beta"]) + p["rv_wall"] + 4.0
    bx = hc[0] - u(10.0, 35.0)
    by = hc[1] - ant - u(3.0, 15.0) - f_sc - m_w + ay
    Xb, Yb = X - bx, Y - by
    Ub, Vb = cr * Xb + sr * Yb, -sr * Xb + cr * Yb
    qb = np.sqrt((Ub / ax) ** 2 + (Vb / ay) ** 2)
    depth = (1.0 - qb) * ay  # approximate depth below the skin
    spine = (bx + u(-15.0, 5.0), by + ay - u(50.0, 62.0))
    aorta = (spine[0] + u(18.0, 30.0), spine[1] - u(24.0, 34.0))
    aorta_r = u(9.0, 13.0)
    liver_c = (hc[0] - u(45.0, 75.0), hc[1] + re_ed + u(35.0, 55.0))
    liver_ax = (u(80.0, 110.0), u(50.0, 70.0))
    stomach_c = (hc[0] + u(50.0, 80.0), hc[1] + re_ed + u(30.0, 50.0))
    sternum_x = hc[0] - u(15.0, 35.0)
    texture = _smooth_noise(rng, (n, H, W), 3.0)

    out = np.empty((n, H, W), dtype=np.float32)
    zf_all = np.linspace(0.0, 1.0, n)
    for k in range(n):
        zf = zf_all[k]
        img = np.zeros((H, W), np.float32)
        img = _paint(img, _alpha(depth, px), tis.fat)
        img = _paint(img, _alpha(depth - f_sc, px), tis.muscle)
        # thoracic cavity (lungs): inside the muscle layer, anterior part thinner
        cav = depth - f_sc - m_w
        img = _paint(img, _alpha(cav, px), tis.lung)
        # posterior mediastinum / paraspinal muscles
        d_sp = 40.0 - np.hypot((X - spine[0]) / 1.4, Y - spine[1])
        img = _paint(img, _alpha(d_sp, px), tis.muscle)
        # liver (grows towards apical = more inferior slices) and stomach
        lsc = 0.55 + 0.6 * zf
        Xl, Yl = X - liver_c[0], Y - liver_c[1] + 18.0 * zf
        ql = 1.0 - np.sqrt((Xl / (liver_ax[0] * lsc)) ** 2 + (Yl / (liver_ax[1] * lsc)) ** 2)
        img = _paint(img, _alpha(ql * liver_ax[1] * lsc, px) * (cav > 0), tis.liver)
        if zf > 0.4:
            ssc = (zf - 0.4) / 0.6
            qs = 1.0 - np.hypot((X - stomach_c[0]) / (40.0 * ssc + 5), (Y - stomach_c[1]) / (28.0 * ssc + 4))
            img = _paint(img, _alpha(qs * (28.0 * ssc + 4), px) * (cav > 0), tis.stomach)
            ivc = 10.0 - np.hypot(X - (liver_c[0] + 35.0), Y - (liver_c[1] - 25.0))
            img = _paint(img, _alpha(ivc, px), tis.blood * 0.85)
        # mediastinal soft tissue around the heart
        dm = re_ed + 8.0 - np.hypot((X - centres[k, 0]) * 0.9, Y - centres[k, 1] - re_ed * 0.6)
        img = _paint(img, _alpha(dm, px) * 0.6, tis.muscle)
        # spine: vertebral body (marrow, cortical rim), canal (CSF), cord
        dv = 15.0 - np.hypot((X - spine[0]) / 1.15, Y - spine[1])
        img = _paint(img, _alpha(dv + 1.5, px), 0.1)
        img = _paint(img, _alpha(dv, px), tis.marrow)
        dc = 7.0 - np.hypot(X - spine[0], Y - spine[1] - 25.0)
        img = _paint(img, _alpha(dc, px), tis.csf)
        img = _paint(img, _alpha(dc - 3.0, px), tis.muscle)
        # descending aorta with a thin wall
        da = aorta_r - np.hypot(X - aorta[0], Y - aorta[1])
        img = _paint(img, _alpha(da + 1.5, px), tis.muscle)
        img = _paint(img, _alpha(da, px), tis.aorta)
        # sternum in the anterior chest wall, a few ribs
        ds = 7.0 - np.hypot((X - sternum_x) / 2.0, depth - f_sc - m_w * 0.5)
        img = _paint(img, _alpha(ds + 1.2, px), 0.08)
        img = _paint(img, _alpha(ds, px), tis.marrow)
        img *= 1.0 + 0.06 * texture[k]
        out[k] = img
    # pulmonary vessels: small bright dots where the lung is
    lung = (out < tis.lung * 1.6) & (depth[None] > f_sc + m_w)
    dots = (rng.random((n, H, W)) < 0.0025) & lung
    ves = ndimage.gaussian_filter(dots.astype(np.float32), (0, 1.3 / px * 1.5, 1.3 / px * 1.5))
    out += np.clip(ves * 6.0, 0, 1) * tis.vessel * lung
    return out


def _render_heart(p: dict, tis: _Tissues, phi: np.ndarray, rng: np.random.Generator,
                  centres: np.ndarray, half: int, bg_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw the heart into per-slice patches; returns clean images and masks, (Z, T, h, w)."""
    px = p["pixel_mm"]
    n, T = p["n_slices"], len(phi)
    L, descent, P = p["L"], p["descent"], p["p"]
    size = 2 * half + 1
    off = (np.arange(size, dtype=np.float32) - half) * px
    Yp, Xp = np.meshgrid(off, off, indexing="ij")

    phi3 = phi.astype(np.float32)[:, None, None]
    Lt = (L - phi * descent).astype(np.float32)[:, None, None]
    L_epi = L + p["wall_apex"]
    th_rv = p["theta_rv"]
    th_lat = th_rv - math.pi
    a_s, b_s = p["shape_a"], p["shape_b"]
    R, c0, wall = p["R"], p["c0"], p["wall"]
    fat0, fat_groove, fat_free = p["fat"]
    n_tr, ph_tr, st_tr = p["trab"]

    imgs = np.empty((n, T, size, size), np.float32)
    masks = np.zeros((n, T, size, size), np.uint8)
    for k in range(n):
        # pixel centres relative to this slice's LV centre (sub-pixel exact)
        cx, cy = centres[k]  # sub-pixel offset of the LV centre from the patch centre, mm
        X = Xp - cx
        Y = Yp - cy
        r = np.hypot(X, Y)
        th = np.arctan2(Y, X)
        shape = 1.0 + sum(a_s[i] * np.cos((i + 1) * th) + b_s[i] * np.sin((i + 1) * th) for i in range(3))
        shape = shape.astype(np.float32)
        w_th = wall * (1.0 + p["septal_extra"] * _ang_bump(th, th_rv, 2.0))
        k_th = np.ones_like(r)
        if p["infarct"]:
            hyp = _ang_bump(th, p["infarct_theta"], p["infarct_width"])
            w_th = w_th * (1.0 - (1.0 - p["infarct_thin"]) * hyp)
            k_th = 1.0 - 0.9 * hyp
        else:
            k_th = k_th * (1.0 + 0.08 * np.cos(th - th_lat))  # lateral wall moves a bit more
        # material coordinate of this slice at every frame
        s = (p["z"][k] - phi3 * descent) / Lt  # (T,1,1)
        ge = _g(s, P).astype(np.float32)
        ge_epi = _g(s * L / L_epi, P).astype(np.float32)
        r_endo_ed = R * ge * shape
        r_endo = r_endo_ed * (1.0 - c0 * k_th * phi3)
        r_epi_ed = (R * shape + w_th) * ge_epi
        r_epi = np.sqrt(r_endo ** 2 + (r_epi_ed ** 2 - r_endo_ed ** 2) * (L / Lt))
        # epicardial radius of the septum (towards the RV) per frame, same volume
        # conservation as above: the RV wraps the real septum, however thick (HCM)
        sh_rv = 1.0 + sum(a_s[i] * math.cos((i + 1) * th_rv) + b_s[i] * math.sin((i + 1) * th_rv) for i in range(3))
        k_rv = 1.0 - 0.08 if not p["infarct"] else float(1.0 - 0.9 * _ang_bump(np.array(th_rv), p["infarct_theta"], p["infarct_width"]))
        w_rv = wall * (1.0 + p["septal_extra"])
        re_endo_ed = R * ge * sh_rv
        re_epi_ed = (R * sh_rv + w_rv) * ge_epi
        Re = np.sqrt((re_endo_ed * (1.0 - c0 * k_rv * phi3)) ** 2 + (re_epi_ed ** 2 - re_endo_ed ** 2) * (L / Lt))
        Re = np.maximum(Re, 1e-3)

        # RV: ellipse along the RV direction, its outer part is the cavity
        ct, st_ = math.cos(th_rv), math.sin(th_rv)
        U = X * ct + Y * st_
        V = -X * st_ + Y * ct
        grv = _g(s / p["rv_end"], 3.2).astype(np.float32)
        c_rv = p["c_rv"]
        W = p["rv_width"] * grv * (1.0 - 0.6 * c_rv * phi3)
        a = (Re * 1.3 + W) / 2.0
        d = (Re * 0.7 + W) / 2.0
        # horn span: from the LV size with a normal (8 mm) wall, so a hypertrophied septum
        # bulges into a normal-sized RV instead of inflating it
        Re_n = R * ge * sh_rv * (1.0 - c0 * k_rv * phi3) + 8.0 * ge_epi
        b = (0.6 * Re + 0.4 * Re_n) * (0.8 + 0.55 * p["rv_beta"] * np.clip(W / p["rv_width"], 0, 1.5)) \
            * (1.0 - 0.25 * c_rv * phi3)
        # the crescent is fuller anteriorly (V > 0 is anterior for an RV to the left)
        Va = V - p["rv_ant"] * b
        qn = np.sqrt(((U - d) / a) ** 2 + (Va / b) ** 2)
        rv_in = (1.0 - qn) * np.sqrt(a * b)
        rw = p["rv_wall"] * (grv > 0.05)
        qo = np.sqrt(((U - d) / (a + rw)) ** 2 + (Va / (b + rw)) ** 2)
        rvw_in = (1.0 - qo) * np.sqrt((a + rw) * (b + rw))

        # epicardial fat: thick in the interventricular grooves, thin elsewhere
        grooves = _ang_bump(th, th_rv + 1.15, 0.9) + _ang_bump(th, th_rv - 1.15, 0.9)
        f_lv = fat0 + fat_groove * grooves
        fat_in = np.maximum(r_epi + f_lv - r, rvw_in + fat0 + fat_free * (U > 0))
        fat_in = fat_in * (ge_epi > 0.02) + (ge_epi <= 0.02) * (r_epi + fat0 - r)

        # slow in-flow heterogeneity of the blood pools, mild texture of the myocardium
        tex = _smooth_noise(rng, X.shape, 5.0 / px)
        blood_v = tis.blood * (1.0 + 0.035 * tex)
        rvb_v = tis.rv_blood * (1.0 + 0.035 * tex)
        myo_v = tis.myo * (1.0 + 0.05 * _smooth_noise(rng, X.shape, 1.5 / px))
        img = bg_patches[k][None].repeat(T, axis=0)
        img = _paint(img, _alpha(fat_in, px), tis.fat)
        img = _paint(img, _alpha(rvw_in, px), tis.myo)
        a_epi = _alpha(r_epi - r, px)
        img = _paint(img, a_epi, myo_v)
        a_rv = _alpha(rv_in, px) * (1.0 - a_epi)
        img = _paint(img, a_rv, rvb_v)
        a_endo = _alpha(r_endo - r, px)
        img = _paint(img, a_endo, blood_v)
        # trabeculation: dark radial strands in a thin band inside the endocardium
        band = np.clip(1.0 - (r_endo - r) / 2.5, 0.0, 1.0) * a_endo
        patt = (0.5 + 0.5 * np.cos(n_tr * th + ph_tr + 0.9 * np.sin(3 * th))) ** 3
        img = _paint(img, band * patt * st_tr * (0.5 + 0.5 * ge), tis.myo)
        # papillary muscles (anterolateral, posteromedial), mid-ventricle, follow the wall
        pm_fade = np.clip(np.minimum((s - 0.18) / 0.12, (0.88 - s) / 0.12), 0.0, 1.0)
        for tpm, (dx, dy) in ((th_lat - 0.9, (0, 0)), (th_lat + 1.75, p["pm_off"])):
            rr = p["pm_r"] * pm_fade * (1.0 + 0.25 * phi3)
            if not (rr > 0.5).any():
                break
            sh = 1.0 + sum(a_s[i] * math.cos((i + 1) * tpm) + b_s[i] * math.sin((i + 1) * tpm) for i in range(3))
            dist = R * ge * sh * (1.0 - c0 * phi3) - rr * 0.85
            pxm = dist * math.cos(tpm) + dx * rr
            pym = dist * math.sin(tpm) + dy * rr
            dpm = rr - np.hypot(X - pxm, Y - pym)
            img = _paint(img, _alpha(dpm, px) * a_endo * (rr > 0.5), tis.myo * 1.05)
        m = masks[k]
        m[(rv_in > 0) & (r >= r_epi)] = 1
        m[r < r_epi] = 2
        m[r < r_endo] = 3
        # no RV label for a sliver of a few pixels (where the crescent ends)
        rv_px = (m == 1).sum(axis=(1, 2))
        for t in np.nonzero((rv_px > 0) & (rv_px * px * px < 25.0))[0]:
            m[t][m[t] == 1] = 0
        above = np.nonzero(s[:, 0, 0] < 0)[0]
        if above.size:  # the base has descended below this slice: atria, no labels
            img[above] = _render_atria(bg_patches[k], X, Y, R, th_rv, p, tis, U, V, above.size)
            m[above] = 0
        imgs[k] = img
    return imgs, masks


def _render_atria(bg: np.ndarray, X: np.ndarray, Y: np.ndarray, R: float, th_rv: float, p: dict,
                  tis: _Tissues, U: np.ndarray, V: np.ndarray, n: int) -> np.ndarray:
    """A slice above the atrioventricular plane: left/right atria and aortic root (unlabelled)."""
    px = p["pixel_mm"]
    ct, st_ = math.cos(th_rv), math.sin(th_rv)
    img = bg.copy()
    d_la = 0.9 * R - np.hypot(X - 0.1 * R, Y - 0.45 * R)
    ax_, ay_ = 0.55 * R * ct, 0.55 * R * st_ - 0.45 * R
    d_ao = 0.42 * R - np.hypot(X - ax_, Y - ay_)
    d_ra = (1.0 - np.sqrt(((U - 0.9 * R) / (0.7 * R)) ** 2 + ((V + 0.2 * R) / (0.9 * R)) ** 2)) * 0.8 * R
    wall = 2.0
    fat = np.maximum(np.maximum(d_la, d_ao), d_ra) + 4.0
    img = _paint(img, _alpha(fat, px), tis.fat * 0.9)
    for d in (d_la, d_ra, d_ao):
        img = _paint(img, _alpha(d + wall, px), tis.myo)
    img = _paint(img, _alpha(d_la, px), tis.blood * 0.95)
    img = _paint(img, _alpha(d_ra, px), tis.rv_blood * 0.95)
    img = _paint(img, _alpha(d_ao, px), tis.aorta)
    return np.broadcast_to(img, (n,) + img.shape)


def _bias_field(rng: np.random.Generator, H: int, W: int, amp: float) -> np.ndarray:
    """Smooth multiplicative coil field, mean ~1, peak-to-peak ~``amp`` (anterior brighter)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    x = (xx / (W - 1)) * 2 - 1
    y = (yy / (H - 1)) * 2 - 1
    c = rng.normal(0.0, 1.0, 5)
    f = c[0] * x + (c[1] - 1.5) * y + 0.5 * c[2] * x * y + 0.5 * c[3] * x * x + 0.5 * c[4] * y * y
    f = (f - f.min()) / (np.ptp(f) + 1e-6)
    return (1.0 + amp * (f - 0.5)).astype(np.float32)


def _solve_r_c(p: dict) -> None:
    """Choose R (endocardial base radius) and systolic shortening c0 to hit EDV and EF."""
    L, descent, P = p["L"], p["descent"], p["p"]
    z = p["z"]
    dz = p["slice_mm"]
    th = np.linspace(-np.pi, np.pi, 360, endpoint=False)
    a_s, b_s = p["shape_a"], p["shape_b"]
    shape = 1.0 + sum(a_s[i] * np.cos((i + 1) * th) + b_s[i] * np.sin((i + 1) * th) for i in range(3))
    if p["infarct"]:
        k = 1.0 - 0.9 * _ang_bump(th, p["infarct_theta"], p["infarct_width"])
    else:
        k = 1.0 + 0.08 * np.cos(th - p["theta_rv"] + math.pi)
    A = np.mean(shape ** 2)
    B = np.mean(shape ** 2 * k)
    C = np.mean(shape ** 2 * k * k)
    g_ed = np.sum(np.where(z < 0, 0.0, _g(z / L, P) ** 2))
    s_es = (z - descent) / (L - descent)
    g_es = np.sum(np.where(s_es < 0, 0.0, _g(s_es, P) ** 2))  # above the base: atria
    R2 = p["edv_target"] * 1000.0 / (np.pi * dz * g_ed * A)
    p["R"] = float(np.sqrt(R2))
    esv = p["edv_target"] * (1.0 - p["ef_target"] / 100.0) * 1000.0
    Q = esv / (np.pi * R2 * dz * g_es)  # mean_theta shape^2 (1 - c k)^2 must equal Q
    disc = B * B - C * (A - Q)
    c0 = (B - math.sqrt(max(disc, 0.0))) / C
    p["c0"] = float(np.clip(c0, 0.0, 0.75))
    p["rv_width"] = float(p["rv_width_k"] * (p["R"] + 8.0))  # scales with the LV cavity, not its wall
    # RV: crude inversion of the RVEF (crescent area ~ width^1.5 x shortening)
    lr = (L - descent) / L
    p["c_rv"] = float(np.clip(1.0 - ((1.0 - p["rv_ef_target"] / 100.0) / lr) ** (1 / 1.5), 0.05, 0.8))


def _validate_overrides(ov: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(ov) - set(OVERRIDES))
    if unknown:
        raise UserError(f"unknown phantom parameter(s) {', '.join(unknown)}: expected some of {', '.join(OVERRIDES)}")
    out: dict[str, Any] = {}
    for key, val in ov.items():
        if val is None:
            continue
        if key == "n_slices":
            out[key] = _check_int(key, val, 1, 64)
        elif key == "n_frames":
            out[key] = _check_int(key, val, 4, 100)
        elif key == "matrix":
            try:
                nx, ny = val
            except (TypeError, ValueError):
                raise UserError(f"phantom parameter matrix={val!r} must be a pair (nx, ny)") from None
            out[key] = (_check_int("matrix[0]", nx, 64, 1024), _check_int("matrix[1]", ny, 64, 1024))
        elif key == "pixel_mm":
            out[key] = _check_range(key, val, 0.5, 4.0)
        elif key == "slice_mm":
            out[key] = _check_range(key, val, 1.0, 20.0)
        elif key == "edv_ml":
            out[key] = _check_range(key, val, 30.0, 500.0)
        elif key == "ef_percent":
            out[key] = _check_range(key, val, 5.0, 85.0)
        elif key == "wall_mm":
            out[key] = _check_range(key, val, 2.0, 25.0)
        elif key == "height_cm":
            out[key] = _check_range(key, val, 100.0, 230.0)
        elif key == "weight_kg":
            out[key] = _check_range(key, val, 25.0, 250.0)
        elif key == "first_slice_mm":
            out[key] = _check_range(key, val, -60.0, 60.0)
        elif key == "noise_scale":
            out[key] = _check_range(key, val, 0.0, 10.0)
    return out


def _to_nifti_order(a: np.ndarray) -> np.ndarray:
    """Display (H, W, ...) -> nibabel (X, Y, ...) per :data:`ORIENTATION`."""
    a = np.rot90(a, k=ORIENTATION["rot90"], axes=(0, 1))
    if ORIENTATION["transpose"]:
        a = np.swapaxes(a, 0, 1)
    return np.ascontiguousarray(a)


def _display_shape(nx: int, ny: int) -> tuple[int, int]:
    odd = (ORIENTATION["rot90"] % 2 == 1) != bool(ORIENTATION["transpose"])
    return (ny, nx) if odd else (nx, ny)


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
    ov = _validate_overrides(overrides)
    rng = np.random.default_rng(int(seed))
    p = _sample_params(rng, vendor, group, ov)
    style = VENDOR_STYLES[vendor]
    _solve_r_c(p)
    tis = _Tissues(style, rng)

    px = p["pixel_mm"]
    n, T, es = p["n_slices"], p["n_frames"], p["es"]
    nx, ny = p["matrix"]
    H, W = _display_shape(nx, ny)
    phi = _phase(T, es)

    # LV centre per slice (long axis slightly oblique to the slice normal)
    zmid = float(np.mean(p["z"]))
    centres = np.stack([p["heart_c"][0] + p["tilt"][0] * (p["z"] - zmid),
                        p["heart_c"][1] + p["tilt"][1] * (p["z"] - zmid)], axis=1)
    re_ed = p["R"] + p["wall"]
    bg = _background(p, tis, rng, H, W, centres, re_ed)

    sig = style.blur / px  # PSF sigma in pixels
    trim = int(math.ceil(3.0 * sig)) + 1
    extent = re_ed * (1.0 + 0.4 * p["septal_extra"]) + p["rv_width"] * 1.5 + 14.0
    half = int(math.ceil(extent / px)) + trim
    pad = half + 2
    bgp = np.pad(bg, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    ci = np.floor(centres[:, 1] / px + 0.5 + (H - 1) / 2.0).astype(int) + pad  # row index
    cj = np.floor(centres[:, 0] / px + 0.5 + (W - 1) / 2.0).astype(int) + pad  # column index
    # sub-pixel offsets of the true centres from those pixels
    cen_rel = np.stack([centres[:, 0] - (cj - pad - (W - 1) / 2.0) * px,
                        centres[:, 1] - (ci - pad - (H - 1) / 2.0) * px], axis=1)
    win = [(slice(ci[k] - half, ci[k] + half + 1), slice(cj[k] - half, cj[k] + half + 1)) for k in range(n)]
    bg_patches = np.stack([bgp[k][win[k]] for k in range(n)])
    heart, hmask = _render_heart(p, tis, phi, rng, cen_rel, half, bg_patches)

    # image formation on the clean images: coil field, PSF, gamma and scaling are applied to
    # the static background once per slice and to the (small) heart patches per frame;
    # then Rician noise on the assembled cine.
    bias = np.pad(_bias_field(rng, H, W, style.bias), pad, mode="edge")

    def form(x: np.ndarray) -> np.ndarray:
        x = ndimage.gaussian_filter(x, (0,) * (x.ndim - 2) + (sig, sig), mode="nearest")
        np.clip(x, 0.0, None, out=x)
        if style.gamma != 1.0:
            np.power(x, style.gamma, out=x)
        x *= style.scale
        return x

    bgf = form(bgp * bias[None])
    heart = form(heart * np.stack([bias[w] for w in win])[:, None])
    # assemble directly in nibabel order (H, W, Z, T): background, then the heart patches
    # (inner part, where their blur is exact), clipped to the image
    full = np.empty((H, W, n, T), np.float32)
    full[:] = np.transpose(bgf[:, pad:pad + H, pad:pad + W], (1, 2, 0))[..., None]
    mask = np.zeros((H, W, n, T), np.uint8)
    for k in range(n):
        rs, cs = win[k]
        r0, r1 = rs.start + trim - pad, rs.stop - trim - pad
        c0, c1 = cs.start + trim - pad, cs.stop - trim - pad
        rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, H), max(c0, 0), min(c1, W)
        if rr0 >= rr1 or cc0 >= cc1:
            continue
        pr = slice(trim + rr0 - r0, trim + rr1 - r0)
        pc = slice(trim + cc0 - c0, trim + cc1 - c0)
        full[rr0:rr1, cc0:cc1, k, :] = np.transpose(heart[k][:, pr, pc], (1, 2, 0))
        mask[rr0:rr1, cc0:cc1, k, :] = np.transpose(hmask[k][:, pr, pc], (1, 2, 0))

    ns = style.noise * p["noise_scale"] * style.scale * (style.blood ** style.gamma)
    if ns > 0:  # Rician: magnitude of signal plus complex Gaussian noise
        n1 = rng.standard_normal(full.shape, dtype=np.float32)
        n1 *= ns
        n1 += full
        np.multiply(n1, n1, out=n1)
        n2 = rng.standard_normal(full.shape, dtype=np.float32)
        n2 *= ns
        np.multiply(n2, n2, out=n2)
        n1 += n2
        del n2
        full = np.sqrt(n1, out=n1)
    np.rint(full, out=full)
    np.clip(full, 0, 32767, out=full)

    image = _to_nifti_order(full)
    mask_n = _to_nifti_order(mask)
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
