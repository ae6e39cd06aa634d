"""Careful NIfTI reading: every way a file can be wrong becomes a :class:`Problem`.

Real downloads are messy (truncated gzip streams, NaN voxels, empty pixdim, masks with
stray labels). Each reader here returns ``(volume_or_None, problems)`` instead of
raising, so :func:`cohorts.validate.validate` can list *every* problem in a dataset while
the loaders raise the first one as a one-line :class:`~audit.core.errors.UserError`.

Geometry rules:

* spacing is the column norms of the affine's 3x3 part, which is what actually maps voxels
  to millimetres; it must agree with the header's ``pixdim`` (a disagreement means the
  file's two geometry descriptions contradict each other, and we refuse to guess);
* ``pixdim[1:4]`` is read from the *raw* header, because nibabel silently "fixes" a zero
  spacing to 1 mm, which would hide a broken file;
* an affine whose 3x3 part is (nearly) singular cannot map voxels to the world and is an
  error.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np

from .types import Problem

__all__ = ["NiftiVolume", "read_nifti", "spacing_from_affine", "file_to_tzhw", "tzhw_to_file"]

log = logging.getLogger(__name__)

_SPACING_RTOL = 1e-3
_SPACING_ATOL = 1e-4
_SINGULAR_TOL = 1e-6


@dataclass(eq=False)
class NiftiVolume:
    """Voxel data in file order plus the geometry that goes with it."""

    path: str
    data: np.ndarray  # file order (X, Y, Z[, T]); float32 images or uint8 masks
    affine: np.ndarray
    spacing: tuple[float, float, float]
    zooms: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along voxel axes 0, 1, 2: the norms of the affine's first three columns."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    n = np.linalg.norm(a, axis=0)
    return (float(n[0]), float(n[1]), float(n[2]))


def file_to_tzhw(data: np.ndarray) -> np.ndarray:
    """File order ``(X, Y, Z[, T])`` to the internal ``(T, Z, H, W)`` (H = X, W = Y)."""
    if data.ndim == 3:
        data = data[..., None]
    return np.ascontiguousarray(np.transpose(data, (3, 2, 0, 1)))


def tzhw_to_file(arr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`file_to_tzhw`: ``(T, Z, H, W)`` -> ``(X, Y, Z, T)``."""
    return np.ascontiguousarray(np.transpose(arr, (2, 3, 1, 0)))


def _raw_header(path: Path) -> nib.Nifti1Header:
    """The header exactly as stored (``check=False``), so broken fields stay visible."""
    with nib.openers.ImageOpener(str(path), "rb") as fobj:
        raw = fobj.read(540)
    if len(raw) < 348:
        raise ValueError(f"header is {len(raw)} bytes, a NIfTI header needs 348")

    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            hdr = klass.from_fileobj(io.BytesIO(raw), check=False)
        except Exception:  # noqa: BLE001 - try the other header type
            continue
        if int(hdr["sizeof_hdr"]) in (348, 540):
            return hdr
    raise ValueError("not a NIfTI-1 or NIfTI-2 header")


def read_nifti(
    path: str | Path,
    kind: str = "image",
    *,
    labels: frozenset[int] | None = None,
    ndims: tuple[int, ...] = (3, 4),
    subject_id: str | None = None,
) -> tuple[NiftiVolume | None, list[Problem]]:
    """Read one NIfTI file and check it.

    ``kind="image"`` gives float32 data and checks for NaN/Inf; ``kind="mask"`` gives
    uint8 data and checks that every voxel is an integer in ``labels``. Returns
    ``(None, problems)`` when the file cannot be used at all, and ``(volume, problems)``
    when it was read but something is wrong with its content (so a validator can go on
    checking shapes against it).
    """
    path = Path(path)
    p = str(path)
    problems: list[Problem] = []

    def problem(msg: str) -> None:
        problems.append(Problem(p, msg, subject_id))

    loaded = _load(path, ndims, problem)
    if loaded is None:
        return None, problems
    img, raw = loaded
    geometry = _geometry(img, problem)
    if geometry is None:
        return None, problems
    affine, spacing, zooms = geometry
    if kind == "image":
        data = _image_data(raw, problem)
    elif kind == "mask":
        data = _mask_data(raw, labels, problem)
        if data is None:
            return None, problems
    else:  # pragma: no cover - programming error
        raise ValueError(f"kind must be 'image' or 'mask', not {kind!r}")
    return NiftiVolume(p, data, affine, spacing, zooms), problems


