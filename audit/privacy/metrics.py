"""Shared evaluation of membership-inference scores (every attack goes through this code).

Scores follow one convention: **higher = more member-like**. Members are labelled 1 (images of
``train`` subjects), non-members 0 (images of every subject the generator never trained on and
whose masks did not condition the samples: normally ``holdout`` + ``test``, see
:mod:`audit.privacy.design`).

* ROC AUC: the Mann-Whitney statistic, ties counted one half (identical to
  :func:`sklearn.metrics.roc_auc_score`; cross-checked in the tests).
* TPR at a target FPR: the ROC operating point with the **largest FPR that does not exceed the
  target** (equivalently the lowest threshold ``t`` with ``FPR(score >= t) <= target``); TPR is
  read at that point. Carlini et al. (2022), *Membership inference attacks from first
  principles*, argue that this low-FPR figure, not AUC, measures whether an attack can
  confidently identify *some* members. A target below ``1 / n_nonmembers`` cannot be resolved
  and is reported as unavailable: the ROC's FPR grid has steps of ``1 / n_nonmembers``, so the
  only admissible point would be FPR 0, a different figure than the one named. At
  ``n_nonmembers >= 1 / target`` the point exists but may rest on a single non-member (0.1 %
  FPR with 1,000 non-members), hence also:
* TPR at the lowest supported FPR: the same convention at the target
  ``FPR_min = k / n_nonmembers`` with ``k = MIN_FLAGGED_NONMEMBERS = 10``, the lowest FPR whose
  estimate rests on (at least, without ties exactly) 10 non-members on the attacker's positive
  side (``score >= threshold``). Its FPR is stated in the entry (``params.fpr``). With fewer
  than 10 non-members it is unavailable. A TPR well above that FPR (Carlini et al. 2022 read
  TPR / FPR, e.g. 10x chance) means a few members are singled out with confidence; the
  threshold read is of the ``score >= t`` family, so with ties at the boundary the achieved FPR
  is below the target (stated in the notes) and the TPR conservative.
* Balanced accuracy: ``(TPR + TNR) / 2`` at the threshold that maximises it on the evaluated
  data (an optimistic, attacker-favourable figure; 0.5 = chance).
* Confidence intervals: percentile bootstrap that resamples **subjects** with replacement,
  separately among members and non-members (a stratified cluster bootstrap, Davison & Hinkley
  1997, section 3.8), keeping all images of a drawn subject. Implemented as bootstrap weights
  (how often each subject was drawn), so all replicates are evaluated in vectorised form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.core.results import metric, unavailable

FPR_TARGETS: tuple[float, ...] = (0.01, 0.001)
#: non-members that must be flagged for the lowest supported FPR (``FPR_min = 10 / n_nonmembers``)
MIN_FLAGGED_NONMEMBERS = 10
LOWEST_KEY = "tpr_at_lowest_fpr"
TPR_METHOD = ("TPR at the ROC point with the largest FPR <= {t:g} (lowest threshold whose FPR <= target; "
              "score >= threshold = member); subject-level stratified bootstrap 95% CI")


def fpr_key(target: float) -> str:
    return f"tpr_at_fpr_{100 * target:g}%"


def lowest_fpr(n_nonmembers: int, k: int = MIN_FLAGGED_NONMEMBERS) -> float | None:
    """``k / n_nonmembers``: the lowest FPR whose estimate rests on ``k`` flagged non-members
    (``None`` below ``k`` non-members)."""
    return None if n_nonmembers < k else k / n_nonmembers


# --------------------------------------------------------------------------- point statistics


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` for every distinct score (decision ``score >= threshold``),
    starting at ``(0, 0, +inf)``."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, s[last]]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney ROC AUC (ties count 1/2)."""
    w = np.ones((1, len(scores)))
    return float(_weighted_auc(np.asarray(scores, np.float64), np.asarray(labels).astype(bool), w)[0])


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    w = np.ones((1, len(scores)))
    return float(_weighted_tpr_at_fpr(np.asarray(scores, np.float64), np.asarray(labels).astype(bool), w, target)[0])


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(max balanced accuracy, its threshold)`` over all thresholds ``score >= t``."""
    fpr, tpr, thr = roc_curve(scores, labels)
    ba = (tpr + 1 - fpr) / 2
    i = int(np.argmax(ba))
    return float(ba[i]), float(thr[i])


# --------------------------------------------------------------------------- weighted (bootstrap) forms


def _weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC for each row of ``weights`` (B, n): image i counts ``weights[b, i]`` times."""
    uniq, inv = np.unique(scores, return_inverse=True)
    neg_w = np.zeros((weights.shape[0], len(uniq)))
    np.add.at(neg_w.T, inv[~labels], weights[:, ~labels].T)
    cum = np.concatenate([np.zeros((weights.shape[0], 1)), np.cumsum(neg_w, axis=1)], axis=1)
    pos_inv = inv[labels]
    below = cum[:, pos_inv]  # weight of negatives strictly below each positive
    equal = neg_w[:, pos_inv]
    wp = weights[:, labels]
    num = (wp * (below + 0.5 * equal)).sum(axis=1)
    den = wp.sum(axis=1) * weights[:, ~labels].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _weighted_rates(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted (fpr, tpr) at every distinct threshold, shape (B, n_distinct) each."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    w = weights[:, order]
    tp = np.cumsum(w * y, axis=1)[:, last]
    fp = np.cumsum(w * ~y, axis=1)[:, last]
    with np.errstate(invalid="ignore", divide="ignore"):
        return fp / fp[:, -1:], tp / tp[:, -1:]


def _weighted_tpr_at_fpr(scores, labels, weights, target: float) -> np.ndarray:
    fpr, tpr = _weighted_rates(scores, labels, weights)
    ok = fpr <= target + 1e-12
    # fpr is non-decreasing along thresholds: the last admissible point has the largest FPR <= target
    return np.where(ok, tpr, 0.0).max(axis=1)


def _weighted_balanced_accuracy(scores, labels, weights) -> np.ndarray:
    fpr, tpr = _weighted_rates(scores, labels, weights)
    return np.maximum(np.nanmax((tpr + 1 - fpr) / 2, axis=1), 0.5)


# --------------------------------------------------------------------------- bootstrap


def subject_bootstrap_weights(subjects: np.ndarray, labels: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` image weights from resampling subjects with replacement within each class."""
    subjects = np.asarray(subjects).astype(str)
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_boot, len(subjects)))
    for cls in (True, False):
        sel = labels == cls
        ids, inv = np.unique(subjects[sel], return_inverse=True)
        if len(ids) == 0:
            continue
        counts = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=n_boot)
        weights[:, sel] = counts[:, inv]
    return weights


def _ci(stats: np.ndarray, alpha: float) -> tuple[float, float]:
    stats = stats[np.isfinite(stats)]
    if len(stats) < 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


@dataclass
class Evaluation:
    """Point values and CIs of one attack at one aggregation level (plain floats)."""

    level: str
    n_members: int
    n_nonmembers: int
    auc: float
    auc_ci: tuple[float, float]
    tpr: dict[float, float | None]
    tpr_ci: dict[float, tuple[float, float]]
    #: TPR at the lowest supported FPR (None below MIN_FLAGGED_NONMEMBERS non-members), its
    #: target FPR, CI and the FPR actually achieved on the data (lower with ties)
    lowest_fpr: float | None
    tpr_lowest: float | None
    tpr_lowest_ci: tuple[float, float]
    lowest_fpr_achieved: float | None
    balanced_accuracy: float
    balanced_accuracy_ci: tuple[float, float]
    ba_threshold: float
    roc: dict[str, list[float]]


def evaluate(scores: np.ndarray, labels: np.ndarray, subjects: np.ndarray, *, level: str = "image",
             n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
             targets: tuple[float, ...] = FPR_TARGETS) -> Evaluation:
    """All membership metrics of one score vector, with subject-level bootstrap CIs."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError(f"{level}: attack scores contain NaN/Inf")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    weights = subject_bootstrap_weights(subjects, labels, n_boot, seed)
    a = auc(scores, labels)
    a_ci = _ci(_weighted_auc(scores, labels, weights), alpha)
    tpr: dict[float, float | None] = {}
    tpr_ci: dict[float, tuple[float, float]] = {}
    for t in targets:
        if n_neg * t < 1:
            tpr[t] = None
            continue
        tpr[t] = tpr_at_fpr(scores, labels, t)
        tpr_ci[t] = _ci(_weighted_tpr_at_fpr(scores, labels, weights, t), alpha)
    ba, thr = balanced_accuracy(scores, labels)
    ba_ci = _ci(_weighted_balanced_accuracy(scores, labels, weights), alpha)
    fpr, tp, _ = roc_curve(scores, labels)
    low = lowest_fpr(n_neg)
    low_tpr = low_achieved = None
    low_ci: tuple[float, float] = (float("nan"), float("nan"))
    if low is not None:
        ok = fpr <= low + 1e-12
        low_tpr, low_achieved = float(tp[ok].max()), float(fpr[ok].max())
        low_ci = _ci(_weighted_tpr_at_fpr(scores, labels, weights, low), alpha)
    keep = _thin(len(fpr), 512)
    return Evaluation(level, n_pos, n_neg, a, a_ci, tpr, tpr_ci, low, low_tpr, low_ci, low_achieved, ba, ba_ci, thr,
                      {"fpr": fpr[keep].round(6).tolist(), "tpr": tp[keep].round(6).tolist()})


def _thin(n: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` ROC points (always the first and last)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.r_[np.linspace(0, n - 1, max_points).round().astype(int), n - 1])


def _ci_or_none(ci: tuple[float, float]) -> tuple[float, float] | None:
    return ci if np.all(np.isfinite(ci)) else None


def entries(ev: Evaluation, unit_name: str, *, member_splits: str = "train",
            nonmember_splits: str = "holdout") -> dict[str, Any]:
    """Results entries of one :class:`Evaluation` (``unit_name``: ``images`` or ``subjects``;
    ``member_splits`` / ``nonmember_splits``: the split names the counts' methods cite)."""
    n = ev.n_members + ev.n_nonmembers
    boot = "subject-level stratified bootstrap 95% CI (members and non-members resampled separately)"
    out: dict[str, Any] = {
        "auc": metric(ev.auc, "1", method=f"ROC AUC (Mann-Whitney, ties 1/2) over {unit_name}; {boot}",
                      ci=_ci_or_none(ev.auc_ci), n=n),
    }
    for t, v in ev.tpr.items():
        key = fpr_key(t)
        if v is None:
            out[key] = unavailable(
                f"only {ev.n_nonmembers} non-member {unit_name}: a FPR of {t:g} needs at least {int(np.ceil(1 / t))}")
        else:
            out[key] = metric(v, "fraction", method=TPR_METHOD.format(t=t) + f" over {unit_name}",
                              ci=_ci_or_none(ev.tpr_ci[t]), n=n, params={"fpr": t})
    k = MIN_FLAGGED_NONMEMBERS
    if ev.lowest_fpr is None or ev.tpr_lowest is None:
        out[LOWEST_KEY] = unavailable(
            f"only {ev.n_nonmembers} non-member {unit_name}: the lowest supported FPR needs at least {k} "
            f"(an FPR estimate resting on {k} flagged non-members)")
    else:
        achieved = ("" if abs(ev.lowest_fpr_achieved - ev.lowest_fpr) < 1e-12 else
                    f"; achieved FPR {ev.lowest_fpr_achieved:.4g} (tied scores at the threshold)")
        out[LOWEST_KEY] = metric(
            ev.tpr_lowest, "fraction", n=n, ci=_ci_or_none(ev.tpr_lowest_ci), params={"fpr": ev.lowest_fpr},
            method=(f"TPR at the lowest supported FPR, {k} / n_nonmembers = {k}/{ev.n_nonmembers} = "
                    f"{ev.lowest_fpr:.4g} (the lowest FPR whose estimate rests on {k} flagged non-members): "
                    + TPR_METHOD.format(t=ev.lowest_fpr) + f" over {unit_name}"),
            notes=f"FPR {ev.lowest_fpr:.4g} ({100 * ev.lowest_fpr:.3g} %) = {k}/{ev.n_nonmembers} non-member "
                  f"{unit_name}{achieved}")
    out["balanced_accuracy"] = metric(
        ev.balanced_accuracy, "1", n=n, ci=_ci_or_none(ev.balanced_accuracy_ci),
        method=f"max over thresholds of (TPR+TNR)/2 over {unit_name} (threshold chosen on the evaluated data: "
               f"optimistic for the attacker); {boot}",
        notes=f"threshold {ev.ba_threshold:.6g}")
    out["n_members"] = metric(ev.n_members, unit_name, method=f"member {unit_name} ({member_splits} split)",
                              n=ev.n_members)
    out["n_nonmembers"] = metric(ev.n_nonmembers, unit_name,
                                 method=f"non-member {unit_name} ({nonmember_splits} split"
                                        f"{'s' if '+' in nonmember_splits else ''})", n=ev.n_nonmembers)
    return out
