"""The utility net's recipe options: spatial augmentation, optimisers, poly schedule, DynUNet, bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.utility.net import Pool, TrainSpec, build_net, predict, spatial_augment, train_segmenter


def _square_batch(b: int = 6, n: int = 32):
    x = torch.zeros(b, 1, n, n)
    x[:, :, 10:20, 12:22] = 1.0
    y = torch.zeros(b, 1, n, n, dtype=torch.long)
    y[:, :, 10:20, 12:22] = 3
    y[:, :, 12:18, 14:20] = 1
    return x, y


def test_spatial_augment_moves_image_and_mask_together():
    x, y = _square_batch()
    xa, ya = spatial_augment(x, y, torch.Generator().manual_seed(0), 1.0)
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == torch.long
    assert set(torch.unique(ya).tolist()) <= {0, 1, 3}  # nearest neighbour: no invented labels
    assert not torch.equal(ya, y)
    # the image edge follows the mask (up to the one-pixel blur of bilinear sampling)
    inside = (xa > 0.5).squeeze(1)
    assert (inside == (ya.squeeze(1) > 0)).float().mean() > 0.97
    x0, y0 = spatial_augment(x, y, torch.Generator().manual_seed(0), 0.0)
    assert torch.allclose(x0, x, atol=1e-5) and torch.equal(y0, y)
    xb, yb = spatial_augment(x, y, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("kw", [
    {"arch": "dynunet", "optimizer": "sgd", "lr": 0.01, "schedule": "poly", "spatial_p": 0.5},
    {"optimizer": "adamw", "weight_decay": 1e-4, "schedule": "poly", "spatial_p": 0.5, "bf16": True},
])
def test_recipes_train_and_are_deterministic(kw):
    rng = np.random.default_rng(0)
    n = 64 if kw.get("arch") == "dynunet" else 32  # five 2x down-samplings: at least 64x64
    images = rng.random((12, n, n), dtype=np.float32)
    pool = Pool(images, (images > 0.5).astype(np.uint8) * 3)
    spec = TrainSpec(steps=3, batch_size=4, width=4, eval_every=3, **kw)
    torch.set_num_threads(1)
    a, ia = train_segmenter(pool, pool, spec, seed=1)
    b, _ = train_segmenter(pool, pool, spec, seed=1)
    assert ia["steps"] == 3
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    pred = predict(a, images)
    assert pred.shape == images.shape and pred.dtype == np.uint8


def test_bad_recipe_names():
    with pytest.raises(ValueError, match="network"):
        build_net(4, "transformer")
    pool = Pool(np.zeros((4, 32, 32), np.float32), np.zeros((4, 32, 32), np.uint8))
    for kw, word in (({"optimizer": "lion"}, "optimizer"), ({"schedule": "cosine"}, "schedule")):
        with pytest.raises(ValueError, match=word):
            train_segmenter(pool, pool, TrainSpec(steps=1, batch_size=2, width=2, **kw), seed=0)
