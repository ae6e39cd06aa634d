"""The beating heart: the LV, RV and their surroundings drawn per slice over the whole cycle.

:func:`render_heart` draws, in a square patch around each slice's LV centre and for every frame
at once (arrays ``(T, h, w)``), the model of :mod:`cohorts.phantom.generator`: the LV walls
from the long-axis profile, contraction and volume conservation (:func:`_lv_walls`), the RV
crescent wrapped around the septum (:func:`_rv_crescent`), epicardial fat, blood and myocardium
with texture, trabeculation and papillary muscles (:func:`_paint_heart`) and the ACDC labels
(:func:`_label`). Frames in which the base has descended below a slice show the atria and the
aortic root instead, unlabelled (:func:`_render_atria`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .background import Tissues
from .primitives import angular_bump, coverage, long_axis_profile, paint, smooth_noise

__all__ = ["render_heart"]


@dataclass
class _Cycle:
    """What every slice shares: the contraction phase and the long axis over the frames."""

    phi3: np.ndarray  # phi(t) as (T, 1, 1) float32
    Lt: np.ndarray  # endocardial long axis per frame, (T, 1, 1) float32
    L_epi: float  # epicardial long axis at ED


@dataclass
class _Walls:
    """One slice's LV geometry per frame (radii in mm, broadcast to (T, h, w))."""

    r: np.ndarray  # distance of each pixel from the LV centre
    th: np.ndarray  # angle of each pixel
    s: np.ndarray  # material long-axis coordinate of the slice per frame, (T, 1, 1)
    ge: np.ndarray  # long-axis profile of the endocardium at s
    ge_epi: np.ndarray  # long-axis profile of the epicardium at s
    r_endo: np.ndarray
    r_epi: np.ndarray
    Re: np.ndarray  # epicardial radius of the septum (towards the RV) per frame
    sh_rv: float  # outline harmonics of the LV towards the RV
    k_rv: float  # relative shortening of the septum


def _lv_walls(p: dict, cyc: _Cycle, X: np.ndarray, Y: np.ndarray, z: float) -> _Walls:
    """Endo- and epicardial radii of the LV in a slice at depth ``z``: the endocardium moves
    inwards with the phase, the epicardium follows from myocardial volume conservation."""
    L, descent, P = p["L"], p["descent"], p["p"]
    th_rv = p["theta_rv"]
    th_lat = th_rv - math.pi
    a_s, b_s = p["shape_a"], p["shape_b"]
    R, c0, wall = p["R"], p["c0"], p["wall"]
    phi3, Lt = cyc.phi3, cyc.Lt
    r = np.hypot(X, Y)
    th = np.arctan2(Y, X)
    shape = 1.0 + sum(a_s[i] * np.cos((i + 1) * th) + b_s[i] * np.sin((i + 1) * th) for i in range(3))
    shape = shape.astype(np.float32)
    w_th = wall * (1.0 + p["septal_extra"] * angular_bump(th, th_rv, 2.0))
    k_th = np.ones_like(r)
    if p["infarct"]:
        hyp = angular_bump(th, p["infarct_theta"], p["infarct_width"])
        w_th = w_th * (1.0 - (1.0 - p["infarct_thin"]) * hyp)
        k_th = 1.0 - 0.9 * hyp
    else:
        k_th = k_th * (1.0 + 0.08 * np.cos(th - th_lat))  # lateral wall moves a bit more
    # material coordinate of this slice at every frame
    s = (z - phi3 * descent) / Lt  # (T,1,1)
    ge = long_axis_profile(s, P).astype(np.float32)
    ge_epi = long_axis_profile(s * L / cyc.L_epi, P).astype(np.float32)
    r_endo_ed = R * ge * shape
    r_endo = r_endo_ed * (1.0 - c0 * k_th * phi3)
    r_epi_ed = (R * shape + w_th) * ge_epi
    r_epi = np.sqrt(r_endo ** 2 + (r_epi_ed ** 2 - r_endo_ed ** 2) * (L / Lt))
    # epicardial radius of the septum (towards the RV) per frame, same volume
    # conservation as above: the RV wraps the real septum, however thick (HCM)
    sh_rv = 1.0 + sum(a_s[i] * math.cos((i + 1) * th_rv) + b_s[i] * math.sin((i + 1) * th_rv) for i in range(3))
    k_rv = 1.0 - 0.08 if not p["infarct"] else float(1.0 - 0.9 * angular_bump(np.array(th_rv), p["infarct_theta"], p["infarct_width"]))
    w_rv = wall * (1.0 + p["septal_extra"])
    re_endo_ed = R * ge * sh_rv
    re_epi_ed = (R * sh_rv + w_rv) * ge_epi
    Re = np.sqrt((re_endo_ed * (1.0 - c0 * k_rv * phi3)) ** 2 + (re_epi_ed ** 2 - re_endo_ed ** 2) * (L / Lt))
    Re = np.maximum(Re, 1e-3)
    return _Walls(r=r, th=th, s=s, ge=ge, ge_epi=ge_epi, r_endo=r_endo, r_epi=r_epi, Re=Re, sh_rv=sh_rv, k_rv=k_rv)


