"""Calibration of the anatomical plausibility criteria (audit/anatomy/plausibility.py).

Usage (about 4 minutes on 2 cores, most of it the judge on ~570 images):

    python benchmarks/plausibility_calibration.py
    python benchmarks/plausibility_calibration.py --no-judge      # masks only, ~1 minute

Writes ``benchmarks/results/plausibility_calibration.json`` with, per criterion, the pass rate
(among images where it applies) and the plausible rate for:

* ``ground_truth``: the phantom's ground-truth masks, every labelled (ED/ES) slice of every
  split, for two phantoms: 40 subjects seed 0 at 1.5 mm / 128 px, and 40 subjects seed 7 at
  2.0 mm / 96 px (another anatomy draw and grid). Must pass >= 95 %.
* ``judge_real``: the judge's segmentation of the real phantom images of the ``holdout``
  split of both phantoms (what a perfect generator would score).
* ``judge_noise``: the judge's segmentation of noise images: uniform noise, smoothed noise,
  and real images whose heart region (the mask dilated by 4 px) is replaced by uniform or
  smoothed noise. Must pass <= 10 %.
* ``masks_noise``: noise label maps checked directly: uniform random labels, a smoothed
  random field cut into labels, random ellipses with random labels, and the ground-truth masks
  with their labels permuted (right shapes, wrong structures).

Also recorded: the range of every raw measurement on real anatomy (ground truth and judge),
which is what the limits in :class:`audit.anatomy.plausibility.Thresholds` were placed
beyond, and the time to evaluate 2,000 images of 128 x 128. No real ACDC data was available
on the calibration machine: every "real" figure here is the built-in phantom.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

log = logging.getLogger("plausibility_calibration")

PHANTOMS = {  # name -> (subjects, seed, target spacing mm, size px)
    "seed0_1.5mm_128": (40, 0, 1.5, 128),
    "seed7_2.0mm_96": (40, 7, 2.0, 96),
}


def _load(subjects: int, seed: int, spacing: float, size: int):
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig
    from cohorts.splits import make_splits
    from generators.data import SliceSet

    root = source.resolve("phantom", phantom_subjects=subjects, phantom_seed=seed)
    p = load_prepared(root, PreprocessConfig(target_spacing=spacing, size=size), progress=False)
    s = make_splits(p, seed=0)
    out = {}
    for split, ids in s.assignments.items():
        ss = SliceSet.from_prepared(p, ids)
        out[split] = ss.subset(np.flatnonzero(ss.labelled))
    return out


def _rates(table) -> dict:
    """Pass rate and n per criterion, plausible rate, and the violations counted."""
    from audit.anatomy.plausibility import CRITERIA

    out = {"n_images": int(len(table)), "plausible_rate": round(float(table["plausible"].mean()), 4) if len(table) else None,
           "criteria": {}}
    for c in CRITERIA:
        v = table[c].to_numpy(float)
        ok = np.isfinite(v)
        out["criteria"][c] = {"pass_rate": round(float(v[ok].mean()), 4) if ok.any() else None, "n": int(ok.sum()),
                              "violations": int((v == 0).sum())}
    return out


def _ranges(meas) -> dict:
    """min / 1st / 99th percentile / max of every raw measurement (finite values)."""
    out = {}
    for c in meas.columns:
        v = meas[c].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v):
            q = np.percentile(v, [0, 1, 99, 100])
            out[c] = {"min": round(float(q[0]), 4), "p1": round(float(q[1]), 4), "p99": round(float(q[2]), 4),
                      "max": round(float(q[3]), 4), "n": int(len(v))}
    return out


def _summary(table, subjects) -> dict:
    from audit.anatomy.plausibility import summarise

    e = summarise(table, subjects, n_boot=1000, seed=0)["plausible_rate"]
    return {k: e.get(k) for k in ("value", "ci_low", "ci_high", "n")}


def _noise_images(real_images: np.ndarray, real_masks: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h, w = real_images.shape[1:]

    def norm(x):
        lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
        return ((x - lo) / np.maximum(hi - lo, 1e-8)).astype(np.float32)

    idx = rng.choice(len(real_images), n, replace=len(real_images) < n)
    heart = np.stack([ndi.binary_dilation(real_masks[i] > 0, iterations=4) for i in idx])
    uniform_in_heart = real_images[idx].copy()
    uniform_in_heart[heart] = rng.random(int(heart.sum())).astype(np.float32)
    smooth = norm(np.stack([ndi.gaussian_filter(rng.random((h, w)), 1.5) for _ in range(n)]))
    smooth_in_heart = real_images[idx].copy()
    smooth_in_heart[heart] = smooth[heart]
    return {
        "uniform": rng.random((n, h, w)).astype(np.float32),
        "smooth_sigma3": norm(np.stack([ndi.gaussian_filter(rng.random((h, w)), 3.0) for _ in range(n)])),
        "uniform_in_heart_region": uniform_in_heart,
        "smooth_in_heart_region": smooth_in_heart,
    }


def _noise_masks(gt: np.ndarray, n: int, seed: int) -> dict[str, np.ndarray]:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    h, w = gt.shape[1:]
    out = {"uniform_labels": rng.integers(0, 4, (n, h, w)).astype(np.uint8)}
    fields = [ndi.gaussian_filter(rng.standard_normal((h, w)), rng.uniform(2, 8)) for _ in range(n)]
    q = np.stack([np.digitize(f, np.quantile(f, [0.6, 0.75, 0.9])) for f in fields])
    out["smooth_field_labels"] = np.array([0, 3, 1, 2], np.uint8)[q]  # LV the rarest, background the commonest
    yy, xx = np.mgrid[:h, :w]
    ell = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        for lab in rng.permutation([1, 2, 3])[: rng.integers(1, 4)]:
            cy, cx = rng.uniform(0.25 * h, 0.75 * h), rng.uniform(0.25 * w, 0.75 * w)
            a, b = rng.uniform(0.03, 0.2, 2) * h
            th = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
            v = -(yy - cy) * np.sin(th) + (xx - cx) * np.cos(th)
            ell[i][(u / a) ** 2 + (v / b) ** 2 <= 1] = lab
    out["random_ellipses"] = ell
    for p in itertools.permutations([1, 2, 3]):
        if p != (1, 2, 3):
            out["gt_labels_permuted_" + "".join("_RML"[k] for k in p)] = np.array([0, *p], np.uint8)[gt]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-judge", action="store_true", help="skip everything that needs the judge network")
    ap.add_argument("--precision", default="int8", choices=("int8", "fp32"), help="judge precision")
    ap.add_argument("--judge-split", default="holdout", help="split whose real images the judge segments")
    ap.add_argument("--noise-n", type=int, default=64, help="noise images (or masks) per kind")
    ap.add_argument("--speed-n", type=int, default=2000, help="images in the timing run")
    ap.add_argument("--seed", type=int, default=123, help="seed of the noise")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "plausibility_calibration.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from audit.anatomy.plausibility import DEFAULT_THRESHOLDS, apply_thresholds, evaluate, measure

    t_start = time.perf_counter()
    result: dict = {
        "benchmark": "plausibility_calibration",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/plausibility_calibration.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "loadavg_before": [round(v, 2) for v in os.getloadavg()]},
        "data_note": "built-in phantom only; no real ACDC/M&Ms data on the calibration machine",
        "thresholds": DEFAULT_THRESHOLDS.as_dict(),
        "phantoms": {k: dict(zip(("subjects", "seed", "spacing_mm", "size_px"), v)) for k, v in PHANTOMS.items()},
        "ground_truth": {}, "judge_real": {}, "judge_noise": {}, "masks_noise": {}, "measurement_ranges": {},
    }

    data = {}
    for name, cfg in PHANTOMS.items():
        log.info("loading phantom %s", name)
        data[name] = _load(*cfg)

    # ---- ground truth --------------------------------------------------------------------
    gt_meas, gt_tables = [], []
    for name, splits in data.items():
        masks = np.concatenate([s.masks for s in splits.values()])
        subjects = np.concatenate([s.subject_ids for s in splits.values()])
        sp = tuple(float(v) for v in next(iter(splits.values())).spacing)
        meas = measure(masks, sp)
        table = apply_thresholds(meas)
        gt_meas.append(meas)
        gt_tables.append(table)
        result["ground_truth"][name] = {**_rates(table), "plausible_ci95": _summary(table, subjects)}
        log.info("ground truth %s: plausible %.4f of %d", name, table["plausible"].mean(), len(table))
    import pandas as pd

    all_gt = pd.concat(gt_tables, ignore_index=True)
    result["ground_truth"]["all"] = _rates(all_gt)
    result["measurement_ranges"]["ground_truth"] = _ranges(pd.concat(gt_meas, ignore_index=True))

    # ---- masks noise (no judge) ------------------------------------------------------------
    a = data["seed0_1.5mm_128"]
    gt_a = a["test"].masks
    for kind, masks in _noise_masks(gt_a, args.noise_n, args.seed).items():
        table = evaluate(masks, (1.5, 1.5))
        result["masks_noise"][kind] = _rates(table)
        log.info("mask noise %s: plausible %.4f of %d", kind, table["plausible"].mean(), len(table))

    # ---- speed ----------------------------------------------------------------------------
    pool = np.concatenate([s.masks for s in a.values()])
    reps = int(np.ceil(args.speed_n / len(pool)))
    speed_masks = np.tile(pool, (reps, 1, 1))[: args.speed_n]
    t0, c0 = time.perf_counter(), time.process_time()
    evaluate(speed_masks, (1.5, 1.5))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    noise_masks = np.random.default_rng(0).integers(0, 4, (200, 128, 128)).astype(np.uint8)
    t1 = time.perf_counter()
    evaluate(noise_masks, (1.5, 1.5))
    noise_ms = (time.perf_counter() - t1) / len(noise_masks) * 1000
    result["speed"] = {"images": int(args.speed_n), "shape": [128, 128], "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                       "ms_per_image_phantom_masks": round(wall / args.speed_n * 1000, 2),
                       "ms_per_image_uniform_random_labels": round(noise_ms, 2), "single_process": True}
    log.info("speed: %d images in %.2f s wall (%.2f s CPU)", args.speed_n, wall, cpu)

    # ---- judge ------------------------------------------------------------------------------
    if not args.no_judge:
        from cohorts.judge import Judge

        judge = Judge(precision=args.precision, progress=False)
        result["judge"] = {"precision": args.precision, "split": args.judge_split}
        real_meas, real_tables = [], []
        for name, splits in data.items():
            ss = splits[args.judge_split]
            sp = tuple(float(v) for v in ss.spacing)
            t0 = time.perf_counter()
            pred = judge.segment(ss.images, spacing=sp)
            log.info("judge %s %s: %d images in %.0f s", name, args.judge_split, len(pred), time.perf_counter() - t0)
            meas = measure(pred, sp)
            table = apply_thresholds(meas)
            real_meas.append(meas)
            real_tables.append(table)
            fails = [{"image": int(i), "subject": str(ss.subject_ids[i]),
                      "violated": [c for c in table.columns[:-1] if table.loc[i, c] == 0.0]}
                     for i in np.flatnonzero(table["plausible"].to_numpy() == 0)]
            result["judge_real"][name] = {**_rates(table), "plausible_ci95": _summary(table, ss.subject_ids),
                                          "implausible_images": fails}
            log.info("judge on real %s: plausible %.4f", name, table["plausible"].mean())
        result["judge_real"]["all"] = _rates(pd.concat(real_tables, ignore_index=True))
        result["measurement_ranges"]["judge_real"] = _ranges(pd.concat(real_meas, ignore_index=True))

        noise_tables = []
        for kind, imgs in _noise_images(a["test"].images, a["test"].masks, args.noise_n, args.seed).items():
            pred = judge.segment(imgs, spacing=(1.5, 1.5))
            table = evaluate(pred, (1.5, 1.5))
            noise_tables.append(table)
            result["judge_noise"][kind] = _rates(table)
            log.info("judge on noise %s: plausible %.4f of %d", kind, table["plausible"].mean(), len(table))
        result["judge_noise"]["all"] = _rates(pd.concat(noise_tables, ignore_index=True))

    result["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    result["total_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(args.out, result)
    log.info("wrote %s", args.out)

    def line(label, r):
        return f"{label:40s} plausible {r['plausible_rate']!s:>7} (n={r['n_images']})"

    print(line("ground truth (all)", result["ground_truth"]["all"]))
    if not args.no_judge:
        print(line("judge on real (all)", result["judge_real"]["all"]))
        print(line("judge on noise (all)", result["judge_noise"]["all"]))
    for k, r in result["masks_noise"].items():
        print(line(f"mask noise {k}", r))
    print(f"speed: {args.speed_n} images in {wall:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
