"""Numeric building blocks of the phantom: the analytic profiles of the heart model and the
partial-volume painting every renderer uses.

* :func:`long_axis_profile` -- the LV radius along the long axis, ``g(s) = (1 - s**p) ** (1/p)``;
* :func:`angular_bump` -- a smooth bump in angle (septal thickening, infarct, fat grooves);
* :func:`contraction_phase` -- ``phi(t)`` over the cycle (0 at ED, 1 at ES);
* :func:`coverage` and :func:`paint` -- a pixel's partial-volume coverage from a signed
  distance and the blend of a tissue value into an image with it;
* :func:`smooth_noise` -- a smooth, unit-variance random field (tissue texture).

See :mod:`cohorts.phantom.generator` for the model these serve.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["long_axis_profile", "coverage", "paint", "angular_bump", "contraction_phase", "smooth_noise"]


def long_axis_profile(s: np.ndarray, p: float) -> np.ndarray:
    """Long-axis radius profile: 1 at the base (s <= 0), 0 at and beyond s = 1."""
    s = np.clip(s, 0.0, 1.0)
    return np.power(np.clip(1.0 - np.power(s, p), 0.0, 1.0), 1.0 / p)


def coverage(inside_mm: np.ndarray, px: float) -> np.ndarray:
    """Partial-volume coverage of a pixel from a signed distance (positive inside), in mm."""
    return np.clip(inside_mm / px + 0.5, 0.0, 1.0)


def paint(img: np.ndarray, alpha: np.ndarray, value: np.ndarray | float) -> np.ndarray:
    """``img`` with ``value`` blended in at coverage ``alpha``."""
    return img + alpha * (value - img)


def angular_bump(theta: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Smooth angular bump in [0, 1], 1 at ``centre``, ~0 beyond ``width`` radians."""
    d = np.angle(np.exp(1j * (theta - centre)))
    return np.exp(-0.5 * (d / (0.5 * width)) ** 2).astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def contraction_phase(n_frames: int, es: int) -> np.ndarray:
    """Contraction phase phi(t): 0 at ED (t = 0), 1 at ES; filling, diastasis, atrial kick."""
    t = np.arange(n_frames, dtype=np.float64)
    phi = np.empty(n_frames)
    sys = t <= es
    phi[sys] = 0.5 * (1.0 - np.cos(np.pi * t[sys] / es))
    u = (t[~sys] - es) / (n_frames - es)
    fill = 0.72 * _smoothstep(u / 0.45) + 0.28 * _smoothstep((u - 0.68) / 0.32)
    phi[~sys] = 1.0 - fill
    return phi


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (Gaussian-filtered white noise)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return f / (f.std() + 1e-6)
