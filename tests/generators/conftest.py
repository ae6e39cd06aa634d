"""Small synthetic training data for generator mechanics tests (fast; no cohort needed)."""

import numpy as np
import pytest

from generators.data import SliceSet


def ring_slices(n=24, size=32, seed=0, prefix="t"):
    """Bright LV disc inside a grey myocardial ring with an RV crescent, on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        r = np.hypot(yy - cy, xx - cx)
        r_lv = size * rng.uniform(0.12, 0.18)
        wall = size * 0.07
        rv = (np.hypot(yy - cy, xx - (cx - r_lv - wall)) < r_lv * 1.1) & (r > r_lv + wall)
        masks[i][rv] = 1
        masks[i][(r >= r_lv) & (r < r_lv + wall)] = 2
        masks[i][r < r_lv] = 3
        img = 0.15 + 0.05 * rng.standard_normal((size, size))
        img[masks[i] == 3] = 0.85
        img[masks[i] == 1] = 0.8
        img[masks[i] == 2] = 0.35
        images[i] = np.clip(img, 0, 1)
    return SliceSet(
        images=images, masks=masks, labelled=np.ones(n, bool),
        subject_ids=np.array([f"{prefix}{i // 4}" for i in range(n)]),
        vendor=np.array(["A", "B"] * (n // 2)), group=np.array(["NOR"] * n),
        spacing=np.array([1.5, 1.5], np.float32),
    )


@pytest.fixture
def rings():
    return ring_slices()
