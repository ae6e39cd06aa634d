"""Empirical epsilon lower bound from one training run with planted canaries.

Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023):
``m`` canaries are chosen before training and each is included in the training data
independently with probability 1/2 (``S_i`` in {-1, +1}). After one training run an auditor
scores every canary and guesses ``T_i`` in {-1, 0, +1} (+1 = included, -1 = left out, 0 =
abstain); ``r`` guesses are made and ``v`` of them are right. If training is (eps, delta)-DP
with respect to one canary (the privacy unit), then for every ``v``

    P[W >= v] <= beta + 2 m delta alpha,

    beta  = P[Binomial(r, q) >= v],   q = e^eps / (1 + e^eps),
    alpha = max_{1 <= i <= v} P[v - i <= Binomial(r, q) < v] / i

(their Theorem 3.1 for delta = 0 -- the guesses of an eps-DP algorithm are no better than
eps-randomised response -- and its (eps, delta) extension, Section 5). Inverting this p-value at a
confidence level gives a lower bound: every eps whose p-value for the observed ``v`` falls below
``1 - confidence`` is rejected, and the largest rejected eps is the bound. A DP-SGD run whose claimed
eps is correct produces a bound above it with probability at most ``1 - confidence``.

Choosing how many guesses to make after seeing the scores would void that guarantee, so the
auditor here fixes a small grid of guess counts in advance (guess "included" for the ``k`` highest
scores and "left out" for the ``k`` lowest, for each ``k`` of the grid) and splits the error
probability over the grid (Bonferroni): each candidate is tested at ``(1 - confidence) / len(grid)``
and the largest bound of the grid is reported. With few canaries the grid is one or two large guess
counts (:func:`default_guess_grid` says why).

Only numbers here: which canaries, how they are scored and where the figures go is the caller's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["p_value", "epsilon_lower_bound", "OneRunAudit", "audit_canaries", "default_guess_grid", "game_ceiling"]


def _q(eps: float) -> float:
    """Accuracy of eps-randomised response, e^eps / (1 + e^eps), stable for large eps."""
    return float(1.0 / (1.0 + math.exp(-eps))) if eps < 700 else 1.0


def p_value(m: int, r: int, v: int, eps: float, delta: float = 0.0) -> float:
    """Upper bound on P[at least ``v`` of ``r`` guesses are right] for an (eps, delta)-DP run with
    ``m`` canaries (Steinke et al. 2023; see the module docstring)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need eps >= 0 and delta in [0, 1], got {eps}, {delta}")
    q = _q(eps)
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta == 0 or v == 0:
        return min(beta, 1.0)
    pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[B = v-1], P[B = v-2], ..., P[B = 0]
    alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(beta + 2.0 * m * delta * alpha, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95,
                        eps_max: float = 100.0, tol: float = 1e-6) -> float:
    """The largest eps that the observation (``v`` right out of ``r`` guesses, ``m`` canaries) rejects
    at ``confidence``; 0 when it rejects none. Bisection on the p-value, which falls as eps falls."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    level = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    if p_value(m, r, v, eps_max, delta) < level:
        return eps_max
    lo, hi = 0.0, eps_max  # p(lo) < level <= p(hi)
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, delta) < level:
            lo = mid
        else:
            hi = mid
    return lo


#: below this many canaries the "few canaries" grid of :func:`default_guess_grid` applies
SMALL_GAME = 64
#: a guess count whose guesses number fewer than this is left out of the few-canaries grid
MIN_GUESSES = 24


def default_guess_grid(m: int) -> tuple[int, ...]:
    """Guess counts per side tried by :func:`audit_canaries`, fixed by ``m`` alone.

    From 64 canaries on: 1/8, 1/4 and 1/2 of them on each side (25 %, 50 % and all canaries
    guessed), so a strong but imperfect attack can guess only its most confident canaries.

    Fewer than 64 canaries (subject canaries: at most half the training subjects, 16-40 on the
    cohorts this tool meets): every canary guessed (``k = m // 2``), plus 75 % of them
    (``k = round(3 m / 8)``) when that is at least :data:`MIN_GUESSES` guesses. Why: ``r``
    guesses, all right, prove at most ``logit(level^(1/r))`` at delta = 0 (below 24 guesses under
    ~1.7 at a Bonferroni-split level, 16 guesses 1.2-1.35), and with delta = 1/(10 N) the
    ``2 m delta`` term takes much of each split level: a small guess count proves next to nothing
    and only takes its share of the error probability from the counts that can. Simulated (binormal
    scores, delta = 1/(10 (64 - m/2)), 150 games each), the mean bound and P(bound > 1) at a
    subject-level canary AUC of 0.95, and the game's ceiling:

    ====  ===========================  =========================  ==========================
    m     three-point grid above       all guessed (``m // 2``)   75 % and all (used, m >= 32)
    ====  ===========================  =========================  ==========================
    16    0.30 / 0.07, ceiling 1.04    0.52 / 0.07, ceiling 1.49  (75 % = 12 guesses: left out)
    24    0.52 / 0.13, ceiling 1.37    0.74 / 0.28, ceiling 1.87  0.81 / 0.35, ceiling 1.57
    32    0.64 / 0.11, ceiling 1.51    0.90 / 0.32, ceiling 2.12  0.98 / 0.58, ceiling 1.78
    40    0.65 / 0.05, ceiling 1.49    0.95 / 0.48, ceiling 2.27  1.03 / 0.68, ceiling 1.87
    ====  ===========================  =========================  ==========================

    At m = 24 the two-point grid has slightly more power but a lower ceiling (and 75 % is only 18
    guesses); from 32 on it is the better of the two. From 64 canaries on (image canaries, or
    large cohorts, delta 1/(10 x 1.5 m) or 1e-4) the three-point grid is kept: it is the best or
    near it for a moderate attack (AUC 0.85, m = 96-200: P(bound > 1) 0.56-0.99, the 75 %-and-all
    grid 0.42-0.84), and loses 0.2-0.5 in the mean bound only to a near-perfect one (AUC 0.99).
    """
    if m < SMALL_GAME:
        half = max(1, m // 2)
        k75 = int(round(3 * m / 8))
        return (k75, half) if 2 * k75 >= MIN_GUESSES and k75 < half else (half,)
    ks = sorted({max(1, int(round(m * f / 2))) for f in (0.25, 0.5, 1.0)})
    return tuple(k for k in ks if 2 * k <= m) or (max(1, m // 2),)


def game_ceiling(m: int, *, delta: float = 0.0, confidence: float = 0.95,
                 grid: Sequence[int] | None = None) -> float:
    """The largest bound any outcome of the game can give: every guess right at the best ``k`` of
    ``grid`` (default :func:`default_guess_grid`), each ``k`` tested at its Bonferroni level. The
    bound rises with the number right, so no observation proves more; a claim above the ceiling
    can never be contradicted, whatever the model leaks. Depends on ``m``, ``delta`` and the grid
    only, so it is known before training."""
    grid = tuple(int(k) for k in (grid if grid is not None else default_guess_grid(m)))
    if not grid or any(k < 1 or 2 * k > m for k in grid):
        raise ValueError(f"each guess count k needs 1 <= 2k <= m = {m}, got {grid}")
    per_test = 1.0 - (1.0 - confidence) / len(grid)
    return max(epsilon_lower_bound(m, 2 * k, 2 * k, delta=delta, confidence=per_test) for k in grid)


@dataclass(frozen=True)
class OneRunAudit:
    """The bound and how it was reached (the guess count that gave it, and the grid)."""

    epsilon_lb: float
    confidence: float
    delta: float
    m: int
    r: int
    v: int
    k: int
    grid: tuple[int, ...]
    n_included: int
    ceiling: float = 0.0
    """The largest bound any outcome of this game could give (:func:`game_ceiling`): with few
    canaries, or a ``delta`` large against ``1 / m`` (the ``2 m delta`` term of the p-value), a
    claimed epsilon above it can never be contradicted, whatever the model leaks."""


def audit_canaries(scores: Sequence[float], included: Sequence[bool], *, delta: float = 0.0,
                   confidence: float = 0.95, grid: Sequence[int] | None = None) -> OneRunAudit:
    """Epsilon lower bound from canary ``scores`` (higher = more likely trained on) and their true
    inclusion. For each ``k`` of ``grid`` (default :func:`default_guess_grid`) the ``k`` highest-scored
    canaries are guessed "included" and the ``k`` lowest "left out"; each ``k`` is tested at
    ``(1 - confidence) / len(grid)`` and the largest bound is returned. Ties are broken by canary
    order, which is fixed before training."""
    s = np.asarray(scores, np.float64)
    inc = np.asarray(included, bool)
    if s.ndim != 1 or s.shape != inc.shape:
        raise ValueError(f"scores and included must be 1-D of one length, got {s.shape} and {inc.shape}")
    if not np.isfinite(s).all():
        raise ValueError("canary scores contain NaN or Inf")
    m = int(s.size)
    grid = tuple(int(k) for k in (grid if grid is not None else default_guess_grid(m)))
    if not grid or any(k < 1 or 2 * k > m for k in grid):
        raise ValueError(f"each guess count k needs 1 <= 2k <= m = {m}, got {grid}")
    per_test = 1.0 - (1.0 - confidence) / len(grid)
    order = np.argsort(-s, kind="stable")  # highest score first
    best = None
    for k in grid:
        v = int(inc[order[:k]].sum()) + int((~inc[order[m - k:]]).sum())
        eps = epsilon_lower_bound(m, 2 * k, v, delta=delta, confidence=per_test)
        if best is None or eps > best[0]:
            best = (eps, k, v)
    eps, k, v = best  # type: ignore[misc]
    ceiling = game_ceiling(m, delta=delta, confidence=confidence, grid=grid)
    return OneRunAudit(epsilon_lb=eps, confidence=confidence, delta=delta, m=m, r=2 * k, v=v, k=k, grid=grid,
                       n_included=int(inc.sum()), ceiling=ceiling)
