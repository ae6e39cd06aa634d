"""Small synthetic cohorts for the privacy audit tests (fast; no phantom needed).

Each subject has its own smooth random "anatomy"; its slices are that pattern with a small
slice-to-slice change and pixel noise, so images of one subject are correlated (as in real
stacks) and different subjects are independent draws from one population.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from generators.data import SliceSet
from generators.sampleset import SampleSet


def population(n_subjects: int, per_subject: int = 5, size: int = 32, seed: int = 0, prefix: str = "s") -> SliceSet:
    rng = np.random.default_rng(seed)
    images = np.empty((n_subjects * per_subject, size, size), np.float32)
    for s in range(n_subjects):
        base = gaussian_filter(rng.standard_normal((size, size)), 3.0)
        base = (base - base.min()) / (np.ptp(base) + 1e-9)
        drift = gaussian_filter(rng.standard_normal((size, size)), 3.0)
        for j in range(per_subject):
            img = base + 0.15 * (j / per_subject) * drift / (np.abs(drift).max() + 1e-9)
            img = img + rng.normal(0, 0.02, img.shape)
            images[s * per_subject + j] = np.clip(img, 0, 1)
    n = len(images)
    masks = np.zeros(images.shape, np.uint8)
    masks[:, 10:20, 10:20] = 3
    return SliceSet(
        images=images, masks=masks, labelled=np.ones(n, bool),
        subject_ids=np.repeat([f"{prefix}{i:03d}" for i in range(n_subjects)], per_subject),
        vendor=np.array(["A", "B"] * (n // 2) + ["A"] * (n % 2)), group=np.array(["NOR"] * n),
        spacing=np.array([1.5, 1.5], np.float32),
    )


def copies(pool: SliceSet, n: int, seed: int = 0) -> SampleSet:
    """What the ``copycat`` reference generator does: pool images with a gamma change and 1 % noise."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pool), n, replace=n > len(pool))
    gamma = rng.uniform(0.95, 1.05, (n, 1, 1)).astype(np.float32)
    images = np.clip(np.clip(pool.images[idx], 0, 1) ** gamma + rng.normal(0, 0.01, (n, *pool.shape)), 0, 1)
    return SampleSet(images=images.astype(np.float32), spacing=pool.spacing, masks=pool.masks[idx],
                     subject_ids=pool.subject_ids[idx])


def replay(pool: SliceSet, n: int, seed: int = 0) -> SampleSet:
    """What the ``holdout`` reference generator does: real images of unseen (reference) subjects."""
    idx = np.random.default_rng(seed).choice(len(pool), n, replace=n > len(pool))
    return SampleSet(images=pool.images[idx].copy(), spacing=pool.spacing, masks=pool.masks[idx],
                     subject_ids=pool.subject_ids[idx])


@pytest.fixture(scope="session")
def cohort():
    """train / holdout / reference / a second population of unseen subjects (all independent)."""
    return {
        "train": population(40, seed=1, prefix="t"),
        "holdout": population(40, seed=2, prefix="h"),
        "reference": population(40, seed=3, prefix="r"),
        "unseen": population(40, seed=4, prefix="u"),
    }


@pytest.fixture(scope="session")
def make():
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(population=population, copies=copies, replay=replay)
