"""The one preprocessing pipeline every generator, attack and metric sees.

Steps, per subject (:func:`prepare_subject`):

1. **Resample in-plane** to ``target_spacing`` mm (H and W only; slices and frames are
   kept as they are, because slice thickness is 5-10 mm and interpolating across slices
   would invent anatomy). Images use linear interpolation, masks nearest neighbour, both
   on a pixel-centre grid that preserves the physical extent: ``n_out = round(n * s / t)``
   pixels and output pixel ``i`` samples input coordinate ``(i + 0.5) * t / s - 0.5``
   (clamped at the border). No anti-aliasing filter: cardiac cine in-plane spacing is
   1.2-1.9 mm, so going to 1.5 mm is at most a 1.3x down-sampling.
2. **Crop/pad around the heart** to ``size x size``: the centre is the centroid of the
   union of all mask labels over the labelled frames and all slices (a 2D footprint of
   the resampled mask), rounded to a pixel; without a mask, the image centre. With
   ``centre="motion"`` the ground truth never places the window: the centre is where the
   image changes over the cardiac cycle (:func:`motion_centre`; for evaluation subjects,
   whose masks must not help the net), the image centre if it cannot be found. Only the
   image pixels inside the window are interpolated (about 3x less work than resampling
   the whole field of view). Padding uses 0 (after normalisation, the darkest value). The
   crop origin is recorded in the metadata and the affine is updated, so prepared pixels
   still map to scanner millimetres.
3. **Robust intensity normalisation** (``intensity="percentile"``): the ``percentiles``
   (default 0.5 and 99.5) of *this subject's own pixels inside the window* (all frames and
   slices, padding excluded) are mapped to 0 and 1 and the result clipped to [0, 1];
   using the heart-centred window keeps a large dark or bright periphery (arms, air) from
   setting the scale. ``"zscore"`` uses the window's mean and standard deviation,
   ``"none"`` leaves intensities alone. These statistics come from the subject alone,
   never from other subjects or the cohort, so a subject's prepared images depend only on
   that subject: this matters for differential privacy accounting (no cross-subject
   information flows through preprocessing) and for membership inference (the holdout is
   treated exactly like the training set).

Output: a :class:`PreparedCohort` (same :class:`~cohorts.types.Subject` type, new arrays
and spacing ``(t, t, sz)``) plus the config; :func:`slices` flattens it to 2D slices.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from audit.core.errors import UserError

from .types import Cohort, Subject

__all__ = [
    "PIPELINE_VERSION",
    "PreprocessConfig",
    "PreparedCohort",
    "resample_inplane",
    "resampled_size",
    "heart_centre",
    "motion_centre",
    "crop_or_pad",
    "normalise_intensity",
    "prepare_subject",
    "prepare",
    "slices",
]

log = logging.getLogger(__name__)

#: Bump when the pipeline's output changes for the same config (invalidates caches).
PIPELINE_VERSION = "1"


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing pipeline (frozen: it is part of cache keys and run configs)."""

    target_spacing: float = 1.5
    size: int = 128
    intensity: Literal["percentile", "zscore", "none"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    centre: Literal["mask", "motion"] = "mask"
    """Crop centre: ``mask`` = centroid of the labelled masks (needs the ground truth);
    ``motion`` = label-free, where the image changes over the cardiac cycle (:func:`motion_centre`)."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.target_spacing) and self.target_spacing > 0):
            raise UserError(f"preprocessing: target_spacing must be > 0 mm, got {self.target_spacing}")
        if int(self.size) != self.size or self.size < 8:
            raise UserError(f"preprocessing: size must be an integer >= 8, got {self.size}")
        if self.intensity not in ("percentile", "zscore", "none"):
            raise UserError(f"preprocessing: intensity must be percentile, zscore or none, not {self.intensity!r}")
        if self.centre not in ("mask", "motion"):
            raise UserError(f"preprocessing: centre must be mask or motion, not {self.centre!r}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise UserError(f"preprocessing: percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        object.__setattr__(self, "percentiles", (float(lo), float(hi)))
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "target_spacing", float(self.target_spacing))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        if d["centre"] == "mask":  # the default: left out, so configs and cache keys from before the option stay valid
            del d["centre"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        d = dict(d)
        if "percentiles" in d:
            d["percentiles"] = tuple(d["percentiles"])
        return cls(**d)

    def key(self) -> str:
        """Stable digest of the config and the pipeline version (for cache keys)."""
        payload = json.dumps({"pipeline": PIPELINE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(eq=False)
class PreparedCohort(Cohort):
    """A cohort after :func:`prepare`: fixed in-plane grid, ``size x size``, normalised."""

    config: PreprocessConfig = field(default_factory=PreprocessConfig)


# --------------------------------------------------------------------------- resampling


def _axis_coords(n_in: int, s_in: float, t: float, out_range: tuple[int, int] | None = None) -> tuple[int, np.ndarray]:
    """Output length on the full grid, and source coordinates of the output pixels in ``out_range``."""
    n_out = max(1, int(round(n_in * s_in / t)))
    lo, hi = out_range if out_range is not None else (0, n_out)
    c = (np.arange(lo, hi, dtype=np.float64) + 0.5) * (t / s_in) - 0.5
    return n_out, np.clip(c, 0.0, n_in - 1)


def resampled_size(n_in: int, s_in: float, t: float) -> int:
    """Number of pixels after resampling ``n_in`` pixels of ``s_in`` mm to ``t`` mm."""
    return max(1, int(round(n_in * s_in / t)))


def _resample_axis(arr: np.ndarray, axis: int, coords: np.ndarray, order: int) -> np.ndarray:
    n = arr.shape[axis]
    if order == 0:
        idx = np.clip(np.floor(coords + 0.5).astype(np.intp), 0, n - 1)
        return np.take(arr, idx, axis=axis)
    i0 = np.floor(coords).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (coords - i0).astype(np.float32)
    shape = [1] * arr.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    a0 = np.take(arr, i0, axis=axis)
    a1 = np.take(arr, i1, axis=axis)
    return (a0 * (1.0 - w) + a1 * w).astype(arr.dtype, copy=False)


def resample_inplane(
    arr: np.ndarray,
    spacing_hw: tuple[float, float],
    target: float,
    *,
    order: int,
    out_range: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> np.ndarray:
    """Resample the last two axes of ``arr`` from ``spacing_hw`` to ``target`` mm.

    ``order=1`` (linear, images) or ``order=0`` (nearest, masks). Separable and exact on
    the pixel-centre grid described in the module docstring; the dtype is kept.
    ``out_range`` (``((h0, h1), (w0, w1))``, within the full output grid) computes only
    that window, which is how the pipeline avoids interpolating pixels it then crops away.
    """
    if order not in (0, 1):
        raise ValueError("order must be 0 or 1")
    out = arr
    for k, (axis, s) in enumerate(((-2, spacing_hw[0]), (-1, spacing_hw[1]))):
        ax = out.ndim + axis
        rng = None if out_range is None else out_range[k]
        if abs(s - target) < 1e-9:
            if rng is not None:
                out = np.take(out, np.arange(rng[0], rng[1]), axis=ax)
            continue
        _, coords = _axis_coords(out.shape[ax], float(s), float(target), rng)
        out = _resample_axis(out, ax, coords, order)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------- cropping


def heart_centre(subject: Subject) -> tuple[float, float]:
    """Centroid (h, w) of the union of all labels over labelled frames; image centre without masks."""
    h, w = subject.image.shape[-2:]
    if subject.mask is not None and subject.labelled.any():
        footprint = (subject.mask[subject.labelled] > 0).any(axis=(0, 1))
        if footprint.any():
            hh, ww = np.nonzero(footprint)
            return float(hh.mean()), float(ww.mean())
    return (h - 1) / 2.0, (w - 1) / 2.0


def motion_centre(image: np.ndarray, *, sigma_px: tuple[float, float] = (10.0, 10.0)) -> tuple[float, float] | None:
    """Label-free heart centre (h, w) in the pixels of ``image`` ``(T, Z, H, W)``: the heart is what
    moves. The temporal standard deviation of every pixel over the frames, averaged over the
    slices, is smoothed with a Gaussian of ``sigma_px`` pixels; the centre is the weighted centroid
    of the connected region above half the peak that holds the peak. ``None`` with fewer than two
    frames or no change at all. (On ACDC, 100 subjects: 17 mm mean, 16 mm median, 50 mm worst
    distance to the mask centroid with sigma 15 mm -- ``benchmarks/utility_segmenter.py``; restricting
    to the central slices, a centre prior or the first temporal harmonic did no better.)"""
    from scipy import ndimage  # lazy: scipy only on this path

    t, _, h, w = image.shape
    if t < 2:
        return None
    sd = image.astype(np.float32, copy=False).std(axis=0).mean(axis=0)
    sm = ndimage.gaussian_filter(sd, sigma_px, mode="constant")
    peak = float(sm.max())
    if not np.isfinite(peak) or peak <= 0:
        return None
    labels, _ = ndimage.label(sm >= 0.5 * peak)
    region = labels == labels[np.unravel_index(int(np.argmax(sm)), sm.shape)]
    hh, ww = np.nonzero(region)
    wts = sm[hh, ww].astype(np.float64)
    return float((hh * wts).sum() / wts.sum()), float((ww * wts).sum() / wts.sum())


def _crop_origin(centre: float, size: int) -> int:
    # The rounded centroid lands on output pixel size // 2, so the centroid itself ends up
    # within half a pixel of size // 2 (the centre pixel for odd sizes, the one just past
    # the middle for even sizes).
    return int(np.floor(centre + 0.5)) - size // 2


def crop_or_pad(arr: np.ndarray, origin: tuple[int, int], size: int, fill: float = 0) -> np.ndarray:
    """``arr[..., oh:oh+size, ow:ow+size]`` with out-of-range pixels set to ``fill``."""
    oh, ow = origin
    h, w = arr.shape[-2:]
    out = np.full(arr.shape[:-2] + (size, size), fill, dtype=arr.dtype)
    sh0, sh1 = max(oh, 0), min(oh + size, h)
    sw0, sw1 = max(ow, 0), min(ow + size, w)
    if sh1 > sh0 and sw1 > sw0:
        out[..., sh0 - oh : sh1 - oh, sw0 - ow : sw1 - ow] = arr[..., sh0:sh1, sw0:sw1]
    return out


# --------------------------------------------------------------------------- intensity


def normalise_intensity(image: np.ndarray, config: PreprocessConfig) -> tuple[np.ndarray, dict]:
    """Per-subject intensity normalisation; returns the image and the statistics used."""
    x = image.astype(np.float32, copy=False)
    if config.intensity == "none":
        return x, {"method": "none"}
    if config.intensity == "zscore":
        mu, sd = float(x.mean()), float(x.std())
        sd = sd if sd > 0 else 1.0
        return ((x - mu) / sd).astype(np.float32), {"method": "zscore", "mean": mu, "std": sd}
    lo, hi = (float(v) for v in np.percentile(x, config.percentiles))
    scale = hi - lo if hi > lo else 1.0
    out = np.clip((x - lo) / scale, 0.0, 1.0).astype(np.float32)
    return out, {"method": "percentile", "low": lo, "high": hi}


# --------------------------------------------------------------------------- pipeline


def prepare_subject(subject: Subject, config: PreprocessConfig = PreprocessConfig()) -> Subject:
    """Run the pipeline on one subject (see the module docstring); returns a new :class:`Subject`."""
    t, size = config.target_spacing, config.size
    sx, sy, sz = subject.spacing
    h, w = subject.image.shape[-2:]
    n_h, n_w = resampled_size(h, sx, t), resampled_size(w, sy, t)
    # The mask is cheap to resample in full (uint8 gather); it fixes the crop window.
    mask = None if subject.mask is None else resample_inplane(subject.mask, (sx, sy), t, order=0)
    ch, cw = (n_h - 1) / 2.0, (n_w - 1) / 2.0  # fallback: the image centre
    if config.centre == "motion":
        # label-free; in the original pixels (smoothing sigma 15 mm), mapped to the resampled grid
        found = motion_centre(subject.image, sigma_px=(15.0 / sx, 15.0 / sy))
        if found is not None:
            ch, cw = (found[0] + 0.5) * sx / t - 0.5, (found[1] + 0.5) * sy / t - 0.5
    elif mask is not None:
        ch, cw = heart_centre(subject.with_arrays(image=np.empty((0, 0, n_h, n_w), np.float32), mask=mask))
    origin = (_crop_origin(ch, size), _crop_origin(cw, size))
    # Interpolate only the image pixels that land inside the window.
    rh = (max(origin[0], 0), min(origin[0] + size, n_h))
    rw = (max(origin[1], 0), min(origin[1] + size, n_w))
    image = np.zeros(subject.image.shape[:2] + (size, size), np.float32)
    stats: dict = {"method": config.intensity}
    if rh[1] > rh[0] and rw[1] > rw[0]:
        window = resample_inplane(subject.image.astype(np.float32, copy=False), (sx, sy), t, order=1, out_range=(rh, rw))
        window, stats = normalise_intensity(window, config)
        image[..., rh[0] - origin[0] : rh[1] - origin[0], rw[0] - origin[1] : rw[1] - origin[1]] = window
    if mask is not None:
        mask = crop_or_pad(mask, origin, size, fill=0).astype(np.uint8, copy=False)
    # New voxel (i, j, k) sits at old voxel coordinate ((i + oh) + 0.5) * t / sx - 0.5, etc.
    step = np.diag([t / sx, t / sy, 1.0, 1.0])
    step[0, 3] = (origin[0] + 0.5) * t / sx - 0.5
    step[1, 3] = (origin[1] + 0.5) * t / sy - 0.5
    affine = np.asarray(subject.affine, dtype=np.float64) @ step
    meta = dict(subject.metadata)
    meta.update(
        {
            "original_spacing": [float(sx), float(sy), float(sz)],
            "original_shape": list(subject.image.shape),
            "resampled_shape": [n_h, n_w],
            "crop_origin": [int(origin[0]), int(origin[1])],
            "heart_centre": [ch, cw],
            "intensity": stats,
        }
    )
    return subject.with_arrays(
        image=image,
        mask=mask,
        labelled=subject.labelled.copy(),
        spacing=(t, t, float(sz)),
        affine=affine,
        metadata=meta,
    )


def prepare(
    subjects: Cohort | Iterable[Subject],
    config: PreprocessConfig = PreprocessConfig(),
    *,
    name: str | None = None,
    layout: str | None = None,
    data_hash: str | None = None,
    root: str | None = None,
    progress: bool = True,
) -> PreparedCohort:
    """Prepare a cohort, or a stream of subjects (then give name/layout/data_hash)."""
    if isinstance(subjects, Cohort):
        name = name or subjects.name
        layout = layout or subjects.layout
        data_hash = data_hash or subjects.data_hash
        root = root or subjects.root
        total = len(subjects)
    else:
        total = None
    out = [
        prepare_subject(s, config)
        for s in tqdm(subjects, total=total, desc="preprocessing", unit="subject", disable=not progress or None, leave=False)
    ]
    return PreparedCohort(
        subjects=out, name=name or "cohort", layout=layout or "unknown", data_hash=data_hash or "", root=root or "", config=config
    )


# --------------------------------------------------------------------------- 2D slices

INDEX_COLUMNS = ["subject_id", "frame", "slice", "vendor", "group", "labelled"]


def slices(
    prepared: Cohort,
    split_ids: Iterable[str] | None = None,
    frames: Literal["labelled", "ed_es", "all"] = "labelled",
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Flatten subjects to 2D slices: ``(images (N,H,W) float32, masks (N,H,W) uint8, index)``.

    ``frames="labelled"`` takes only frames with a real annotation (subjects without masks
    contribute nothing); ``"ed_es"`` takes ED and ES; ``"all"`` every frame. For frames that
    are not labelled the mask slice is all zeros and the index's ``labelled`` column is False,
    so an empty mask is never mistaken for an annotation. Subjects come in cohort order;
    an unknown id is a :class:`UserError`.
    """
    if frames not in ("labelled", "ed_es", "all"):
        raise UserError(f"frames must be labelled, ed_es or all, not {frames!r}")
    cohort = prepared.select(split_ids) if split_ids is not None else prepared
    imgs: list[np.ndarray] = []
    msks: list[np.ndarray] = []
    rows: list[tuple] = []
    for s in cohort.subjects:
        if frames == "labelled":
            chosen = [int(t) for t in np.flatnonzero(s.labelled)]
        elif frames == "ed_es":
            chosen = sorted({s.ed, s.es})
        else:
            chosen = list(range(s.n_frames))
        for t in chosen:
            imgs.append(s.image[t])
            lab = bool(s.labelled[t]) and s.mask is not None
            msks.append(s.mask[t] if lab else np.zeros(s.image.shape[1:], dtype=np.uint8))
            rows += [(s.subject_id, t, z, s.vendor, s.group, lab) for z in range(s.n_slices)]
    if imgs:
        images = np.concatenate(imgs, axis=0).astype(np.float32, copy=False)
        masks = np.concatenate(msks, axis=0).astype(np.uint8, copy=False)
    else:
        hw = cohort.subjects[0].image.shape[-2:] if cohort.subjects else (0, 0)
        images = np.zeros((0, *hw), np.float32)
        masks = np.zeros((0, *hw), np.uint8)
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    return images, masks, index
