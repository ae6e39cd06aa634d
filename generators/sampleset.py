"""The sample-set contract: what any generator, in-house or external, hands to the audit.

One ``.npz`` file (the full contract, with what the loader refuses: ``docs/sample_set.md``):

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
(always ``(2,)``). ``slice_index`` and a ``(3,)`` spacing are optional: a set without them is valid.

Images are stored in the judge network's orientation (nibabel array order: first axis = x,
see :mod:`cohorts.judge.preprocess`) and scaled to [0, 1] like :mod:`cohorts.preprocess` output.
Loading never unpickles (``allow_pickle=False``): strings are stored as NumPy unicode arrays.
It reads each member's ``.npy`` header first and allocates nothing a header merely claims:
a file whose arrays add up to more than :data:`MAX_LOAD_BYTES`, or to more than half the machine's
memory, is refused.
Every violation is a :class:`~audit.core.errors.UserError` naming the file and the problem.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from audit.core.atomic import atomic_save_npz
from audit.core.errors import UserError

ACDC_LABELS = (0, 1, 2, 3)
_STR_KEYS = ("subject_ids", "vendor", "group")
_FLOAT_KEYS = ("ef", "edv", "esv")
_INT_KEYS = ("slice_index",)
#: tolerance on the [0, 1] intensity range (resampling overshoot)
RANGE_TOL = 1e-3
#: the most bytes :meth:`SampleSet.load` will allocate for one file (all its arrays together).
#: Checked against each member's ``.npy`` header before anything is read, because a header of a
#: few bytes can declare 10**12 elements; 16 GiB is far above any sample set the audit can use
#: (1000 cine rows of 25 frames at 256x256 in float32 are 6.5 GB).
MAX_LOAD_BYTES = 16 * 2**30


def _physical_memory() -> int | None:
    """Bytes of RAM (POSIX ``sysconf``), or None where the platform does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


#: the contract's arrays have at most four dimensions (cine images ``(N, T, H, W)``)
_MAX_NDIM = 4
_NPY_MAGIC = b"\x93NUMPY"
#: the member compressions ``numpy.savez`` / ``savez_compressed`` write; others are refused
#: rather than each decompressor's own errors being caught
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
#: what a damaged archive or member raises inside :mod:`zipfile` / :mod:`zlib` / numpy's reader
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


