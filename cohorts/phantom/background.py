"""The static tissue context around the heart: per-subject tissue intensities and the thorax.

:class:`Tissues` holds one subject's signal per tissue (the vendor's contrast with a little
per-subject jitter). :func:`background` draws what does not move with the heart, one image per
slice in the display frame: body outline with subcutaneous fat and chest-wall muscle, lungs with
vessels, liver, stomach and IVC (growing towards apical slices), paraspinal muscles, spine with
canal and cord, descending aorta, sternum and the mediastinal soft tissue behind the heart.
The heart itself is drawn on top by :mod:`cohorts.phantom.heart`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .params import VendorStyle
from .primitives import coverage, paint, smooth_noise

__all__ = ["Tissues", "background"]


class Tissues:
    """Signal intensity of every tissue of one subject (before image formation)."""

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


@dataclass
class _Thorax:
    """Where the body's structures sit (display frame, mm) and the depth below the skin."""

    depth: np.ndarray
    f_sc: float  # subcutaneous fat thickness
    m_w: float  # chest-wall muscle thickness
    spine: tuple
    aorta: tuple
    aorta_r: float
    liver_c: tuple
    liver_ax: tuple
    stomach_c: tuple
    sternum_x: float


def _thorax(p: dict, rng: np.random.Generator, X: np.ndarray, Y: np.ndarray, re_ed: float) -> _Thorax:
    """Draw the body outline and the organs' positions around the heart."""
    hc = np.asarray(p["heart_c"], dtype=np.float32)
    u = rng.uniform
    rot = p["rot_body"]
    cr, sr = math.cos(rot), math.sin(rot)
    ax, ay = u(150.0, 195.0), u(105.0, 135.0)
    f_sc = u(6.0, 22.0)
    m_w = u(8.0, 16.0)
    # the heart sits just behind the anterior chest wall, separated by a little lung / fat:
    # anterior extent of the RV horn above the LV centre (see cohorts.phantom.heart) plus a gap
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
    return _Thorax(depth, f_sc, m_w, spine, aorta, aorta_r, liver_c, liver_ax, stomach_c, sternum_x)


def _abdomen(img: np.ndarray, X: np.ndarray, Y: np.ndarray, b: _Thorax, tis: Tissues, px: float, zf: float,
             cav: np.ndarray) -> np.ndarray:
    """Liver (grows towards apical = more inferior slices), stomach and IVC."""
    liver_c, liver_ax = b.liver_c, b.liver_ax
    lsc = 0.55 + 0.6 * zf
    Xl, Yl = X - liver_c[0], Y - liver_c[1] + 18.0 * zf
    ql = 1.0 - np.sqrt((Xl / (liver_ax[0] * lsc)) ** 2 + (Yl / (liver_ax[1] * lsc)) ** 2)
    img = paint(img, coverage(ql * liver_ax[1] * lsc, px) * (cav > 0), tis.liver)
    if zf > 0.4:
        ssc = (zf - 0.4) / 0.6
        qs = 1.0 - np.hypot((X - b.stomach_c[0]) / (40.0 * ssc + 5), (Y - b.stomach_c[1]) / (28.0 * ssc + 4))
        img = paint(img, coverage(qs * (28.0 * ssc + 4), px) * (cav > 0), tis.stomach)
        ivc = 10.0 - np.hypot(X - (liver_c[0] + 35.0), Y - (liver_c[1] - 25.0))
        img = paint(img, coverage(ivc, px), tis.blood * 0.85)
    return img


def _bones_and_aorta(img: np.ndarray, X: np.ndarray, Y: np.ndarray, b: _Thorax, tis: Tissues, px: float) -> np.ndarray:
    """Spine (vertebral body with marrow and cortical rim, canal, cord), descending aorta, sternum."""
    spine, aorta = b.spine, b.aorta
    dv = 15.0 - np.hypot((X - spine[0]) / 1.15, Y - spine[1])
    img = paint(img, coverage(dv + 1.5, px), 0.1)
    img = paint(img, coverage(dv, px), tis.marrow)
    dc = 7.0 - np.hypot(X - spine[0], Y - spine[1] - 25.0)
    img = paint(img, coverage(dc, px), tis.csf)
    img = paint(img, coverage(dc - 3.0, px), tis.muscle)
    # descending aorta with a thin wall
    da = b.aorta_r - np.hypot(X - aorta[0], Y - aorta[1])
    img = paint(img, coverage(da + 1.5, px), tis.muscle)
    img = paint(img, coverage(da, px), tis.aorta)
    # sternum in the anterior chest wall
    ds = 7.0 - np.hypot((X - b.sternum_x) / 2.0, b.depth - b.f_sc - b.m_w * 0.5)
    img = paint(img, coverage(ds + 1.2, px), 0.08)
    img = paint(img, coverage(ds, px), tis.marrow)
    return img


def _slice_context(X: np.ndarray, Y: np.ndarray, b: _Thorax, tis: Tissues, px: float, zf: float,
                   centre: np.ndarray, re_ed: float) -> np.ndarray:
    """One slice's static context at relative stack position ``zf`` (0 basal, 1 apical)."""
    img = np.zeros(X.shape, np.float32)
    img = paint(img, coverage(b.depth, px), tis.fat)
    img = paint(img, coverage(b.depth - b.f_sc, px), tis.muscle)
    # thoracic cavity (lungs): inside the muscle layer, anterior part thinner
    cav = b.depth - b.f_sc - b.m_w
    img = paint(img, coverage(cav, px), tis.lung)
    # posterior mediastinum / paraspinal muscles
    d_sp = 40.0 - np.hypot((X - b.spine[0]) / 1.4, Y - b.spine[1])
    img = paint(img, coverage(d_sp, px), tis.muscle)
    img = _abdomen(img, X, Y, b, tis, px, zf, cav)
    # mediastinal soft tissue around the heart
    dm = re_ed + 8.0 - np.hypot((X - centre[0]) * 0.9, Y - centre[1] - re_ed * 0.6)
    img = paint(img, coverage(dm, px) * 0.6, tis.muscle)
    return _bones_and_aorta(img, X, Y, b, tis, px)


def background(p: dict, tis: Tissues, rng: np.random.Generator, H: int, W: int,
               centres: np.ndarray, re_ed: float) -> np.ndarray:
    """Static tissue context for every slice, (Z, H, W) float32 in the display frame."""
    px = p["pixel_mm"]
    n = p["n_slices"]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    X = (xx - (W - 1) / 2.0) * px
    Y = (yy - (H - 1) / 2.0) * px
    b = _thorax(p, rng, X, Y, re_ed)
    texture = smooth_noise(rng, (n, H, W), 3.0)

    out = np.empty((n, H, W), dtype=np.float32)
    zf_all = np.linspace(0.0, 1.0, n)
    for k in range(n):
        img = _slice_context(X, Y, b, tis, px, zf_all[k], centres[k], re_ed)
        img *= 1.0 + 0.06 * texture[k]
        out[k] = img
    # pulmonary vessels: small bright dots where the lung is
    lung = (out < tis.lung * 1.6) & (b.depth[None] > b.f_sc + b.m_w)
    dots = (rng.random((n, H, W)) < 0.0025) & lung
    ves = ndimage.gaussian_filter(dots.astype(np.float32), (0, 1.3 / px * 1.5, 1.3 / px * 1.5))
    out += np.clip(ves * 6.0, 0, 1) * tis.vessel * lung
    return out