def _rv_crescent(p: dict, cyc: _Cycle, X: np.ndarray, Y: np.ndarray, w: _Walls):
    """The RV: an ellipse along the RV direction whose part outside the LV epicardium is the
    cavity. Returns ``U, V`` (coordinates along / across the RV direction), the signed depth
    inside the cavity and inside the cavity with its free wall."""
    th_rv, R, c0, phi3 = p["theta_rv"], p["R"], p["c0"], cyc.phi3
    ct, st_ = math.cos(th_rv), math.sin(th_rv)
    U = X * ct + Y * st_
    V = -X * st_ + Y * ct
    grv = long_axis_profile(w.s / p["rv_end"], 3.2).astype(np.float32)
    c_rv = p["c_rv"]
    W = p["rv_width"] * grv * (1.0 - 0.6 * c_rv * phi3)
    a = (w.Re * 1.3 + W) / 2.0
    d = (w.Re * 0.7 + W) / 2.0
    # horn span: from the LV size with a normal (8 mm) wall, so a hypertrophied septum
    # bulges into a normal-sized RV instead of inflating it
    Re_n = R * w.ge * w.sh_rv * (1.0 - c0 * w.k_rv * phi3) + 8.0 * w.ge_epi
    b = (0.6 * w.Re + 0.4 * Re_n) * (0.8 + 0.55 * p["rv_beta"] * np.clip(W / p["rv_width"], 0, 1.5)) \
        * (1.0 - 0.25 * c_rv * phi3)
    # the crescent is fuller anteriorly (V > 0 is anterior for an RV to the left)
    Va = V - p["rv_ant"] * b
    qn = np.sqrt(((U - d) / a) ** 2 + (Va / b) ** 2)
    rv_in = (1.0 - qn) * np.sqrt(a * b)
    rw = p["rv_wall"] * (grv > 0.05)
    qo = np.sqrt(((U - d) / (a + rw)) ** 2 + (Va / (b + rw)) ** 2)
    rvw_in = (1.0 - qo) * np.sqrt((a + rw) * (b + rw))
    return U, V, rv_in, rvw_in


def _epicardial_fat(p: dict, w: _Walls, U: np.ndarray, rvw_in: np.ndarray) -> np.ndarray:
    """Signed depth inside the epicardial fat: thick in the interventricular grooves, thin elsewhere."""
    th_rv = p["theta_rv"]
    fat0, fat_groove, fat_free = p["fat"]
    grooves = angular_bump(w.th, th_rv + 1.15, 0.9) + angular_bump(w.th, th_rv - 1.15, 0.9)
    f_lv = fat0 + fat_groove * grooves
    fat_in = np.maximum(w.r_epi + f_lv - w.r, rvw_in + fat0 + fat_free * (U > 0))
    return fat_in * (w.ge_epi > 0.02) + (w.ge_epi <= 0.02) * (w.r_epi + fat0 - w.r)


def _papillary(img: np.ndarray, p: dict, cyc: _Cycle, X: np.ndarray, Y: np.ndarray, w: _Walls,
               a_endo: np.ndarray, tis: Tissues) -> np.ndarray:
    """Papillary muscles (anterolateral, posteromedial), mid-ventricle, following the wall."""
    px, R, c0, phi3 = p["pixel_mm"], p["R"], p["c0"], cyc.phi3
    a_s, b_s = p["shape_a"], p["shape_b"]
    th_lat = p["theta_rv"] - math.pi
    s = w.s
    pm_fade = np.clip(np.minimum((s - 0.18) / 0.12, (0.88 - s) / 0.12), 0.0, 1.0)
    for tpm, (dx, dy) in ((th_lat - 0.9, (0, 0)), (th_lat + 1.75, p["pm_off"])):
        rr = p["pm_r"] * pm_fade * (1.0 + 0.25 * phi3)
        if not (rr > 0.5).any():
            break
        sh = 1.0 + sum(a_s[i] * math.cos((i + 1) * tpm) + b_s[i] * math.sin((i + 1) * tpm) for i in range(3))
        dist = R * w.ge * sh * (1.0 - c0 * phi3) - rr * 0.85
        pxm = dist * math.cos(tpm) + dx * rr
        pym = dist * math.sin(tpm) + dy * rr
        dpm = rr - np.hypot(X - pxm, Y - pym)
        img = paint(img, coverage(dpm, px) * a_endo * (rr > 0.5), tis.myo * 1.05)
    return img


