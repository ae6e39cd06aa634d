"""Precision, recall, density and coverage (Naeem et al. 2020) with subject-aware k-NN radii, and
their multiplicity-weighted form for subject-bootstrap replicates (sorted neighbour lists computed
once). The estimators are described in :mod:`audit.fidelity.distribution`."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.core.errors import UserError
from audit.fidelity.features import as_features, check_same_dim, subject_index

_NN_CANDIDATES = 128  # neighbours kept per point for the bootstrap k-NN radii (exact fallback beyond)


def _pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) via ``|x|^2 + |y|^2 - 2 x.y`` (BLAS), clipped at 0."""
    d2 = x @ y.T
    d2 *= -2.0
    d2 += np.einsum("ij,ij->i", x, x)[:, None]
    d2 += np.einsum("ij,ij->i", y, y)[None, :]
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


class _Neighbours:
    """k-NN radii within one set under bootstrap multiplicities.

    A replicate draws subjects with replacement; image ``j`` then appears ``c[j]`` times (its
    subject's draw count). For image ``i``, an image of *another* subject counts ``c[j]`` times
    towards the k nearest neighbours, an image of its *own* subject counts once (only the copy
    in the same draw is a genuine sibling; copies from another draw of the same subject are
    resampling artefacts), and ``i``'s own copies never count (otherwise radii collapse to 0).
    With one image per subject this is "copies of a point are not its neighbours".

    Keeps the ``L`` nearest other points of every point, sorted; the radius of ``i`` is the
    distance at which the cumulative multiplicity first reaches ``k``. Rows whose ``L`` nearest
    neighbours hold fewer than ``k`` resampled copies are solved exactly on the full row.
    """

    def __init__(self, dist: np.ndarray, subjects: np.ndarray, n_keep: int = _NN_CANDIDATES):
        self.dist, self.subjects = dist, subjects
        n = len(dist)
        keep = max(1, min(n_keep, n - 1))
        masked = _other_subjects(dist, subjects)
        idx = np.argpartition(masked, keep - 1, axis=1)[:, :keep]
        near = np.take_along_axis(masked, idx, axis=1)
        order = np.argsort(near, axis=1, kind="stable")
        self.order = np.take_along_axis(idx, order, axis=1)
        self.sorted = np.take_along_axis(near, order, axis=1)
        self.same = subjects[self.order] == subjects[:, None]

    def radii(self, c: np.ndarray, k: int) -> np.ndarray | None:
        """Radius per image (NaN for absent images); ``None`` if a present image has < k neighbours."""
        n = len(c)
        w = np.where(self.same, 0, c[self.order])  # own subject: never a neighbour (masked to inf anyway)
        cum = np.cumsum(w, axis=1)
        reached = cum >= k
        pos = np.argmax(reached, axis=1)
        r = self.sorted[np.arange(n), pos]
        for i in np.flatnonzero(~reached[:, -1] & (c > 0)):
            row = self.dist[i]
            wi = np.where(self.subjects == self.subjects[i], 0, c)
            order = np.argsort(row, kind="stable")
            cw = np.cumsum(wi[order])
            if cw[-1] < k:
                return None
            r[i] = row[order[int(np.argmax(cw >= k))]]
        r[c == 0] = np.nan
        return r


def _prdc_weighted(drf: np.ndarray, r_real: np.ndarray, r_fake: np.ndarray, cr: np.ndarray, cf: np.ndarray,
                   k: int) -> tuple[float, float, float, float]:
    """Naeem et al. (2020) with real image ``i`` counted ``cr[i]`` times and fake ``j`` ``cf[j]`` times."""
    cr32, cf32 = cr.astype(np.float32), cf.astype(np.float32)
    mr, mf = float(cr.sum()), float(cf.sum())
    a = np.less(drf, r_real[:, None]).astype(np.float32)  # fake j inside the k-NN ball of real i
    inball = cr32 @ a  # weighted number of real balls holding fake j
    precision = float(cf32 @ (inball > 0)) / mf
    density = float(cf32 @ inball) / (k * mf)
    coverage = float(cr32 @ ((a @ cf32) > 0)) / mr
    del a
    b = np.less(drf, r_fake[None, :]).astype(np.float32)  # real i inside the k-NN ball of fake j
    recall = float(cr32 @ ((b @ cf32) > 0)) / mr
    return precision, recall, density, coverage


