"""Paired image fidelity: PSNR, SSIM and MS-SSIM of each image against its own reference.

For outputs that have a pixel-aligned reference: SDEdit-style generations vs the reference
image they were made from, autoencoder reconstructions vs their input. Computed with MONAI
(:class:`monai.metrics.PSNRMetric`, :class:`~monai.metrics.SSIMMetric`,
:class:`~monai.metrics.MultiScaleSSIMMetric`) on ``(N, H, W)`` arrays with a fixed
``data_range`` (intensity span of the images, 1.0 for the suite's [0, 1] images).

* **PSNR** ``= 10 log10(data_range^2 / MSE)`` in dB. For an image identical to its reference
  (MSE = 0) it is **+inf**; the per-image table keeps +inf (it is the exact value), and
  :func:`summarise_paired` averages the finite values only, says how many images were
  identical in the notes (the mean is then a lower bound), and marks PSNR unavailable when
  every image is identical. It is never capped and never recorded as 0.
* **SSIM** (Wang et al. 2004, *Image quality assessment: from error visibility to structural
  similarity*, IEEE TIP 13:600): 11 x 11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
  population (not sample) local covariances, mean over the "valid" window positions (no
  padding). Equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=...)``, which crops the same border.
* **MS-SSIM** (Wang et al. 2003, *Multiscale structural similarity for image quality
  assessment*, Asilomar): contrast-structure terms at every scale, luminance at the coarsest,
  2 x 2 average pooling between scales, 11-px window. The standard 5 scales (weights 0.0448,
  0.2856, 0.3001, 0.2363, 0.1333) need a coarsest scale of at least 11 px, i.e. images of at
  least 176 px. Smaller images (the suite's 96-128 px) use the **first 3 scales with the
  weights renormalised to sum to 1** (0.0711, 0.4530, 0.4760), which needs at least 44 px; the
  method string names the scales used, and the two variants are not comparable. Below 44 px
  MS-SSIM is NaN per image and unavailable in the summary -- never 0. (MONAI clips negative
  contrast terms to 0 before the weighted product, as in the reference implementation's
  practice of keeping the product real.)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from audit.core.stats import cluster_bootstrap

log = logging.getLogger(__name__)

__all__ = ["MS_SSIM_WEIGHTS", "SSIM_WINDOW", "SSIM_SIGMA", "ms_ssim_scales", "paired_metrics", "summarise_paired"]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_BATCH = 64


def ms_ssim_scales(height: int, width: int, *, window: int = SSIM_WINDOW) -> tuple[float, ...] | None:
    """MS-SSIM weights usable for ``height x width`` images: 5 standard scales, else the first 3
    renormalised, else ``None`` (too small). The coarsest scale must be at least ``window`` px
    (MONAI's own check: ``size // (scales - 1)^2 > window - 1``)."""
    side = min(int(height), int(width))
    for n in (5, 3):
        if side // max(1, n - 1) ** 2 > window - 1:
            w = np.asarray(MS_SSIM_WEIGHTS[:n], dtype=np.float64)
            return tuple(float(x) for x in w / w.sum())
    return None


def _ms_ssim_min_size(n_scales: int, window: int = SSIM_WINDOW) -> int:
    return window * max(1, n_scales - 1) ** 2  # smallest size with size // (n-1)^2 > window - 1


def _check_images(pred: Any, ref: Any, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    p, r = np.asarray(pred), np.asarray(ref)
    for name, arr in (("pred", p), ("ref", r)):
        if arr.ndim != 3:
            raise UserError(f"paired metrics: {name} must be (N, H, W), got shape {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise UserError(f"paired metrics: {name} must be real-valued, got dtype {arr.dtype}")
    if p.shape != r.shape:
        raise UserError(f"paired metrics: pred {p.shape} and ref {r.shape} must have the same shape")
    if len(p) == 0:
        raise UserError("paired metrics: no images")
    for name, arr in (("pred", p), ("ref", r)):
        bad = ~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)
        if bad.any():
            raise UserError(f"paired metrics: {name} has NaN or Inf in {int(bad.sum())} of {len(arr)} images")
    if not (np.isfinite(data_range) and data_range > 0):
        raise UserError(f"paired metrics: data_range must be a positive number, got {data_range}")
    return p.astype(np.float32, copy=False), r.astype(np.float32, copy=False)


def paired_metrics(pred: np.ndarray, ref: np.ndarray, *, data_range: float = 1.0) -> pd.DataFrame:
    """Per-image PSNR (dB), SSIM and MS-SSIM of ``pred[i]`` against ``ref[i]``, both ``(N, H, W)``.

    Returns a DataFrame with columns ``psnr``, ``ssim``, ``ms_ssim`` (one row per image; PSNR
    +inf where ``pred[i] == ref[i]``; MS-SSIM NaN if the images are too small, SSIM NaN below
    11 px). ``DataFrame.attrs`` records ``data_range``, ``shape``, ``ms_ssim_weights`` and the
    method strings that :func:`summarise_paired` uses.
    """
    import torch  # lazy: torch only when a model runs
    from monai.metrics import (  # lazy: MONAI (and torch) only when this network is built
        MultiScaleSSIMMetric,
        PSNRMetric,
        SSIMMetric,
    )

    p, r = _check_images(pred, ref, data_range)
    n, h, w = p.shape
    weights = ms_ssim_scales(h, w)
    ssim_ok = min(h, w) >= SSIM_WINDOW
    psnr_m = PSNRMetric(max_val=float(data_range), reduction="none")
    ssim_m = SSIMMetric(spatial_dims=2, data_range=float(data_range), kernel_type="gaussian", win_size=SSIM_WINDOW,
                        kernel_sigma=SSIM_SIGMA, k1=0.01, k2=0.03, reduction="none")
    ms_m = None if weights is None else MultiScaleSSIMMetric(
        spatial_dims=2, data_range=float(data_range), kernel_type="gaussian", kernel_size=SSIM_WINDOW,
        kernel_sigma=SSIM_SIGMA, k1=0.01, k2=0.03, weights=weights, reduction="none")
    out = {"psnr": np.empty(n), "ssim": np.full(n, np.nan), "ms_ssim": np.full(n, np.nan)}
    with torch.no_grad():
        for start in range(0, n, _BATCH):
            sl = slice(start, min(n, start + _BATCH))
            tp = torch.from_numpy(np.ascontiguousarray(p[sl]))[:, None]
            tr = torch.from_numpy(np.ascontiguousarray(r[sl]))[:, None]
            out["psnr"][sl] = psnr_m(y_pred=tp, y=tr).reshape(-1).double().numpy()
            if ssim_ok:
                out["ssim"][sl] = ssim_m(y_pred=tp, y=tr).reshape(-1).double().numpy()
            if ms_m is not None:
                out["ms_ssim"][sl] = ms_m(y_pred=tp, y=tr).reshape(-1).double().numpy()
            for m in (psnr_m, ssim_m, ms_m):
                if m is not None:
                    m.reset()
    table = pd.DataFrame(out)
    if weights is None:
        ms_method = None
        ms_reason = (f"images of {h} x {w} px are too small for MS-SSIM with an {SSIM_WINDOW}-px window "
                     f"(3 scales need at least {_ms_ssim_min_size(3)} px)")
    else:
        scales = len(weights)
        variant = ("standard 5 scales (Wang et al. 2003 weights)" if scales == 5 else
                   f"first {scales} of the 5 scales, Wang et al. 2003 weights renormalised to "
                   f"({', '.join(f'{x:.4f}' for x in weights)}), because {h} x {w} px < "
                   f"{_ms_ssim_min_size(5)} px; not comparable with 5-scale MS-SSIM")
        ms_method = (f"MS-SSIM (Wang et al. 2003), {variant}; {SSIM_WINDOW}-px Gaussian window sigma {SSIM_SIGMA}, "
                     f"2x2 average pooling, data range {data_range:g} (MONAI)")
        ms_reason = None
    table.attrs.update({
        "data_range": float(data_range),
        "shape": [int(h), int(w)],
        "ms_ssim_weights": None if weights is None else list(weights),
        "method": {
            "psnr": f"PSNR = 10 log10(range^2 / MSE), data range {data_range:g} (MONAI)",
            "ssim": (f"SSIM (Wang et al. 2004), {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window sigma {SSIM_SIGMA}, "
                     f"K1 0.01, K2 0.03, population covariances, mean over valid windows, data range "
                     f"{data_range:g} (MONAI)"),
            "ms_ssim": ms_method,
        },
        "unavailable": {"ssim": None if ssim_ok else f"images of {h} x {w} px are smaller than the "
                                                      f"{SSIM_WINDOW}-px SSIM window",
                        "ms_ssim": ms_reason},
    })
    n_inf = int(np.isposinf(table["psnr"]).sum())
    log.info("paired metrics: %d images %dx%d, MS-SSIM %s%s", n, h, w,
             "unavailable" if weights is None else f"{len(weights)} scales",
             f", {n_inf} identical to reference (PSNR +inf)" if n_inf else "")
    return table


_UNITS = {"psnr": "dB", "ssim": "1", "ms_ssim": "1"}
_DEFAULT_METHOD = {"psnr": "PSNR (dB)", "ssim": "SSIM (Wang et al. 2004)", "ms_ssim": "MS-SSIM (Wang et al. 2003)"}


def summarise_paired(table: pd.DataFrame, subjects: Any, *, n_boot: int = 1000, seed: int = 0,
                     what: str = "") -> dict[str, Any]:
    """Results entries ``psnr``, ``ssim``, ``ms_ssim``: mean over images with a subject-level
    cluster-bootstrap 95 % CI (:func:`audit.core.stats.cluster_bootstrap`, percentile).

    ``subjects`` gives each row's subject id. ``what`` describes the pairs (e.g. "SDEdit output vs
    its reference") and goes into the method string. Non-finite values are left out of the mean
    and the bootstrap (PSNR +inf of identical images: counted in the notes; MS-SSIM NaN of too
    small images: the entry is unavailable with the reason). Fewer than 2 subjects: CI ``None``.
    """
    if not isinstance(table, pd.DataFrame):
        raise UserError(f"summarise_paired: expected the DataFrame from paired_metrics, got {type(table).__name__}")
    missing = [c for c in _UNITS if c not in table.columns]
    if missing:
        raise UserError(f"summarise_paired: table lacks column(s) {', '.join(missing)}")
    subj = np.asarray(subjects)
    if subj.ndim != 1 or len(subj) != len(table):
        raise UserError(f"summarise_paired: need one subject id per row ({len(table)}), got shape {subj.shape}")
    methods = table.attrs.get("method", {})
    reasons = table.attrs.get("unavailable", {})
    desc = " ".join(str(what).split())
    out: dict[str, Any] = {}
    for col, unit in _UNITS.items():
        values = table[col].to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        n_inf = int(np.isposinf(values).sum()) if col == "psnr" else 0
        if not finite.any():
            if col == "psnr" and n_inf == len(values):
                reason = f"every image is identical to its reference ({n_inf} images): PSNR is +inf"
            else:
                reason = reasons.get(col) or f"{col} could not be computed for any of the {len(values)} images"
            out[col] = unavailable(f"{col}{' of ' + desc if desc else ''}: {reason}")
            continue
        value = float(values[finite].mean())
        n_subj = len(np.unique(subj[finite]))
        lo, hi = cluster_bootstrap(values, subj, n_boot=n_boot, seed=seed) if n_boot > 0 else (np.nan, np.nan)
        ci = (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None
        method = f"mean per-image {methods.get(col) or _DEFAULT_METHOD[col]}"
        if desc:
            method += f"; {desc}"
        notes = [f"{int(finite.sum())} images of {n_subj} subjects"]
        if ci is not None:
            method += "; subject-level cluster bootstrap 95% CI (percentile)"
        else:
            notes.append("no CI: needs at least 2 subjects and n_boot > 0")
        if n_inf:
            notes.append(f"{n_inf} of {len(values)} images identical to their reference (PSNR +inf) left out of "
                         f"the mean, which is therefore a lower bound")
        n_nan = int(np.isnan(values).sum())
        if n_nan:
            notes.append(f"{n_nan} images without a value left out")
        out[col] = metric(value, unit, method=method, ci=ci, n=int(finite.sum()), notes="; ".join(notes))
    return out
