"""Tiny NIfTI datasets in the ACDC and M&Ms layouts, written with nibabel (fast, small).

Each subject: X=20, Y=24, Z=3, T=5, spacing (1.3, 1.6, 8.0) mm unless told otherwise. The
heart is a disk (LV) in a ring (MYO) with a blob beside it (RV); the LV shrinks towards
ES so EF is positive. Arrays are built in file order (X, Y, Z, T).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (20, 24, 3, 5)
SPACING = (1.3, 1.6, 8.0)


def make_subject_arrays(seed: int = 0, shape=SHAPE, ed: int = 0, es: int = 2):
    """(image float32, mask uint8 in internal order) in file order (X, Y, Z, T)."""
    rng = np.random.default_rng(seed)
    x, y, z, t = shape
    xx, yy = np.meshgrid(np.arange(x), np.arange(y), indexing="ij")
    cx, cy = x / 2 + rng.uniform(-1, 1), y / 2 + rng.uniform(-1, 1)
    mask = np.zeros(shape, np.uint8)
    for f in range(t):
        phase = 1.0 - 0.35 * np.sin(np.pi * min(f, 2 * es) / (2 * es)) if es > 0 else 1.0
        r_lv = 3.5 * phase
        d = np.hypot(xx - cx, yy - cy)
        d_rv = np.hypot(xx - cx, yy - (cy - 6.5))
        for k in range(z):
            m = np.zeros((x, y), np.uint8)
            m[d_rv < 3.5] = 1
            m[d < r_lv + 1.8] = 2
            m[d < r_lv] = 3
            mask[:, :, k, f] = m
    image = (rng.normal(0, 5, shape) + np.choose(mask, [20.0, 200.0, 80.0, 220.0])).astype(np.float32)
    return image, mask


def affine_for(spacing=SPACING) -> np.ndarray:
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = [-10.0, 5.0, 2.0]
    return a


def save(arr: np.ndarray, path: Path, spacing=SPACING, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(arr, affine_for(spacing) if affine is None else affine)
    nib.save(img, str(path))
    return path


def write_acdc(root: Path, n: int = 3, *, with_4d_gt: tuple[int, ...] = (0,), vendors=("V1", "V2", "V1"), groups=("NOR", "DCM", "HCM"), split: str = "training") -> Path:
    """ACDC layout: ``root/<split>/patientNNN``; subjects in ``with_4d_gt`` get a 4D gt file."""
    for i in range(n):
        sid = f"patient{i + 1:03d}"
        pdir = root / split / sid if split else root / sid
        pdir.mkdir(parents=True, exist_ok=True)
        ed, es = 0, 2
        image, mask = make_subject_arrays(i, ed=ed, es=es)
        save(image, pdir / f"{sid}_4d.nii.gz")
        if i in with_4d_gt:
            save(mask, pdir / f"{sid}_4d_gt.nii.gz")
        else:
            for f in (ed, es):
                save(mask[..., f], pdir / f"{sid}_frame{f + 1:02d}_gt.nii.gz")
        lines = [f"ED: {ed + 1}", f"ES: {es + 1}", f"Group: {groups[i % len(groups)]}", "Height: 180.0", "NbFrame: 5", "Weight: 80.0"]
        if vendors:
            lines.append(f"Vendor: {vendors[i % len(vendors)]}")
        (pdir / "Info.cfg").write_text("\n".join(lines) + "\n")
    return root


MNMS_FROM_INTERNAL = np.array([0, 3, 2, 1], np.uint8)  # internal 1 RV -> 3, 3 LV -> 1


def write_mnms(root: Path, n: int = 3, *, vendors=("A", "B", "C"), unlabeled: tuple[int, ...] = ()) -> Path:
    """M&Ms layout: CSV + ``Labeled/<code>/<code>_sa(_gt).nii.gz`` with M&Ms label order."""
    rows = ["External code,VendorName,Vendor,Centre,ED,ES,Pathology,Height,Weight"]
    for i in range(n):
        code = f"A{i + 1}B{i + 2}C{i + 3}"
        ed, es = 0, 2
        image, mask = make_subject_arrays(100 + i, ed=ed, es=es)
        gt = np.zeros_like(mask)
        gt[..., ed] = MNMS_FROM_INTERNAL[mask[..., ed]]
        gt[..., es] = MNMS_FROM_INTERNAL[mask[..., es]]
        folder = "Unlabeled" if i in unlabeled else "Labeled"
        save(image, root / folder / code / f"{code}_sa.nii.gz")
        if i not in unlabeled:
            save(gt, root / folder / code / f"{code}_sa_gt.nii.gz")
        v = vendors[i % len(vendors)]
        rows.append(f"{code},Vendor{v},{v},{i % 2 + 1},{ed},{es},{'NOR' if i % 2 else 'HCM'},170,70")
    (root / "mnms_info.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def acdc_dir(tmp_path: Path) -> Path:
    return write_acdc(tmp_path / "acdc")


@pytest.fixture
def mnms_dir(tmp_path: Path) -> Path:
    return write_mnms(tmp_path / "mnms")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache directory (digest memo, cohort cache), deleted after it."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(cache))
    yield
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def writers():
    """The writer helpers, for tests that build their own variants."""
    import types

    return types.SimpleNamespace(
        write_acdc=write_acdc, write_mnms=write_mnms, save=save, make_subject_arrays=make_subject_arrays,
        affine_for=affine_for, SPACING=SPACING, SHAPE=SHAPE, MNMS_FROM_INTERNAL=MNMS_FROM_INTERNAL,
    )
