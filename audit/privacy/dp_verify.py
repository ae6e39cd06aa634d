"""Empirical differential-privacy lower bounds from membership-inference results.

An (epsilon, delta)-DP training algorithm bounds *every* membership test: for any decision rule,
``TPR <= e^eps * FPR + delta`` and ``1 - FPR <= e^eps * (1 - TPR) + delta`` (Kairouz et al. 2015,
hypothesis-testing view of DP). Turning observed rates into an epsilon lower bound follows
Jagielski, Ullman & Oprea (2020), *Auditing differentially private machine learning: how
private is private SGD?* (NeurIPS), and Nasr et al. (2021, 2023):

    eps_LB = max over thresholds of max( log((TPR_lo - delta) / FPR_hi),
                                          log((1 - FPR_hi - delta) / (1 - TPR_lo)) )

with ``TPR_lo`` and ``FPR_hi`` one-sided Clopper-Pearson bounds (Clopper & Pearson 1934). Because
the threshold is chosen on the same data, the bounds are made simultaneous over all thresholds
with a Bonferroni correction (each of the ``2 x n_thresholds`` one-sided bounds at level
``alpha / (2 n_thresholds)``), so the returned bound holds with confidence ``1 - alpha``.

Caveats (also stated in the results' method strings): the Clopper-Pearson bounds assume
independent trials, so the bound is computed from **subject-level** scores when the DP unit is
the subject (images of one subject are correlated); and auditing one trained model with many
members is a one-run audit in the sense of Steinke et al. (2023), which gives a valid but
typically loose lower bound -- a bound far below the claim does not prove the claim.

The non-members are the privacy audit's whole pool (``holdout`` + ``test`` subjects,
:mod:`audit.privacy.design`): at subject level ``FPR_hi`` is a Clopper-Pearson bound on a few
dozen trials, so every valid non-member tightens it (with ``k = 0`` flagged non-members,
``FPR_hi = 1 - a^(1/n)`` shrinks as ``1/n``) and with it the bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta

from audit.core.results import metric, unavailable

MAX_THRESHOLDS = 256


def clopper_pearson(k: np.ndarray | int, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided ``(lower, upper)`` Clopper-Pearson bounds, each at level ``alpha``."""
    k = np.asarray(k, np.float64)
    lo = np.where(k > 0, beta.ppf(alpha, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha, k + 1, n - k), 1.0)
    return np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=1.0)


@dataclass
class EpsilonBound:
    epsilon_lb: float
    threshold: float
    form: str  # "tpr/fpr" or "tnr/fnr"
    tpr: float
    fpr: float
    tpr_lo: float
    fpr_hi: float
    n_members: int
    n_nonmembers: int
    delta: float
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def empirical_epsilon(scores: np.ndarray, labels: np.ndarray, *, delta: float = 0.0, alpha: float = 0.05,
                      max_thresholds: int = MAX_THRESHOLDS) -> EpsilonBound:
    """Epsilon lower bound (confidence ``1 - alpha``) from member/non-member scores (higher = member)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("empirical_epsilon needs members and non-members")
    thr = np.unique(scores)
    if len(thr) > max_thresholds:  # quantile grid keeps the Bonferroni factor bounded
        thr = np.unique(np.quantile(scores, np.linspace(0, 1, max_thresholds)))
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    tp = n_pos - np.searchsorted(pos, thr, side="left")  # decision: score >= threshold
    fp = n_neg - np.searchsorted(neg, thr, side="left")
    a = alpha / (2 * len(thr))
    tpr_lo, _ = clopper_pearson(tp, n_pos, a)
    _, fpr_hi = clopper_pearson(fp, n_neg, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where((tpr_lo - delta > 0) & (fpr_hi > 0), np.log((tpr_lo - delta) / fpr_hi), -np.inf)
        e2 = np.where((1 - fpr_hi - delta > 0) & (1 - tpr_lo > 0), np.log((1 - fpr_hi - delta) / (1 - tpr_lo)), -np.inf)
    i1, i2 = int(np.argmax(e1)), int(np.argmax(e2))
    i, form = (i1, "tpr/fpr") if e1[i1] >= e2[i2] else (i2, "tnr/fnr")
    best = max(float(e1[i1]), float(e2[i2]), 0.0)
    return EpsilonBound(best, float(thr[i]), form, tp[i] / n_pos, fp[i] / n_neg, float(tpr_lo[i]), float(fpr_hi[i]),
                        n_pos, n_neg, float(delta), float(alpha))


def compare_with_claim(bound: EpsilonBound, claimed_epsilon: float | None) -> dict[str, Any]:
    """Results entries: the claimed epsilon and a violation flag (1 = lower bound above the claim)."""
    if claimed_epsilon is None:
        reason = "no DP claim was made for this generator (no claimed epsilon)"
        return {"claimed_epsilon": unavailable(reason), "violation": unavailable(reason)}
    claimed = float(claimed_epsilon)
    violated = bound.epsilon_lb > claimed
    return {
        "claimed_epsilon": metric(claimed, "1", method="epsilon claimed by the training run (DP accountant)"),
        "violation": metric(1.0 if violated else 0.0, "1", n=bound.n_members + bound.n_nonmembers,
                            method="1 = the empirical epsilon lower bound exceeds the claimed epsilon (the DP claim is "
                                   "inconsistent with the attack), 0 = consistent",
                            notes=f"lower bound {bound.epsilon_lb:.4g} vs claim {claimed:.4g}"),
    }


def bound_entry(bound: EpsilonBound, *, attack: str, level: str) -> dict[str, Any]:
    return metric(
        bound.epsilon_lb, "1", n=bound.n_members + bound.n_nonmembers,
        method=(f"empirical epsilon lower bound (Jagielski et al. 2020): max over thresholds of log((TPR_lo - delta)/FPR_hi) "
                f"and log((1 - FPR_hi - delta)/(1 - TPR_lo)), one-sided Clopper-Pearson bounds simultaneous over thresholds "
                f"(Bonferroni), confidence {1 - bound.alpha:g}, delta {bound.delta:g}; strongest attack '{attack}' at "
                f"{level} level"),
        notes=(f"form {bound.form}, threshold {bound.threshold:.6g}, TPR {bound.tpr:.4g} (lo {bound.tpr_lo:.4g}), "
               f"FPR {bound.fpr:.4g} (hi {bound.fpr_hi:.4g}), {bound.n_members} members / {bound.n_nonmembers} non-members"),
    )