def _load(path: Path, ndims: tuple[int, ...], problem: Callable[[str], None]) -> tuple[Any, np.ndarray] | None:
    """The nibabel image and its voxel array, or None (after reporting why) when the file is
    missing, its header unreadable or without spacing, its data corrupt, or its shape wrong."""
    if not path.is_file():
        problem("file not found")
        return None
    try:
        hdr = _raw_header(path)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable header
        problem(f"corrupt or truncated NIfTI header ({type(exc).__name__}: {exc})")
        return None
    pixdim = np.asarray(hdr["pixdim"], dtype=np.float64)[1:4]
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim <= 0):
        problem(f"zero or missing voxel spacing in header (pixdim[1:4] = {pixdim.tolist()})")
        return None
    try:
        img = nib.load(str(path))
        raw = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - gzip/zlib/EOF/ImageFileError all mean "corrupt"
        problem(f"corrupt or truncated NIfTI ({type(exc).__name__}: {exc})")
        return None
    # Drop trailing singleton axes beyond the 4th (some writers store (X, Y, Z, T, 1)).
    while raw.ndim > 4 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim not in ndims:
        problem(f"expected a {' or '.join(f'{n}D' for n in ndims)} volume, got shape {tuple(raw.shape)}")
        return None
    if any(n == 0 for n in raw.shape):
        problem(f"empty volume, shape {tuple(raw.shape)}")
        return None
    return img, raw


def _geometry(img: Any, problem: Callable[[str], None]) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, ...]] | None:
    """``(affine, spacing, zooms)`` of a loaded image, or None (after reporting why) when the
    affine is not finite, not invertible or contradicts the header's pixdim."""
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        problem("affine contains NaN or Inf")
        return None
    spacing = spacing_from_affine(affine)
    norms = np.asarray(spacing)
    det = abs(float(np.linalg.det(affine[:3, :3])))
    if np.any(norms <= 0) or det <= _SINGULAR_TOL * float(np.prod(norms)):
        problem(f"affine is not invertible (det of 3x3 part = {det:.3g})")
        return None
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if not np.allclose(norms, zooms[:3], rtol=_SPACING_RTOL, atol=_SPACING_ATOL):
        problem(
            f"spacing from the affine {tuple(round(s, 4) for s in spacing)} disagrees with header "
            f"pixdim {tuple(round(z, 4) for z in zooms[:3])}"
        )
        return None
    return affine, spacing, zooms


def _image_data(raw: np.ndarray, problem: Callable[[str], None]) -> np.ndarray:
    """float32 voxels; NaN/Inf voxels are reported (the volume is still returned)."""
    data = raw.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        problem(f"{bad} NaN/Inf voxel(s)")
    return data


def _mask_data(raw: np.ndarray, labels: frozenset[int] | None, problem: Callable[[str], None]) -> np.ndarray | None:
    """uint8 labels, or None (after reporting why) for non-finite, non-integer or unknown labels."""
    vals = np.asarray(raw)
    if not np.issubdtype(vals.dtype, np.integer):
        if not np.all(np.isfinite(vals)):
            problem("mask contains NaN/Inf voxels")
            return None
        if not np.array_equal(vals, np.round(vals)):
            problem("mask contains non-integer values")
            return None
    uniq = set(int(v) for v in np.unique(vals))
    allowed = labels if labels is not None else frozenset(range(256))
    extra = sorted(uniq - set(allowed))
    if extra:
        problem(f"labels {extra} outside the label set {sorted(allowed)}")
        return None
    return vals.astype(np.uint8, copy=False)
