"""The samples section: a grid of up to 16 synthetic images with conditioning-mask and judge
outlines, and a caption table (subject, vendor, group, judge Dice)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from reports import plots
from reports.sections.base import ReportContext, Section

N_GRID = 16


def frame(a: np.ndarray) -> np.ndarray:
    """A 2D view of one item: cine items ``(T, H, W)`` give their first frame."""
    a = np.asarray(a)
    while a.ndim > 2:
        a = a[0]
    return a


def _str_at(arr: Any, i: int) -> str:
    if arr is None:
        return ""
    try:
        return str(arr[i])
    except (IndexError, TypeError):
        return ""


def _judge_labels(ctx: ReportContext, sec: Section, n: int) -> dict[int, np.ndarray]:
    """Sample index -> judge label map from judge_samples.npz (empty, with a note, when unusable)."""
    j = ctx.inp.judge
    if j is not None and "sample_index" in j and "labels" in j:
        si, lab = np.asarray(j["sample_index"]).ravel(), np.asarray(j["labels"])
        if lab.ndim >= 3 and lab.shape[0] == si.shape[0]:
            return {int(i): lab[k] for k, i in enumerate(si) if 0 <= int(i) < n}
        sec.notes.append("judge_samples.npz: labels and sample_index do not match; judge outlines left out")
    elif j is None:
        sec.notes.append(f"judge_samples.npz is {ctx.inp.errors.get('judge_samples.npz', 'missing')}: "
                         "no judge outlines (conditioning-mask outlines only).")
    return {}


def _mean_dice(df: Any) -> dict[int, float]:
    """Sample index -> the judge's mean Dice over RV/MYO/LV from anatomy_per_sample.csv."""
    if df is None or "sample_index" not in df:
        return {}
    cols = [c for c in ("dice_RV", "dice_MYO", "dice_LV") if c in df]
    if not cols:
        return {}
    vals = df[cols].to_numpy(float, copy=True)  # written below; a no-copy view is read-only
    vals[~np.isfinite(vals)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no Dice for that image
        means = np.nanmean(vals, axis=1)
    return {int(i): float(m) for i, m in zip(df["sample_index"], means) if np.isfinite(m)}


def samples_section(ctx: ReportContext) -> Section:
    """Samples: up to 16 synthetic images (spread over the set, preferring those the judge
    segmented) with conditioning-mask and judge outlines, and a caption table."""

    sec, _ = ctx.open_section("samples", "Synthetic samples", gloss="samples",
                              intro="Synthetic images only. Orange solid outline: the conditioning mask; sky-blue "
                                    "dashed outline: the judge network's segmentation.")
    s = ctx.inp.samples
    if s is None:
        sec.notes.append(f"samples.npz is {ctx.inp.errors.get('samples.npz', 'missing')}: no sample grid.")
        return sec
    n = len(s)
    judge_map = _judge_labels(ctx, sec, n)
    pool = np.array(sorted(judge_map)) if judge_map else np.arange(n)
    pick = pool[np.unique(np.linspace(0, len(pool) - 1, min(N_GRID, len(pool))).round().astype(int))]
    dice = _mean_dice(ctx.inp.anatomy_csv)
    images, cond, judge, titles = [], [], [], []
    shape2d = frame(s.images[0]).shape
    for i in pick:
        i = int(i)
        images.append(frame(s.images[i]))
        cond.append(frame(s.masks[i]) if s.masks is not None else None)
        jl = judge_map.get(i)
        jl = frame(jl) if jl is not None else None
        judge.append(jl if jl is not None and jl.shape == shape2d else None)
        titles.append(f"#{i}" + (f"  Dice {dice[i]:.2f}" if i in dice else ""))
    if judge_map and all(x is None for x in judge):
        sec.notes.append("judge labels have a different shape from the images; judge outlines left out")
    if s.masks is None:
        sec.notes.append("the sample set has no conditioning masks (unconditional generator): no mask outlines")
    if s.is_cine:
        sec.notes.append("cine sample set: the first frame of each item is shown")
    sec.figure(ctx._figure("samples_grid", f"{len(images)} of {n} synthetic images",
                           "Numbers: sample index and, where measured, the judge's mean Dice over RV/MYO/LV.",
                           lambda: plots.image_grid_figure(images, titles=titles, conditioning=cond, judge=judge,
                                                           suptitle=""),
                           gloss="samples", notes=sec.notes))
    t = ctx.table("samples", "Shown samples", ["conditioning subject", "vendor", "group", "judge Dice (mean)"],
                  row_header="sample")
    for i in pick:
        i = int(i)
        t.add(f"#{i}", [_str_at(s.subject_ids, i), _str_at(s.vendor, i), _str_at(s.group, i),
                        dice.get(i, "")])
    sec.table(t)
    return sec
