"""Cohort cache: a hit returns identical arrays without reading NIfTI; corruption is rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cohorts import cache as cache_mod
from cohorts.cache import cache_key, entry_dir, load_prepared
from cohorts.loaders import _common
from cohorts.preprocess import PreprocessConfig

CFG = PreprocessConfig(size=24)


def _same(a, b) -> None:
    assert a.ids == b.ids and a.data_hash == b.data_hash and a.config == b.config
    for x, y in zip(a.subjects, b.subjects):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.image.dtype == y.image.dtype == np.float32
        if x.mask is None:
            assert y.mask is None
        else:
            np.testing.assert_array_equal(x.mask, y.mask)
            assert y.mask.dtype == np.uint8
        np.testing.assert_array_equal(x.labelled, y.labelled)
        np.testing.assert_allclose(x.affine, y.affine)
        assert (x.vendor, x.group, x.ed, x.es, x.spacing) == (y.vendor, y.group, y.ed, y.es, y.spacing)
        assert x.metadata["crop_origin"] == y.metadata["crop_origin"]


@pytest.fixture
def no_nifti_reads(monkeypatch):
    """Make any NIfTI read fail loudly (to prove a warm load does not touch NIfTI files)."""

    def boom(*a, **k):
        raise AssertionError("NIfTI file read on a warm cache load")

    def arm():
        monkeypatch.setattr(_common, "read_nifti", boom)

    return arm


def test_hit_is_identical_and_reads_no_nifti(acdc_dir: Path, no_nifti_reads) -> None:
    cold = load_prepared(acdc_dir, CFG, progress=False)
    no_nifti_reads()
    warm = load_prepared(acdc_dir, CFG, progress=False)
    _same(cold, warm)


def test_key_depends_on_config_and_data(acdc_dir: Path, mnms_dir: Path) -> None:
    a = load_prepared(acdc_dir, CFG, progress=False)
    b = load_prepared(acdc_dir, PreprocessConfig(size=16), progress=False)
    assert a.subjects[0].image.shape[-1] == 24 and b.subjects[0].image.shape[-1] == 16
    assert cache_key(a.data_hash, CFG) != cache_key(a.data_hash, PreprocessConfig(size=16))
    m = load_prepared(mnms_dir, CFG, progress=False)
    assert cache_key(m.data_hash, CFG) != cache_key(a.data_hash, CFG)


def test_changed_data_misses(acdc_dir: Path) -> None:
    a = load_prepared(acdc_dir, CFG, progress=False)
    cfg = acdc_dir / "training" / "patient001" / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("Group: NOR", "Group: DCM"))
    b = load_prepared(acdc_dir, CFG, progress=False)
    assert a.data_hash != b.data_hash and b["patient001"].group == "DCM"


def _corrupt_npz(d: Path) -> None:
    npz = d / "arrays.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))


def _truncate_npz(d: Path) -> None:
    npz = d / "arrays.npz"
    npz.write_bytes(npz.read_bytes()[:1000])


def _drop_meta(d: Path) -> None:
    (d / "meta.json").unlink()


def _garble_meta(d: Path) -> None:
    (d / "meta.json").write_text("{ half a json")


def _wrong_shape(d: Path) -> None:
    meta = json.loads((d / "meta.json").read_text())
    meta["subjects"][0]["arrays"]["image"][0][0] += 1
    (d / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", [_corrupt_npz, _truncate_npz, _drop_meta, _garble_meta, _wrong_shape])
def test_corrupt_entry_is_rebuilt(acdc_dir: Path, damage, caplog) -> None:
    cold = load_prepared(acdc_dir, CFG, progress=False)
    d = entry_dir(cache_key(cold.data_hash, CFG))
    damage(d)
    again = load_prepared(acdc_dir, CFG, progress=False)
    _same(cold, again)
    # the rebuilt entry is valid again
    assert cache_mod.load(cold.data_hash, CFG) is not None


def test_corrupt_entry_is_never_trusted(acdc_dir: Path) -> None:
    cold = load_prepared(acdc_dir, CFG, progress=False)
    d = entry_dir(cache_key(cold.data_hash, CFG))
    _corrupt_npz(d)
    assert cache_mod.load(cold.data_hash, CFG) is None  # detected...
    assert not (d / "meta.json").exists()  # ...and removed


def test_use_cache_false_writes_nothing(acdc_dir: Path) -> None:
    p = load_prepared(acdc_dir, CFG, use_cache=False, progress=False)
    assert not entry_dir(cache_key(p.data_hash, CFG)).exists()


def test_mnms_roundtrip_with_unlabelled(tmp_path: Path, writers, no_nifti_reads) -> None:
    root = writers.write_mnms(tmp_path / "m", n=3, unlabeled=(2,))
    cold = load_prepared(root, CFG, progress=False)
    no_nifti_reads()
    warm = load_prepared(root, CFG, progress=False)
    _same(cold, warm)
    assert warm["A3B4C5"].mask is None


def test_worker_processes_prepare_the_same_cohort(acdc_dir: Path, monkeypatch) -> None:
    """Reading + preparing in 2 spawn workers gives the sequential result, subject order included."""
    from cohorts import parallel

    monkeypatch.setattr(parallel, "default_workers", lambda n, per_worker=4: 1)
    one = load_prepared(acdc_dir, CFG, progress=False, use_cache=False)
    monkeypatch.setattr(parallel, "default_workers", lambda n, per_worker=4: 2)
    two = load_prepared(acdc_dir, CFG, progress=False, use_cache=False)
    _same(one, two)


def test_a_bad_subject_in_a_worker_names_its_file(acdc_dir: Path, monkeypatch) -> None:
    from audit.core.errors import UserError
    from cohorts import parallel

    monkeypatch.setattr(parallel, "default_workers", lambda n, per_worker=4: 2)
    victim = sorted(acdc_dir.rglob("*_4d.nii.gz"))[-1]
    victim.write_bytes(b"not a nifti")
    with pytest.raises(UserError, match=victim.name):
        load_prepared(acdc_dir, CFG, progress=False, use_cache=False)
