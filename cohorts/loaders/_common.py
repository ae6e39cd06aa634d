"""What both loaders share: a manifest of subjects found on disk, and reading one subject.

Loading is two-phase on purpose. :func:`scan` (per layout) only lists files and parses the
small text files (``Info.cfg``, the M&Ms CSV); it is cheap, and it is all the cohort cache
needs to compute the data hash and find a cached entry without opening a single NIfTI
file. :func:`read_subject` then reads and checks the arrays of one subject, so that
callers can stream subjects one at a time (a full ACDC cine set is several GB as float32).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..nifti import NiftiVolume, file_to_tzhw, read_nifti
from ..types import Problem, Subject

log = logging.getLogger(__name__)

#: Raw label values both public datasets use (0 bg plus three structures).
RAW_LABELS = frozenset({0, 1, 2, 3})
IDENTITY_LUT = np.arange(256, dtype=np.uint8)


@dataclass(eq=False)
class SubjectRecord:
    """Everything known about a subject before its NIfTI files are opened."""

    subject_id: str
    vendor: str
    centre: str
    group: str
    ed: int | None  # 0-based
    es: int | None
    image_path: Path
    record_path: Path  # the file ED/ES came from (Info.cfg or CSV), named in problems
    mask4d_path: Path | None = None
    frame_mask_paths: dict[int, Path] = field(default_factory=dict)  # 0-based frame -> 3D gt
    label_lut: np.ndarray = field(default_factory=lambda: IDENTITY_LUT)
    labelled_rule: str = "all"  # 4D mask: "all" frames annotated, or "nonzero" frames only
    n_frames: int | None = None  # declared (Info.cfg NbFrame), checked against the image
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        out = [self.image_path]
        if self.mask4d_path is not None:
            out.append(self.mask4d_path)
        out.extend(self.frame_mask_paths[k] for k in sorted(self.frame_mask_paths))
        return out


@dataclass(eq=False)
class Manifest:
    """The result of scanning a dataset directory."""

    root: Path
    layout: str
    name: str
    records: list[SubjectRecord]
    text_files: list[Path]  # Info.cfg files / CSVs (inputs too, hence hashed)
    problems: list[Problem]

    @property
    def files(self) -> list[Path]:
        out = list(self.text_files)
        for r in self.records:
            out.extend(r.files)
        return out


def read_subject(rec: SubjectRecord) -> tuple[Subject | None, list[Problem]]:
    """Read and check one subject's arrays; ``(None, problems)`` if it cannot be built."""
    problems: list[Problem] = []
    sid = rec.subject_id

    def problem(path: Path | str, msg: str) -> None:
        problems.append(Problem(str(path), msg, sid))

    vol, probs = read_nifti(rec.image_path, "image", subject_id=sid)
    problems += probs
    if vol is None:
        return None, problems
    image = file_to_tzhw(vol.data)
    t = image.shape[0]
    _check_frames(rec, t, problem)
    if rec.mask4d_path is not None:
        mask, labelled = _read_mask4d(rec, vol, t, problems, problem)
    elif rec.frame_mask_paths:
        mask, labelled = _read_frame_masks(rec, vol, image.shape, problems, problem)
    else:
        mask, labelled = None, np.zeros(t, dtype=bool)
    if problems:
        return None, problems
    return _subject(rec, vol, image, mask, labelled), problems


def _check_frames(rec: SubjectRecord, t: int, problem: Callable[[Path | str, str], None]) -> None:
    """The declared frame count and the ED/ES indices against the image's ``t`` frames."""
    sid = rec.subject_id
    if rec.n_frames is not None and rec.n_frames != t:
        problem(rec.record_path, f"{sid}: NbFrame = {rec.n_frames} but {rec.image_path.name} has {t} frames")
    for name, idx in (("ED", rec.ed), ("ES", rec.es)):
        if idx is None:
            problem(rec.record_path, f"{sid}: {name} missing")
        elif not 0 <= idx < t:
            problem(rec.record_path, f"{sid}: {name} frame index {idx} (0-based) outside 0..{t - 1}")


