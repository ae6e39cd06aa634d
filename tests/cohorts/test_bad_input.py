"""Every bad-input case: the loader raises one-line UserError naming the file; validate lists all."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from audit.core.errors import UserError
from cohorts.loaders import load_cohort
from cohorts.validate import validate


def _p(root: Path, i: int = 1) -> Path:
    return root / "training" / f"patient{i:03d}"


def _patch_pixdim(path: Path, axis: int, value: float) -> None:
    """Overwrite pixdim[axis] in a .nii.gz without nibabel 'fixing' it."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", raw, 76 + 4 * axis, value)
    path.write_bytes(gzip.compress(bytes(raw)))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _expect_error(root: Path, file_part: str, msg_part: str) -> None:
    with pytest.raises(UserError) as exc:
        load_cohort(root, progress=False)
    text = str(exc.value)
    assert "\n" not in text
    assert file_part in text, text
    assert msg_part in text, text
    problems = validate(root, progress=False)
    assert any(file_part in str(p) and msg_part in str(p) for p in problems), problems


def test_truncated_image(acdc_dir: Path) -> None:
    _truncate(_p(acdc_dir, 2) / "patient002_4d.nii.gz")
    _expect_error(acdc_dir, "patient002_4d.nii.gz", "corrupt or truncated")


def test_garbage_file(acdc_dir: Path) -> None:
    (_p(acdc_dir, 1) / "patient001_4d_gt.nii.gz").write_bytes(b"not a nifti at all")
    _expect_error(acdc_dir, "patient001_4d_gt.nii.gz", "corrupt or truncated")


def test_shape_mismatch(acdc_dir: Path, writers) -> None:
    writers.save(np.zeros((20, 22, 3), np.uint8), _p(acdc_dir, 2) / "patient002_frame03_gt.nii.gz")
    _expect_error(acdc_dir, "patient002_frame03_gt.nii.gz", "does not match image shape")


def test_labels_outside_set(acdc_dir: Path, writers) -> None:
    _, mask = writers.make_subject_arrays(1)
    m = mask[..., 0].copy()
    m[0, 0, 0] = 7
    writers.save(m, _p(acdc_dir, 2) / "patient002_frame01_gt.nii.gz")
    _expect_error(acdc_dir, "patient002_frame01_gt.nii.gz", "labels [7] outside the label set")


def test_nan_voxels(acdc_dir: Path, writers) -> None:
    image, _ = writers.make_subject_arrays(2)
    image[1, 1, 0, 0] = np.nan
    image[2, 2, 1, 1] = np.inf
    writers.save(image, _p(acdc_dir, 3) / "patient003_4d.nii.gz")
    _expect_error(acdc_dir, "patient003_4d.nii.gz", "2 NaN/Inf voxel(s)")


def test_missing_info_cfg(acdc_dir: Path) -> None:
    (_p(acdc_dir, 2) / "Info.cfg").unlink()
    _expect_error(acdc_dir, "patient002/Info.cfg", "missing Info.cfg")


def test_ed_out_of_range(acdc_dir: Path) -> None:
    cfg = _p(acdc_dir, 3) / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("ES: 3", "ES: 9"))
    _expect_error(acdc_dir, "patient003/Info.cfg", "ES frame index 8 (0-based) outside 0..4")


def test_nbframe_mismatch(acdc_dir: Path) -> None:
    cfg = _p(acdc_dir, 1) / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("NbFrame: 5", "NbFrame: 30"))
    _expect_error(acdc_dir, "patient001/Info.cfg", "NbFrame = 30")


def test_zero_spacing(acdc_dir: Path) -> None:
    _patch_pixdim(_p(acdc_dir, 1) / "patient001_4d.nii.gz", 2, 0.0)
    _expect_error(acdc_dir, "patient001_4d.nii.gz", "zero or missing voxel spacing")


def test_spacing_header_disagrees_with_affine(acdc_dir: Path) -> None:
    _patch_pixdim(_p(acdc_dir, 1) / "patient001_4d.nii.gz", 1, 2.5)
    _expect_error(acdc_dir, "patient001_4d.nii.gz", "disagrees with header")


def test_non_invertible_affine(acdc_dir: Path, writers) -> None:
    image, _ = writers.make_subject_arrays(1)
    singular = np.array([[1.3, 1.3, 0, 0], [0, 0, 0, 0], [0, 0, 8, 0], [0, 0, 0, 1]])
    writers.save(image, _p(acdc_dir, 2) / "patient002_4d.nii.gz", affine=singular)
    _expect_error(acdc_dir, "patient002_4d.nii.gz", "affine is not invertible")


