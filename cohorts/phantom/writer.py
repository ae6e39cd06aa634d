"""Write a phantom cohort in the ACDC or the M&Ms layout (plus ``phantom.json``).

ACDC layout (Bernard et al., IEEE TMI 2018; as in the public download)::

    out/training/patientNNN/patientNNN_4d.nii.gz
    out/training/patientNNN/patientNNN_frameXX.nii.gz       (ED and ES, XX 1-based)
    out/training/patientNNN/patientNNN_frameXX_gt.nii.gz    (ACDC labels 1 RV, 2 MYO, 3 LV)
    out/training/patientNNN/patientNNN_4d_gt.nii.gz         (phantom extra: every frame)
    out/training/patientNNN/Info.cfg                        (ED, ES, Group, Height, NbFrame,
                                                             Weight, Vendor, Centre)

M&Ms layout (Campello et al., IEEE TMI 2021)::

    out/mnms_info.csv   External code,VendorName,Vendor,Centre,ED,ES,Pathology,Height,Weight
    out/Labeled/<code>/<code>_sa.nii.gz      (4D)
    out/Labeled/<code>/<code>_sa_gt.nii.gz   (4D, M&Ms labels 1 LV, 2 MYO, 3 RV; only the
                                              ED and ES frames labelled, like the real data)

Images are stored as int16 (the phantom's intensities are already integers in the vendor's
range): that mirrors scanner-derived data, halves the files, and makes the loaders cast
explicitly. Masks are uint8. Affine ``diag(sx, sy, sz, 1)``; ``pixdim[4]`` is the frame
interval in ms. Every file goes through :mod:`audit.core.atomic`.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np
from tqdm import tqdm

from audit.core.atomic import atomic_open, atomic_write_json, atomic_write_text
from audit.core.errors import UserError
from cohorts.parallel import ordered_map

from .generator import ORIENTATION, PhantomSubject, generate_subject
from .params import GROUP_RANGES, VENDOR_STYLES, normalise_group, normalise_vendor

__all__ = ["write_dataset", "subject_plan", "PHANTOM_VERSION", "ACDC_TO_MNMS", "save_nifti"]

log = logging.getLogger(__name__)

#: Bumped whenever the same (seed, index) would produce different data.
PHANTOM_VERSION = "1.0.0"

#: ACDC label -> M&Ms label (1 RV -> 3, 2 MYO -> 2, 3 LV -> 1).
ACDC_TO_MNMS = np.array([0, 3, 2, 1], dtype=np.uint8)

_CODE_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def _subject_seed(seed: int, index: int) -> int:
    """Seed of subject ``index``: depends only on (seed, index), never on the cohort size."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def subject_plan(index: int, seed: int, vendors: Sequence[str], groups: Sequence[str]) -> dict[str, Any]:
    """Vendor, group and seed of subject ``index`` (vendors cycle fastest, then groups)."""
    nv = len(vendors)
    return {
        "index": int(index),
        "vendor": vendors[index % nv],
        "group": groups[(index // nv) % len(groups)],
        "seed": _subject_seed(seed, index),
    }


def _mnms_code(seed: int, index: int, used: set[str]) -> str:
    rng = np.random.default_rng([int(seed), int(index), 77])
    while True:
        code = "".join(rng.choice(_CODE_ALPHABET, 6))
        if code not in used:
            used.add(code)
            return code


def save_nifti(path: Path, data: np.ndarray, spacing: Sequence[float], dt_ms: float | None = None,
               dtype: Any = None) -> None:
    """Write ``data`` (nibabel order) with affine diag(spacing) atomically as .nii.gz."""
    arr = np.asarray(data if dtype is None else data.astype(dtype, copy=False))
    aff = np.diag([float(spacing[0]), float(spacing[1]), float(spacing[2]), 1.0])
    img = nib.Nifti1Image(arr, aff)
    hdr = img.header
    hdr.set_data_dtype(arr.dtype)
    zooms = [float(spacing[0]), float(spacing[1]), float(spacing[2])]
    if arr.ndim == 4:
        zooms.append(float(dt_ms) if dt_ms else 1.0)
    hdr.set_zooms(zooms[: arr.ndim])
    hdr.set_xyzt_units("mm", "msec")
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    with atomic_open(path, "wb") as fh:
        fh.write(_gz_bytes(img))


def _gz_bytes(img: nib.Nifti1Image) -> bytes:
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=1, mtime=0)


def _validate(out_dir: Any, n_subjects: Any, seed: Any, layout: str, vendors: Iterable[str],
              groups: Iterable[str]) -> tuple[Path, int, int, str, tuple[str, ...], tuple[str, ...]]:
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)):
        raise UserError(f"phantom --subjects must be an integer, got {n_subjects!r}")
    if n_subjects <= 0:
        raise UserError(f"phantom --subjects must be positive, got {n_subjects}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"phantom --seed must be a non-negative integer, got {seed!r}")
    lay = str(layout).strip().lower()
    if lay not in ("acdc", "mnms"):
        raise UserError(f"unknown phantom layout {layout!r}: expected acdc or mnms")
    if isinstance(vendors, str):
        vendors = [vendors]
    if isinstance(groups, str):
        groups = [groups]
    vs = tuple(normalise_vendor(v) for v in vendors)
    gs = tuple(normalise_group(g) for g in groups)
    if not vs:
        raise UserError("phantom vendors list is empty")
    if not gs:
        raise UserError("phantom groups list is empty")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"phantom output {out} exists and is not a directory")
    return out, int(n_subjects), int(seed), lay, vs, gs


