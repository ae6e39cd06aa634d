"""M&Ms layout loader.

Expected: a CSV somewhere in ``DIR`` (top level first, then up to two levels down) with
columns ``External code, VendorName, Vendor, Centre, ED, ES`` (ED/ES 0-based) and optional
``Pathology, Height, Weight`` (other columns are kept in ``metadata``), and per subject
``<code>/<code>_sa.nii.gz`` (4D cine) with an optional ``<code>_sa_gt.nii.gz`` beside it,
anywhere under ``DIR`` (the real download has Training/Labeled, Training/Unlabeled,
Validation and Testing). Several CSVs are concatenated.

Labels: M&Ms stores 1 LV, 2 MYO, 3 RV. They are remapped to the internal ACDC order
(1 RV, 2 MYO, 3 LV) here, once, and nowhere else. Only ED and ES are annotated in the
ground truth, so a frame counts as labelled when it has any non-zero voxel.

Strictness: an image without a CSV row, or a CSV row without an image, is an error
(``validate`` lists all of them). Pointing the tool at a partial download therefore fails
loudly instead of silently building a smaller cohort than the user believes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..types import Problem
from ._common import Manifest, SubjectRecord

__all__ = ["scan", "looks_like", "find_csvs", "MNMS_TO_INTERNAL", "REQUIRED_COLUMNS"]

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("External code", "VendorName", "Vendor", "Centre", "ED", "ES")
#: LUT raw M&Ms label -> internal label (1 LV->3, 2 MYO->2, 3 RV->1).
MNMS_TO_INTERNAL = np.arange(256, dtype=np.uint8)
MNMS_TO_INTERNAL[[1, 2, 3]] = [3, 2, 1]


def _csv_has_code_column(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            head = fh.readline()
    except OSError:
        return False
    return "external code" in head.lower()


def find_csvs(root: Path) -> list[Path]:
    """CSV files with an ``External code`` column: top level first, else up to two levels down."""
    top = [p for p in sorted(root.glob("*.csv")) if _csv_has_code_column(p)]
    if top:
        return top
    deeper = sorted(root.glob("*/*.csv")) + sorted(root.glob("*/*/*.csv"))
    return [p for p in deeper if _csv_has_code_column(p)]


def _find_images(root: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for pattern in ("*_sa.nii.gz", "*_sa.nii"):
        for p in sorted(root.rglob(pattern)):
            code = p.name[: -len(".nii.gz")] if p.name.endswith(".gz") else p.name[: -len(".nii")]
            code = code[: -len("_sa")]
            found.setdefault(code, []).append(p)
    return found


def looks_like(root: Path) -> bool:
    try:
        return bool(find_csvs(root))
    except OSError:
        return False


def _clean(v: Any) -> Any:
    """CSV cell to a JSON-friendly value (NaN -> None, numpy scalars -> Python)."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _as_index(v: Any) -> int | None:
    v = _clean(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f == int(f) else None


def scan(root: str | Path) -> Manifest:
    """Parse the CSV(s) and match rows to image files; problems are collected, not raised."""
    root = Path(root)
    problems: list[Problem] = []
    records: list[SubjectRecord] = []
    csvs = find_csvs(root)
    if not csvs:
        problems.append(Problem(str(root), "no M&Ms CSV (with an 'External code' column) found"))
        return Manifest(root, "mnms", root.name, records, [], problems)
    rows = _read_rows(csvs, problems)
    images = _find_images(root)
    for code, paths in sorted(images.items()):
        if len(paths) > 1:
            problems.append(Problem(str(paths[1]), f"subject {code} has more than one image ({paths[0]})", code))
        if code not in rows:
            problems.append(Problem(str(paths[0]), f"subject {code} has no row in {', '.join(p.name for p in csvs)}", code))
    for code, (csv, row) in sorted(rows.items()):
        if code not in images:
            problems.append(Problem(str(csv), f"subject {code} has no image file ({code}_sa.nii.gz) under {root}", code))
            continue
        records.append(_record(root, code, csv, row, images[code][0], problems))
    return Manifest(root, "mnms", root.name, records, list(csvs), problems)


def _read_rows(csvs: list[Path], problems: list[Problem]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Subject code -> (its CSV, its cleaned row) over all CSVs; unreadable CSVs, missing
    columns and subjects listed twice are problems."""
    rows: dict[str, tuple[Path, dict[str, Any]]] = {}
    for csv in csvs:
        try:
            df = pd.read_csv(csv, dtype=str, keep_default_na=True, encoding="utf-8-sig")
        except Exception as exc:  # noqa: BLE001 - pandas raises many types for bad CSVs
            problems.append(Problem(str(csv), f"cannot parse CSV ({type(exc).__name__}: {exc})"))
            continue
        df.columns = [str(c).strip() for c in df.columns]
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            problems.append(Problem(str(csv), f"missing column(s) {missing}"))
            continue
        for _, row in df.iterrows():
            code = str(row["External code"]).strip()
            if not code or code.lower() == "nan":
                continue
            if code in rows:
                problems.append(Problem(str(csv), f"subject {code} listed twice", code))
                continue
            rows[code] = (csv, {k: _clean(row[k]) for k in df.columns})
    return rows


def _record(root: Path, code: str, csv: Path, row: dict[str, Any], image: Path, problems: list[Problem]) -> SubjectRecord:
    """One subject's record from its CSV row and image file (ED/ES that are no frame index are problems)."""
    ed, es = _as_index(row.get("ED")), _as_index(row.get("ES"))
    for name, raw, idx in (("ED", row.get("ED"), ed), ("ES", row.get("ES"), es)):
        if idx is None:
            problems.append(Problem(str(csv), f"subject {code}: {name} = {raw!r} is not a frame index", code))
    gt = None
    for ext in (".nii.gz", ".nii"):
        cand = image.parent / f"{code}_sa_gt{ext}"
        if cand.is_file():
            gt = cand
            break
    centre = row.get("Centre")
    centre_s = str(int(float(centre))) if _as_index(centre) is not None else str(centre)
    pathology = row.get("Pathology")
    return SubjectRecord(
        subject_id=code,
        vendor=str(row["Vendor"]).strip(),
        centre=centre_s,
        group=str(pathology).strip() if pathology else "unknown",
        ed=ed,
        es=es,
        image_path=image,
        record_path=csv,
        mask4d_path=gt,
        label_lut=MNMS_TO_INTERNAL,
        labelled_rule="nonzero",
        metadata=_metadata(root, image, row),
    )


def _metadata(root: Path, image: Path, row: dict[str, Any]) -> dict[str, Any]:
    """The CSV columns not used elsewhere, snake_cased (height, weight and age as numbers)."""
    meta: dict[str, Any] = {"dataset": "M&Ms", "folder": image.parent.parent.relative_to(root).as_posix()}
    for k, v in row.items():
        if k in ("External code", "Vendor", "Centre", "ED", "ES"):
            continue
        key = k.lower().replace(" ", "_")
        if key in ("height", "weight", "age"):
            try:
                v = float(v) if v is not None else None
            except ValueError:
                pass
        meta[key] = v
    return meta
