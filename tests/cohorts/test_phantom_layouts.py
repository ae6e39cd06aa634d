"""The real phantom (``cohorts.phantom.write_dataset``) through the loaders, in both layouts.

The label check is orientation-
independent: in the internal order the LV (3) is enclosed by the MYO (2), so nearly every
LV border pixel touches MYO, while the RV (1) touches MYO only along the septum. A
loader that forgot (or doubled) the M&Ms remap fails it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

phantom = pytest.importorskip("cohorts.phantom")

from cohorts.cache import load_prepared  # noqa: E402
from cohorts.describe import describe  # noqa: E402
from cohorts.loaders import load_cohort  # noqa: E402
from cohorts.preprocess import PreprocessConfig, slices  # noqa: E402
from cohorts.splits import make_splits  # noqa: E402
from cohorts.validate import validate  # noqa: E402

pytestmark = pytest.mark.slow
N = 4


@pytest.fixture(scope="module")
def phantoms(module_tmp) -> dict[str, Path]:
    out = {}
    for layout in ("acdc", "mnms"):
        out[layout] = module_tmp(f"phantom-{layout}")
        phantom.write_dataset(out[layout], N, 7, layout=layout, progress=False)
    return out


@pytest.fixture(params=["acdc", "mnms"])
def phantom_dir(request, phantoms) -> Path:
    return phantoms[request.param]


def test_same_phantom_in_both_layouts_loads_identically(phantoms) -> None:
    """Same seed, two layouts: after the loader's remap, images and ED/ES masks are identical."""
    a = load_cohort(phantoms["acdc"], progress=False)
    m = load_cohort(phantoms["mnms"], progress=False)
    order = [r["id"] for r in json.loads((phantoms["mnms"] / "phantom.json").read_text())["subjects"]]
    for sa, code in zip(a, order):
        sm = m[code]
        np.testing.assert_array_equal(sa.image, sm.image)
        for t in (sa.ed, sa.es):
            np.testing.assert_array_equal(sa.mask[t], sm.mask[t])
        assert sm.labelled.sum() == len({sm.ed, sm.es}) and sa.labelled.all()


def _touch_fraction(mask2d: np.ndarray, label: int, other: int) -> float:
    region = mask2d == label
    if not region.any():
        return np.nan
    border = region & ~ndimage.binary_erosion(region)
    near_other = ndimage.binary_dilation(mask2d == other)
    return float((border & near_other).sum() / border.sum())


def test_phantom_loads_and_validates(phantom_dir: Path) -> None:
    assert validate(phantom_dir, progress=False) == []
    c = load_cohort(phantom_dir, progress=False)
    assert len(c) == N
    lv_touch, rv_touch = [], []
    for s in c:
        assert s.image.dtype == np.float32 and s.mask is not None and s.mask.dtype == np.uint8
        assert set(np.unique(s.mask)) <= {0, 1, 2, 3}
        assert s.labelled[s.ed] and s.labelled[s.es]
        mid = s.n_slices // 2
        lv_touch.append(_touch_fraction(s.mask[s.ed, mid], 3, 2))
        rv_touch.append(_touch_fraction(s.mask[s.ed, mid], 1, 2))
        ef = s.ejection_fraction()
        assert ef is not None and 5 < ef["ef"] < 90
    assert np.nanmean(lv_touch) > 0.8, lv_touch  # LV ringed by myocardium: labels in internal order
    assert np.nanmean(rv_touch) < np.nanmean(lv_touch)


def test_phantom_matches_ground_truth(phantom_dir: Path) -> None:
    """ED/ES, spacing, vendor and the mask-derived EDV/ESV/EF agree with phantom.json."""
    gt = json.loads((phantom_dir / "phantom.json").read_text())
    records = {r["id"]: r for r in gt["subjects"]}
    c = load_cohort(phantom_dir, progress=False)
    assert sorted(records) == sorted(c.ids)
    for s in c:
        r = records[s.subject_id]
        assert (s.ed, s.es, s.vendor) == (r["ed"], r["es"], r["vendor"])
        assert s.image.shape[:2] == (r["n_frames"], r["n_slices"])
        assert s.spacing == pytest.approx(tuple(r["spacing_mm"]), rel=1e-5)
        # the group code is the dataset's own: ACDC "RV", M&Ms "ARV"
        assert s.group == ({"RV": "ARV"}.get(r["group"], r["group"]) if c.layout == "mnms" else r["group"])
        ef = s.ejection_fraction()
        assert ef["edv"] == pytest.approx(r["edv_ml"], rel=1e-3)
        assert ef["esv"] == pytest.approx(r["esv_ml"], rel=1e-3)
        assert ef["ef"] == pytest.approx(r["ef_percent"], abs=0.1)


def test_phantom_prepare_cache_split_describe(phantom_dir: Path) -> None:
    cfg = PreprocessConfig(size=64)
    p = load_prepared(phantom_dir, cfg, progress=False)
    again = load_prepared(phantom_dir, cfg, progress=False)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(p, again))
    images, masks, index = slices(p, frames="ed_es")
    assert images.shape[1:] == (64, 64) and masks.max() <= 3 and len(index) == images.shape[0]
    s = make_splits(p, seed=0)
    assert sorted(i for v in s.assignments.values() for i in v) == sorted(p.ids)
    d = describe(phantom_dir, progress=False)
    assert d.n_subjects == N and d.ef["n"] == N
