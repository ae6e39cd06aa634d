"""``audit.utility.postprocess``: the largest connected heart, checked against scipy's labelling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from audit.utility.postprocess import keep_largest_heart, postprocess


def _reference(m: np.ndarray) -> np.ndarray:
    """Independent reference: scipy 8-connected labelling of the foreground, largest component kept."""
    lab, n = ndimage.label(m > 0, structure=np.ones((3, 3)))
    if n == 0:
        return m.copy()
    sizes = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    return np.where(lab == 1 + int(np.argmax(sizes)), m, 0).astype(np.uint8)


def test_touching_structures_stay_and_a_distant_blob_goes():
    m = np.zeros((1, 48, 48), np.uint8)
    m[0, 10:30, 10:20] = 1  # RV
    m[0, 10:30, 20:24] = 2  # myocardium touching it
    m[0, 10:30, 24:34] = 3  # LV touching the myocardium
    m[0, 40:43, 40:43] = 3  # a stray LV blob far away
    m[0, 30, 34] = 2  # a pixel touching the heart only diagonally: 8-connected, kept
    out = keep_largest_heart(m)
    assert out.dtype == np.uint8 and out.shape == m.shape
    assert out[0, 40:43, 40:43].sum() == 0 and out[0, 30, 34] == 2
    np.testing.assert_array_equal(out[0, :35, :35], m[0, :35, :35])


def test_matches_scipy_on_random_maps_and_leaves_empty_maps_alone():
    rng = np.random.default_rng(0)
    maps = np.zeros((12, 40, 40), np.uint8)
    for i in range(1, 12):  # random blobs of random labels
        for _ in range(rng.integers(1, 6)):
            y, x, h, w = rng.integers(0, 36), rng.integers(0, 36), rng.integers(1, 10), rng.integers(1, 10)
            maps[i, y:y + h, x:x + w] = rng.integers(1, 4)
    out = keep_largest_heart(maps)
    for i in range(len(maps)):
        lab, n = ndimage.label(maps[i] > 0, structure=np.ones((3, 3)))
        sizes = np.sort(np.bincount(lab.ravel())[1:])
        if n > 1 and sizes[-1] == sizes[-2]:  # a tie: either largest component is right
            assert (out[i] > 0).sum() == sizes[-1]
            continue
        np.testing.assert_array_equal(out[i], _reference(maps[i]))
    assert not out[0].any()  # the empty map is unchanged
    assert np.array_equal(postprocess(maps, "none"), maps)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown post-processing"):
        postprocess(np.zeros((1, 4, 4), np.uint8), "biggest")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        keep_largest_heart(np.zeros((4, 4), np.uint8))
