"""Shared statistics: subject-level (cluster) bootstrap confidence intervals.

Images of one subject are not independent (neighbouring slices, ED and ES of one heart), so
every CI in cmr-audit resamples *subjects* with replacement and keeps all of a subject's
images together (the cluster bootstrap; Davison & Hinkley 1997, section 3.8). With one image
per subject it reduces to the ordinary percentile bootstrap (Efron & Tibshirani 1993).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def cluster_bootstrap(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    statistic: Callable[[np.ndarray], float] | None = None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI ``(low, high)`` of ``statistic`` (default: NaN-ignoring mean).

    ``clusters`` labels the unit of resampling (subject ids); ``None`` = each value its own.
    NaN values are ignored (they mark "undefined for this image", e.g. Dice of an absent
    structure). Returns ``(nan, nan)`` when fewer than two clusters hold a finite value.
    """
    values = np.asarray(values, dtype=np.float64)
    clusters = np.arange(len(values)) if clusters is None else np.asarray(clusters)
    if len(clusters) != len(values):
        raise ValueError("values and clusters must have the same length")
    finite = np.isfinite(values)
    values, clusters = values[finite], clusters[finite]
    ids, inverse = np.unique(clusters, return_inverse=True)
    k = len(ids)
    if k < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)  # (n_boot, k) resampled cluster counts
    if statistic is None:
        sums = np.bincount(inverse, weights=values, minlength=k)
        sizes = np.bincount(inverse, minlength=k).astype(np.float64)
        stats = (counts @ sums) / (counts @ sizes)
    else:
        members = [values[inverse == j] for j in range(k)]
        stats = np.array([
            statistic(np.concatenate([np.repeat(members[j], c, axis=0) if c > 1 else members[j] for j, c in enumerate(row) if c > 0]))
            for row in counts
        ])
    lo, hi = np.nanpercentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)
