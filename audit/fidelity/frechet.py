"""FID: the Frechet distance between Gaussians fitted to two feature sets, the covariance
estimators (unbiased sample, Ledoit-Wolf) and their choice, and the weighted mean / covariance of a
bootstrap replicate. The method and its numerics are described in :mod:`audit.fidelity.distribution`."""

from __future__ import annotations

import logging

import numpy as np
from threadpoolctl import ThreadpoolController

from audit.core.errors import UserError
from audit.fidelity.features import as_features, check_same_dim

log = logging.getLogger(__name__)

ESTIMATORS = ("sample", "ledoit_wolf")
ESTIMATOR_NAMES = {"sample": "unbiased sample covariance", "ledoit_wolf": "Ledoit-Wolf covariance"}
_THREADPOOLS: list[ThreadpoolController] = []


def one_blas_thread():
    """Context: one BLAS thread. (d, d) LAPACK calls (d ~ 300) are faster single-threaded, and
    threaded OpenBLAS spins badly when the cores are shared (an ``eigvalsh`` of 288 x 288 becomes
    many times slower)."""
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")


def _sqrt_trace(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr (S1 S2)^{1/2}`` for PSD ``S1``, ``S2`` from a symmetric eigenproblem.

    ``S1 S2`` has the eigenvalues of the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}``. Fast path:
    with a Cholesky factor ``S1 = L L^T`` the symmetric ``L^T S2 L`` has them too (one
    ``eigvalsh``, no eigenvectors). If ``S1`` is singular (Cholesky fails), ``S1^{1/2}`` comes
    from ``eigh(S1)`` with negative round-off eigenvalues clipped to 0.
    """
    with one_blas_thread():
        try:
            low = np.linalg.cholesky(sigma1)
            m = low.T @ sigma2 @ low
        except np.linalg.LinAlgError:
            w, v = np.linalg.eigh(sigma1)
            s1h = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
            m = s1h @ sigma2 @ s1h
        ev = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})`` between two Gaussians.

    Heusel et al. (2017). Covariances must be symmetric positive semi-definite; the trace term
    uses symmetric eigendecompositions (``S1^{1/2} S2 S1^{1/2}`` has the eigenvalues of
    ``S1 S2``), round-off negative eigenvalues are clipped to 0, and a round-off negative total
    is returned as 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64).ravel(), np.asarray(mu2, np.float64).ravel()
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise UserError(f"frechet_distance: shapes do not match: mu1 {mu1.shape}, mu2 {mu2.shape}, "
                        f"sigma1 {sigma1.shape}, sigma2 {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise UserError(f"frechet_distance: {name} contains NaN or Inf")
    diff = mu1 - mu2
    value = float(diff @ diff) + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * _sqrt_trace(sigma1, sigma2)
    return max(value, 0.0)


def covariance(feats: np.ndarray, estimator: str) -> np.ndarray:
    """Covariance ``(d, d)`` of ``feats`` ``(N, d)``.

    ``"sample"``: unbiased sample covariance (``N - 1``). ``"ledoit_wolf"``: Ledoit & Wolf
    (2004) shrinkage towards a scaled identity with the asymptotically optimal intensity
    (:class:`sklearn.covariance.LedoitWolf`, which shrinks the ``1/N`` empirical covariance);
    well conditioned even when ``N <= d``.
    """
    x = as_features(feats, "covariance")
    if len(x) < 2:
        raise UserError(f"covariance needs at least 2 feature vectors, got {len(x)}")
    if estimator == "sample":
        return np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
    if estimator == "ledoit_wolf":
        from sklearn.covariance import LedoitWolf  # lazy: scikit-learn only on this path

        return LedoitWolf(store_precision=False, assume_centered=False).fit(x).covariance_
    raise UserError(f"unknown covariance estimator {estimator!r} (choose from {', '.join(ESTIMATORS)})")


def choose_estimator(estimator: str, na: int, nb: int, d: int) -> str:
    if estimator == "auto":
        if min(na, nb) > d:
            return "sample"
        log.warning("FID: n <= d (%d and %d images, d = %d): the sample covariance is singular; using Ledoit-Wolf "
                    "shrinkage (not comparable with sample-covariance FIDs)", na, nb, d)
        return "ledoit_wolf"
    if estimator not in ESTIMATORS:
        raise UserError(f"unknown covariance estimator {estimator!r} (choose from auto, {', '.join(ESTIMATORS)})")
    return estimator


def fid(a: np.ndarray, b: np.ndarray, *, estimator: str = "auto") -> tuple[float, str]:
    """FID between feature sets ``a`` and ``b``; returns ``(value, estimator used)``.

    ``estimator="auto"``: sample covariance when both sets have ``n > d``, else Ledoit-Wolf
    (with a logged warning that ``n <= d``).
    """
    a, b = as_features(a, "fid: a"), as_features(b, "fid: b")
    check_same_dim(a, b, "a", "b")
    if len(a) < 2 or len(b) < 2:
        raise UserError(f"FID needs at least 2 images in each set (got {len(a)} and {len(b)})")
    est = choose_estimator(estimator, len(a), len(b), a.shape[1])
    value = frechet_distance(a.mean(0), covariance(a, est), b.mean(0), covariance(b, est))
    return value, est


def _weighted_fid_terms(x: np.ndarray, c: np.ndarray, estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``x`` with image ``i`` repeated ``c[i]`` times (``c`` integer)."""
    present = c > 0
    xp, w = x[present], c[present]
    if estimator == "ledoit_wolf":
        xr = np.repeat(xp, w, axis=0)
        return xr.mean(0), covariance(xr, "ledoit_wolf")
    w = w.astype(np.float64)
    m = w.sum()
    mu = (w @ xp) / m
    a = (xp - mu) * np.sqrt(w)[:, None]
    return mu, (a.T @ a) / (m - 1.0)  # a.T @ a runs as a symmetric rank-k update
