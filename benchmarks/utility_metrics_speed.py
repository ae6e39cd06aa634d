"""Scoring cost of the utility audit: Dice / HD95 / ASSD of every evaluation image, before and after
the one-pass surface distances and the worker processes (:mod:`audit.anatomy.surface`).

On the H200 run of 2026-11-26 (BENCHMARKS.md, GPU, third session) each utility training spent
~59 s scoring its evaluation images in one process on the CPU, 5x its training time. Timed here
on synthetic label maps (RV disc, MYO ring, LV disc at random places; the "prediction" shifted by
up to 3 px with a radius change, every 10th image with a spurious blob, every 15th empty):

* ``before``: the previous path -- MONAI ``compute_dice`` on one-hot tensors, HD95 from KD-trees
  over the boundary pixels (``before_dice_hd95``: the anatomy stage's previous path), then MONAI
  ``compute_average_surface_distance(symmetric=True)``, a second surface-distance pass
  (``before_monai_assd``) -- all in this process;
* ``after_serial``: :func:`audit.utility.metrics.per_image` with ``workers=1``;
* ``after_parallel``: the same with the default workers (the usable cores, at most one per
  ``MIN_IMAGES_PER_WORKER`` images), worker start-up included;
* the anatomy stage's Dice + HD95 (:func:`audit.anatomy.agreement.per_image`), serial and default.

The largest difference of every column between ``before`` and ``after`` is recorded too.

    python benchmarks/utility_metrics_speed.py              # 800 images of 128 x 128
    python benchmarks/utility_metrics_speed.py --n 4000     # the full preset's evaluation set size
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("utility_metrics_speed")


def label_maps(n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, ref)`` label maps ``(n, size, size)`` uint8 made from shifted discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ref = np.zeros((n, size, size), np.uint8)
    pred = np.zeros_like(ref)
    lo, hi = int(size * 0.3), int(size * 0.7)
    for i in range(n):
        cy, cx = rng.integers(lo, hi, 2)
        r = rng.uniform(size / 13, size / 6.5)
        for target, (dy, dx, dr) in ((ref, (0, 0, 0.0)), (pred, (*rng.integers(-3, 4, 2), rng.uniform(-2, 2)))):
            rr = r + dr
            d2 = (yy - cy - dy) ** 2 + (xx - cx - dx) ** 2
            target[i][(yy - cy - dy) ** 2 + (xx - cx - dx - 1.6 * rr) ** 2 <= (0.9 * rr) ** 2] = 1
            target[i][d2 <= rr ** 2] = 2
            target[i][d2 <= (0.7 * rr) ** 2] = 3
    pred[::10, 5:12, 5:12] = 1
    pred[::15] = 0
    return pred, ref


def before(pred: np.ndarray, ref: np.ndarray, spacing, batch: int = 256, parts: dict | None = None):
    """The previous utility scoring path (two surface-distance passes, one process); the seconds
    of its Dice + HD95 part (the anatomy stage's previous path) and of its ASSD part go to ``parts``."""
    import warnings

    import pandas as pd
    import torch
    from monai.metrics import compute_average_surface_distance, compute_dice

    from audit.anatomy.surface import LABELS, surface_distances

    def one_hot(a):
        return torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), 4).permute(0, 3, 1, 2).float()

    dice, hd, assd = [], [], []
    t_dice_hd = t_assd = 0.0
    for lo in range(0, len(pred), batch):
        t0 = time.perf_counter()
        pb, rb = pred[lo:lo + batch], ref[lo:lo + batch]
        p, r = one_hot(pb), one_hot(rb)
        dice.append(compute_dice(p, r, include_background=False, ignore_empty=True).numpy())
        hd.append(np.stack([surface_distances(pb == k, rb == k, spacing, assd=False)[0] for k in LABELS], axis=1))
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = compute_average_surface_distance(p, r, include_background=False, symmetric=True,
                                                 spacing=list(spacing)).numpy()
        assd.append(np.where(np.isfinite(a), a, np.nan))
        t_dice_hd, t_assd = t_dice_hd + t1 - t0, t_assd + time.perf_counter() - t1
    if parts is not None:
        parts.update(before_dice_hd95=round(t_dice_hd, 2), before_monai_assd=round(t_assd, 2))
    out = {}
    for j, name in enumerate(("RV", "MYO", "LV")):
        out[f"dice_{name}"] = np.concatenate(dice)[:, j]
        out[f"hd95_{name}"] = np.concatenate(hd)[:, j]
        out[f"assd_{name}"] = np.concatenate(assd)[:, j]
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "utility_metrics_speed.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from audit.anatomy import agreement
    from audit.core.atomic import atomic_write_json
    from audit.utility.metrics import per_image
    from cohorts.parallel import default_workers

    spacing = (1.5, 1.5)
    pred, ref = label_maps(args.n, args.size)
    before(pred[:8], ref[:8], spacing)  # imports (MONAI, torch: seconds) are not the scoring cost
    per_image(pred[:8], ref[:8], spacing, workers=1)
    t: dict[str, float] = {}
    load0 = os.getloadavg()[0]

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        t[name] = round(time.perf_counter() - t0, 2)
        log.info("%-24s %7.2f s  (%.2f ms/image)", name, t[name], 1000 * t[name] / args.n)
        return out

    parts: dict[str, float] = {}
    old = timed("before", lambda: before(pred, ref, spacing, parts=parts))
    t.update(parts)
    log.info("  of which Dice + HD95 %.2f s (the anatomy stage's previous path), MONAI ASSD %.2f s",
             parts["before_dice_hd95"], parts["before_monai_assd"])
    new = timed("after_serial", lambda: per_image(pred, ref, spacing, workers=1))
    par = timed("after_parallel", lambda: per_image(pred, ref, spacing))
    timed("anatomy_serial", lambda: agreement.per_image(pred, ref, spacing, workers=1))
    timed("anatomy_parallel", lambda: agreement.per_image(pred, ref, spacing))
    if not par.equals(new):
        raise SystemExit("the parallel table differs from the serial one")
    diff = {}
    for c in old.columns:
        a, b = old[c].to_numpy(float), new[c].to_numpy(float)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            raise SystemExit(f"{c}: undefined values differ between before and after")
        ok = np.isfinite(a)
        diff[c] = float(np.max(np.abs(a[ok] - b[ok]))) if ok.any() else 0.0
    workers = default_workers(args.n, agreement.MIN_IMAGES_PER_WORKER)
    doc = {
        "benchmark": "utility_metrics_speed",
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cores": len(os.sched_getaffinity(0)), "load_avg_1min_before": round(load0, 2),
                    "load_avg_1min_after": round(os.getloadavg()[0], 2)},
        "command": " ".join(["python", "benchmarks/utility_metrics_speed.py", *(argv if argv is not None else sys.argv[1:])]),
        "n_images": args.n, "size": args.size, "default_workers": workers,
        "seconds": t,
        "speedup_serial": round(t["before"] / t["after_serial"], 2),
        "speedup_parallel": round(t["before"] / t["after_parallel"], 2),
        "max_abs_diff_before_after": {k: float(f"{v:.3g}") for k, v in diff.items()},
    }
    atomic_write_json(args.out, doc)
    log.info("before %.2f s -> after %.2f s serial, %.2f s with %d workers; wrote %s", t["before"], t["after_serial"],
             t["after_parallel"], workers, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
