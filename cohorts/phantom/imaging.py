"""Image formation of the phantom: from clean tissue maps to a vendor's stored cine.

* where the heart patches sit in the image (:class:`PatchGrid`) and how they are pasted back
  (:func:`paste_patches`, only the inner part whose blur is exact);
* the coil bias field (:func:`bias_field`), the PSF, gamma and intensity scaling
  (:func:`form_image`) and Rician noise (:func:`rician_noise`: the magnitude of signal plus
  complex Gaussian noise; Gudbjartsson & Patz, MRM 34:910, 1995);
* the mapping from the display frame the phantom is drawn in to nibabel's array order
  (:data:`ORIENTATION`, :func:`to_nifti_order`, :func:`display_shape`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .params import VendorStyle

__all__ = ["ORIENTATION", "to_nifti_order", "display_shape", "PatchGrid", "patch_grid", "paste_patches",
           "bias_field", "form_image", "rician_noise"]

#: Display frame -> nibabel array order. The heart is drawn in a "radiological display"
#: frame (rows = anterior to posterior, columns = patient right to left) and mapped to the
#: stored (X, Y) axes with ``np.rot90(k)`` then an optional transpose. Chosen empirically
#: as the orientation the ACDC-trained judge segments best (see benchmarks/phantom_realism.py).
ORIENTATION: dict[str, Any] = {"rot90": 0, "transpose": False}


def to_nifti_order(a: np.ndarray) -> np.ndarray:
    """Display (H, W, ...) -> nibabel (X, Y, ...) per :data:`ORIENTATION`."""
    a = np.rot90(a, k=ORIENTATION["rot90"], axes=(0, 1))
    if ORIENTATION["transpose"]:
        a = np.swapaxes(a, 0, 1)
    return np.ascontiguousarray(a)


def display_shape(nx: int, ny: int) -> tuple[int, int]:
    """The display-frame ``(H, W)`` of a stored ``(nx, ny)`` matrix."""
    odd = (ORIENTATION["rot90"] % 2 == 1) != bool(ORIENTATION["transpose"])
    return (ny, nx) if odd else (nx, ny)


@dataclass
class PatchGrid:
    """The heart patches of every slice in the edge-padded image.

    ``win[k]`` is slice ``k``'s ``(rows, cols)`` window in the image padded by ``pad`` pixels,
    ``2 * half + 1`` pixels square around the pixel nearest the LV centre; ``cen_rel`` is the
    sub-pixel offset (mm) of the true centre from that pixel; ``trim`` pixels at the patch
    border are dropped when pasting (their blur saw the patch edge)."""

    pad: int
    half: int
    trim: int
    win: list
    cen_rel: np.ndarray


def patch_grid(centres: np.ndarray, px: float, H: int, W: int, half: int, trim: int) -> PatchGrid:
    """Patch windows around the LV centres (display frame, mm from the image centre)."""
    n = len(centres)
    pad = half + 2
    ci = np.floor(centres[:, 1] / px + 0.5 + (H - 1) / 2.0).astype(int) + pad  # row index
    cj = np.floor(centres[:, 0] / px + 0.5 + (W - 1) / 2.0).astype(int) + pad  # column index
    # sub-pixel offsets of the true centres from those pixels
    cen_rel = np.stack([centres[:, 0] - (cj - pad - (W - 1) / 2.0) * px,
                        centres[:, 1] - (ci - pad - (H - 1) / 2.0) * px], axis=1)
    win = [(slice(ci[k] - half, ci[k] + half + 1), slice(cj[k] - half, cj[k] + half + 1)) for k in range(n)]
    return PatchGrid(pad=pad, half=half, trim=trim, win=win, cen_rel=cen_rel)


def paste_patches(bgf: np.ndarray, heart: np.ndarray, hmask: np.ndarray, grid: PatchGrid,
                  H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Assemble the cine directly in nibabel order (H, W, Z, T): the formed background, then the
    heart patches (inner part, where their blur is exact), clipped to the image; and the mask."""
    n, T = heart.shape[:2]
    pad, trim = grid.pad, grid.trim
    full = np.empty((H, W, n, T), np.float32)
    full[:] = np.transpose(bgf[:, pad:pad + H, pad:pad + W], (1, 2, 0))[..., None]
    mask = np.zeros((H, W, n, T), np.uint8)
    for k in range(n):
        rs, cs = grid.win[k]
        r0, r1 = rs.start + trim - pad, rs.stop - trim - pad
        c0, c1 = cs.start + trim - pad, cs.stop - trim - pad
        rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, H), max(c0, 0), min(c1, W)
        if rr0 >= rr1 or cc0 >= cc1:
            continue
        pr = slice(trim + rr0 - r0, trim + rr1 - r0)
        pc = slice(trim + cc0 - c0, trim + cc1 - c0)
        full[rr0:rr1, cc0:cc1, k, :] = np.transpose(heart[k][:, pr, pc], (1, 2, 0))
        mask[rr0:rr1, cc0:cc1, k, :] = np.transpose(hmask[k][:, pr, pc], (1, 2, 0))
    return full, mask


def bias_field(rng: np.random.Generator, H: int, W: int, amp: float) -> np.ndarray:
    """Smooth multiplicative coil field, mean ~1, peak-to-peak ~``amp`` (anterior brighter)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    x = (xx / (W - 1)) * 2 - 1
    y = (yy / (H - 1)) * 2 - 1
    c = rng.normal(0.0, 1.0, 5)
    f = c[0] * x + (c[1] - 1.5) * y + 0.5 * c[2] * x * y + 0.5 * c[3] * x * x + 0.5 * c[4] * y * y
    f = (f - f.min()) / (np.ptp(f) + 1e-6)
    return (1.0 + amp * (f - 0.5)).astype(np.float32)


def form_image(x: np.ndarray, style: VendorStyle, sig: float) -> np.ndarray:
    """PSF (Gaussian, ``sig`` pixels, over the last two axes), gamma and intensity scaling of a
    (bias-weighted) clean image; works in place on the blurred copy."""
    x = ndimage.gaussian_filter(x, (0,) * (x.ndim - 2) + (sig, sig), mode="nearest")
    np.clip(x, 0.0, None, out=x)
    if style.gamma != 1.0:
        np.power(x, style.gamma, out=x)
    x *= style.scale
    return x


def rician_noise(full: np.ndarray, ns: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``full`` plus complex Gaussian noise of std ``ns`` (``full`` unchanged at 0)."""
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
    return full
