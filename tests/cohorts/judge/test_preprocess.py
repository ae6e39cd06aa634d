"""Fast tests of the judge preprocessing (no network needed)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.errors import UserError
from cohorts.judge import preprocess as P


@pytest.mark.parametrize("shape", [(256, 256), (128, 128), (216, 256), (300, 180), (97, 131)])
@pytest.mark.parametrize("fov", ["square", "acdc"])
def test_round_trip_shape_and_background_outside(shape, fov):
    img = np.random.default_rng(0).random(shape).astype(np.float32) + 0.1
    x, g = P.to_network(img, (1.5, 1.5), fov)
    assert x.shape == (256, 256) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    back = P.from_network(np.ones((256, 256), np.uint8), g)
    assert back.shape == shape and back.dtype == np.uint8
    # plain square recipe: exactly the centred square of the shorter side is labelled
    if fov == "square":
        side = min(shape)
        assert back.sum() == side * side
        r0, c0 = (shape[0] - side) // 2, (shape[1] - side) // 2
        assert back[r0:r0 + side, c0:c0 + side].all()


def test_round_trip_labels_survive_a_known_grid():
    """A block pattern sent through the forward geometry (nearest) comes back identical."""
    lab = np.zeros((128, 128), np.uint8)
    lab[32:96, 32:64], lab[32:96, 64:96] = 1, 3
    for fov in ("square", "acdc"):
        g = P.plan_geometry(lab.shape, (1.5, 1.5), fov)
        # forward with nearest: the 256 grid samples the (h, w) region (zero outside the image)
        region = P._extract(lab.astype(np.float32), g)
        idx_r = P._nearest_index(256, g.h)
        idx_c = P._nearest_index(256, g.w)
        net = region[np.ix_(idx_r, idx_c)].astype(np.uint8)
        back = P.from_network(net, g)
        mismatch = (back != lab).mean()
        assert mismatch < 0.01, (fov, mismatch)


def test_acdc_fov_pads_small_crops_and_keeps_acdc_like_ones():
    small = P.plan_geometry((128, 128), (1.5, 1.5), "acdc")
    assert small.h == small.w == round(P.ACDC_FOV_TARGET_MM / 1.5) and small.r0 < 0
    acdc_like = P.plan_geometry((216, 256), (1.56, 1.56), "acdc")
    assert (acdc_like.h, acdc_like.w, acdc_like.r0, acdc_like.c0) == (216, 216, 0, 20)
    # anisotropic pixels: the square is square in millimetres
    aniso = P.plan_geometry((200, 200), (1.5, 2.0), "square")
    assert aniso.h * 1.5 == pytest.approx(aniso.w * 2.0, rel=0.01)


def test_percentile_scaling_closed_form():
    img = np.zeros((256, 256), np.float32)
    vals = np.arange(1, 1001, dtype=np.float32)
    img.flat[: vals.size] = vals  # 1000 non-zero pixels, the rest zero
    x, _ = P.to_network(img, (1.0, 1.0), "square")  # 256 x 256 at 256 mm: no resize
    lo, hi = np.percentile(vals, [0.5, 99.5])
    expected = (np.clip(img, lo, hi) - lo) / (hi - lo)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    assert x.flat[0] == 0.0 and x.flat[999] == 1.0


def test_all_zero_and_constant_slices_give_zero_input():
    assert not P.to_network(np.zeros((64, 64)), (1.5, 1.5))[0].any()
    assert not P.to_network(np.full((64, 64), 7.0), (1.5, 1.5))[0].any()


@pytest.mark.parametrize("bad", [(0, 1), (-1.0, 1.0), (np.nan, 1.0), (1.0,), "ab"])
def test_bad_spacing_is_a_user_error(bad):
    with pytest.raises(UserError, match="spacing"):
        P.plan_geometry((64, 64), bad)


def test_unknown_fov_is_a_user_error():
    with pytest.raises(UserError, match="fov"):
        P.plan_geometry((64, 64), (1.5, 1.5), "huge")  # type: ignore[arg-type]
