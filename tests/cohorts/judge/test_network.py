"""The judge network itself: needs the ONNX file (downloaded from PyPI on first use).

The int8 test is the contract of issue 4: int8 Dice (vs phantom ground truth) within 0.01 of
fp32 Dice per structure.
"""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.errors import UserError

pytestmark = [pytest.mark.judge, pytest.mark.slow]


@pytest.fixture(scope="module")
def slices():
    from cohorts.judge import phantom_slices

    # held-out seeds: calibration uses seed 1234.., these do not overlap
    return phantom_slices(n_subjects=4, seed=90210)


@pytest.fixture(scope="module")
def fp32():
    from cohorts.judge import Judge

    return Judge("fp32", progress=False)


@pytest.fixture(scope="module")
def int8():
    from cohorts.judge import Judge

    return Judge("int8", progress=False)


def _dice(judge, sets):
    from cohorts.judge import dice_per_class

    return np.nanmean([dice_per_class(judge.segment(s.images, s.spacing[0]), s.masks) for s in sets], axis=0)


def test_int8_dice_within_001_of_fp32(fp32, int8, slices):
    d32, d8 = _dice(fp32, slices), _dice(int8, slices)
    assert np.all(d32 > 0.6), d32  # the judge finds the heart at all
    assert np.all(np.abs(d8 - d32) <= 0.01), {"fp32": d32.round(4).tolist(), "int8": d8.round(4).tolist()}


def test_shapes_volume_and_features(fp32, slices):
    s = slices[0]
    vol = np.stack([s.images[:2], s.images[:2]])  # (T=2, Z=2, H, W)
    out = fp32.segment_volume(vol, s.spacing[0])
    assert out.shape == vol.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], out[1])
    one = fp32.segment(s.images[0], s.spacing[0])
    np.testing.assert_array_equal(one, out[0, 0])
    labels, feats = fp32.segment_and_features(s.images[:2], s.spacing[0])
    np.testing.assert_array_equal(labels, out[0])
    assert feats.shape == (2, 288) and np.isfinite(feats).all()
    assert not fp32.segment(np.zeros((64, 64)), (1.5, 1.5)).any()


def test_bad_inputs(fp32):
    with pytest.raises(UserError, match="5D"):
        fp32.segment_volume(np.zeros((1, 1, 1, 8, 8)))
    with pytest.raises(UserError, match="NaN"):
        fp32.segment(np.full((8, 8), np.nan))
    with pytest.raises(UserError, match="empty"):
        fp32.segment(np.zeros((0, 8, 8)))
    with pytest.raises(UserError, match="spacing"):
        fp32.segment(np.ones((8, 8)), (0.0, 1.0))


def test_int8_features_track_fp32(fp32, int8, slices):
    s = slices[1]
    l32, f32 = fp32.segment_and_features(s.images[:3], s.spacing[0])
    l8, f8 = int8.segment_and_features(s.images[:3], s.spacing[0])
    assert f8.shape == f32.shape == (3, 288)
    assert np.corrcoef(f32.ravel(), f8.ravel())[0, 1] > 0.99
    assert (l32 == l8).mean() > 0.99


def test_channel_padding_rewrite_is_exact(fp32):
    import onnxruntime as ort

    from cohorts.judge.graph import prepared_fp32_bytes

    x = np.random.default_rng(0).random((1, 1, 256, 256), dtype=np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    runs = [ort.InferenceSession(prepared_fp32_bytes(fp32.fp32_path, opset=o, rewrites=r), so,
                                 providers=["CPUExecutionProvider"]).run(None, {"input": x})
            for o, r in ((None, ()), (17, ("pad_growth_channels",)))]
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, atol=1e-4)