def _gt_record(s: PhantomSubject, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    i = s.info
    rec = {
        "id": name, "vendor": s.vendor, "group": s.group, "seed": s.seed,
        "ed": s.ed, "es": s.es, "n_frames": s.n_frames, "n_slices": s.n_slices,
        "spacing_mm": list(s.spacing), "frame_interval_ms": s.frame_interval_ms,
        "height_cm": i["height_cm"], "weight_kg": i["weight_kg"], "bsa_m2": i["bsa_m2"],
        "edv_ml": i["edv_ml"], "esv_ml": i["esv_ml"], "ef_percent": i["ef_percent"],
        "rv_edv_ml": i["rv_edv_ml"], "rv_esv_ml": i["rv_esv_ml"], "rv_ef_percent": i["rv_ef_percent"],
        "lv_mass_g": i["lv_mass_g"],
    }
    rec.update(extra)
    return rec


def _write_acdc(out: Path, idx: int, s: PhantomSubject, centre: int) -> dict[str, Any]:
    name = f"patient{idx + 1:03d}"
    d = out / "training" / name
    d.mkdir(parents=True, exist_ok=True)
    img16 = s.image.astype(np.int16)
    save_nifti(d / f"{name}_4d.nii.gz", img16, s.spacing, s.frame_interval_ms)
    save_nifti(d / f"{name}_4d_gt.nii.gz", s.mask, s.spacing, s.frame_interval_ms)
    for t in (s.ed, s.es):
        save_nifti(d / f"{name}_frame{t + 1:02d}.nii.gz", img16[..., t], s.spacing)
        save_nifti(d / f"{name}_frame{t + 1:02d}_gt.nii.gz", s.mask[..., t], s.spacing)
    cfg = (f"ED: {s.ed + 1}\nES: {s.es + 1}\nGroup: {s.group}\nHeight: {s.info['height_cm']:.1f}\n"
           f"NbFrame: {s.n_frames}\nWeight: {s.info['weight_kg']:.1f}\nVendor: {s.vendor}\n"
           f"Centre: {centre}\n")
    atomic_write_text(d / "Info.cfg", cfg)
    return _gt_record(s, name, {"path": f"training/{name}", "centre": centre})


def _write_mnms(out: Path, code: str, s: PhantomSubject) -> None:
    d = out / "Labeled" / code
    d.mkdir(parents=True, exist_ok=True)
    save_nifti(d / f"{code}_sa.nii.gz", s.image.astype(np.int16), s.spacing, s.frame_interval_ms)
    gt = np.zeros_like(s.mask)
    for t in (s.ed, s.es):
        gt[..., t] = ACDC_TO_MNMS[s.mask[..., t]]
    save_nifti(d / f"{code}_sa_gt.nii.gz", gt, s.spacing, s.frame_interval_ms)


def _make_subject(out: Path, k: int, seed: int, lay: str, vs: Sequence[str], gs: Sequence[str],
                  code: str | None) -> tuple[dict[str, Any], list[Any] | None]:
    """Generate and write subject ``k``; returns its ground-truth record (and the M&Ms info row).
    A function of its arguments alone, so subjects can be made in any order, in any process."""
    plan = subject_plan(k, seed, vs, gs)
    style = VENDOR_STYLES[plan["vendor"]]
    centre = style.centres[k // len(vs) % len(style.centres)]
    s = generate_subject(f"{k:04d}", plan["seed"], plan["vendor"], plan["group"])
    log.debug("phantom subject %d: %s %s EF %.1f %%", k, s.vendor, s.group, s.info["ef_percent"])
    if lay == "acdc":
        return _write_acdc(out, k, s, centre), None
    assert code is not None
    s.subject_id = code
    _write_mnms(out, code, s)
    path_group = "ARV" if s.group == "RV" else s.group
    row = [code, style.name, s.vendor, centre, s.ed, s.es, path_group, f"{s.info['height_cm']:.1f}", f"{s.info['weight_kg']:.1f}"]
    return _gt_record(s, code, {"path": f"Labeled/{code}", "centre": centre}), row


def write_dataset(out_dir: str | os.PathLike, n_subjects: int, seed: int, layout: str = "acdc",
                  vendors: Sequence[str] = ("A", "B", "C", "D"),
                  groups: Sequence[str] = ("NOR", "DCM", "HCM", "MINF", "RV"),
                  progress: bool = True, workers: int | None = None) -> Path:
    """Generate ``n_subjects`` phantom subjects and write them under ``out_dir``.

    Subject ``k`` has vendor ``vendors[k % len(vendors)]``, group
    ``groups[(k // len(vendors)) % len(groups)]`` and a seed derived from ``(seed, k)``, so
    it is identical whatever ``n_subjects`` is -- and whatever ``workers`` is: subjects are
    made in ``workers`` processes (:func:`cohorts.parallel.ordered_map`; 1 = in this process), each
    writing its own files, and the records are gathered in subject order. Returns ``out_dir``.
    Raises :class:`UserError` for invalid parameters.
    """
    out, n, seed, lay, vs, gs = _validate(out_dir, n_subjects, seed, layout, vendors, groups)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    codes = [_mnms_code(seed, k, used) if lay == "mnms" else None for k in range(n)]
    bar = tqdm(total=n, desc=f"phantom ({lay})", unit="subject", disable=not progress)
    made: list[tuple[dict[str, Any], list[Any] | None]] = []
    for result in ordered_map(_make_subject, [(out, k, seed, lay, tuple(vs), tuple(gs), codes[k]) for k in range(n)], workers):
        made.append(result)
        bar.update(1)
    bar.close()
    records = [r for r, _ in made]
    rows = [row for _, row in made if row is not None]
    if lay == "mnms":
        # Deliberately not written through audit.core.tables (no spreadsheet guard): this is a data file in
        # the M&Ms release's own layout, read back verbatim by cohorts/loaders/mnms.py exactly like the
        # real dataset's CSV, not a report table; a guard quote would change the codes and vendor names
        # the loader matches. Nothing in it is user text either: codes come from _CODE_ALPHABET, vendor
        # letters and pathologies are checked against fixed lists (normalise_vendor / normalise_group),
        # vendor names and centres come from VENDOR_STYLES, the rest are numbers.
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["External code", "VendorName", "Vendor", "Centre", "ED", "ES", "Pathology", "Height", "Weight"])
        w.writerows(rows)
        atomic_write_text(out / "mnms_info.csv", buf.getvalue())
    meta = {
        "generator": "cmr-audit phantom",
        "version": PHANTOM_VERSION,
        "layout": lay,
        "seed": seed,
        "n_subjects": n,
        "vendors": list(vs),
        "groups": list(gs),
        "labels": ({"1": "RV", "2": "MYO", "3": "LV"} if lay == "acdc" else {"1": "LV", "2": "MYO", "3": "RV"}),
        "image_dtype": "int16",
        "parameters": {
            "vendor_styles": {v: dataclasses.asdict(VENDOR_STYLES[v]) for v in vs},
            "group_ranges": {g: dataclasses.asdict(GROUP_RANGES[g]) for g in gs},
            "orientation": dict(ORIENTATION),
            "ed_frame": 0,
            "es_fraction_of_cycle": [0.35, 0.40],
        },
        "volume_convention": "voxel count x voxel volume, masks of the ED / ES frames",
        "subjects": records,
    }
    atomic_write_json(out / "phantom.json", meta)
    log.info("wrote %d phantom subjects (%s layout) to %s", n, lay, out)
    return out
