"""Loaders: both layouts, the array convention, label remapping, labelled frames, data hash."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.core.errors import UserError
from cohorts.loaders import detect_layout, load_cohort, scan_dataset
from cohorts.nifti import file_to_tzhw, tzhw_to_file


def test_acdc_layout_loads(acdc_dir: Path) -> None:
    c = load_cohort(acdc_dir)
    assert c.layout == "acdc" and c.ids == ["patient001", "patient002", "patient003"]
    s = c["patient002"]
    assert s.image.dtype == np.float32 and s.mask is not None and s.mask.dtype == np.uint8
    assert s.image.shape == (5, 3, 20, 24) and s.mask.shape == s.image.shape
    assert (s.ed, s.es) == (0, 2)  # 1-based in Info.cfg
    assert s.labelled.tolist() == [True, False, True, False, False]  # frame gt files only
    assert c["patient001"].labelled.all()  # the 4D gt labels every frame
    assert s.vendor == "V2" and s.group == "DCM" and s.metadata["height"] == 180.0
    assert s.spacing == pytest.approx((1.3, 1.6, 8.0), rel=1e-6)
    assert set(np.unique(s.mask)) == {0, 1, 2, 3}
    assert s.metadata["acdc_split"] == "training"


def test_array_convention_matches_nibabel(acdc_dir: Path) -> None:
    s = load_cohort(acdc_dir)["patient001"]
    data = nib.load(s.source).get_fdata()
    for t in range(data.shape[3]):
        for z in range(data.shape[2]):
            np.testing.assert_array_equal(s.image[t, z], data[:, :, z, t].astype(np.float32))


def test_acdc_default_vendor_and_flat_layout(tmp_path: Path, writers) -> None:
    root = writers.write_acdc(tmp_path / "flat", n=2, vendors=(), split="")
    c = load_cohort(root)
    assert [s.vendor for s in c] == ["ACDC", "ACDC"] and c.layout == "acdc"
    # a single patient folder works too
    one = load_cohort(root / "patient001")
    assert one.ids == ["patient001"]


def test_acdc_testing_without_gt(tmp_path: Path, writers) -> None:
    root = writers.write_acdc(tmp_path / "a", n=2, split="training")
    writers.write_acdc(root, n=1, split="testing")
    tdir = root / "testing" / "patient001"
    shutil.rmtree(tdir)
    writers.write_acdc(tmp_path / "tmp", n=1, split="")
    shutil.copytree(tmp_path / "tmp" / "patient001", root / "testing" / "patient101")
    p = root / "testing" / "patient101"
    for f in p.iterdir():
        if "_gt" in f.name:
            f.unlink()
        elif f.name.startswith("patient001"):
            f.rename(p / f.name.replace("patient001", "patient101"))
    c = load_cohort(root)
    assert c.ids == ["patient001", "patient002", "patient101"]
    s = c["patient101"]
    assert s.mask is None and not s.labelled.any() and s.metadata["acdc_split"] == "testing"


def test_mnms_layout_remaps_labels(mnms_dir: Path, writers) -> None:
    c = load_cohort(mnms_dir)
    assert c.layout == "mnms" and c.vendors == ["A", "B", "C"]
    s = c["A1B2C3"]
    _, expected = writers.make_subject_arrays(100)
    # internal order: the loader undid the M&Ms order, once
    np.testing.assert_array_equal(s.mask[0], file_to_tzhw(expected)[0])
    assert s.labelled.tolist() == [True, False, True, False, False]
    assert s.centre == "1" and s.group == "HCM" and s.metadata["vendorname"] == "VendorA"
    lv = s.mask[s.ed] == 3
    rv = s.mask[s.ed] == 1
    assert lv.sum() > 0 and rv.sum() > 0
    # LV (internal 3) is the central disk: its centroid is near the image centre
    hh, ww = np.nonzero(lv.any(axis=0))
    assert abs(ww.mean() - 12) < 2


def test_mnms_unlabeled_subject_has_no_mask(tmp_path: Path, writers) -> None:
    root = writers.write_mnms(tmp_path / "m", n=3, unlabeled=(1,))
    c = load_cohort(root)
    s = c["A2B3C4"]
    assert s.mask is None and not s.labelled.any() and s.metadata["folder"] == "Unlabeled"


def test_detect_layout(acdc_dir: Path, mnms_dir: Path, tmp_path: Path) -> None:
    assert detect_layout(acdc_dir) == "acdc"
    assert detect_layout(mnms_dir) == "mnms"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        detect_layout(tmp_path / "empty")
    with pytest.raises(UserError, match="no such directory"):
        load_cohort(tmp_path / "nope")


def test_data_hash_location_independent_and_sensitive(acdc_dir: Path, tmp_path: Path) -> None:
    h1 = load_cohort(acdc_dir).data_hash
    copy = tmp_path / "elsewhere"
    shutil.copytree(acdc_dir, copy)
    assert load_cohort(copy).data_hash == h1
    (copy / "notes.txt").write_text("unrelated file")
    assert load_cohort(copy).data_hash == h1
    cfg = copy / "training" / "patient001" / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("Height: 180.0", "Height: 181.0"))
    assert load_cohort(copy).data_hash != h1


def test_data_hash_memo_and_verify(acdc_dir: Path) -> None:
    from cohorts.hashing import data_hash

    m = scan_dataset(acdc_dir)
    a = data_hash(m.root, m.files)
    b = data_hash(m.root, m.files)  # served from the memo
    c = data_hash(m.root, m.files, verify=True)
    d = data_hash(m.root, m.files, memo=False)
    assert a == b == c == d


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=st.integers(4, 16),
    y=st.integers(4, 16),
    z=st.integers(1, 4),
    t=st.integers(1, 4),
    sx=st.floats(0.5, 3.0),
    sy=st.floats(0.5, 3.0),
    sz=st.floats(2.0, 12.0),
    swap=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_loader_roundtrip(x, y, z, t, sx, sy, sz, swap, seed) -> None:
    """Any geometry: convention holds, spacing = affine column norms, M&Ms labels remapped exactly."""
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(x, y, z, t)).astype(np.float32)
    raw = rng.integers(0, 4, size=(x, y, z, t)).astype(np.uint8)
    raw[..., 1:] = 0  # only frame 0 labelled
    affine = np.diag([sx, sy, sz, 1.0])
    if swap:  # a rotated / axis-swapped affine: spacing is still the column norms
        affine[:3, :3] = affine[:3, :3][[1, 0, 2]]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        code = "S1"
        (root / "Labeled" / code).mkdir(parents=True)
        nib.save(nib.Nifti1Image(image, affine), str(root / "Labeled" / code / f"{code}_sa.nii.gz"))
        nib.save(nib.Nifti1Image(raw, affine), str(root / "Labeled" / code / f"{code}_sa_gt.nii.gz"))
        (root / "info.csv").write_text(f"External code,VendorName,Vendor,Centre,ED,ES\n{code},Siemens,A,1,0,{t - 1}\n")
        s = load_cohort(root, progress=False)["S1"]
    assert s.image.shape == (t, z, x, y) and s.image.dtype == np.float32
    np.testing.assert_array_equal(tzhw_to_file(s.image), image)
    assert s.spacing == pytest.approx((sx, sy, sz), rel=1e-5)
    lut = np.array([0, 3, 2, 1])
    np.testing.assert_array_equal(tzhw_to_file(s.mask), lut[raw])
    assert s.mask.dtype == np.uint8 and s.labelled.tolist() == [bool(raw[..., 0].any())] + [False] * (t - 1)