def test_mask_spacing_differs(acdc_dir: Path, writers) -> None:
    _, mask = writers.make_subject_arrays(1)
    writers.save(mask[..., 0], _p(acdc_dir, 2) / "patient002_frame01_gt.nii.gz", spacing=(1.0, 1.0, 8.0))
    _expect_error(acdc_dir, "patient002_frame01_gt.nii.gz", "differs from image spacing")


def test_missing_image(acdc_dir: Path) -> None:
    (_p(acdc_dir, 3) / "patient003_4d.nii.gz").unlink()
    _expect_error(acdc_dir, "patient003_4d.nii.gz", "missing image file")


def test_mnms_missing_csv_row(mnms_dir: Path) -> None:
    csv = mnms_dir / "mnms_info.csv"
    csv.write_text("\n".join(l for l in csv.read_text().splitlines() if not l.startswith("A2B3C4")) + "\n")
    _expect_error(mnms_dir, "A2B3C4_sa.nii.gz", "has no row in mnms_info.csv")


def test_mnms_row_without_image(mnms_dir: Path) -> None:
    csv = mnms_dir / "mnms_info.csv"
    csv.write_text(csv.read_text() + "ZZZ999,VendorA,A,1,0,2,NOR,170,70\n")
    _expect_error(mnms_dir, "mnms_info.csv", "subject ZZZ999 has no image file")


def test_mnms_missing_column(mnms_dir: Path) -> None:
    csv = mnms_dir / "mnms_info.csv"
    csv.write_text(csv.read_text().replace(",ES,", ",Foo,"))
    _expect_error(mnms_dir, "mnms_info.csv", "missing column(s) ['ES']")


def test_mnms_4d_mask_shape_mismatch(mnms_dir: Path, writers) -> None:
    writers.save(np.zeros((20, 24, 3, 4), np.uint8), mnms_dir / "Labeled" / "A1B2C3" / "A1B2C3_sa_gt.nii.gz")
    _expect_error(mnms_dir, "A1B2C3_sa_gt.nii.gz", "does not match image shape")


def test_validate_lists_every_problem(acdc_dir: Path, writers) -> None:
    """Several independent problems: validate reports all of them, the loader only the first."""
    _truncate(_p(acdc_dir, 1) / "patient001_4d.nii.gz")
    (_p(acdc_dir, 2) / "Info.cfg").unlink()
    image, _ = writers.make_subject_arrays(2)
    image[0, 0, 0, 0] = np.nan
    writers.save(image, _p(acdc_dir, 3) / "patient003_4d.nii.gz")
    cfg = _p(acdc_dir, 3) / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("ED: 1", "ED: 0"))
    problems = validate(acdc_dir, progress=False)
    text = "\n".join(map(str, problems))
    assert len(problems) == 4, text
    assert "patient001_4d.nii.gz: corrupt or truncated" in text
    assert "patient002/Info.cfg: missing Info.cfg" in text
    assert "NaN/Inf" in text and "ED frame index -1" in text
    with pytest.raises(UserError, match="missing Info.cfg"):
        load_cohort(acdc_dir, progress=False)


def test_validate_clean_dataset(acdc_dir: Path, mnms_dir: Path, tmp_path: Path) -> None:
    assert validate(acdc_dir, progress=False) == []
    assert validate(mnms_dir, progress=False) == []
    (tmp_path / "empty").mkdir()
    problems = validate(tmp_path / "empty", progress=False)
    assert len(problems) == 1 and "empty" in str(problems[0])


def test_cached_entry_not_touched_by_bad_input(acdc_dir: Path) -> None:
    """A dataset that becomes broken raises, and the existing cache entry survives intact."""
    from cohorts.cache import cache_key, entry_dir, load_prepared
    from cohorts.preprocess import PreprocessConfig

    cfg = PreprocessConfig(size=16)
    good = load_prepared(acdc_dir, cfg, progress=False)
    d = entry_dir(cache_key(good.data_hash, cfg))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    _truncate(_p(acdc_dir, 2) / "patient002_4d.nii.gz")
    with pytest.raises(UserError, match="patient002_4d.nii.gz"):
        load_prepared(acdc_dir, cfg, progress=False)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
