"""Batched nearest neighbours and the feature spaces against brute force."""

import numpy as np
from scipy.spatial.distance import cdist

from audit.privacy import space


def test_nearest_matches_brute_force_and_chunks(monkeypatch):
    monkeypatch.setattr(space, "CHUNK", 7)
    rng = np.random.default_rng(0)
    q, b = rng.normal(size=(30, 12)), rng.normal(size=(50, 12))
    d, i = space.nearest(q, b, k=3)
    ref = cdist(q, b)
    np.testing.assert_array_equal(i, np.argsort(ref, axis=1)[:, :3])
    np.testing.assert_allclose(d, np.sort(ref, axis=1)[:, :3], rtol=1e-4, atol=1e-4)
    d, i = space.nearest(b, b, k=1, exclude_self=True)
    assert not np.any(i[:, 0] == np.arange(50))
    self_ref = cdist(b, b)
    np.fill_diagonal(self_ref, np.inf)
    np.testing.assert_array_equal(i[:, 0], self_ref.argmin(axis=1))
    np.testing.assert_allclose(d[:, 0], self_ref.min(axis=1), rtol=1e-4, atol=1e-4)
    d1, i1 = space.nearest(q, b, k=1)  # the k = 1 fast path agrees with the general one
    np.testing.assert_array_equal(i1[:, 0], ref.argmin(axis=1))
    np.testing.assert_allclose(d1[:, 0], ref.min(axis=1), rtol=1e-4, atol=1e-4)
    counts = space.count_within(q, b, 4.0)
    np.testing.assert_array_equal(counts, (ref <= 4.0).sum(axis=1))


def test_correlation_distance_is_one_minus_pearson_and_ignores_contrast():
    rng = np.random.default_rng(1)
    a = rng.random((2, 8, 8)).astype(np.float32)
    b = np.stack([0.5 * a[0] + 0.2, a[1]])
    fa, fb = space.correlation_features(a), space.correlation_features(b)
    d = ((fa[:, None] - fb[None]) ** 2).sum(-1) / 2
    r = np.corrcoef(a[0].ravel(), a[1].ravel())[0, 1]
    assert abs(d[0, 0]) < 1e-5 and abs(d[0, 1] - (1 - r)) < 1e-5


def test_embedding_is_fitted_on_reference_and_downsamples():
    rng = np.random.default_rng(2)
    ref = rng.random((40, 128, 128)).astype(np.float32)
    emb = space.Embedding(n_components=8).fit(ref)
    z = emb.transform(rng.random((5, 128, 128)).astype(np.float32))
    assert z.shape == (5, 8) and z.dtype == np.float32
    assert space.block_average(ref[:2]).shape == (2, 64, 64)
