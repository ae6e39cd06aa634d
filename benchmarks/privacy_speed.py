"""Privacy audit speed: black-box attacks + memorisation at issue 9's benchmark size.

Usage (record the result in BENCHMARKS.md, "## Privacy audit"):

    python benchmarks/privacy_speed.py                      # 2,000 synthetic vs 2,000 + 2,000 at 128x128
    python benchmarks/privacy_speed.py --n 500 --size 64    # a quick look

Goal (issue 9, requirement 8): <= 120 s on 2 CPU cores for the black-box attacks and the
memorisation analysis of 2,000 synthetic images against 2,000 train and 2,000 holdout
128x128 images (the reference split, the attacker's data, also has ``--n`` images). Data are
synthetic smooth random images of ``--n / 5`` subjects with 5 slices each (their content does
not change the cost). The timed call is :func:`audit.privacy.privacy_section` without a
generator (white-box attacks have their own cost, reported in images/s by the audit), with
``--boot`` bootstrap replicates; making the images is not timed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
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

log = logging.getLogger("privacy_speed")
GOAL_S = 120.0


def _population(n: int, size: int, seed: int, prefix: str):
    """``n`` images of ``n // 5`` subjects: smooth subject patterns + slice drift + noise (vectorised)."""
    from scipy.ndimage import gaussian_filter

    from generators.data import SliceSet

    rng = np.random.default_rng(seed)
    per = 5
    k = int(np.ceil(n / per))
    base = gaussian_filter(rng.standard_normal((k, size, size)).astype(np.float32), (0, size / 12, size / 12))
    base = (base - base.min(axis=(1, 2), keepdims=True)) / (np.ptp(base, axis=(1, 2), keepdims=True) + 1e-6)
    images = np.repeat(base, per, axis=0)[:n]
    images = images + rng.normal(0, 0.02, images.shape).astype(np.float32)
    images = np.clip(images, 0, 1).astype(np.float32)
    return SliceSet(images=images, masks=np.zeros(images.shape, np.uint8), labelled=np.zeros(n, bool),
                    subject_ids=np.repeat([f"{prefix}{i:05d}" for i in range(k)], per)[:n],
                    vendor=np.array(["A"] * n), group=np.array(["NOR"] * n), spacing=np.array([1.5, 1.5], np.float32))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images per set (synthetic, train, holdout, reference)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "privacy_speed.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from audit.privacy import privacy_section
    from generators.sampleset import SampleSet

    train = _population(args.n, args.size, 1, "t")
    holdout = _population(args.n, args.size, 2, "h")
    reference = _population(args.n, args.size, 3, "r")
    pool = _population(args.n, args.size, 4, "s")  # unseen subjects: a no-leak synthetic set
    samples = SampleSet(images=pool.images, spacing=pool.spacing, subject_ids=pool.subject_ids)

    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    section, table, extras = privacy_section(train, holdout, reference, samples, None, n_boot=args.boot, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    result = {
        "benchmark": "privacy_speed",
        "command": "python benchmarks/privacy_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
                    "cpu_count": os.cpu_count(), "load_avg_1min_before": round(load0, 2),
                    "load_avg_1min_after": round(os.getloadavg()[0], 2)},
        "sizes": {"synthetic": args.n, "train": args.n, "holdout": args.n, "reference": args.n, "image": [args.size] * 2},
        "n_boot": args.boot,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "stage_wall_s": extras["timing_s"],
        "goal_s": GOAL_S,
        "goal_met": bool(wall <= GOAL_S),
        "no_leak_sanity": {a: round(section["attacks"][a]["image"]["auc"]["value"], 4)
                           for a in section["attacks"] if "image" in section["attacks"][a]},
    }
    atomic_write_json(args.out, result)
    log.info("privacy audit %d vs %d + %d at %dx%d: %.1f s wall, %.1f s CPU (goal %.0f s): %s", args.n, args.n, args.n,
             args.size, args.size, wall, cpu, GOAL_S, extras["timing_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
