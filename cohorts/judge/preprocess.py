"""The judge network's preprocessing and its inverse: the ONE place that owns them.

Recipe (how the network expects its input), per 2D short-axis slice:

1. take the centred square of the shorter side;
2. resize it to 256 x 256, bilinear with anti-aliasing (skimage ``resize(order=1,
   anti_aliasing=True)``: a Gaussian pre-filter when shrinking, so small structures do not
   alias into the thin myocardium);
3. clip the intensities to the 0.5th-99.5th percentile of the slice's non-zero pixels (those
   inside the square, before resizing) and scale to [0, 1];
4. after the network: map the 256 x 256 label map back into the square (nearest neighbour)
   and paste it into the original grid; pixels outside the square are background (0).

**Orientation.** Slices are handed over in *nibabel array order*: a slice ``img[t, z]`` of
our internal ``(T, Z, H, W)`` arrays equals ``nib.load(f).get_fdata()[:, :, z, t]``, i.e.
axis 0 (``H``) is the file's x axis with spacing ``sx`` and axis 1 (``W``) is y with spacing
``sy``. The network was trained on slices in exactly this order (a transposed slice loses a lot
of Dice), so nothing here transposes; callers must not either.

**Spacing and field of view.** The network was trained on ACDC: 1.4-1.7 mm pixels and
200-250 pixel matrices, i.e. a square side of roughly 280-420 mm. The "square" is therefore
taken in millimetres (``side_mm = min(H*sx, W*sy)``), so anisotropic pixels come out
isotropic after the resize. With ``fov="acdc"`` a square whose side is outside
``[ACDC_FOV_MIN_MM, ACDC_FOV_MAX_MM]`` is replaced by a centred square of
``ACDC_FOV_TARGET_MM`` (zero-padded where it reaches outside the image; padding is zero, so
it never enters the non-zero percentiles), which makes the heart cover the same fraction of
the 256 x 256 input as in ACDC. ``fov="square"`` is the plain recipe of steps 1-4.

Measured choice (judge fp32; 6 phantom subjects, labelled ED/ES slices resampled to 1.5 mm
and cropped 128 x 128 around the heart = a 192 mm field of view, like our preprocessed
cohorts; mean Dice RV / MYO / LV; script: ``benchmarks/judge_speed.py --fov-study``):

========================================  =======================
plain resize of the 128 crop ("square")   0.811 / 0.849 / 0.955
zero-pad to 260 mm                        0.729 / 0.890 / 0.963
zero-pad to 300 mm                        0.794 / 0.897 / 0.963
zero-pad to 340 mm (``"acdc"`` default)   0.802 / 0.895 / 0.962
zero-pad to 380 mm                        0.757 / 0.870 / 0.971
========================================  =======================

Padding to an ACDC-like 340 mm helps the myocardium (+0.046) and LV (+0.007) at a small RV
cost (-0.009): the network's receptive field and learnt wall thickness assume an ACDC-sized
heart in the 256 x 256 input, and a 192 mm crop blown up to 256 pixels makes the walls look
~1.8x thicker than anything it was trained on. Full-size phantom slices (240-460 mm) are
mostly inside the ACDC range and barely change (0.792/0.916/0.972 square vs
0.802/0.906/0.972 acdc). Hence :data:`DEFAULT_FOV` = ``"acdc"`` with a 340 mm target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from skimage.transform import resize

from audit.core.errors import UserError

__all__ = [
    "NET_SIZE",
    "ACDC_FOV_MIN_MM",
    "ACDC_FOV_MAX_MM",
    "ACDC_FOV_TARGET_MM",
    "DEFAULT_FOV",
    "FOV_STUDY",
    "FovMode",
    "SliceGeometry",
    "plan_geometry",
    "percentile_scale",
    "to_network",
    "from_network",
    "prepare_batch",
    "check_spacing",
]

NET_SIZE = 256
P_LOW, P_HIGH = 0.5, 99.5
# ACDC: 1.37-1.68 mm pixels x ~200-250 pixels -> a shorter side of roughly 280-420 mm.
ACDC_FOV_MIN_MM = 260.0
ACDC_FOV_MAX_MM = 440.0
ACDC_FOV_TARGET_MM = 340.0

FovMode = Literal["square", "acdc"]
DEFAULT_FOV: FovMode = "acdc"
#: Mean judge Dice (RV, MYO, LV) per FOV policy; filled in from the measurement.
FOV_STUDY: dict[str, tuple[float, float, float]] = {
    "crop128 square": (0.811, 0.849, 0.955),
    "crop128 pad 260 mm": (0.729, 0.890, 0.963),
    "crop128 pad 300 mm": (0.794, 0.897, 0.963),
    "crop128 pad 340 mm": (0.802, 0.895, 0.962),
    "crop128 pad 380 mm": (0.757, 0.870, 0.971),
    "full-size square": (0.792, 0.916, 0.972),
    "full-size acdc": (0.802, 0.906, 0.972),
}


@dataclass(frozen=True)
class SliceGeometry:
    """Where the network's 256 x 256 input sits in one slice's pixel grid.

    ``(r0, c0)`` is the top-left corner of the square region in input pixels (negative when
    the region is zero-padded beyond the image), ``(h, w)`` its size in pixels (equal in mm,
    not necessarily in pixels when ``sx != sy``), ``shape`` the input slice shape.
    """

    shape: tuple[int, int]
    r0: int
    c0: int
    h: int
    w: int


def check_spacing(spacing: Sequence[float] | np.ndarray, what: str = "spacing") -> tuple[float, float]:
    """Validate an in-plane spacing ``(sx, sy)`` in mm (axis 0, axis 1 of the slice)."""
    try:
        sx, sy = (float(v) for v in np.asarray(spacing, dtype=float).reshape(-1)[:2])
        n = np.asarray(spacing).size
    except (TypeError, ValueError) as exc:
        raise UserError(f"{what}: expected two positive numbers (sx, sy) in mm, got {spacing!r}") from exc
    if n < 2 or not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise UserError(f"{what}: expected two positive finite numbers (sx, sy) in mm, got {spacing!r}")
    return sx, sy


def plan_geometry(shape: tuple[int, int], spacing: Sequence[float], fov: FovMode = DEFAULT_FOV) -> SliceGeometry:
    """The centred square (in mm) that is resized to 256 x 256 for a slice of ``shape``."""
    H, W = int(shape[0]), int(shape[1])
    sx, sy = check_spacing(spacing)
    side_mm = min(H * sx, W * sy)
    if fov == "acdc" and not (ACDC_FOV_MIN_MM <= side_mm <= ACDC_FOV_MAX_MM):
        side_mm = ACDC_FOV_TARGET_MM
    elif fov not in ("acdc", "square"):
        raise UserError(f"fov: expected 'square' or 'acdc', got {fov!r}")
    h = max(1, int(round(side_mm / sx)))
    w = max(1, int(round(side_mm / sy)))
    if fov == "square" or side_mm == min(H * sx, W * sy):
        h, w = min(h, H), min(w, W)  # rounding must not step outside a plain square crop
    return SliceGeometry(shape=(H, W), r0=(H - h) // 2, c0=(W - w) // 2, h=h, w=w)


def _extract(slice2d: np.ndarray, g: SliceGeometry) -> np.ndarray:
    """The (h, w) region of ``slice2d``, zero where it lies outside the image."""
    out = np.zeros((g.h, g.w), dtype=np.float32)
    H, W = g.shape
    r_lo, r_hi = max(g.r0, 0), min(g.r0 + g.h, H)
    c_lo, c_hi = max(g.c0, 0), min(g.c0 + g.w, W)
    if r_hi > r_lo and c_hi > c_lo:
        out[r_lo - g.r0 : r_hi - g.r0, c_lo - g.c0 : c_hi - g.c0] = slice2d[r_lo:r_hi, c_lo:c_hi]
    return out


def percentile_scale(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Clip ``x`` to the 0.5-99.5th percentile of ``reference``'s non-zero pixels, scale to [0, 1].

    A reference with no non-zero pixel (or a constant one) gives zeros: there is nothing to see.
    """
    nz = reference[reference != 0]
    if nz.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    lo, hi = np.percentile(nz, [P_LOW, P_HIGH])
    if not hi > lo:
        return np.zeros_like(x, dtype=np.float32)
    return ((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def to_network(slice2d: np.ndarray, spacing: Sequence[float], fov: FovMode = DEFAULT_FOV) -> tuple[np.ndarray, SliceGeometry]:
    """One slice -> ``(256, 256)`` float32 in [0, 1] and the geometry to map labels back."""
    g = plan_geometry(slice2d.shape, spacing, fov)
    region = _extract(np.asarray(slice2d, dtype=np.float32), g)
    if region.shape == (NET_SIZE, NET_SIZE):
        resized = region
    else:
        shrink = region.shape[0] > NET_SIZE or region.shape[1] > NET_SIZE
        resized = resize(region, (NET_SIZE, NET_SIZE), order=1, mode="edge", anti_aliasing=shrink,
                         preserve_range=True).astype(np.float32)
    return percentile_scale(resized, region), g


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Pixel-centre-aligned nearest-neighbour indices from a grid of ``n_in`` onto ``n_out``."""
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def from_network(labels: np.ndarray, g: SliceGeometry) -> np.ndarray:
    """A ``(256, 256)`` label map -> the slice's grid (nearest; background outside the square)."""
    square = labels[np.ix_(_nearest_index(g.h, labels.shape[0]), _nearest_index(g.w, labels.shape[1]))]
    out = np.zeros(g.shape, dtype=np.uint8)
    H, W = g.shape
    r_lo, r_hi = max(g.r0, 0), min(g.r0 + g.h, H)
    c_lo, c_hi = max(g.c0, 0), min(g.c0 + g.w, W)
    if r_hi > r_lo and c_hi > c_lo:
        out[r_lo:r_hi, c_lo:c_hi] = square[r_lo - g.r0 : r_hi - g.r0, c_lo - g.c0 : c_hi - g.c0]
    return out


def prepare_batch(slices: np.ndarray, spacing: Sequence[float], fov: FovMode = DEFAULT_FOV) -> tuple[np.ndarray, list[SliceGeometry], np.ndarray]:
    """``(N, H, W)`` slices -> ``(N, 1, 256, 256)`` network input, geometries, and which slices
    have any non-zero pixel (an all-zero slice is background by definition and is not run)."""
    batch = np.zeros((len(slices), 1, NET_SIZE, NET_SIZE), dtype=np.float32)
    geoms: list[SliceGeometry] = []
    nonempty = np.zeros(len(slices), dtype=bool)
    for i, s in enumerate(slices):
        batch[i, 0], g = to_network(s, spacing, fov)
        geoms.append(g)
        nonempty[i] = bool(np.any(s != 0))
    return batch, geoms, nonempty
