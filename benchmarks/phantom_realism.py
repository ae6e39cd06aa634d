"""Realism gate of the phantom: judge Dice per vendor style and structure.

Usage::

    python benchmarks/phantom_realism.py [--subjects 20] [--slices mid3|all|mid]
        [--precision fp32|int8] [--seed 2024] [--out benchmarks/results/phantom_realism.json]

For each vendor A-D, ``--subjects`` subjects (groups cycling NOR, DCM, HCM, MINF, RV; subject
seeds derived from (seed, vendor, index)) are generated and their ED and ES frames segmented
by the judge (:class:`cohorts.judge.Judge`, ACDC field-of-view preprocessing). Dice
convention: see :mod:`cohorts.phantom.realism`. Writes a JSON with per-subject and per-vendor
figures, and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402
from cohorts.phantom import GROUPS, PHANTOM_VERSION, VENDORS, generate_subject  # noqa: E402
from cohorts.phantom.realism import STRUCTURES, subject_dice, summarise  # noqa: E402

log = logging.getLogger("benchmarks.phantom_realism")


def subject_seed(seed: int, vendor: str, index: int) -> int:
    return int(np.random.SeedSequence([seed, ord(vendor), index]).generate_state(1)[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=20, help="subjects per vendor")
    ap.add_argument("--slices", default="mid3", choices=["mid3", "all", "mid"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--vendors", default="".join(VENDORS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "phantom_realism.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from cohorts.judge import Judge

    judge = Judge(precision=args.precision, threads=args.threads, progress=False)
    vendors = list(args.vendors)
    rows = []
    t0 = time.perf_counter()
    for v in vendors:
        for i in range(args.subjects):
            group = GROUPS[i % len(GROUPS)]
            seed = subject_seed(args.seed, v, i)
            s = generate_subject(f"{v}{i:03d}", seed, v, group)
            d = subject_dice(s, judge, args.slices)
            d.update({"vendor": v, "group": group, "seed": seed, "index": i})
            rows.append(d)
            log.info("%s %2d %-4s RV %.3f MYO %.3f LV %.3f", v, i, group, d["RV"], d["MYO"], d["LV"])
    wall = time.perf_counter() - t0
    summary = summarise(rows, vendors)
    n_sl = sum(r["n_slices_evaluated"] for r in rows)
    result = {
        "benchmark": "phantom_realism",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "threads": judge.threads},
        "command": "python benchmarks/phantom_realism.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "phantom_version": PHANTOM_VERSION,
        "judge": {"precision": args.precision, "fov": judge.fov},
        "slices": args.slices,
        "subjects_per_vendor": args.subjects,
        "seed": args.seed,
        "n_slices_segmented": int(n_sl),
        "wall_s": round(wall, 1),
        "slices_per_s": round(n_sl / wall, 3),
        "dice_convention": "per subject: Dice over the evaluated slices pooled (3D), ED and ES averaged; "
                           "structures counted where present in the ground truth; mean over subjects",
        "summary": summary,
        "subjects": rows,
    }
    atomic_write_json(args.out, result)
    print("\n| vendor | subjects | slices | RV | MYO | LV |\n|---|---|---|---|---|---|")
    for v in vendors:
        e = summary[v]
        cells = " | ".join(f"{e[s]['mean']:.3f} (min {e[s]['min']:.2f})" for s in STRUCTURES)
        print(f"| {v} | {e['n_subjects']} | {e['n_slices']} | {cells} |")
    print(f"gate (>= {summary['gate']}) passed: {summary['gate_passed']}; {n_sl} slices in {wall:.0f} s")
    return 0 if summary["gate_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
