"""``audit.utility.multiscale``: zooms checked in closed form, averaging checked on pixelwise nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.utility.multiscale import _zoom, multiscale_probs, parse_scales
from audit.utility.net import build_net, predict


def test_parse_scales():
    assert parse_scales("1.1, 0.9,1,1") == (0.9, 1.0, 1.1)
    assert parse_scales("1") == (1.0,)
    for bad, word in (("0.3", "in \\[0.5, 2\\]"), ("2.5", "in \\[0.5, 2\\]"), ("a", "not a number"), (" , ", "at least one")):
        with pytest.raises(ValueError, match=word):
            parse_scales(bad)


@pytest.mark.parametrize("factor", [2.0, 1.1, 0.9])
def test_zoom_magnifies_a_ramp_about_the_centre(factor):
    # f(i, j) = j; grid_sample with align_corners=False puts column j at u = (2j + 1) / W - 1, and a zoom by
    # `factor` reads u / factor: bilinear interpolation of a linear ramp is exact wherever it stays inside
    w = 32
    ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, w, w).clone()
    out = _zoom(ramp, factor, "zeros")[0, 0]
    u = (2 * np.arange(w) + 1) / w - 1
    expected = ((u / factor + 1) * w - 1) / 2
    inside = (expected >= 0) & (expected <= w - 1)
    n = int(inside.sum())  # rows read outside the image too when the zoom shrinks it
    np.testing.assert_allclose(out.numpy()[np.ix_(inside, inside)], np.broadcast_to(expected[inside], (n, n)), atol=1e-9)


def _pixelwise(x: torch.Tensor) -> torch.Tensor:
    """Logits that depend on each pixel alone: zooming and un-zooming commute with it (the
    probabilities come back float32, as from a bf16 autocast net)."""
    return torch.cat([4 * x, -4 * x, 2 * x - 1, torch.zeros_like(x)], 1)


def test_a_single_scale_of_one_is_the_plain_softmax():
    x = torch.rand(3, 1, 24, 24)
    torch.testing.assert_close(multiscale_probs(_pixelwise, x, (1.0,)), _pixelwise(x).softmax(1))


def test_zooms_in_of_a_constant_image_change_nothing():
    x = torch.full((2, 1, 20, 20), 0.7)
    torch.testing.assert_close(multiscale_probs(_pixelwise, x, (1.0, 1.25, 1.5)), _pixelwise(x).softmax(1))


def test_smooth_image_gives_nearly_the_plain_probabilities_inside():
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    x = torch.from_numpy(0.5 + 0.3 * np.sin(2 * yy) * np.cos(3 * xx)).float().reshape(1, 1, 48, 48)
    p = multiscale_probs(_pixelwise, x, (0.9, 1.0, 1.1))
    assert p.shape == (1, 4, 48, 48)
    torch.testing.assert_close(p.sum(1), torch.ones(1, 48, 48))
    inner = (slice(None), slice(None), slice(6, 42), slice(6, 42))
    assert float((p - _pixelwise(x).softmax(1))[inner].abs().max()) < 0.02


def test_predict_with_scales():
    torch.manual_seed(0)
    net = build_net(4)
    images = np.random.default_rng(0).random((5, 32, 32), dtype=np.float32)
    plain = predict(net, images)
    np.testing.assert_array_equal(predict(net, images, scales=(1.0,)), plain)
    multi = predict(net, images, scales=(0.9, 1.0, 1.1), batch_size=2)
    assert multi.shape == images.shape and multi.dtype == np.uint8 and set(np.unique(multi)) <= {0, 1, 2, 3}
    net.utility_scales = (0.9, 1.0, 1.1)  # what train_segmenter sets from TrainSpec.scales
    np.testing.assert_array_equal(predict(net, images, batch_size=2), multi)
