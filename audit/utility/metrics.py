"""Segmentation metrics of the utility audit and their statistics.

Per image and structure (RV, MYO, LV) the utility nets are scored against the real ground
truth with Dice and HD95 -- the judge-agreement helpers of :mod:`audit.anatomy.agreement`,
reused as they are -- plus the average symmetric surface distance (ASSD) as MONAI defines it
(``compute_average_surface_distance(symmetric=True, spacing=...)``; MONAI Consortium,
arXiv 2211.02701), all in millimetres with the pixel spacing. HD95 and ASSD come from the same
surface distances (:mod:`audit.anatomy.surface`, tested equal to MONAI's two functions). The
conventions are the anatomy stage's:

* Dice is undefined (NaN) when the structure is absent from the ground truth (an RV-free apical
  slice); a structure the net misses gets Dice 0.
* HD95 and ASSD are undefined when the structure is absent from the ground truth *or* from the
  prediction. An empty prediction where the ground truth has the structure is counted
  (``empty_pred_<S>`` columns, reported in the ``notes`` of every distance entry) and never
  recorded as 0; if no image has a defined distance, the entry is *unavailable* with the counts.

Beside these per-slice figures, ``dice_volume`` is the Dice of the ACDC challenge (Bernard et al.
2018, IEEE TMI 37:2514-2525): per subject and cine frame (the ED and the ES stack) the overlap is
pooled over all evaluated slices, ``2 sum|P & G| / (sum|P| + sum|G|)``, then averaged over the
subject's frames. It weighs a slice by its area, so a small apical slice the net misses costs
little, where the per-slice mean scores it 0; it is the figure the literature's "about 0.90 for a 2D
U-Net on ACDC" refers to. With ``audit.max_images`` below a subject's slice count the stack is the
evaluated slices, not the whole volume (the entry's method says so).

Statistics over subjects and seeds: images are first averaged per subject (a subject's slices
are not independent), then over the training seeds of a setting. The 95 % CIs come from a
*crossed* bootstrap (Owen 2007, "The pigeonhole bootstrap", Ann. Appl. Stat. 1:386-411) that
resamples subjects and training seeds independently; with one seed it is the subject-level
cluster bootstrap of :func:`audit.core.stats.cluster_bootstrap`. Paired comparisons resample the
*same* subjects for both settings (the pairing) and each setting's seeds independently (the
nets of two settings are not paired), so the CI reflects both the choice of patients and the
training noise.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from audit.anatomy.agreement import STRUCTURES
from audit.anatomy.agreement import per_image as agreement_per_image
from audit.core.results import metric, unavailable

NAMES = tuple(STRUCTURES.values())  # ("RV", "MYO", "LV")
KINDS = {"dice": ("dice", "1", "Dice"), "hd95_mm": ("hd95", "mm", "HD95"), "assd_mm": ("assd", "mm", "ASSD")}
"""Result key -> (column prefix, unit, label)."""
HIGHER_IS_BETTER = {"dice": True, "hd95": False, "assd": False}


def per_image(pred: np.ndarray, ref: np.ndarray, spacing, batch: int = 256, *, workers: int | None = None) -> pd.DataFrame:
    """Dice, HD95 (mm) and ASSD (mm) per image and structure, plus ``empty_pred_<S>`` flags and the
    pixel counts ``tp_<S>``, ``npred_<S>``, ``nref_<S>`` (overlap, prediction, ground truth) that
    :func:`volume_dice` pools.

    Columns ``dice_RV``, ``hd95_RV``, ..., then ``assd_RV``, ``empty_pred_RV``, ... (see the
    module docstring for when a value is NaN). HD95 and ASSD come from one surface-distance
    computation per image and structure (:func:`audit.anatomy.agreement.per_image`; large
    inputs in ``workers`` processes, default the usable cores, with the same result).
    """
    scores = agreement_per_image(pred, ref, spacing, batch=batch, assd=True, workers=workers)
    order = [f"{k}_{n}" for n in NAMES for k in ("dice", "hd95")] + [f"assd_{n}" for n in NAMES]
    table = scores[order].copy()
    counts = {}
    for k, name in STRUCTURES.items():
        p, r = pred == k, ref == k
        npred, nref = p.sum(axis=(1, 2)).astype(np.int64), r.sum(axis=(1, 2)).astype(np.int64)
        # the net found nothing where the ground truth has the structure: counted, never a distance of 0
        table[f"empty_pred_{name}"] = (npred == 0) & (nref > 0)
        # pixel counts: the pooled (per-stack) Dice of volume_dice
        counts.update({f"tp_{name}": (p & r).sum(axis=(1, 2)).astype(np.int64), f"npred_{name}": npred,
                       f"nref_{name}": nref})
    for col, v in counts.items():  # after the empty_pred_* columns, as before
        table[col] = v
    for prefix in ("dice", "hd95", "assd"):  # per-image mean over the structures with a defined value
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            table[f"{prefix}_mean"] = np.nanmean(table[[f"{prefix}_{s}" for s in NAMES]].to_numpy(float), axis=1)
    return table


def subject_matrix(table: pd.DataFrame, column: str, subjects: list[str], seeds: list[int]) -> np.ndarray:
    """``(subjects, seeds)`` matrix of the per-subject mean of ``column`` (NaN = undefined)."""
    per = table.groupby(["subject_id", "seed"])[column].mean()  # pandas mean skips NaN
    out = np.full((len(subjects), len(seeds)), np.nan)
    for i, s in enumerate(subjects):
        for j, k in enumerate(seeds):
            v = per.get((s, k))
            if v is not None and np.isfinite(v):
                out[i, j] = float(v)
    return out


VOLUME_KEYS = ("subject_id", "seed", "frame")


def volume_dice(table: pd.DataFrame) -> pd.DataFrame | None:
    """Per ``(subject_id, seed)``: the ACDC challenge Dice ``dice_volume_<S>`` and their mean over
    the structures ``dice_volume_mean`` (module docstring), from the per-image counts of
    :func:`per_image` and a ``frame`` column. A structure absent from a frame's ground truth is
    undefined (NaN) for that frame; the mean over frames skips it. ``None`` without a frame column
    or the counts (a table from another source)."""
    counts = [f"{c}_{n}" for n in NAMES for c in ("tp", "npred", "nref")]
    if table.empty or not set(VOLUME_KEYS).issubset(table.columns) or not set(counts).issubset(table.columns):
        return None
    g = table.groupby(list(VOLUME_KEYS), sort=False)[counts].sum()
    out = pd.DataFrame(index=g.index)
    for n in NAMES:
        ref = g[f"nref_{n}"].to_numpy(np.float64)
        den = ref + g[f"npred_{n}"].to_numpy(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"dice_volume_{n}"] = np.where(ref > 0, 2.0 * g[f"tp_{n}"].to_numpy(np.float64) / den, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["dice_volume_mean"] = np.nanmean(out[[f"dice_volume_{n}" for n in NAMES]].to_numpy(), axis=1)
    return out.groupby(level=["subject_id", "seed"], sort=False).mean().reset_index()  # mean over the frames


def _seed_mean(m: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(m, axis=-1)


def crossed_bootstrap(a: np.ndarray, b: np.ndarray | None = None, *, n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile CI of ``mean_subjects(mean_seeds(a)) [- mean_subjects(mean_seeds(b))]``.

    ``a`` and ``b`` are ``(subjects, seeds)`` matrices (rows = the same subjects); subjects are
    resampled jointly (paired), seeds independently for ``a`` and ``b``. NaN = undefined, left
    out. Returns ``(nan, nan)`` when fewer than two subjects have a defined value (difference).
    """
    a = np.asarray(a, np.float64)
    ok = np.isfinite(_seed_mean(a))
    if b is not None:
        b = np.asarray(b, np.float64)
        ok &= np.isfinite(_seed_mean(b))
    if ok.sum() < 2:
        return float("nan"), float("nan")
    a = a[ok]
    b = None if b is None else b[ok]
    s, k = a.shape
    rng = np.random.default_rng(seed)
    si = rng.integers(0, s, size=(n_boot, s))
    stats = _seed_mean(np.take_along_axis(a[si], rng.integers(0, k, size=(n_boot, 1, k)), axis=2))
    if b is not None:
        kb = b.shape[1]
        stats = stats - _seed_mean(np.take_along_axis(b[si], rng.integers(0, kb, size=(n_boot, 1, kb)), axis=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = np.nanmean(stats, axis=1)
    lo, hi = np.nanpercentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _ci(lo: float, hi: float) -> tuple[float, float] | None:
    return None if not (math.isfinite(lo) and math.isfinite(hi)) else (lo, hi)


def _counts_note(table: pd.DataFrame, prefix: str, structure: str) -> str | None:
    """How many (image, seed) pairs have an undefined distance, and how many of them because
    the prediction was empty."""
    if prefix == "dice":
        return None
    cols = [f"{prefix}_{s}" for s in NAMES] if structure == "mean" else [f"{prefix}_{structure}"]
    undefined = int(table[cols].isna().to_numpy().sum())
    if not undefined:
        return None
    ecols = [f"empty_pred_{s}" for s in NAMES] if structure == "mean" else [f"empty_pred_{structure}"]
    empty = int(table[ecols].to_numpy(bool).sum())
    return (f"{prefix}_undefined={undefined} of {len(table) * len(cols)} image-structure-seed values "
            f"(empty_prediction={empty}, structure absent from the ground truth={undefined - empty})")


def absolute_entries(table: pd.DataFrame, subjects: list[str], seeds: list[int], *, n_boot: int, seed: int,
                     what: str) -> dict[str, Any]:
    """``{dice, hd95_mm, assd_mm} x {RV, MYO, LV, mean}`` entries for one setting and vendor.

    ``table`` holds the per-image rows of that setting and vendor (all seeds)."""
    out: dict[str, Any] = {}
    stats = (f"over {len(seeds)} training seeds and over subjects (n = subjects); 95% CI: bootstrap over subjects and "
             "seeds (crossed)")
    for key, (prefix, unit, label) in KINDS.items():
        out[key] = {}
        for structure in (*NAMES, "mean"):
            note = _counts_note(table, prefix, structure)
            avg = "mean over the structures (RV/MYO/LV) defined in each image, then " if structure == "mean" else ""
            out[key][structure] = _subject_entry(
                subject_matrix(table, f"{prefix}_{structure}", subjects, seeds), unit, n_boot=n_boot, seed=seed,
                note=note, method=f"{label} of {what} vs the real ground truth; {avg}mean over each subject's images, {stats}",
                missing=f"{label} {structure} undefined for every evaluation image: "
                        f"{note or 'no image with a defined value'}")
    vol = volume_dice(table)
    if vol is not None:
        out["dice_volume"] = {}
        for structure in (*NAMES, "mean"):
            avg = ("mean over the structures (RV/MYO/LV) present in each stack's ground truth, then "
                   if structure == "mean" else "")
            out["dice_volume"][structure] = _subject_entry(
                subject_matrix(vol, f"dice_volume_{structure}", subjects, seeds), "1", n_boot=n_boot, seed=seed,
                missing=f"volume Dice {structure} undefined: the structure is absent from every evaluated stack",
                method=(f"Dice of {what} as the ACDC challenge computes it (Bernard et al. 2018): per subject and cine "
                        f"frame, the overlap pooled over the frame's evaluated slices; {avg}mean over the subject's "
                        f"frames, {stats}"))
    return out


def _subject_entry(m: np.ndarray, unit: str, *, n_boot: int, seed: int, method: str, missing: str,
                   note: str | None = None) -> dict[str, Any]:
    """The entry of a ``(subjects, seeds)`` matrix: the mean over subjects of the seed means, with
    the crossed-bootstrap CI; unavailable (``missing``) when no subject has a defined value."""
    sm = _seed_mean(m)
    ok = np.isfinite(sm)
    if not ok.any():
        return unavailable(missing)
    lo, hi = crossed_bootstrap(m, n_boot=n_boot, seed=seed)
    return metric(float(np.mean(sm[ok])), unit, ci=_ci(lo, hi), n=int(ok.sum()), notes=note, method=method)


def verdict(lo: float | None, hi: float | None, higher_is_better: bool) -> str:
    """``improves`` / ``worsens`` when the 95 % CI of the difference excludes 0, else ``no evidence``."""
    if lo is None or hi is None:
        return "no evidence (no CI)"
    if lo > 0:
        return "improves" if higher_is_better else "worsens"
    if hi < 0:
        return "worsens" if higher_is_better else "improves"
    return "no evidence"


def wilcoxon_p(diff: np.ndarray) -> tuple[float | None, str]:
    """Two-sided paired Wilcoxon signed-rank p-value of per-subject differences (SciPy)."""
    from scipy.stats import wilcoxon  # lazy: scipy only on this path

    d = np.asarray(diff, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return None, f"{len(d)} subject(s) with a defined difference; the signed-rank test needs at least 2"
    if np.all(d == 0):
        return 1.0, "every paired difference is 0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(wilcoxon(d, alternative="two-sided").pvalue)
    if not math.isfinite(p):
        return None, "SciPy returned a non-finite p-value"
    note = f"with {len(d)} subjects the smallest attainable two-sided p is {2 / 2 ** len(d):.3g}" if len(d) < 10 else ""
    return p, note


def paired_entries(table: pd.DataFrame, base: pd.DataFrame, subjects: list[str], seeds: list[int], base_seeds: list[int],
                   *, n_boot: int, seed: int, setting: str, baseline: str = "real") -> dict[str, Any]:
    """``setting`` minus ``baseline`` (the rows of ``base``) on the same subjects: ``dice_diff``
    (mean over structures), ``dice_diff_by_structure``, ``hd95_diff_mm``, ``assd_diff_mm`` and
    ``wilcoxon_p``."""
    out: dict[str, Any] = {"dice_diff_by_structure": {}, "hd95_diff_mm": {}, "assd_diff_mm": {},
                           "wilcoxon_p": {"dice": {}, "hd95": {}, "assd": {}}}
    how = (f"{setting} minus {baseline}: per subject, the mean over its images and over the training seeds of each setting; "
           "then the mean over subjects (n = subjects evaluated by both); 95% CI: paired bootstrap over subjects "
           "(both settings on the same resampled subjects) with each setting's seeds resampled independently")
    one_net = ("; one net per setting: the CI covers the choice of subjects, not the training noise between two "
               "nets of one setting" if len(seeds) == 1 and len(base_seeds) == 1 else "")
    for prefix, unit, label in (("dice", "1", "Dice"), ("hd95", "mm", "HD95"), ("assd", "mm", "ASSD")):
        for structure in (*NAMES, "mean"):
            col = f"{prefix}_{structure}"
            a = subject_matrix(table, col, subjects, seeds)
            b = subject_matrix(base, col, subjects, base_seeds)
            d = _seed_mean(a) - _seed_mean(b)
            ok = np.isfinite(d)
            if prefix == "dice" and structure == "mean":
                slot, name = out, "dice_diff"
            elif prefix == "dice":
                slot, name = out["dice_diff_by_structure"], structure
            else:
                slot, name = out[f"{prefix}_diff_mm"], structure
            if not ok.any():
                reason = _counts_note(pd.concat([table, base]), prefix, structure) or "no subject with a defined value"
                slot[name] = unavailable(f"{label} {structure} difference not computable: {reason}")
            else:
                lo, hi = crossed_bootstrap(a, b, n_boot=n_boot, seed=seed)
                ci = _ci(lo, hi)
                v = verdict(*(ci or (None, None)), HIGHER_IS_BETTER[prefix])
                counts = _counts_note(pd.concat([table, base]), prefix, structure)
                notes = f"verdict: {v}" + (f"; {counts}" if counts else "") + one_net
                avg = "Dice averaged over RV/MYO/LV per image; " if structure == "mean" else ""
                slot[name] = metric(float(np.mean(d[ok])), unit, ci=ci, n=int(ok.sum()), notes=notes,
                                    method=f"{label} {structure} difference, {avg}{how}")
            if structure != "mean":
                p, note = wilcoxon_p(d)
                out["wilcoxon_p"][prefix][structure] = (
                    unavailable(f"paired Wilcoxon signed-rank test not computable: {note}") if p is None else
                    metric(p, "1", n=int(ok.sum()), notes=note or None,
                           method=f"two-sided paired Wilcoxon signed-rank test (SciPy) of per-subject {label} {structure} "
                                  f"differences ({setting} minus {baseline}; each subject averaged over images and seeds)"))
    return out


def dice_bars(section: dict[str, Any]) -> list[tuple[str, tuple[float, float | None, float | None]]]:
    """``(label, (value, ci_low, ci_high))`` of every absolute Dice figure of a utility section,
    ``"<setting> / <vendor> / <structure>"`` -- what the report's bar chart with CIs plots."""
    bars = []
    for setting, per_vendor in (section.get("settings") or {}).items():
        if not isinstance(per_vendor, dict) or "status" in per_vendor:
            continue
        for vendor, node in per_vendor.items():
            dice = node.get("dice") if isinstance(node, dict) else None
            if not isinstance(dice, dict):
                continue
            for structure, e in dice.items():
                if isinstance(e, dict) and "value" in e:
                    bars.append((f"{setting} / {vendor} / {structure}", (e["value"], e["ci_low"], e["ci_high"])))
    return bars
