"""Preprocessing: exact shapes, label set kept, centroid centred, physical extent kept, slices()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.core.errors import UserError
from cohorts.loaders import load_cohort
from cohorts.preprocess import (
    PreprocessConfig,
    crop_or_pad,
    normalise_intensity,
    prepare,
    prepare_subject,
    resample_inplane,
    slices,
)
from cohorts.types import Subject

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _subject(h, w, z, t, sx, sy, centre, radius, seed=0, masked=True) -> Subject:
    rng = np.random.default_rng(seed)
    hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    d = np.hypot(hh - centre[0], ww - centre[1])
    m2 = np.zeros((h, w), np.uint8)
    m2[d < radius * 1.6] = 1
    m2[d < radius * 1.3] = 2
    m2[d < radius] = 3
    mask = np.broadcast_to(m2, (t, z, h, w)).copy()
    image = (rng.normal(0, 1, (t, z, h, w)) + mask * 10).astype(np.float32)
    labelled = np.zeros(t, bool)
    labelled[0] = True
    return Subject("s", "A", "1", "NOR", (sx, sy, 8.0), 0, t - 1, image, mask if masked else None, labelled if masked else np.zeros(t, bool), "x")


@FAST
@given(
    n=st.integers(1, 300),
    s=st.floats(0.5, 3.0),
    t=st.floats(0.5, 3.0),
)
def test_resample_preserves_extent(n, s, t) -> None:
    a = np.random.default_rng(0).random((2, n, 3)).astype(np.float32)
    out = resample_inplane(a, (s, t), t, order=1)  # last axis already at target
    assert out.shape[0] == 2 and out.shape[2] == 3 and out.dtype == np.float32
    # physical extent n * s is kept to within half an output pixel
    assert abs(out.shape[1] * t - n * s) <= t / 2 + 1e-9 or out.shape[1] == 1
    # linear interpolation never leaves the input range
    assert out.min() >= a.min() - 1e-6 and out.max() <= a.max() + 1e-6


def test_resample_identity_and_constant() -> None:
    a = np.random.default_rng(0).random((3, 10, 12)).astype(np.float32)
    np.testing.assert_array_equal(resample_inplane(a, (1.5, 1.5), 1.5, order=1), a)
    c = np.full((10, 12), 7.0, np.float32)
    np.testing.assert_allclose(resample_inplane(c, (1.3, 1.7), 1.5, order=1), 7.0)
    # upsampling by exactly 2 with linear interpolation keeps a linear ramp linear in the interior
    ramp = np.tile(np.arange(10, dtype=np.float32), (4, 1))
    up = resample_inplane(ramp, (1.0, 2.0), 1.0, order=1)
    assert up.shape == (4, 20)
    np.testing.assert_allclose(np.diff(up[0, 2:-2]), 0.5, atol=1e-6)


@FAST
@given(
    h=st.integers(20, 90),
    w=st.integers(20, 90),
    sx=st.floats(0.8, 2.2),
    sy=st.floats(0.8, 2.2),
    size=st.integers(8, 64),
    target=st.floats(1.0, 2.0),
    fh=st.floats(0.25, 0.75),
    fw=st.floats(0.25, 0.75),
    radius=st.floats(2.5, 6.0),
)
def test_prepare_properties(h, w, sx, sy, size, target, fh, fw, radius) -> None:
    subj = _subject(h, w, 2, 3, sx, sy, (fh * (h - 1), fw * (w - 1)), radius)
    cfg = PreprocessConfig(target_spacing=target, size=size)
    out = prepare_subject(subj, cfg)
    # exact shapes and dtypes
    assert out.image.shape == (3, 2, size, size) and out.image.dtype == np.float32
    assert out.mask is not None and out.mask.shape == out.image.shape and out.mask.dtype == np.uint8
    assert out.spacing == (target, target, 8.0)
    # masks stay in {0..3}; nearest neighbour invents no label
    assert set(np.unique(out.mask)) <= set(np.unique(subj.mask))
    # intensities in [0, 1] after percentile normalisation
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    # if the whole heart fits in the window, the label set is kept and its centroid is centred
    footprint = (out.mask[0] > 0).any(axis=0)
    heart_mm = 2 * radius * 1.6 * max(sx, sy)
    if heart_mm + 4 * target < size * target:
        ring_mm = 0.3 * radius * min(sx, sy)  # thinnest structure
        if ring_mm >= 1.5 * target:  # thick enough that nearest-neighbour sampling must hit it
            assert set(np.unique(out.mask)) == {0, 1, 2, 3}
        hh, ww = np.nonzero(footprint)
        assert abs(hh.mean() - size // 2) <= 0.5 + 1e-6
        assert abs(ww.mean() - size // 2) <= 0.5 + 1e-6


def test_affine_tracks_crop() -> None:
    subj = _subject(60, 50, 1, 2, 1.25, 1.75, (20.0, 30.0), 4)
    subj.affine = np.diag([1.25, 1.75, 8.0, 1.0])
    out = prepare_subject(subj, PreprocessConfig(size=32, target_spacing=1.5))
    # world position of the LV centroid before and after
    def world_centroid(s: Subject) -> np.ndarray:
        hh, ww = np.nonzero(s.mask[0, 0] == 3)
        return (s.affine @ np.array([hh.mean(), ww.mean(), 0.0, 1.0]))[:3]

    np.testing.assert_allclose(world_centroid(out), world_centroid(subj), atol=1.0)


def test_no_mask_uses_image_centre() -> None:
    subj = _subject(40, 30, 1, 2, 1.5, 1.5, (5.0, 5.0), 3, masked=False)
    out = prepare_subject(subj, PreprocessConfig(size=16))
    assert out.mask is None
    assert out.metadata["heart_centre"] == [19.5, 14.5]


def test_pad_when_image_smaller_than_size() -> None:
    a = np.ones((2, 5, 6), np.float32)
    out = crop_or_pad(a, (-3, -2), 12)
    assert out.shape == (2, 12, 12) and out.sum() == 2 * 30


def test_intensity_uses_only_subject_pixels() -> None:
    x = np.arange(1000, dtype=np.float32).reshape(10, 100)
    out, stats = normalise_intensity(x, PreprocessConfig())
    assert stats["low"] == pytest.approx(np.percentile(x, 0.5))
    assert out.min() == 0.0 and out.max() == 1.0
    z, st_ = normalise_intensity(x, PreprocessConfig(intensity="zscore"))
    assert abs(float(z.mean())) < 1e-4 and st_["method"] == "zscore"


def test_bad_config() -> None:
    for kw in ({"target_spacing": 0}, {"size": 3}, {"intensity": "magic"}, {"percentiles": (50, 10)}):
        with pytest.raises(UserError, match="preprocessing"):
            PreprocessConfig(**kw)


def test_prepare_cohort_and_slices(acdc_dir: Path) -> None:
    cohort = load_cohort(acdc_dir, progress=False)
    prepared = prepare(cohort, PreprocessConfig(size=24), progress=False)
    assert prepared.data_hash == cohort.data_hash and prepared.config.size == 24
    imgs, msks, index = slices(prepared, frames="labelled")
    # patient001: 5 labelled frames (4D gt), patient002/3: ED+ES; 3 slices each
    assert imgs.shape == ((5 + 2 + 2) * 3, 24, 24) and imgs.dtype == np.float32
    assert msks.shape == imgs.shape and msks.dtype == np.uint8
    assert list(index.columns) == ["subject_id", "frame", "slice", "vendor", "group", "labelled"]
    assert index["labelled"].all()
    i2, m2, ix2 = slices(prepared, ["patient002"], frames="all")
    assert i2.shape[0] == 5 * 3 and ix2["labelled"].sum() == 2 * 3
    assert not m2[~ix2["labelled"].to_numpy()].any()  # unlabelled frames: zero masks, flagged
    i3, _, ix3 = slices(prepared, ["patient003", "patient001"], frames="ed_es")
    assert list(ix3["subject_id"].unique()) == ["patient001", "patient003"]  # cohort order
    assert i3.shape[0] == 2 * 2 * 3
    with pytest.raises(UserError, match="unknown subject"):
        slices(prepared, ["nobody"])
    with pytest.raises(UserError, match="frames"):
        slices(prepared, frames="some")  # type: ignore[arg-type]


@FAST
@given(
    h=st.integers(5, 60),
    w=st.integers(5, 60),
    sx=st.floats(0.7, 2.5),
    sy=st.floats(0.7, 2.5),
    target=st.floats(1.0, 2.0),
    a=st.floats(0, 1),
    b=st.floats(0, 1),
    order=st.sampled_from([0, 1]),
)
def test_windowed_resample_equals_full_then_crop(h, w, sx, sy, target, a, b, order) -> None:
    from cohorts.preprocess import resampled_size

    arr = np.random.default_rng(1).random((2, h, w)).astype(np.float32)
    full = resample_inplane(arr, (sx, sy), target, order=order)
    nh, nw = resampled_size(h, sx, target), resampled_size(w, sy, target)
    assert full.shape[-2:] == (nh, nw)
    h0, w0 = int(a * (nh - 1)), int(b * (nw - 1))
    h1, w1 = min(nh, h0 + 7), min(nw, w0 + 5)
    win = resample_inplane(arr, (sx, sy), target, order=order, out_range=((h0, h1), (w0, w1)))
    np.testing.assert_array_equal(win, full[:, h0:h1, w0:w1])


def _phantom_subject(seed: int) -> Subject:
    from cohorts.phantom.generator import generate_subject

    p = generate_subject(f"p{seed}", seed)
    image = np.ascontiguousarray(np.transpose(p.image, (3, 2, 0, 1)), np.float32)  # (X,Y,Z,T) -> (T,Z,H,W)
    mask = np.ascontiguousarray(np.transpose(p.mask, (3, 2, 0, 1)), np.uint8)
    labelled = np.zeros(image.shape[0], bool)
    labelled[[p.ed, p.es]] = True
    return Subject(p.subject_id, p.vendor, "1", p.group, p.spacing, p.ed, p.es, image, mask, labelled, "x")


def test_motion_centre_is_label_free_and_near_the_heart() -> None:
    cfg = PreprocessConfig(size=64, target_spacing=1.5, centre="motion")
    for seed in (0, 1, 2):
        subj = _phantom_subject(seed)
        by_mask = prepare_subject(subj, PreprocessConfig(size=64, target_spacing=1.5))
        out = prepare_subject(subj, cfg)
        err_mm = 1.5 * np.hypot(*np.subtract(out.metadata["heart_centre"], by_mask.metadata["heart_centre"]))
        assert err_mm < 20.0, (seed, err_mm)
        # the masks are cropped with the same window and never place it
        blind = prepare_subject(subj.with_arrays(mask=None, labelled=np.zeros_like(subj.labelled)), cfg)
        assert blind.metadata["heart_centre"] == out.metadata["heart_centre"]
        assert out.mask is not None and out.mask.shape == out.image.shape


def test_centre_option_is_part_of_the_key() -> None:
    mask, motion = PreprocessConfig(), PreprocessConfig(centre="motion")
    assert mask.key() != motion.key()
    assert "centre" not in mask.to_dict()  # the default keeps the keys of configs written before the option
    assert PreprocessConfig.from_dict(motion.to_dict()) == motion
    with pytest.raises(UserError, match="centre"):
        PreprocessConfig(centre="oracle")
    one_frame = np.zeros((1, 2, 8, 8), np.float32)
    from cohorts.preprocess import motion_centre

    assert motion_centre(one_frame) is None and motion_centre(np.zeros((3, 2, 8, 8), np.float32)) is None
