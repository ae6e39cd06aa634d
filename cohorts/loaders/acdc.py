"""ACDC layout loader.

Accepted layouts (``DIR`` is what the user points at)::

    DIR/training/patient001/...   and/or   DIR/testing/patient101/...
    DIR/patient001/...                     (a folder of patient folders)
    DIR/                                   (a single patient folder)

Per patient: ``Info.cfg`` (``ED``, ``ES`` 1-based; ``Group``, ``Height``, ``Weight``,
``NbFrame``; optional ``Vendor``, ``Centre``), ``patientNNN_4d.nii.gz`` and ground truth
either as ``patientNNN_4d_gt.nii.gz`` (every frame annotated; the phantom writes it) or as
``patientNNN_frameXX_gt.nii.gz`` files (XX 1-based; ED and ES in the real data). If both
exist the 4D file wins. A patient without any ground truth (real ACDC testing subjects
in the original release) gets ``mask=None``.

Vendor and centre: real ACDC ``Info.cfg`` files carry neither. All ACDC subjects were
scanned at one centre (University Hospital of Dijon) on Siemens 1.5 T / 3 T systems, but
we deliberately do *not* map them to M&Ms vendor code "A": M&Ms vendor codes name M&Ms
domains, and pretending ACDC is one of them would make a cross-dataset "unseen vendor"
experiment quietly wrong. Missing values default to vendor ``"ACDC"`` and centre
``"ACDC"``; ``Vendor:``/``Centre:`` lines (as the phantom writes) override them.
A missing ``Group`` becomes ``"unknown"``. Labels are already in the internal order.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..types import Problem
from ._common import Manifest, SubjectRecord

__all__ = ["scan", "looks_like", "parse_info_cfg", "DEFAULT_VENDOR", "DEFAULT_CENTRE"]

log = logging.getLogger(__name__)

DEFAULT_VENDOR = "ACDC"
DEFAULT_CENTRE = "ACDC"
_PATIENT_RE = re.compile(r"^patient\d+$", re.IGNORECASE)
_FRAME_GT_RE = re.compile(r"^(?P<id>.+)_frame(?P<f>\d+)_gt\.nii(\.gz)?$")


def _nii(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def parse_info_cfg(path: Path) -> dict[str, str]:
    """``Key: value`` lines to a dict (keys as written, values stripped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _patient_dirs(root: Path) -> list[tuple[str, Path]]:
    """(split name, folder) for every patient folder under ``root``."""
    if (root / "Info.cfg").is_file() or _PATIENT_RE.match(root.name):
        return [("", root)]
    found: list[tuple[str, Path]] = []
    for split in ("training", "testing"):
        d = root / split
        if d.is_dir():
            found += [(split, p) for p in sorted(d.iterdir()) if p.is_dir() and _is_patient_dir(p)]
    if not found:
        found = [("", p) for p in sorted(root.iterdir()) if p.is_dir() and _is_patient_dir(p)]
    return found


def _is_patient_dir(p: Path) -> bool:
    return bool(_PATIENT_RE.match(p.name)) or (p / "Info.cfg").is_file()


def looks_like(root: Path) -> bool:
    """True when ``root`` contains at least one ACDC-style patient folder."""
    try:
        return bool(_patient_dirs(root))
    except OSError:
        return False


def _to_float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def scan(root: str | Path) -> Manifest:
    """Find every patient folder and parse its ``Info.cfg``; problems are collected, not raised."""
    root = Path(root)
    problems: list[Problem] = []
    records: list[SubjectRecord] = []
    text_files: list[Path] = []
    dirs = _patient_dirs(root)
    if not dirs:
        problems.append(Problem(str(root), "no ACDC patient folders (patientNNN/ with Info.cfg) found"))
    for split, pdir in dirs:
        sid = pdir.name
        cfg_path = pdir / "Info.cfg"
        if not cfg_path.is_file():
            problems.append(Problem(str(cfg_path), "missing Info.cfg", sid))
            continue
        text_files.append(cfg_path)
        try:
            info = parse_info_cfg(cfg_path)
        except OSError as exc:
            problems.append(Problem(str(cfg_path), f"cannot read Info.cfg ({exc})", sid))
            continue
        frames: dict[str, int | None] = {}
        for key in ("ED", "ES"):
            raw = info.get(key)
            if raw is None:
                problems.append(Problem(str(cfg_path), f"{key} missing", sid))
                frames[key] = None
                continue
            try:
                frames[key] = int(float(raw)) - 1  # 1-based in the file
            except ValueError:
                problems.append(Problem(str(cfg_path), f"{key} = {raw!r} is not a frame number", sid))
                frames[key] = None
        nb = info.get("NbFrame")
        n_frames = int(float(nb)) if nb and _to_float(nb) is not None else None
        image = _nii(pdir, f"{sid}_4d")
        if image is None:
            problems.append(Problem(str(pdir / f"{sid}_4d.nii.gz"), "missing image file", sid))
            continue
        mask4d = _nii(pdir, f"{sid}_4d_gt")
        frame_masks: dict[int, Path] = {}
        if mask4d is None:
            for p in sorted(pdir.iterdir()):
                m = _FRAME_GT_RE.match(p.name)
                if m and m.group("id") == sid:
                    frame_masks[int(m.group("f")) - 1] = p
        meta: dict[str, object] = {"dataset": "ACDC", "acdc_split": split or None}
        for key in ("Height", "Weight"):
            meta[key.lower()] = _to_float(info.get(key))
        if n_frames is not None:
            meta["nb_frames"] = n_frames
        records.append(
            SubjectRecord(
                subject_id=sid,
                vendor=info.get("Vendor") or DEFAULT_VENDOR,
                centre=info.get("Centre") or info.get("Center") or DEFAULT_CENTRE,
                group=info.get("Group") or "unknown",
                ed=frames["ED"],
                es=frames["ES"],
                image_path=image,
                record_path=cfg_path,
                mask4d_path=mask4d,
                frame_mask_paths=frame_masks,
                labelled_rule="all",
                n_frames=n_frames,
                metadata=meta,
            )
        )
    return Manifest(root=root, layout="acdc", name=root.name, records=records, text_files=text_files, problems=problems)
