"""Phantom generation speed at default size (goal: >= 1 subject/s per core).

Usage::

    python benchmarks/phantom_speed.py [--subjects 20] [--seed 0]
        [--out benchmarks/results/phantom_speed.json] [--figure docs/phantom_vendors.png]

Generates ``--subjects`` subjects in one process (one core: numpy/scipy here are
single-threaded), cycling vendors and groups, and reports wall-clock and CPU time per
subject (CPU time is the fair "per core" figure on a shared machine), plus the mean
voxel count. ``--write`` also times ``write_dataset`` (ACDC layout, gzip level 1).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402
from cohorts.phantom import GROUPS, PHANTOM_VERSION, VENDORS, generate_subject, write_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", type=int, default=4, help="subjects for the write_dataset timing (0: skip)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "phantom_speed.json")
    ap.add_argument("--figure", type=Path, default=None, help="also draw the vendor ED/ES figure here")
    args = ap.parse_args(argv)

    generate_subject("warmup", 0)  # imports, first-touch allocations
    wall, cpu, voxels = [], [], []
    for i in range(args.subjects):
        v, g = VENDORS[i % len(VENDORS)], GROUPS[(i // len(VENDORS)) % len(GROUPS)]
        t0, c0 = time.perf_counter(), time.process_time()
        s = generate_subject(f"s{i}", args.seed + i, v, g)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        voxels.append(s.image.size)
    res = {
        "benchmark": "phantom_speed",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "load_avg_1min": os.getloadavg()[0]},
        "command": "python benchmarks/phantom_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "phantom_version": PHANTOM_VERSION,
        "subjects": args.subjects,
        "mean_voxels_per_subject": float(np.mean(voxels)),
        "wall_s_per_subject": {"mean": float(np.mean(wall)), "median": float(np.median(wall)), "max": float(np.max(wall))},
        "cpu_s_per_subject": {"mean": float(np.mean(cpu)), "median": float(np.median(cpu)), "max": float(np.max(cpu))},
        "subjects_per_s_wall": float(1.0 / np.mean(wall)),
        "subjects_per_cpu_s": float(1.0 / np.mean(cpu)),
        "goal_subjects_per_s_per_core": 1.0,
    }
    if args.write > 0:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_dataset(Path(tmp) / "ds", args.write, args.seed, progress=False)
            res["write_dataset_acdc_s_per_subject"] = (time.perf_counter() - t0) / args.write
    res["goal_met"] = res["subjects_per_cpu_s"] >= 1.0
    atomic_write_json(args.out, res)
    print(f"generate_subject: {res['wall_s_per_subject']['mean']:.3f} s wall, "
          f"{res['cpu_s_per_subject']['mean']:.3f} s CPU per subject "
          f"({res['subjects_per_cpu_s']:.2f} subjects per CPU-second; load {res['machine']['load_avg_1min']:.1f})")
    if "write_dataset_acdc_s_per_subject" in res:
        print(f"write_dataset (ACDC): {res['write_dataset_acdc_s_per_subject']:.2f} s per subject")
    if args.figure is not None:
        from cohorts.phantom.figures import vendor_figure

        vendor_figure(args.figure, seed=args.seed)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