def _sorted_truncated(dist: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: column indices of the ``keep`` smallest entries and those entries, ascending."""
    keep = min(keep, dist.shape[1])
    idx = np.argpartition(dist, keep - 1, axis=1)[:, :keep] if keep < dist.shape[1] else np.argsort(dist, axis=1)
    near = np.take_along_axis(dist, idx, axis=1)
    order = np.argsort(near, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1).astype(np.int32), np.take_along_axis(near, order, axis=1)


class _CrossNeighbours:
    """Real-to-fake and fake-to-real nearest lists for PRDC replicates in O(N L) instead of O(N^2).

    A k-NN ball ``B(x, r)`` holds exactly a prefix of ``x``'s sorted cross-set distance list, so
    precision / density (real balls) and recall (fake balls) only need the prefixes. When a
    present point's ball holds ``L`` or more cross-set points the replicate falls back to the
    dense evaluation (:func:`_prdc_weighted`), so results are exact either way.
    """

    def __init__(self, drf: np.ndarray, keep: int = 2 * _NN_CANDIDATES):
        self.drf = drf
        self.row_idx, self.row_d = _sorted_truncated(drf, keep)  # real i -> nearest fakes
        self.col_idx, self.col_d = _sorted_truncated(drf.T, keep)  # fake j -> nearest reals

    def prdc(self, r_real: np.ndarray, r_fake: np.ndarray, cr: np.ndarray, cf: np.ndarray,
             k: int) -> tuple[float, float, float, float]:
        n_r, n_f = self.drf.shape
        pres_r, pres_f = cr > 0, cf > 0
        with np.errstate(invalid="ignore"):
            in_r = (self.row_d < r_real[:, None]) & pres_r[:, None]  # prefix masks (sorted rows)
            in_f = (self.col_d < r_fake[:, None]) & pres_f[:, None]
        full_r = self.row_d.shape[1] < n_f and bool(in_r[:, -1].any())
        full_f = self.col_d.shape[1] < n_r and bool(in_f[:, -1].any())
        if full_r or full_f:
            return _prdc_weighted(self.drf, r_real, r_fake, cr, cf, k)
        mr, mf = float(cr.sum()), float(cf.sum())
        weights = np.broadcast_to(cr[:, None].astype(np.float64), in_r.shape)[in_r]
        inball = np.bincount(self.row_idx[in_r], weights=weights, minlength=n_f)  # weighted real balls per fake
        precision = float(cf @ (inball > 0)) / mf
        density = float(cf @ inball) / (k * mf)
        coverage = float(cr @ (in_r & pres_f[self.row_idx]).any(axis=1)) / mr
        reached = np.zeros(n_r, bool)
        reached[self.col_idx[in_f]] = True
        recall = float(cr @ reached) / mr
        return precision, recall, density, coverage


def _check_k(k: int, n_real: int, n_fake: int) -> None:
    if not (isinstance(k, (int, np.integer)) and k >= 1):
        raise UserError(f"PRDC: k must be a positive integer, got {k!r}")
    if n_real < k + 1 or n_fake < k + 1:
        raise UserError(f"PRDC with k={k} needs at least k+1 = {k + 1} images in each set "
                        f"(got {n_real} real, {n_fake} fake)")


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 5, real_clusters: Any = None,
         fake_clusters: Any = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` w.r.t. ``real`` (Naeem et al. 2020).

    With ``NND_k`` the distance to the k-th nearest *other* point of the same set:
    precision = share of fake points inside some real ball ``B(x_i, NND_k(x_i))``; recall =
    share of real points inside some fake ball; density = mean number of real balls holding a
    fake point, divided by k (about 1 for matching distributions, unbounded above); coverage =
    share of real points whose ball holds at least one fake point. Balls are open (``<``), as in
    the authors' reference code. Given ``real_clusters`` / ``fake_clusters`` (subject ids), the
    radii count only images of other subjects (subject-aware radii; see the module docstring).
    """
    real, fake = as_features(real, "prdc: real"), as_features(fake, "prdc: fake")
    check_same_dim(real, fake, "real", "fake")
    _check_k(k, len(real), len(fake))
    sub_r = None if real_clusters is None else subject_index(real_clusters, len(real), "real_clusters")[0]
    sub_f = None if fake_clusters is None else subject_index(fake_clusters, len(fake), "fake_clusters")[0]
    r_real = _knn_radius(_pairwise_distances(real, real), k, sub_r)
    r_fake = _knn_radius(_pairwise_distances(fake, fake), k, sub_f)
    if not (np.isfinite(r_real).all() and np.isfinite(r_fake).all()):
        raise UserError(f"PRDC with k={k}: some images have fewer than k images of other subjects")
    p, r, d, c = _prdc_weighted(_pairwise_distances(real, fake), r_real, r_fake,
                                np.ones(len(real), np.int64), np.ones(len(fake), np.int64), k)
    return {"precision": p, "recall": r, "density": d, "coverage": c}


def _other_subjects(dist: np.ndarray, subjects: np.ndarray | None) -> np.ndarray:
    """A copy of a within-set distance matrix with the diagonal and, given subject ids, every
    same-subject pair set to +inf (they are never k-NN neighbours)."""
    masked = dist.copy()
    if subjects is None:
        np.fill_diagonal(masked, np.inf)
    else:
        masked[subjects[:, None] == subjects[None, :]] = np.inf
    return masked


def _knn_radius(dist: np.ndarray, k: int, subjects: np.ndarray | None = None) -> np.ndarray:
    """Distance to the k-th nearest neighbour (other subjects only when ``subjects`` is given);
    +inf when fewer than k neighbours exist."""
    return np.partition(_other_subjects(dist, subjects), k - 1, axis=1)[:, k - 1]
