"""Training-time augmentation of the utility nets: the training patch and the strong conventional
pipeline of the real+augmentation baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.utility.augment import random_crop, strong_augment
from audit.utility.net import Pool, TrainSpec, train_segmenter


def _disc_batch(b: int = 8, n: int = 64):
    yy, xx = np.mgrid[:n, :n]
    y = np.zeros((b, 1, n, n), np.int64)
    for i in range(b):
        cy, cx = 20 + 3 * i, 24 + 2 * i
        r = np.hypot(yy - cy, xx - cx)
        y[i, 0][r < 10] = 2
        y[i, 0][r < 6] = 3
    y = torch.from_numpy(y)
    return (y > 0).float(), y


def test_random_crop_shape_and_foreground_oversampling():
    x, y = _disc_batch()
    xa, ya = random_crop(x, y, torch.Generator().manual_seed(0), 32, foreground_p=1.0)
    assert xa.shape == (8, 1, 32, 32) and ya.shape == (8, 1, 32, 32)
    assert all(bool((ya[i] > 0).any()) for i in range(8))  # every patch centred on a labelled pixel
    assert torch.equal(xa, (ya > 0).float())  # image and mask cut from the same window
    xb, yb = random_crop(x, y, torch.Generator().manual_seed(0), 32, foreground_p=1.0)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    same = random_crop(x, y, torch.Generator().manual_seed(0), 64, foreground_p=1.0)
    assert same[0] is x and same[1] is y  # a patch as large as the image: unchanged


def test_random_crop_uniform_positions_cover_the_image():
    x, y = _disc_batch(b=64, n=64)
    y[:] = 0
    y[:, :, 0, 0] = 1  # one labelled corner pixel, never chosen with foreground_p = 0
    _, ya = random_crop(x, y, torch.Generator().manual_seed(1), 16, foreground_p=0.0)
    assert 0 < int((ya[:, 0, 0, 0] == 1).sum()) < 16  # uniform: the corner window is drawn now and then


def test_strong_augment_moves_image_and_mask_together_and_is_seeded():
    x, y = _disc_batch()
    xa, ya = strong_augment(3)(x, y)
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == torch.long and xa.dtype == torch.float32
    assert type(xa) is torch.Tensor and type(ya) is torch.Tensor  # no MONAI MetaTensor leaks into training
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    assert set(torch.unique(ya).tolist()) <= {0, 2, 3}  # nearest neighbour: no invented labels
    assert not torch.equal(ya, y)  # something moved
    # the bright disc and its label still coincide after the shared spatial draw
    assert ((xa > 0.4) == (ya > 0)).float().mean() > 0.95
    xb, yb = strong_augment(3)(x, y)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    xc, _ = strong_augment(4)(x, y)
    assert not torch.equal(xa, xc)


def test_strong_augment_changes_intensity_statistics():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((64, 1, 32, 32), dtype=np.float32)) * 0.5 + 0.25
    y = torch.zeros(64, 1, 32, 32, dtype=torch.long)
    xa, _ = strong_augment(0)(x, y)
    # gamma / contrast / bias field / noise / blur: per-image mean and spread vary far more than in the input
    assert xa.mean((1, 2, 3)).std() > 2 * x.mean((1, 2, 3)).std()


def test_strong_flag_trains_deterministically():
    x, y = _disc_batch(b=8, n=64)
    pool = Pool(x.squeeze(1).numpy(), y.squeeze(1).numpy().astype(np.uint8))
    spec = TrainSpec(steps=2, batch_size=4, width=4, eval_every=2, strong=True, crop=32)
    torch.set_num_threads(1)
    a, _ = train_segmenter(pool, pool, spec, seed=0)
    b, _ = train_segmenter(pool, pool, spec, seed=0)
    c, _ = train_segmenter(pool, pool, TrainSpec(steps=2, batch_size=4, width=4, eval_every=2, crop=32), seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("size", [32, 48])
def test_crop_then_full_image_prediction(size):
    """Trained on patches, the fully convolutional net still predicts the whole image."""
    from audit.utility.net import predict

    x, y = _disc_batch(b=4, n=64)
    pool = Pool(x.squeeze(1).numpy(), y.squeeze(1).numpy().astype(np.uint8))
    net, _ = train_segmenter(pool, pool, TrainSpec(steps=1, batch_size=2, width=4, crop=size), seed=0)
    assert predict(net, pool.images).shape == (4, 64, 64)
