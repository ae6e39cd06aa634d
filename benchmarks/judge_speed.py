"""Judge network speed (fp32 vs int8, slices/s at batch 1) and Dice on held-out phantom slices.

Usage (record the result table in BENCHMARKS.md, "## Judge network"):

    python benchmarks/judge_speed.py                     # speed + Dice, ~5 min on 2 cores
    python benchmarks/judge_speed.py --fov-study         # also the field-of-view study

Speed is measured three ways: ``network`` = ONNX Runtime alone on preprocessed 256 x 256 inputs
(what graph-level work changes) and ``end_to_end`` = :meth:`Judge.segment` including
preprocessing and mapping back. fp32 and int8 runs are interleaved ``--repeats`` times so that
background load hits both alike; the median and the best are reported with the load average,
because timing on a shared machine is noisy (run it when ``uptime`` shows the machine quiet).
``cpu_s_per_slice_1thread_network`` is the load-robust figure: CPU seconds per slice on one
thread (process time, which other jobs on the machine do not inflate much).

Dice (vs the phantom's ground truth, ED+ES labelled slices, mean over subjects) uses subjects
the int8 calibration never saw (seed 90210; calibration uses 1234..).

The FOV study takes the same slices, resamples them to 1.5 mm and crops 128 x 128 around the
heart (like the preprocessed cohorts), then compares the plain square resize with zero-padding
to an ACDC-like field of view of several sizes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
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


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _throughput(fn, seconds: float) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += fn()
    return n / (time.perf_counter() - t0)


def _crop128(s):
    """Resample a subject's slices to 1.5 mm and crop 128 x 128 around the heart."""
    from skimage.transform import resize

    imgs, msks = [], []
    for im, m, sp in zip(s.images, s.masks, s.spacing):
        shape = (int(round(im.shape[0] * sp[0] / 1.5)), int(round(im.shape[1] * sp[1] / 1.5)))
        imgs.append(np.pad(resize(im, shape, order=1, anti_aliasing=True, preserve_range=True), 64))
        msks.append(np.pad(resize(m, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.uint8), 64))
    r, c = np.mean([np.argwhere(m > 0).mean(0) for m in msks if m.any()], axis=0).round().astype(int)
    return (np.stack([i[r - 64 : r + 64, c - 64 : c + 64] for i in imgs]).astype(np.float32),
            np.stack([m[r - 64 : r + 64, c - 64 : c + 64] for m in msks]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per timing run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing runs per precision")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all cores)")
    ap.add_argument("--dice-subjects", type=int, default=8)
    ap.add_argument("--fov-study", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "judge_speed.json")
    args = ap.parse_args(argv)

    import onnxruntime

    import cohorts.judge.preprocess as P
    from cohorts.judge import Judge, dice_per_class, phantom_slices

    judges = {p: Judge(p, threads=args.threads or None, progress=False) for p in ("fp32", "int8")}
    sets = phantom_slices(n_subjects=args.dice_subjects, seed=90210)
    x = P.prepare_batch(sets[0].images[:1], sets[0].spacing[0])[0]
    slices = sets[0].images[:8]
    load_before = _load()
    speed: dict[str, dict[str, list[float]]] = {p: {"network": [], "end_to_end": []} for p in judges}
    for _ in range(args.repeats):
        for p, j in judges.items():
            speed[p]["network"].append(_throughput(lambda: (j._session.run(["output"], {"input": x}), 1)[1], args.seconds))
            speed[p]["end_to_end"].append(_throughput(lambda: (j.segment(slices, sets[0].spacing[0]), len(slices))[1], args.seconds))
    load_after = _load()

    # load-robust figure: CPU seconds per slice of the network alone on ONE thread (no spinning
    # worker threads, so process time is the work done even when other jobs share the cores)
    cpu_s: dict[str, float] = {}
    for p in judges:
        j1 = Judge(p, threads=1, progress=False)
        j1._session.run(["output"], {"input": x})
        runs = []
        for _ in range(args.repeats):
            c0 = time.process_time()
            for _ in range(3):
                j1._session.run(["output"], {"input": x})
            runs.append((time.process_time() - c0) / 3)
        cpu_s[p] = round(float(np.min(runs)), 4)

    dice = {}
    for p, j in judges.items():
        per = np.array([dice_per_class(j.segment(s.images, s.spacing[0]), s.masks) for s in sets])
        dice[p] = dict(zip(("RV", "MYO", "LV"), np.nanmean(per, axis=0).round(4).tolist()))

    fov = {}
    if args.fov_study:
        crops = [_crop128(s) for s in sets]
        j = judges["fp32"]
        target0 = P.ACDC_FOV_TARGET_MM
        for label, mode, target in [("plain resize of the 128 crop", "square", None)] + [
                (f"zero-pad to {t:.0f} mm", "acdc", t) for t in (260.0, 300.0, 340.0, 380.0)]:
            j.fov = mode
            if target:
                P.ACDC_FOV_TARGET_MM = target
            per = np.array([dice_per_class(j.segment(im, (1.5, 1.5)), m) for im, m in crops])
            fov[label] = dict(zip(("RV", "MYO", "LV"), np.nanmean(per, axis=0).round(4).tolist()))
            print(label, fov[label], flush=True)
        P.ACDC_FOV_TARGET_MM, j.fov = target0, P.DEFAULT_FOV

    def summary(v: list[float]) -> dict[str, float]:
        return {"median": round(float(np.median(v)), 3), "best": round(float(np.max(v)), 3), "runs": [round(a, 3) for a in v]}

    result = {
        "benchmark": "judge_speed",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/judge_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "threads": judges["fp32"].threads, "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "onnxruntime": onnxruntime.__version__,
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "batch_size": 1,
        "slices_per_s": {p: {k: summary(v) for k, v in d.items()} for p, d in speed.items()},
        "cpu_s_per_slice_1thread_network": cpu_s,
        "int8_speedup_cpu_1thread": round(cpu_s["fp32"] / cpu_s["int8"], 3),
        "int8_speedup_network_median": round(float(np.median(speed["int8"]["network"]) / np.median(speed["fp32"]["network"])), 3),
        "dice": {"subjects": args.dice_subjects, "slices": int(sum(len(s) for s in sets)), **dice,
                 "int8_minus_fp32": {k: round(dice["int8"][k] - dice["fp32"][k], 4) for k in ("RV", "MYO", "LV")}},
        "fov_study_crop128_1p5mm": fov or None,
        "int8_model": str(judges["int8"].model_path.name),
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    for p in speed:
        print(p, result["slices_per_s"][p], dice[p])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
