"""write_dataset: both layouts read back with nibabel, labels, metadata, bad parameters."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from audit.core.errors import UserError
from cohorts.phantom import ACDC_TO_MNMS, generate_subject, subject_plan, write_dataset

N = 3
SEED = 11


@pytest.fixture(scope="module")
def acdc_dir(module_tmp) -> Path:
    return write_dataset(module_tmp("acdc"), N, SEED, layout="acdc", progress=False)


@pytest.fixture(scope="module")
def mnms_dir(module_tmp) -> Path:
    return write_dataset(module_tmp("mnms"), N, SEED, layout="mnms", progress=False)


def _expected(k: int):
    plan = subject_plan(k, SEED, ("A", "B", "C", "D"), ("NOR", "DCM", "HCM", "MINF", "RV"))
    return generate_subject(f"{k:04d}", plan["seed"], plan["vendor"], plan["group"])


def _cfg(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, v = line.split(":", 1)
        out[k.strip()] = v.strip()
    return out


def test_acdc_layout(acdc_dir: Path):
    meta = json.loads((acdc_dir / "phantom.json").read_text())
    assert meta["layout"] == "acdc" and meta["seed"] == SEED and len(meta["subjects"]) == N
    for k in range(N):
        name = f"patient{k + 1:03d}"
        d = acdc_dir / "training" / name
        s = _expected(k)
        cfg = _cfg(d / "Info.cfg")
        assert cfg["ED"] == "1" and cfg["ES"] == str(s.es + 1)
        assert cfg["Group"] == s.group and cfg["Vendor"] == s.vendor
        assert int(cfg["NbFrame"]) == s.n_frames
        assert float(cfg["Height"]) == pytest.approx(s.info["height_cm"])
        assert float(cfg["Weight"]) == pytest.approx(s.info["weight_kg"])
        assert "Centre" in cfg
        img4 = nib.load(d / f"{name}_4d.nii.gz")
        assert img4.get_data_dtype() == np.int16
        assert np.array_equal(np.asanyarray(img4.dataobj), s.image.astype(np.int16))
        assert np.allclose(img4.affine, np.diag(list(s.spacing) + [1.0]))
        assert img4.header.get_zooms()[3] == pytest.approx(s.frame_interval_ms, rel=1e-4)
        gt4 = nib.load(d / f"{name}_4d_gt.nii.gz")
        assert gt4.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(gt4.dataobj), s.mask)
        for t in (s.ed, s.es):
            fr = nib.load(d / f"{name}_frame{t + 1:02d}.nii.gz")
            gt = nib.load(d / f"{name}_frame{t + 1:02d}_gt.nii.gz")
            assert fr.shape == s.image.shape[:3]
            assert np.array_equal(np.asanyarray(gt.dataobj), s.mask[..., t])
        rec = meta["subjects"][k]
        assert rec["vendor"] == s.vendor and rec["group"] == s.group
        assert rec["edv_ml"] == s.info["edv_ml"] and rec["ef_percent"] == s.info["ef_percent"]


def test_mnms_layout(mnms_dir: Path):
    with open(mnms_dir / "mnms_info.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["External code", "VendorName", "Vendor", "Centre", "ED", "ES", "Pathology", "Height", "Weight"]
    body = rows[1:]
    assert len(body) == N
    names = {"A": "Siemens", "B": "Philips", "C": "GE", "D": "Canon"}
    for k, row in enumerate(body):
        code, vname, vendor, centre, ed, es, path, h, w = row
        assert len(code) == 6 and code.isalnum() and code.upper() == code
        s = _expected(k)
        assert vendor == s.vendor and vname == names[vendor]
        assert int(ed) == 0 and int(es) == s.es
        assert path == ("ARV" if s.group == "RV" else s.group)
        d = mnms_dir / "Labeled" / code
        img = nib.load(d / f"{code}_sa.nii.gz")
        gt = np.asanyarray(nib.load(d / f"{code}_sa_gt.nii.gz").dataobj)
        assert img.shape == s.image.shape and gt.shape == s.mask.shape and gt.dtype == np.uint8
        for t in range(s.n_frames):
            if t in (s.ed, s.es):
                assert np.array_equal(gt[..., t], ACDC_TO_MNMS[s.mask[..., t]])
                lv = gt[..., t] == 1  # M&Ms: 1 = LV
                assert np.array_equal(lv, s.mask[..., t] == 3)
                assert np.array_equal(gt[..., t] == 3, s.mask[..., t] == 1)
            else:
                assert not gt[..., t].any()
    meta = json.loads((mnms_dir / "phantom.json").read_text())
    assert meta["labels"] == {"1": "LV", "2": "MYO", "3": "RV"}
    assert [r["id"] for r in meta["subjects"]] == [r[0] for r in body]


def test_subject_independent_of_cohort_size(tmp_path: Path, acdc_dir: Path):
    one = write_dataset(tmp_path / "one", 1, SEED, progress=False)
    a = (one / "training" / "patient001" / "patient001_4d_gt.nii.gz").read_bytes()
    b = (acdc_dir / "training" / "patient001" / "patient001_4d_gt.nii.gz").read_bytes()
    assert a == b


def test_stratified_plan():
    plans = [subject_plan(k, 0, ("A", "B", "C", "D"), ("NOR", "DCM", "HCM", "MINF", "RV")) for k in range(20)]
    assert {(p["vendor"], p["group"]) for p in plans} == {(v, g) for v in "ABCD" for g in ("NOR", "DCM", "HCM", "MINF", "RV")}
    assert len({p["seed"] for p in plans}) == 20


@pytest.mark.parametrize("kwargs, what", [
    (dict(n_subjects=0), "subjects"),
    (dict(n_subjects=-2), "subjects"),
    (dict(n_subjects=2.5), "subjects"),
    (dict(seed=-1), "seed"),
    (dict(layout="nifti"), "layout"),
    (dict(vendors=("A", "Z")), "vendor"),
    (dict(groups=("NOR", "FOO")), "group"),
    (dict(vendors=()), "vendors"),
])
def test_bad_parameters(tmp_path: Path, kwargs, what):
    args = dict(out_dir=tmp_path / "x", n_subjects=1, seed=0)
    args.update(kwargs)
    with pytest.raises(UserError, match=what):
        write_dataset(**args, progress=False)
    assert not (tmp_path / "x" / "phantom.json").exists()


def test_output_is_a_file(tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        write_dataset(f, 1, 0, progress=False)


def test_arv_alias_in_groups(tmp_path: Path):
    out = write_dataset(tmp_path / "arv", 1, 0, vendors=("C",), groups=("ARV",), progress=False)
    cfg = _cfg(out / "training" / "patient001" / "Info.cfg")
    assert cfg["Group"] == "RV" and cfg["Vendor"] == "C"


@pytest.mark.parametrize("layout", ["acdc", "mnms"])
def test_worker_processes_write_the_same_dataset(tmp_path: Path, acdc_dir: Path, mnms_dir: Path, layout: str):
    """Subjects made in 2 spawn workers are byte-identical to the sequential writer's, metadata included."""
    ref = acdc_dir if layout == "acdc" else mnms_dir
    par = write_dataset(tmp_path / layout, N, SEED, layout=layout, progress=False, workers=2)
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(par) for p in par.rglob("*") if p.is_file())
    for f in files:
        assert (ref / f).read_bytes() == (par / f).read_bytes(), f
