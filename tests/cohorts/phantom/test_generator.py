"""The phantom generator: determinism, shapes, acquisition ranges, physiology by group."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from audit.core.errors import UserError
from cohorts.phantom import GROUP_RANGES, GROUPS, VENDORS, generate_subject
from cohorts.phantom.params import bsa_mosteller

# small, fast subjects for property tests (the anatomy is unchanged, only the grid)
SMALL = dict(matrix=(128, 128), pixel_mm=2.2, n_frames=20)


@pytest.fixture(scope="module")
def cohort():
    """Two subjects per group (different vendors), default size."""
    out = []
    for gi, g in enumerate(GROUPS):
        for k in range(2):
            v = VENDORS[(gi + k) % len(VENDORS)]
            out.append(generate_subject(f"{g}{k}", 1000 + 10 * gi + k, vendor=v, group=g))
    return out


def test_determinism():
    a = generate_subject("x", 42, "B", "DCM")
    b = generate_subject("x", 42, "B", "DCM")
    c = generate_subject("x", 43, "B", "DCM")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.info == b.info and a.spacing == b.spacing and a.es == b.es
    assert not np.array_equal(a.mask, c.mask)


def test_shapes_dtypes_ranges(cohort):
    for s in cohort:
        X, Y, Z, T = s.image.shape
        assert s.image.dtype == np.float32 and s.mask.dtype == np.uint8
        assert s.mask.shape == s.image.shape
        assert 8 <= Z <= 12, Z
        assert 20 <= T <= 30, T
        assert 192 <= X <= 256 and 192 <= Y <= 256
        sx, sy, sz = s.spacing
        assert sx == sy and 1.25 <= sx <= 1.8
        assert 8.0 <= sz <= 10.0
        assert np.isfinite(s.image).all() and s.image.min() >= 0 and s.image.max() <= 32767
        assert np.array_equal(s.image, np.rint(s.image))  # integer-valued, int16-safe
        assert set(np.unique(s.mask)) == {0, 1, 2, 3}
        for t in range(T):  # every frame labelled
            assert (s.mask[..., t] == 3).any() and (s.mask[..., t] == 2).any()


def test_ed_es_position(cohort):
    for s in cohort:
        assert s.ed == 0
        assert 0.35 <= s.es / s.n_frames <= 0.40, (s.es, s.n_frames)
        lv = (s.mask == 3).sum(axis=(0, 1, 2))
        assert lv.argmax() == 0 and lv.argmin() == s.es
        assert s.frame_interval_ms * s.n_frames == pytest.approx(s.frame_interval_ms * s.n_frames)


def test_ground_truth_from_masks(cohort):
    s = cohort[0]
    vox = np.prod(s.spacing) / 1000.0
    assert s.info["edv_ml"] == pytest.approx((s.mask[..., 0] == 3).sum() * vox, abs=2e-3)
    assert s.info["esv_ml"] == pytest.approx((s.mask[..., s.es] == 3).sum() * vox, abs=2e-3)
    assert s.info["ef_percent"] == pytest.approx(100 * (1 - s.info["esv_ml"] / s.info["edv_ml"]), abs=1e-2)
    assert s.info["lv_mass_g"] == pytest.approx((s.mask[..., 0] == 2).sum() * vox * 1.05, abs=2e-3)


def test_groups_in_literature_ranges(cohort):
    """ACDC criteria (Bernard et al. 2018) and Kawel-Boehm 2015/2020 normal ranges, from masks."""
    for s in cohort:
        i = s.info
        bsa = bsa_mosteller(i["height_cm"], i["weight_kg"])
        edvi, ef = i["edv_ml"] / bsa, i["ef_percent"]
        lo, hi = GROUP_RANGES[s.group].ef
        assert lo - 3 <= ef <= hi + 3, (s.group, ef)
        lo, hi = GROUP_RANGES[s.group].edvi
        assert lo * 0.95 <= edvi <= hi * 1.05, (s.group, edvi)
        if s.group == "NOR":
            assert ef > 55 and 55 <= edvi <= 105 and i["wall_thickness_mm"] <= 10.5
        elif s.group == "DCM":
            assert ef < 40 and edvi > 100
        elif s.group == "HCM":
            assert ef > 55 and i["max_wall_thickness_mm"] > 15 and i["lv_mass_g"] / bsa > 105
        elif s.group == "MINF":
            assert ef < 40
        elif s.group == "RV":
            assert i["rv_ef_percent"] < 40 or i["rv_edv_ml"] / bsa > 110


def test_myocardial_volume_constant_over_cycle():
    """With a fine stack covering the whole heart, myocardial volume barely changes (base
    descent + wall thickening conserve it; residual = voxelisation)."""
    s = generate_subject("m", 7, "A", "NOR", slice_mm=2.0, n_slices=60, first_slice_mm=-20.0,
                         noise_scale=0.0, **SMALL)
    myo = (s.mask == 2).sum(axis=(0, 1, 2)).astype(float)
    assert myo.max() / myo.min() < 1.06, myo
    # the wall thickens: at ES the LV cavity is smaller while myocardium is conserved
    assert (s.mask[..., s.es] == 3).sum() < 0.6 * (s.mask[..., 0] == 3).sum()


def test_vendors_differ():
    """Same anatomy seed, different vendor: different intensity scale and noise (domain shift)."""
    stats = {}
    for v in VENDORS:
        s = generate_subject("v", 5, v, "NOR")
        z = s.n_slices // 2
        blood = s.image[..., z, 0][s.mask[..., z, 0] == 3]
        myo = s.image[..., z, 0][s.mask[..., z, 0] == 2]
        stats[v] = (float(np.median(blood)), float(np.median(myo) / np.median(blood)))
    scales = sorted(b for b, _ in stats.values())
    assert scales[-1] / scales[0] > 3
    ratios = [r for _, r in stats.values()]
    assert max(ratios) - min(ratios) > 0.05
    for b, r in stats.values():
        assert 0.15 < r < 0.5  # bSSFP: grey myocardium, bright blood


@pytest.mark.parametrize("kwargs, what", [
    (dict(vendor="E"), "vendor"),
    (dict(group="XYZ"), "group"),
    (dict(n_slices=-1), "n_slices"),
    (dict(pixel_mm=-1.0), "pixel_mm"),
    (dict(matrix=(0, 10)), "matrix"),
    (dict(n_frames=2.5), "n_frames"),
    (dict(bogus=1), "bogus"),
])
def test_bad_parameters(kwargs, what):
    with pytest.raises(UserError, match=what):
        generate_subject("bad", 1, **kwargs)


def test_bad_seed():
    with pytest.raises(UserError, match="seed"):
        generate_subject("bad", -3)


def test_arv_alias():
    s = generate_subject("a", 3, "A", "ARV", **SMALL)
    assert s.group == "RV"


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), vendor=st.sampled_from(VENDORS), group=st.sampled_from(GROUPS))
def test_anatomy_properties(seed, vendor, group):
    """Any subject: LV enclosed by myocardium, RV outside it and touching the septum, ED the
    largest and ES the smallest LV volume, intensities finite and non-negative."""
    s = generate_subject("h", seed, vendor, group, **SMALL)
    assert np.isfinite(s.image).all() and s.image.min() >= 0
    lv = (s.mask == 3).sum(axis=(0, 1, 2))
    assert lv[0] == lv.max() and lv[s.es] == lv.min()
    for t in (s.ed, s.es):
        for z in range(s.n_slices):
            m = s.mask[..., z, t]
            if not (m == 3).any():
                continue
            ring = ndimage.binary_dilation(m == 3) & (m != 3)
            assert np.all(m[ring] == 2), "LV must be enclosed by myocardium"
    z = s.n_slices // 3
    m = s.mask[..., z, 0]
    assert (ndimage.binary_dilation(m == 1) & (m == 2)).any(), "RV must touch the septum"
