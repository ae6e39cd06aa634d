"""The numbers behind the distribution entries: FID, KID and PRDC of a candidate against a target
feature set with subject-level cluster-bootstrap intervals (method in
:mod:`audit.fidelity.distribution`). :func:`distribution_stats` returns numbers only; the words of
the results entries come from :mod:`audit.fidelity.distribution_notes`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.core.errors import UserError
from audit.fidelity.features import as_features, check_same_dim, space_name, subject_index
from audit.fidelity.frechet import choose_estimator, covariance, frechet_distance, one_blas_thread, _weighted_fid_terms
from audit.fidelity.kid import _kid_from_kernels, _kid_params, _poly_kernel, _weighted_mmd2
from audit.fidelity.prdc import _CrossNeighbours, _knn_radius, _Neighbours, _pairwise_distances, _prdc_weighted

#: ``compare`` keeps six (N, N) float64 matrices in memory (~1.7 GB at 6,000 per set).
MAX_COMPARE_IMAGES = 6000
PRDC_NAMES = ("precision", "recall", "density", "coverage")
_BOUNDS = {"fid": (0.0, None), "kid": (None, None), "precision": (0.0, 1.0), "recall": (0.0, 1.0),
           "density": (0.0, None), "coverage": (0.0, 1.0)}


def recentred_interval(replicates: np.ndarray, estimate: float, *, alpha: float = 0.05,
                       bounds: tuple[float | None, float | None] = (None, None)) -> tuple[float, float, float] | None:
    """Bias-corrected (recentred) percentile interval: ``(low, high, shift)``.

    ``shift = median(replicates) - estimate`` is the bootstrap's median bias; the interval is
    the ``alpha/2`` and ``1 - alpha/2`` quantiles of ``replicates - shift``, clipped to
    ``bounds``. It keeps the bootstrap's spread and skew but not its location, so it always
    contains ``estimate``. Returns ``None`` with fewer than 20 finite replicates. See the module
    docstring for why not Efron's BC interval.
    """
    reps = np.asarray(replicates, np.float64)
    reps = reps[np.isfinite(reps)]
    if len(reps) < 20:
        return None
    shift = float(np.median(reps) - estimate)
    low, high = (float(q) - shift for q in np.quantile(reps, [alpha / 2, 1 - alpha / 2]))
    lo_b, hi_b = bounds
    if lo_b is not None:
        low, high = max(low, lo_b), max(high, lo_b)
    if hi_b is not None:
        low, high = min(low, hi_b), min(high, hi_b)
    return low, high, shift


@dataclass
class Estimate:
    """One metric: the point estimate and, when the bootstrap gave one, its recentred interval."""

    value: float
    ci: tuple[float, float] | None = None
    shift: float | None = None  # median(replicates) - estimate, removed by recentring
    n_ok: int = 0  # computable bootstrap replicates


@dataclass
class DistributionStats:
    """Everything :func:`distribution_stats` measured, as numbers and short codes."""

    space: str  # the feature space, e.g. "judge features"
    d: int
    estimator: str  # covariance estimator of the FID
    n_candidate: int
    candidate_subjects: int
    n_target: int
    target_subjects: int
    k: int
    kid_subsets: int
    kid_subset_size: int  # images per set in each KID subset
    kid_std: float
    alpha: float
    n_boot: int
    no_ci: str | None  # why there are no CIs: "n_boot" (n_boot = 0), "subjects" (< 2 per set), or None
    prdc_skip: str | None  # why PRDC was not computed: "images" (< k + 1 per set), "subjects", or None
    prdc_sparse_sets: list[str] = field(default_factory=list)  # the sets with < k images of other subjects
    estimates: dict[str, Estimate] = field(default_factory=dict)  # fid, kid and (unless skipped) PRDC
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage


def _check_inputs(candidate: Any, candidate_clusters: Any, target: Any, target_clusters: Any, *, n_boot: int, k: int,
                  alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, int]:
    """Validated features and subject indices: ``(cand, targ, sub_c, n_sc, sub_t, n_st)``; :class:`UserError` on bad input."""
    cand = as_features(candidate, "candidate")
    targ = as_features(target, "target")
    check_same_dim(cand, targ, "candidate", "target")
    nc, nt = len(cand), len(targ)
    if nc < 2 or nt < 2:
        raise UserError(f"fidelity comparison needs at least 2 images per set (got {nc} candidate, {nt} target)")
    if max(nc, nt) > MAX_COMPARE_IMAGES:
        raise UserError(f"fidelity comparison keeps (N, N) matrices in memory and accepts at most "
                        f"{MAX_COMPARE_IMAGES} images per set (got {nc} candidate, {nt} target): subsample")
    if not (isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 0):
        raise UserError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1):
        raise UserError(f"PRDC: k must be a positive integer, got {k!r}")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")
    sub_c, n_sc = subject_index(candidate_clusters, nc, "candidate_clusters")
    sub_t, n_st = subject_index(target_clusters, nt, "target_clusters")
    return cand, targ, sub_c, n_sc, sub_t, n_st


def _prdc_feasibility(sub_c: np.ndarray, sub_t: np.ndarray, k: int) -> tuple[str | None, list[str]]:
    """Why PRDC cannot be computed (``"images"``, ``"subjects"``) or None, and the sets too sparse in subjects."""
    if min(len(sub_c), len(sub_t)) < k + 1:
        return "images", []
    # subject-aware radii need k images of other subjects around every image
    few = [name for name, sub in (("candidate", sub_c), ("target", sub_t)) if len(sub) - np.bincount(sub).max() < k]
    return ("subjects", few) if few else (None, [])


def _point_estimates(cand, targ, sub_c, sub_t, est: str, kernels, dists, *, k: int, kid_subsets: int, m_kid: int,
                     seed: int) -> tuple[dict[str, float], float]:
    """FID, KID (subset mean) and PRDC on the sets as given; returns ``(values, KID std over subsets)``."""
    nc, nt = len(cand), len(targ)
    if est == "sample":
        mu_c, cov_c = _weighted_fid_terms(cand, np.ones(nc, np.int64), est)
        mu_t, cov_t = _weighted_fid_terms(targ, np.ones(nt, np.int64), est)
    else:
        mu_c, cov_c, mu_t, cov_t = cand.mean(0), covariance(cand, est), targ.mean(0), covariance(targ, est)
    point = {"fid": frechet_distance(mu_c, cov_c, mu_t, cov_t)}
    point["kid"], kid_std = _kid_from_kernels(*kernels, subsets=kid_subsets, m=m_kid, seed=seed)
    if dists is not None:
        d_tt, d_cc, d_tc = dists
        ones_t, ones_c = np.ones(nt, np.int64), np.ones(nc, np.int64)
        vals = _prdc_weighted(d_tc, _knn_radius(d_tt, k, sub_t), _knn_radius(d_cc, k, sub_c), ones_t, ones_c, k)
        point.update(zip(PRDC_NAMES, vals))
    return point, kid_std


def _replicates(cand, targ, sub_c, n_sc, sub_t, n_st, est: str, kernels, dists, *, k: int, n_boot: int, seed: int,
                stage: dict[str, float]) -> dict[str, np.ndarray]:
    """The subject-level bootstrap: per metric, one value per replicate (NaN where not computable)."""
    rng = np.random.default_rng(seed)
    cs_c = rng.multinomial(n_sc, np.full(n_sc, 1.0 / n_sc), size=n_boot)  # subject draw counts
    cs_t = rng.multinomial(n_st, np.full(n_st, 1.0 / n_st), size=n_boot)
    cc, ct = cs_c[:, sub_c], cs_t[:, sub_t]  # image multiplicities
    reps: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    fids = np.empty(n_boot)
    with one_blas_thread():
        for b in range(n_boot):
            mc, vc = _weighted_fid_terms(cand, cc[b], est)
            mt, vt = _weighted_fid_terms(targ, ct[b], est)
            fids[b] = frechet_distance(mc, vc, mt, vt)
    reps["fid"] = fids
    stage["bootstrap_fid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reps["kid"] = _weighted_mmd2(cs_c.astype(np.float64), sub_c, cs_t.astype(np.float64), sub_t, *kernels)
    stage["bootstrap_kid"] = time.perf_counter() - t0
    if dists is not None:
        d_tt, d_cc, d_tc = dists
        t0 = time.perf_counter()
        nn_t, nn_c, cross = _Neighbours(d_tt, sub_t), _Neighbours(d_cc, sub_c), _CrossNeighbours(d_tc)
        pr = np.full((n_boot, 4), np.nan)
        for b in range(n_boot):
            r_t, r_c = nn_t.radii(ct[b], k), nn_c.radii(cc[b], k)
            if r_t is not None and r_c is not None:
                pr[b] = cross.prdc(r_t, r_c, ct[b], cc[b], k)
        reps.update({name: pr[:, j] for j, name in enumerate(PRDC_NAMES)})
        stage["bootstrap_prdc"] = time.perf_counter() - t0
    return reps


def _estimates(point: dict[str, float], reps: dict[str, np.ndarray] | None, alpha: float) -> dict[str, Estimate]:
    """Each point estimate with its recentred percentile interval (none without replicates)."""
    out = {}
    for name, value in point.items():
        if reps is None:
            out[name] = Estimate(value)
            continue
        r = reps[name]
        res = recentred_interval(r, value, alpha=alpha, bounds=_BOUNDS[name])
        n_ok = int(np.isfinite(r).sum())
        out[name] = Estimate(value, n_ok=n_ok) if res is None else Estimate(value, res[:2], res[2], n_ok)
    return out


def distribution_stats(candidate: np.ndarray, candidate_clusters: Any, target: np.ndarray, target_clusters: Any, *,
                       n_boot: int = 200, seed: int = 0, k: int = 5, feature_label: str = "judge",
                       estimator: str = "auto", kid_subsets: int = 100, kid_subset_size: int = 1000,
                       alpha: float = 0.05) -> DistributionStats:
    """FID, KID and PRDC of ``candidate`` vs ``target`` features with subject-bootstrap intervals, as
    numbers (arguments and fallbacks as :func:`audit.fidelity.distribution.compare`)."""
    t_start = time.perf_counter()
    stage: dict[str, float] = {}
    cand, targ, sub_c, n_sc, sub_t, n_st = _check_inputs(candidate, candidate_clusters, target, target_clusters,
                                                         n_boot=n_boot, k=k, alpha=alpha)
    nc, nt, d = len(cand), len(targ), cand.shape[1]
    space = space_name(feature_label)
    est = choose_estimator(estimator, nc, nt, d)
    gamma = _kid_params(d, kid_subsets, 3, None, 1.0)
    m_kid = min(int(kid_subset_size), nc, nt)
    if m_kid < 2:
        raise UserError(f"KID: kid_subset_size must be at least 2, got {kid_subset_size}")
    prdc_skip, sparse = _prdc_feasibility(sub_c, sub_t, k)

    # ---- matrices computed once, indexed by every replicate
    t0 = time.perf_counter()
    kernels = (_poly_kernel(cand, cand, 3, gamma, 1.0), _poly_kernel(targ, targ, 3, gamma, 1.0),
               _poly_kernel(cand, targ, 3, gamma, 1.0))
    stage["kernels"] = time.perf_counter() - t0
    dists = None
    if prdc_skip is None:
        t0 = time.perf_counter()
        dists = (_pairwise_distances(targ, targ), _pairwise_distances(cand, cand),
                 _pairwise_distances(targ, cand))  # the last: real x fake
        stage["distances"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    point, kid_std = _point_estimates(cand, targ, sub_c, sub_t, est, kernels, dists, k=k, kid_subsets=kid_subsets,
                                      m_kid=m_kid, seed=seed)
    stage["point"] = time.perf_counter() - t0

    no_ci = "n_boot" if n_boot == 0 else "subjects" if n_sc < 2 or n_st < 2 else None
    reps = None if no_ci else _replicates(cand, targ, sub_c, n_sc, sub_t, n_st, est, kernels, dists, k=k,
                                          n_boot=n_boot, seed=seed, stage=stage)
    stats = DistributionStats(space=space, d=d, estimator=est, n_candidate=nc, candidate_subjects=n_sc,
                              n_target=nt, target_subjects=n_st, k=k, kid_subsets=kid_subsets, kid_subset_size=m_kid,
                              kid_std=kid_std, alpha=alpha, n_boot=n_boot, no_ci=no_ci, prdc_skip=prdc_skip,
                              prdc_sparse_sets=sparse, estimates=_estimates(point, reps, alpha), timings=stage)
    stage["total"] = time.perf_counter() - t_start
    return stats
