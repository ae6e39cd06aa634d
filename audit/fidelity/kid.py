"""KID: the unbiased squared MMD with a polynomial kernel, as the subset mean and standard deviation
of Binkowski et al., and its weighted form for subject-bootstrap replicates. The estimators are
described in :mod:`audit.fidelity.distribution`."""

from __future__ import annotations

import numpy as np

from audit.core.errors import UserError
from audit.fidelity.features import as_features, check_same_dim

_KERNEL_CACHE_LIMIT = 4000 * 4000  # kid(): precompute full kernel matrices up to this size


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    k = x @ y.T
    k *= gamma
    k += coef0
    return k**degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m, n = len(kxx), len(kyy)
    sxx = kxx.sum() - np.trace(kxx)
    syy = kyy.sum() - np.trace(kyy)
    return float(sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * kxy.sum() / (m * n))


def _kid_params(d: int, subsets: int, degree: int, gamma: float | None, coef0: float) -> float:
    if not (isinstance(subsets, (int, np.integer)) and subsets >= 1):
        raise UserError(f"KID: subsets must be a positive integer, got {subsets!r}")
    if not (isinstance(degree, (int, np.integer)) and degree >= 1):
        raise UserError(f"KID: degree must be a positive integer, got {degree!r}")
    gamma = 1.0 / d if gamma is None else float(gamma)
    if not gamma > 0 or not np.isfinite(coef0):
        raise UserError(f"KID: gamma must be > 0 and coef0 finite (got {gamma}, {coef0})")
    return gamma


def _kid_subset_draws(na: int, nb: int, subsets: int, m: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(subsets):
        yield rng.choice(na, m, replace=False), rng.choice(nb, m, replace=False)


def kid(a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): ``(mean, std)`` of the unbiased MMD^2 over ``subsets``.

    Each subset draws ``m = min(subset_size, len(a), len(b))`` images without replacement from
    each set; kernel ``(gamma x.y + coef0)^degree`` with ``gamma = 1/d`` by default; ``std`` is
    the population standard deviation over subsets (``ddof=0``, as torch-fidelity).
    """
    a, b = as_features(a, "kid: a"), as_features(b, "kid: b")
    check_same_dim(a, b, "a", "b")
    gamma = _kid_params(a.shape[1], subsets, degree, gamma, coef0)
    m = min(int(subset_size), len(a), len(b))
    if m < 2:
        raise UserError(f"KID needs subsets of at least 2 images per set (got {len(a)} and {len(b)} images, "
                        f"subset_size {subset_size})")
    if len(a) * len(b) <= _KERNEL_CACHE_LIMIT and max(len(a), len(b)) ** 2 <= _KERNEL_CACHE_LIMIT:
        kernels = (_poly_kernel(a, a, degree, gamma, coef0), _poly_kernel(b, b, degree, gamma, coef0),
                   _poly_kernel(a, b, degree, gamma, coef0))
        return _kid_from_kernels(*kernels, subsets=subsets, m=m, seed=seed)
    vals = []
    for ia, ib in _kid_subset_draws(len(a), len(b), subsets, m, seed):
        xa, xb = a[ia], b[ib]
        vals.append(_mmd2_unbiased(_poly_kernel(xa, xa, degree, gamma, coef0),
                                   _poly_kernel(xb, xb, degree, gamma, coef0),
                                   _poly_kernel(xa, xb, degree, gamma, coef0)))
        if m == len(a) == len(b):  # every subset is the whole of both sets
            return vals[0], 0.0
    return float(np.mean(vals)), float(np.std(vals))


def _kid_from_kernels(kaa, kbb, kab, *, subsets: int, m: int, seed: int) -> tuple[float, float]:
    """KID subsets from precomputed kernels: subset sums as quadratic forms of 0/1 indicator rows."""
    va, vb = np.zeros((subsets, len(kaa))), np.zeros((subsets, len(kbb)))
    for s_, (ia, ib) in enumerate(_kid_subset_draws(len(kaa), len(kbb), subsets, m, seed)):
        va[s_, ia] = 1.0
        vb[s_, ib] = 1.0
    saa = np.einsum("si,si->s", va @ kaa, va) - va @ np.diag(kaa)
    sbb = np.einsum("si,si->s", vb @ kbb, vb) - vb @ np.diag(kbb)
    sab = np.einsum("si,si->s", va @ kab, vb)
    vals = (saa + sbb) / (m * (m - 1)) - 2.0 * sab / (m * m)
    if m == len(kaa) == len(kbb):  # every subset is the whole of both sets
        return float(vals[0]), 0.0
    return float(np.mean(vals)), float(np.std(vals))


def _within_subject_sums(k: np.ndarray, subjects: np.ndarray, n_subjects: int) -> tuple[np.ndarray, np.ndarray]:
    """Per subject: sum of ``K_ab`` over ordered pairs ``a != b`` of its images, and the pair count."""
    sums = np.zeros(n_subjects)
    sizes = np.bincount(subjects, minlength=n_subjects).astype(np.float64)
    order = np.argsort(subjects, kind="stable")
    starts = np.r_[0, np.cumsum(sizes).astype(np.int64)]
    for s_ in range(n_subjects):
        idx = order[starts[s_]:starts[s_ + 1]]
        block = k[np.ix_(idx, idx)]
        sums[s_] = block.sum() - np.trace(block)
    return sums, sizes * (sizes - 1.0)


def _weighted_mmd2(cs_a: np.ndarray, sub_a: np.ndarray, cs_b: np.ndarray, sub_b: np.ndarray,
                   kaa: np.ndarray, kbb: np.ndarray, kab: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 per bootstrap replicate (rows of ``cs_*`` = subject draw counts).

    Within-set pairs of images ``a != b``: weight ``c_s c_t`` for different subjects, ``c_s``
    for two images of the same subject (pairs within one draw only), 0 for copies of one image;
    the sum is divided by the total weight. With all counts 1 this is the U-statistic of
    Binkowski et al.; cross-set pairs are all counted (``c_a c_b / (M_a M_b)``).
    """
    out = []
    for cs, sub, k in ((cs_a, sub_a, kaa), (cs_b, sub_b, kbb)):
        c = cs[:, sub]
        ws, npairs = _within_subject_sums(k, sub, cs.shape[1])
        extra = cs * cs - cs  # extra weight given by c c^T to cross-draw pairs of one subject
        num = np.einsum("bi,bi->b", c @ k, c) - (c * c) @ np.diag(k) - extra @ ws
        den = c.sum(1) ** 2 - (c * c).sum(1) - extra @ npairs
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    ca, cb = cs_a[:, sub_a], cs_b[:, sub_b]
    cross = np.einsum("bi,bi->b", ca @ kab, cb) / (ca.sum(1) * cb.sum(1))
    return out[0] + out[1] - 2.0 * cross
