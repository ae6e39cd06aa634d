"""The phantom's realism gate: how well the independent judge network segments it.

Convention (the one of the judge's reference Dice on real scans: about RV 0.93 / MYO 0.91 /
LV 0.96 on ACDC, its training domain, and 0.85 / 0.87 / 0.93 on M&Ms vendors it never saw): for
each subject and each of the ED and ES frames, the judge segments the chosen slices; Dice per
structure (RV, MYO, LV) is computed over those slices pooled together (a 3D Dice over the
evaluated slices), counting a structure only where the ground truth holds it in that frame; ED
and ES are averaged per subject, then subjects are averaged per vendor. The gate is a mean Dice of at
least :data:`GATE` for every structure and every vendor style.

Slice selections: ``"all"`` every slice; ``"mid3"`` the slices at 25 %, 50 % and 75 % of the
stack (basal-mid, mid-ventricular, apical-mid), which keeps the CPU cost at 6 slices per
subject (the judge is the slow part of the gate on a CPU: BENCHMARKS.md "Judge network").
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import numpy as np

from audit.core.errors import UserError

from .generator import PhantomSubject

__all__ = ["GATE", "STRUCTURES", "select_slices", "subject_dice", "summarise"]

log = logging.getLogger(__name__)

GATE = 0.85
STRUCTURES: tuple[str, ...] = ("RV", "MYO", "LV")


def select_slices(n_slices: int, mode: str) -> list[int]:
    """Slice indices evaluated for a stack of ``n_slices`` under ``mode`` (all | mid3 | mid)."""
    if mode == "all":
        return list(range(n_slices))
    if mode == "mid3":
        return sorted({int(round(f * (n_slices - 1))) for f in (0.25, 0.5, 0.75)})
    if mode == "mid":
        return [int(round(0.5 * (n_slices - 1)))]
    raise UserError(f"unknown slice selection {mode!r}: expected all, mid3 or mid")


def _dice(pred: np.ndarray, gt: np.ndarray) -> float:
    s = int(pred.sum()) + int(gt.sum())
    return float(2.0 * np.logical_and(pred, gt).sum() / s) if s else float("nan")


def subject_dice(subject: PhantomSubject, judge: Any, slices: str = "mid3") -> dict[str, Any]:
    """Judge Dice of one subject: ``{"RV": d, "MYO": d, "LV": d, "per_frame": {...}, "n_slices": k}``.

    ``judge`` is a :class:`cohorts.judge.Judge` (anything with ``segment(slices, spacing)``
    taking ``(N, H, W)`` nibabel-order slices).
    """
    zs = select_slices(subject.n_slices, slices)
    per_frame: dict[str, list[float]] = {}
    n_eval = 0
    for name, t in (("ED", subject.ed), ("ES", subject.es)):
        img = np.moveaxis(subject.image[:, :, zs, t], 2, 0).astype(np.float32)
        gt = np.moveaxis(subject.mask[:, :, zs, t], 2, 0)
        pred = judge.segment(img, spacing=subject.spacing[:2])
        n_eval += len(zs)
        per_frame[name] = [(_dice(pred == lab, gt == lab) if (gt == lab).any() else float("nan"))
                           for lab in (1, 2, 3)]
    arr = np.array(list(per_frame.values()), dtype=np.float64)
    with np.errstate(all="ignore"):
        mean = np.nanmean(arr, axis=0) if np.isfinite(arr).any() else np.full(3, np.nan)
    out: dict[str, Any] = {s: float(m) for s, m in zip(STRUCTURES, mean)}
    out["per_frame"] = {k: dict(zip(STRUCTURES, v)) for k, v in per_frame.items()}
    out["slices"] = zs
    out["n_slices_evaluated"] = n_eval
    return out


def summarise(rows: Iterable[dict[str, Any]], vendors: Sequence[str]) -> dict[str, Any]:
    """Per-vendor mean / std / min Dice per structure and whether the gate holds."""
    rows = list(rows)
    summary: dict[str, Any] = {}
    ok = True
    for v in vendors:
        rs = [r for r in rows if r["vendor"] == v]
        entry: dict[str, Any] = {"n_subjects": len(rs), "n_slices": int(sum(r["n_slices_evaluated"] for r in rs))}
        for s in STRUCTURES:
            vals = np.array([r[s] for r in rs], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            m = float(vals.mean()) if vals.size else float("nan")
            entry[s] = {"mean": m, "std": float(vals.std()) if vals.size else float("nan"),
                        "min": float(vals.min()) if vals.size else float("nan"), "n": int(vals.size)}
            ok = ok and bool(vals.size) and m >= GATE
        summary[v] = entry
    summary["gate"] = GATE
    summary["gate_passed"] = ok
    return summary