def _paint_heart(bg: np.ndarray, p: dict, cyc: _Cycle, X: np.ndarray, Y: np.ndarray, w: _Walls,
                 rv_in: np.ndarray, rvw_in: np.ndarray, fat_in: np.ndarray, tis: Tissues,
                 rng: np.random.Generator) -> np.ndarray:
    """The slice's clean images over the cycle: fat, RV wall, myocardium, RV and LV blood with
    their textures, trabeculation and papillary muscles painted over the background patch."""
    px, T = p["pixel_mm"], len(cyc.phi3)
    n_tr, ph_tr, st_tr = p["trab"]
    # slow in-flow heterogeneity of the blood pools, mild texture of the myocardium
    tex = smooth_noise(rng, X.shape, 5.0 / px)
    blood_v = tis.blood * (1.0 + 0.035 * tex)
    rvb_v = tis.rv_blood * (1.0 + 0.035 * tex)
    myo_v = tis.myo * (1.0 + 0.05 * smooth_noise(rng, X.shape, 1.5 / px))
    img = bg[None].repeat(T, axis=0)
    img = paint(img, coverage(fat_in, px), tis.fat)
    img = paint(img, coverage(rvw_in, px), tis.myo)
    a_epi = coverage(w.r_epi - w.r, px)
    img = paint(img, a_epi, myo_v)
    a_rv = coverage(rv_in, px) * (1.0 - a_epi)
    img = paint(img, a_rv, rvb_v)
    a_endo = coverage(w.r_endo - w.r, px)
    img = paint(img, a_endo, blood_v)
    # trabeculation: dark radial strands in a thin band inside the endocardium
    band = np.clip(1.0 - (w.r_endo - w.r) / 2.5, 0.0, 1.0) * a_endo
    patt = (0.5 + 0.5 * np.cos(n_tr * w.th + ph_tr + 0.9 * np.sin(3 * w.th))) ** 3
    img = paint(img, band * patt * st_tr * (0.5 + 0.5 * w.ge), tis.myo)
    return _papillary(img, p, cyc, X, Y, w, a_endo, tis)


def _label(m: np.ndarray, w: _Walls, rv_in: np.ndarray, px: float) -> None:
    """ACDC labels of one slice over the cycle, written into ``m`` (T, h, w)."""
    m[(rv_in > 0) & (w.r >= w.r_epi)] = 1
    m[w.r < w.r_epi] = 2
    m[w.r < w.r_endo] = 3
    # no RV label for a sliver of a few pixels (where the crescent ends)
    rv_px = (m == 1).sum(axis=(1, 2))
    for t in np.nonzero((rv_px > 0) & (rv_px * px * px < 25.0))[0]:
        m[t][m[t] == 1] = 0


def render_heart(p: dict, tis: Tissues, phi: np.ndarray, rng: np.random.Generator,
                 centres: np.ndarray, half: int, bg_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw the heart into per-slice patches; returns clean images and masks, (Z, T, h, w)."""
    px = p["pixel_mm"]
    n, T = p["n_slices"], len(phi)
    size = 2 * half + 1
    off = (np.arange(size, dtype=np.float32) - half) * px
    Yp, Xp = np.meshgrid(off, off, indexing="ij")
    cyc = _Cycle(phi3=phi.astype(np.float32)[:, None, None],
                 Lt=(p["L"] - phi * p["descent"]).astype(np.float32)[:, None, None],
                 L_epi=p["L"] + p["wall_apex"])

    imgs = np.empty((n, T, size, size), np.float32)
    masks = np.zeros((n, T, size, size), np.uint8)
    for k in range(n):
        # pixel centres relative to this slice's LV centre (sub-pixel exact)
        cx, cy = centres[k]  # sub-pixel offset of the LV centre from the patch centre, mm
        X = Xp - cx
        Y = Yp - cy
        w = _lv_walls(p, cyc, X, Y, p["z"][k])
        U, V, rv_in, rvw_in = _rv_crescent(p, cyc, X, Y, w)
        fat_in = _epicardial_fat(p, w, U, rvw_in)
        img = _paint_heart(bg_patches[k], p, cyc, X, Y, w, rv_in, rvw_in, fat_in, tis, rng)
        m = masks[k]
        _label(m, w, rv_in, px)
        above = np.nonzero(w.s[:, 0, 0] < 0)[0]
        if above.size:  # the base has descended below this slice: atria, no labels
            img[above] = _render_atria(bg_patches[k], X, Y, p["R"], p["theta_rv"], p, tis, U, V, above.size)
            m[above] = 0
        imgs[k] = img
    return imgs, masks


def _render_atria(bg: np.ndarray, X: np.ndarray, Y: np.ndarray, R: float, th_rv: float, p: dict,
                  tis: Tissues, U: np.ndarray, V: np.ndarray, n: int) -> np.ndarray:
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
    img = paint(img, coverage(fat, px), tis.fat * 0.9)
    for d in (d_la, d_ra, d_ao):
        img = paint(img, coverage(d + wall, px), tis.myo)
    img = paint(img, coverage(d_la, px), tis.blood * 0.95)
    img = paint(img, coverage(d_ra, px), tis.rv_blood * 0.95)
    img = paint(img, coverage(d_ao, px), tis.aorta)
    return np.broadcast_to(img, (n,) + img.shape)
