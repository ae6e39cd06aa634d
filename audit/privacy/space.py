"""Feature spaces and batched nearest-neighbour search for the privacy audit.

Two spaces:

* ``pixel``: each image flattened. Two distances are offered on it: Euclidean (the GAN-Leaks
  full black-box distance, Chen et al. 2020) and the **correlation distance** ``1 - r``
  (Pearson correlation of the pixel intensities), an SSIM-type similarity that ignores global
  brightness and contrast changes (so a gamma-shifted copy still reads as a copy).
* ``pca``: a cheap learned embedding, principal components of the **reference** split's images
  (attacker population data; never members or non-members), computed on images block-averaged
  to at most 64x64 and projected on at most 32 components (not whitened: whitening would blow
  the noise-dominated trailing components up to unit variance and let them swamp distances), so
  distances are pixel-intensity L2 distances of the projections at the block-averaged
  resolution. The judge network's encoder features can replace it later (same
  :class:`Embedding` interface).

Nearest neighbours are exact, computed with batched float32 matrix products
(``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``) in row chunks, so memory stays bounded and no Python
loop runs over pairs.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: rows of the query processed per matrix product (chunk x n_base float32 distances)
CHUNK = 1024


def flatten(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(images, np.float32).reshape(len(images), -1))


def correlation_features(images: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm: ``|a - b|^2 / 2 = 1 - r`` (Pearson r)."""
    x = flatten(images).copy()
    x -= x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x /= np.maximum(norm, 1e-8)  # a constant image has r = 0 with everything
    return x


def block_average(images: np.ndarray, max_side: int = 64) -> np.ndarray:
    """Downsample (N,H,W) by an integer factor so the longer side is <= ``max_side``."""
    images = np.asarray(images, np.float32)
    f = int(np.ceil(max(images.shape[1:]) / max_side))
    if f <= 1:
        return images
    n, h, w = images.shape
    h2, w2 = h // f * f, w // f * f
    return images[:, :h2, :w2].reshape(n, h2 // f, f, w2 // f, f).mean(axis=(2, 4))


class Embedding:
    """PCA embedding fitted on reference images (projection on the leading components)."""

    name = "pca"

    def __init__(self, n_components: int = 32, max_side: int = 64, seed: int = 0):
        self.n_components = n_components
        self.max_side = max_side
        self.seed = seed
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.explained_sd: np.ndarray | None = None

    def fit(self, images: np.ndarray) -> "Embedding":
        x = flatten(block_average(images, self.max_side))
        k = int(min(self.n_components, len(x) - 1, x.shape[1]))
        if k < 1:
            raise ValueError("the PCA embedding needs at least two reference images")
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        # randomized range finder (Halko et al. 2011): far faster than a full LAPACK SVD at these
        # sizes for the few components kept (BENCHMARKS.md "Privacy audit")
        from sklearn.utils.extmath import randomized_svd  # lazy: scikit-learn only on this path

        _, s, vt = randomized_svd(xc, k, n_oversamples=20, n_iter=4, random_state=self.seed)
        self.components = np.ascontiguousarray(vt[:k], np.float32)
        sd = s[:k] / np.sqrt(max(len(x) - 1, 1))
        self.explained_sd = sd.astype(np.float32)
        log.debug("pca embedding: %d components, explained std %s", k, np.round(sd[:4], 3))
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        if self.components is None:
            raise RuntimeError("Embedding.fit must run first")
        x = flatten(block_average(images, self.max_side)) - self.mean
        return np.ascontiguousarray(x @ self.components.T, np.float32)


def sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def nearest(query: np.ndarray, base: np.ndarray, k: int = 1, *, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours of each ``query`` row among ``base`` rows.

    Returns ``(distances, indices)``, both ``(n_query, k)``, sorted by distance. With
    ``exclude_self`` (query is base) each row's own index is skipped.
    """
    query = np.ascontiguousarray(query, np.float32)
    base = np.ascontiguousarray(base, np.float32)
    k = int(min(k, len(base) - (1 if exclude_self else 0)))
    if k < 1:
        raise ValueError("nearest(): the base set is too small")
    bn = sq_norms(base)
    dist = np.empty((len(query), k), np.float32)
    idx = np.empty((len(query), k), np.int64)
    for lo in range(0, len(query), CHUNK):
        q = query[lo:lo + CHUNK]
        if k == 1:  # the common case (DCR, copy rate): argmin of |b|^2 - 2 q.b, the row's |q|^2 added after
            part_d2 = q @ base.T
            part_d2 *= -2.0
            part_d2 += bn[None, :]
            if exclude_self:
                rows = np.arange(len(q))
                part_d2[rows, lo + rows] = np.inf
            best = part_d2.argmin(axis=1)
            d_best = part_d2[np.arange(len(q)), best] + sq_norms(q)
            idx[lo:lo + len(q), 0] = best
            dist[lo:lo + len(q), 0] = np.sqrt(np.maximum(d_best, 0.0))
            continue
        d2 = sq_norms(q)[:, None] + bn[None, :] - 2.0 * (q @ base.T)
        if exclude_self:
            rows = np.arange(len(q))
            d2[rows, lo + rows] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else np.tile(np.arange(d2.shape[1]), (len(q), 1))
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(pd, axis=1)
        idx[lo:lo + len(q)] = np.take_along_axis(part, order, axis=1)
        dist[lo:lo + len(q)] = np.sqrt(np.maximum(np.take_along_axis(pd, order, axis=1), 0.0))
    return dist, idx


def count_within(query: np.ndarray, base: np.ndarray, radius: float) -> np.ndarray:
    """Number of ``base`` rows within Euclidean ``radius`` of each ``query`` row."""
    query = np.ascontiguousarray(query, np.float32)
    base = np.ascontiguousarray(base, np.float32)
    bn = sq_norms(base)
    out = np.empty(len(query), np.int64)
    r2 = float(radius) ** 2
    for lo in range(0, len(query), CHUNK):
        q = query[lo:lo + CHUNK]
        d2 = sq_norms(q)[:, None] + bn[None, :] - 2.0 * (q @ base.T)
        out[lo:lo + len(q)] = (d2 <= r2).sum(axis=1)
    return out


def nearest_by_group(query: np.ndarray, base: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to the nearest base row of each group.

    Returns ``(distances (n_query, n_groups), group labels)``; groups are e.g. subject ids.
    """
    query = np.ascontiguousarray(query, np.float32)
    labels, inv = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inv, kind="mergesort")
    base = np.ascontiguousarray(np.asarray(base, np.float32)[order])
    starts = np.r_[0, np.flatnonzero(np.diff(inv[order])) + 1]
    bn = sq_norms(base)
    out = np.empty((len(query), len(labels)), np.float32)
    for lo in range(0, len(query), CHUNK):
        q = query[lo:lo + CHUNK]
        d2 = sq_norms(q)[:, None] + bn[None, :] - 2.0 * (q @ base.T)
        out[lo:lo + len(q)] = np.sqrt(np.maximum(np.minimum.reduceat(d2, starts, axis=1), 0.0))
    return out, labels