def _to_float32(a: np.ndarray) -> np.ndarray:
    """``a`` as float32; a value beyond float32's range becomes inf without a RuntimeWarning
    (the caller refuses non-finite values with a message naming the key)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(np.float32)


def _say(exc: BaseException, limit: int = 160) -> str:
    """One short line for an exception from a reader (numpy's header errors quote the header)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data size of one ``.npy`` member, from its header alone (nothing allocated).

    The declared size must fit :data:`MAX_LOAD_BYTES` and equal what the zip directory says the
    member holds (header + data): a header that promises more than the member holds is a
    truncated file, one that promises less hides extra bytes."""
    if info.flag_bits & 0x1:
        raise UserError(f"{where} is encrypted")
    if info.compress_type not in _COMPRESSIONS:
        raise UserError(f"{where} uses zip compression method {info.compress_type}; "
                        "write the file with numpy.savez or numpy.savez_compressed (stored or deflated)")
    try:
        with zf.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
            else:
                raise UserError(f"{where} uses .npy format version {version[0]}.{version[1]}; only 1.0 and 2.0 are read")
            header_size = fp.tell()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{where} is corrupt or truncated ({_say(exc)})") from None
    except (ValueError, TypeError, OverflowError, SyntaxError, RecursionError, MemoryError) as exc:
        # what numpy's header parser (ast.literal_eval of at most 10000 characters, np.dtype)
        # raises on a damaged or hostile header
        raise UserError(f"{where} is not a valid .npy array ({_say(exc)})") from None
    if dtype.hasobject:
        raise UserError(f"{where} holds object arrays (pickled data), which are refused; store strings as unicode arrays")
    if len(shape) > _MAX_NDIM or any(d < 0 for d in shape):
        raise UserError(f"{where} has shape {shape}, not an array of the sample-set contract "
                        f"(at most {_MAX_NDIM} dimensions, none negative)")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if max(count, nbytes) > MAX_LOAD_BYTES:
        raise UserError(f"{where} declares shape {shape} of {dtype} ({nbytes} bytes), more than the "
                        f"{MAX_LOAD_BYTES} bytes a sample set may hold (generators.sampleset.MAX_LOAD_BYTES)")
    if header_size + nbytes != info.file_size:
        raise UserError(f"{where} declares shape {shape} of {dtype} ({nbytes} bytes) but holds "
                        f"{info.file_size - header_size} bytes of data (truncated or padded)")
    return shape, dtype, nbytes


def _read_npz(path: Path, known: set[str]) -> dict[str, np.ndarray]:
    """The arrays of a sample-set ``.npz``, checked before they are allocated.

    ``np.load`` is not used: on a file that is not a zip it tries to unpickle (misreported as
    "pickled data"), it allocates whatever a member's header declares, and it lets
    :mod:`zipfile`'s and :mod:`zlib`'s errors through. Here the archive is opened with
    :mod:`zipfile`, the member names are matched against the contract, each ``.npy`` header is
    checked (:func:`_member_header`), and only then are the arrays read."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: sample set not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not an .npz sample set") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the sample set ({exc.strerror or exc})") from None
    try:
        with fh:
            head = fh.read(len(_NPY_MAGIC))
            if head.startswith(_NPY_MAGIC):
                raise UserError(f"{path}: is a single .npy array, not an .npz sample set (write it with numpy.savez)")
            if not head.startswith(b"PK"):
                raise UserError(f"{path}: not an .npz sample set (not a zip archive)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                infos = zf.infolist()
                names = [i.filename for i in infos]
                dupes = sorted(n for n, k in Counter(names).items() if k > 1)
                if dupes:
                    raise UserError(f"{path}: the archive holds {dupes[0]!r} more than once")
                keys = {n[:-4]: i for n, i in zip(names, infos) if n.endswith(".npy") and n[:-4] in known}
                # named as np.load names them: without the .npy suffix
                unknown = sorted({n[:-4] if n.endswith(".npy") else n for n in names} - set(keys))
                if unknown:
                    shown = [k if len(k) <= 60 else k[:57] + "..." for k in unknown[:10]] + (["..."] if len(unknown) > 10 else [])
                    raise UserError(f"{path}: unknown keys {shown}; the contract allows {sorted(known)}")
                for required in ("images", "spacing"):
                    if required not in keys:
                        raise UserError(f"{path}: missing required key '{required}'")
                total = 0
                for key, info in keys.items():
                    total += _member_header(zf, info, f"{path}: member '{info.filename}'")[2]
                if total > MAX_LOAD_BYTES:
                    raise UserError(f"{path}: its arrays hold {total} bytes, more than the {MAX_LOAD_BYTES} bytes a "
                                    "sample set may hold (generators.sampleset.MAX_LOAD_BYTES)")
                memory = _physical_memory()
                if memory is not None and total > memory // 2:
                    raise UserError(f"{path}: its arrays hold {total / 2**30:.1f} GiB, more than half of this machine's "
                                    f"{memory / 2**30:.1f} GiB of memory; the audit would run out of memory")
                arrays: dict[str, np.ndarray] = {}
                for key, info in keys.items():
                    try:
                        with zf.open(info) as fp:
                            arrays[key] = np.lib.format.read_array(fp, allow_pickle=False)
                    except _CORRUPT as exc:  # a bad CRC, a damaged deflate stream, data cut short
                        raise UserError(f"{path}: member '{info.filename}' is corrupt or truncated ({_say(exc)})") from None
                return arrays
    except _CORRUPT as exc:  # the zip directory itself: cut off, or not a zip after all
        raise UserError(f"{path}: truncated or corrupt .npz (zip) archive ({_say(exc)})") from None


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
        sp32 = _to_float32(sp)  # checked after the cast: 1e300 in float64 is inf in float32
        if not np.isfinite(sp32).all() or (sp32 <= 0).any():
            raise UserError(f"{source}: 'spacing' must be positive finite mm values (float32), got {sp.tolist()}")
        self.spacing = sp32
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
                if value.dtype == np.uint64 and n and int(value.max()) > np.iinfo(np.int64).max:
                    raise UserError(f"{source}: '{key}' holds {int(value.max())}, beyond int64")
                value = value.astype(np.int64)
            else:
                if value.dtype.kind not in "fiu":
                    raise UserError(f"{source}: '{key}' must hold finite numbers, got {value.dtype}")
                value = _to_float32(value)
                if not np.isfinite(value).all():
                    raise UserError(f"{source}: '{key}' must hold finite numbers (float32)")
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
        """Read and validate a sample-set ``.npz``; every problem with the file (not found, not a
        zip, truncated, a hostile header, an unknown key, a contract violation) is a
        :class:`UserError` naming it. Never unpickles; never allocates more than
        :data:`MAX_LOAD_BYTES`."""
        path = Path(path)
        arrays: dict[str, Any] = _read_npz(path, {f.name for f in fields(cls)})
        obj = cls.__new__(cls)
        for f in fields(cls):
            setattr(obj, f.name, arrays.get(f.name))
        obj.validate(source=str(path))
        return obj
