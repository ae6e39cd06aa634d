import numpy as np
import pytest

from audit.core.errors import UserError
from generators.base import FitContext
from generators.data import SliceSet
from generators.reference import CartoonGenerator, CopycatGenerator, ExternalGenerator, HoldoutGenerator, NoiseGenerator
from generators.sampleset import SampleSet


def _slices(prefix, n=12, seed=0, shape=(16, 16)):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, *shape), np.uint8)
    masks[:, 4:12, 4:12] = 2
    masks[:, 6:10, 6:10] = 3
    return SliceSet(
        images=rng.random((n, *shape), dtype=np.float32), masks=masks, labelled=np.ones(n, bool),
        subject_ids=np.array([f"{prefix}{i // 3}" for i in range(n)]), vendor=np.array(["A"] * n),
        group=np.array(["NOR"] * n), spacing=np.array([1.5, 1.5], np.float32),
    )


def _nn_distance(a, b):
    d = ((a.reshape(len(a), 1, -1) - b.reshape(1, len(b), -1)) ** 2).mean(-1)
    return d.min(1)


def test_copycat_replays_training_images_closely(tmp_path):
    train = _slices("t")
    g = CopycatGenerator()
    g.fit(train, None)
    s = g.sample(8, seed=1)
    assert isinstance(s, SampleSet) and s.images.shape == (8, 16, 16)
    assert _nn_distance(s.images, train.images).max() < 0.01  # near-copies
    assert not np.array_equal(s.images, train.images[: len(s)])  # but augmented
    g.save(tmp_path / "g")
    s2 = CopycatGenerator.load(tmp_path / "g").sample(8, seed=1)
    np.testing.assert_array_equal(s.images, s2.images)


def test_holdout_replays_reference_subjects_only():
    train, ref = _slices("t"), _slices("r", seed=5)
    g = HoldoutGenerator()
    g.fit(train, None, FitContext(reference=ref))
    s = g.sample(6, seed=0)
    assert set(s.subject_ids) <= set(ref.subject_ids)
    assert _nn_distance(s.images, ref.images).max() == 0
    with pytest.raises(UserError, match="overlap"):
        HoldoutGenerator().fit(train, None, FitContext(reference=train))
    with pytest.raises(UserError, match="unseen subjects"):
        HoldoutGenerator().fit(train, None, FitContext())


def test_noise_follows_the_mask_loosely(tmp_path):
    train = _slices("t")
    g = NoiseGenerator()
    g.fit(train, None)
    empty = np.zeros((4, 16, 16), np.uint8)
    a = g.sample(conditions={"masks": train.masks[:4]}, seed=0)
    b = g.sample(conditions={"masks": empty}, seed=0)
    assert not np.array_equal(a.images, b.images)  # the mask is honoured
    np.testing.assert_array_equal(a.masks, train.masks[:4])
    g.save(tmp_path / "n")
    c = NoiseGenerator.load(tmp_path / "n").sample(conditions={"masks": train.masks[:4]}, seed=0)
    np.testing.assert_array_equal(a.images, c.images)


def test_external_checks_shape_and_spacing(tmp_path):
    train = _slices("t")
    good = SampleSet(images=np.zeros((3, 16, 16), np.float32), spacing=np.array([1.5, 1.5], np.float32))
    good.save(tmp_path / "good.npz")
    g = ExternalGenerator()

    class Cfg:
        generator_options = {"samples": str(tmp_path / "good.npz")}

    g.fit(train, Cfg)
    assert len(g.sample()) == 3
    SampleSet(images=np.zeros((3, 8, 8), np.float32), spacing=np.array([1.5, 1.5], np.float32)).save(tmp_path / "small.npz")
    Cfg.generator_options = {"samples": str(tmp_path / "small.npz")}
    with pytest.raises(UserError, match="small.npz: images are 8x8"):
        ExternalGenerator().fit(train, Cfg)


def test_cartoon_paints_the_conditioning_mask_with_label_means(tmp_path):
    train = _slices("t")
    g = CartoonGenerator()
    g.fit(train, None)
    for k in (0, 2, 3):
        assert g.means[k] == pytest.approx(train.images[train.masks == k].mean(), rel=1e-5)
    masks = train.masks[:4].copy()
    masks[0] = 0
    s = g.sample(conditions={"masks": masks, "subject_ids": np.array(["a", "b", "c", "d"])}, seed=0)
    np.testing.assert_array_equal(s.masks, masks)
    assert s.images.dtype == np.float32 and s.images.shape == masks.shape
    assert np.allclose(s.images[0], g.means[0], atol=1e-6)  # no heart: flat background
    assert s.images[1, 8, 8] == pytest.approx(g.means[3], abs=0.02)  # LV centre
    assert s.images.std(axis=(1, 2))[0] < 1e-6  # no texture at all
    g.save(tmp_path / "g")
    np.testing.assert_array_equal(CartoonGenerator.load(tmp_path / "g").sample(conditions={"masks": masks}).images, s.images)
    with pytest.raises(UserError, match="conditions with masks"):
        g.sample(3)


def test_balanced_draw_keeps_every_slice_within_one_copy():
    from generators.reference import balanced_draw

    rng = np.random.default_rng(0)
    idx = balanced_draw(150, 400, rng)
    counts = np.bincount(idx, minlength=150)
    assert len(idx) == 400 and counts.min() == 2 and counts.max() == 3 and counts.sum() == 400
    few = balanced_draw(150, 40, rng)
    assert len(set(few.tolist())) == 40  # without replacement when n <= pool
    assert len(balanced_draw(5, 0, rng)) == 0
    with pytest.raises(UserError, match="empty pool"):
        balanced_draw(0, 3, rng)
