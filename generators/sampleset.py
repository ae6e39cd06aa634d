"""The sample-set contract: what any generator, in-house or external, hands to the audit.

One ``.npz`` file (see ``../shared/README.md``):

========================  =========================================================
key                       content
========================  =========================================================
``images``                float32 ``(N, H, W)`` or ``(N, T, H, W)`` (cine), finite, in [0, 1]
``masks``                 optional uint8, same shape, ACDC labels 0 bg, 1 RV, 2 MYO, 3 LV
``spacing``               float32 ``(2,)`` in-plane pixel size in mm (rows, columns), or ``(3,)``:
                          the same plus the slice spacing in mm (as ``cohorts.types.Subject.spacing``)
``subject_ids``           optional str ``(N,)``: the (conditioning) subject of each image
``slice_index``           optional int ``(N,)``, >= 0: position of the row's slice in its subject's stack
                          (0 = basal-most as stored); needs ``subject_ids``; unique per subject in cine sets
``vendor``, ``group``     optional str ``(N,)``
``ef``, ``edv``, ``esv``  optional float32 ``(N,)``: requested clinical indices (%, mL, mL)
========================  =========================================================

A cine row is one slice of one subject over T frames (frame 0 = ED); the rows of a subject share
its ``subject_ids`` value and, with ``slice_index`` and a ``(3,)`` spacing, form its whole stack
(the anatomy stage then measures EDV/ESV/EF by slice summation, :mod:`audit.anatomy.clinical`).
In a 2D set several rows of a subject (e.g. its ED and ES frames) may share a ``slice_index``.
Image-level consumers (judge, Dice/HD95, plausibility) read :attr:`SampleSet.pixel_spacing`
(always ``(2,)``). Files written before ``slice_index`` and the ``(3,)`` spacing load unchanged.

Images are stored in the judge network's orientation (nibabel array order: first axis = x,
see ``../shared/judge.md``) and scaled to [0, 1] like :mod:`cohorts.preprocess` output.
Loading never unpickles (``allow_pickle=False``): strings are stored as NumPy unicode arrays.
Every violation is a :class:`~audit.errors.UserError` naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from audit.atomic import atomic_save_npz
from audit.errors import UserError

ACDC_LABELS = (0, 1, 2, 3)
_STR_KEYS = ("subject_ids", "vendor", "group")
_FLOAT_KEYS = ("ef", "edv", "esv")
_INT_KEYS = ("slice_index",)
#: tolerance on the [0, 1] intensity range (resampling overshoot)
RANGE_TOL = 1e-3


@dataclass
class SampleSet:
    images: np.ndarray
    spacing: np.ndarray
    masks: np.ndarray | None = None
    subject_ids: np.ndarray | None = None
    vendor: np.ndarray | None = None
    group: np.ndarray | None = None
    ef: np.ndarray | None = None
    edv: np.ndarray | None = None
    esv: np.ndarray | None = None
    slice_index: np.ndarray | None = None  # last: keeps the positional order of the older fields

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def is_cine(self) -> bool:
        return self.images.ndim == 4

    @property
    def pixel_spacing(self) -> np.ndarray:
        """In-plane pixel size ``(2,)`` in mm (rows, columns), whichever spacing form was stored."""
        return self.spacing[:2]

    @property
    def slice_spacing(self) -> float | None:
        """Slice spacing in mm (the third value of a ``(3,)`` spacing), or ``None`` when not given."""
        return float(self.spacing[2]) if self.spacing.shape == (3,) else None

    def frames(self) -> "SampleSet":
        """A cine set as its individual frames ``(N*T, H, W)`` (labels repeated per frame);
        a 2D set is returned unchanged. Frame ``i * T + t`` is frame ``t`` of item ``i``.

        Per-row fields (subject, ``slice_index``, vendor, group, requested indices) are repeated
        over the row's T frames; ``spacing`` is kept as it is (``(2,)`` or ``(3,)``)."""
        if not self.is_cine:
            return self
        n, t = self.images.shape[:2]
        rep = lambda a: None if a is None else np.repeat(np.asarray(a), t, axis=0)  # noqa: E731
        return SampleSet(
            images=self.images.reshape(n * t, *self.images.shape[2:]), spacing=self.spacing,
            masks=None if self.masks is None else self.masks.reshape(n * t, *self.masks.shape[2:]),
            subject_ids=rep(self.subject_ids) if self.subject_ids is not None else np.repeat(np.arange(n).astype(str), t),
            vendor=rep(self.vendor), group=rep(self.group), ef=rep(self.ef), edv=rep(self.edv), esv=rep(self.esv),
            slice_index=rep(self.slice_index),
        )

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "sample set") -> None:
        """Check dtypes, shapes, ranges and labels; raise one clear error naming ``source``."""
        im = self.images
        if not isinstance(im, np.ndarray) or im.ndim not in (3, 4):
            shape = getattr(im, "shape", None)
            raise UserError(f"{source}: 'images' must have shape (N,H,W) or (N,T,H,W), got {shape}")
        if im.dtype != np.float32:
            raise UserError(f"{source}: 'images' must be float32, got {im.dtype}")
        if im.shape[0] == 0 or min(im.shape[1:]) == 0:
            raise UserError(f"{source}: 'images' is empty (shape {im.shape})")
        if not np.isfinite(im).all():
            bad = int((~np.isfinite(im)).sum())
            raise UserError(f"{source}: 'images' has {bad} NaN/Inf values")
        lo, hi = float(im.min()), float(im.max())
        if lo < -RANGE_TOL or hi > 1 + RANGE_TOL:
            raise UserError(f"{source}: 'images' must be scaled to [0, 1], found [{lo:.4g}, {hi:.4g}]")
        sp = np.asarray(self.spacing)
        if sp.shape not in ((2,), (3,)) or sp.dtype.kind not in "fiu":
            raise UserError(f"{source}: 'spacing' must be (2,) in-plane or (3,) in-plane plus slice spacing, "
                            f"in mm, got shape {sp.shape} ({sp.dtype})")
        if not np.isfinite(sp).all() or (sp <= 0).any():
            raise UserError(f"{source}: 'spacing' must be positive finite mm values, got {sp.tolist()}")
        self.spacing = sp.astype(np.float32)
        if self.masks is not None:
            m = self.masks
            if m.shape != im.shape:
                raise UserError(f"{source}: 'masks' shape {m.shape} differs from 'images' shape {im.shape}")
            if m.dtype != np.uint8:
                raise UserError(f"{source}: 'masks' must be uint8 (ACDC labels), got {m.dtype}")
            extra = sorted(set(np.unique(m).tolist()) - set(ACDC_LABELS))
            if extra:
                raise UserError(f"{source}: 'masks' has labels {extra} outside ACDC's 0 bg, 1 RV, 2 MYO, 3 LV")
        n = im.shape[0]
        for key in _STR_KEYS + _FLOAT_KEYS + _INT_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape != (n,):
                raise UserError(f"{source}: '{key}' must have shape ({n},), got {value.shape}")
            if key in _STR_KEYS:
                if value.dtype.kind not in "UO":
                    raise UserError(f"{source}: '{key}' must hold strings, got {value.dtype}")
                value = value.astype(str)
            elif key in _INT_KEYS:
                if value.dtype.kind not in "iu":
                    raise UserError(f"{source}: '{key}' must hold integers, got {value.dtype}")
                value = value.astype(np.int64)
            else:
                if value.dtype.kind not in "fiu" or not np.isfinite(value.astype(np.float64)).all():
                    raise UserError(f"{source}: '{key}' must hold finite numbers")
                value = value.astype(np.float32)
            setattr(self, key, value)
        if self.slice_index is not None:
            self._check_slice_index(source)

    def _check_slice_index(self, source: str) -> None:
        si = self.slice_index
        if self.subject_ids is None:
            raise UserError(f"{source}: 'slice_index' needs 'subject_ids' (a slice position is within a subject's stack)")
        if (si < 0).any():
            raise UserError(f"{source}: 'slice_index' must be >= 0 (0 = basal-most slice), found {int(si.min())}")
        if not self.is_cine:
            return  # 2D rows are single frames: a subject's ED and ES slices share positions
        seen: dict[tuple[str, int], int] = {}
        for row, key in enumerate(zip(self.subject_ids.tolist(), si.tolist())):
            if key in seen:
                raise UserError(f"{source}: 'slice_index' {key[1]} occurs twice for subject {key[0]!r} (rows {seen[key]} "
                                f"and {row}); in a cine set each slice of a subject is one row")
            seen[key] = row

    # ------------------------------------------------------------------ io
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def save(self, path: str | Path) -> Path:
        """Write atomically as ``.npz`` (compressed)."""
        return atomic_save_npz(path, **self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> "SampleSet":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays: dict[str, Any] = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise UserError(f"{path}: sample set not found") from None
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise UserError(f"{path}: holds object arrays (pickled data), which are refused; store strings as unicode arrays") from None
            raise UserError(f"{path}: not a valid .npz sample set ({exc})") from None
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: not a readable .npz sample set ({exc})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(arrays) - known)
        if unknown:
            raise UserError(f"{path}: unknown keys {unknown}; the contract allows {sorted(known)}")
        for required in ("images", "spacing"):
            if required not in arrays:
                raise UserError(f"{path}: missing required key '{required}'")
        obj = cls.__new__(cls)
        for f in fields(cls):
            setattr(obj, f.name, arrays.get(f.name))
        obj.validate(source=str(path))
        return obj