def _same_geometry(rec: SubjectRecord, vol: NiftiVolume, mvol: NiftiVolume, path: Path, expect: tuple[int, ...],
                   problem: Callable[[Path | str, str], None]) -> bool:
    """Whether a mask volume has the image's shape ``expect`` and spacing (reported if not)."""
    if mvol.shape != expect:
        problem(path, f"mask shape {mvol.shape} does not match image shape {expect} ({rec.image_path.name})")
        return False
    if not np.allclose(mvol.spacing, vol.spacing, rtol=1e-3, atol=1e-4):
        problem(
            path,
            f"mask spacing {tuple(round(s, 4) for s in mvol.spacing)} differs from image spacing "
            f"{tuple(round(s, 4) for s in vol.spacing)}",
        )
        return False
    return True


def _read_mask4d(rec: SubjectRecord, vol: NiftiVolume, t: int, problems: list[Problem],
                 problem: Callable[[Path | str, str], None]) -> tuple[np.ndarray | None, np.ndarray]:
    """The labels of every frame from one 4D (or 3D single-frame) mask file, and which frames
    are annotated (all, or those with a label under the ``nonzero`` rule)."""
    mask: np.ndarray | None = None
    labelled = np.zeros(t, dtype=bool)
    mvol, probs = read_nifti(rec.mask4d_path, "mask", labels=RAW_LABELS, subject_id=rec.subject_id)
    problems += probs
    expect = vol.shape if vol.data.ndim == 4 else (*vol.shape[:3], 1)
    if mvol is not None:
        mdata = mvol.data if mvol.data.ndim == 4 else mvol.data[..., None]
        mvol.data = mdata
        if _same_geometry(rec, vol, mvol, rec.mask4d_path, tuple(expect), problem):
            mask = rec.label_lut[file_to_tzhw(mdata)]
            if rec.labelled_rule == "nonzero":
                labelled = mask.reshape(t, -1).any(axis=1)
            else:
                labelled[:] = True
    return mask, labelled


def _read_frame_masks(rec: SubjectRecord, vol: NiftiVolume, shape: tuple[int, ...], problems: list[Problem],
                      problem: Callable[[Path | str, str], None]) -> tuple[np.ndarray | None, np.ndarray]:
    """The labels of the annotated frames from one 3D mask file each (None if none could be read)."""
    t = shape[0]
    labelled = np.zeros(t, dtype=bool)
    mask: np.ndarray | None = np.zeros(shape, dtype=np.uint8)
    for frame, path in sorted(rec.frame_mask_paths.items()):
        if not 0 <= frame < t:
            problem(path, f"ground-truth frame {frame + 1} (1-based) outside the image's {t} frames")
            continue
        mvol, probs = read_nifti(path, "mask", labels=RAW_LABELS, ndims=(3,), subject_id=rec.subject_id)
        problems += probs
        if mvol is not None and _same_geometry(rec, vol, mvol, path, tuple(vol.shape[:3]), problem):
            mask[frame] = rec.label_lut[file_to_tzhw(mvol.data)[0]]
            labelled[frame] = True
    if not labelled.any():
        mask = None
    return mask, labelled


def _subject(rec: SubjectRecord, vol: NiftiVolume, image: np.ndarray, mask: np.ndarray | None,
             labelled: np.ndarray) -> Subject:
    """The checked subject (frame interval from the 4th zoom unless the record has one)."""
    sx, sy, sz = vol.spacing
    meta = dict(rec.metadata)
    if len(vol.zooms) > 3:
        meta.setdefault("frame_interval", float(vol.zooms[3]))
    return Subject(
        subject_id=rec.subject_id,
        vendor=rec.vendor,
        centre=rec.centre,
        group=rec.group,
        spacing=(sx, sy, sz),
        ed=int(rec.ed),  # type: ignore[arg-type]
        es=int(rec.es),  # type: ignore[arg-type]
        image=image,
        mask=mask,
        labelled=labelled,
        source=str(rec.image_path),
        affine=vol.affine,
        metadata=meta,
    )
