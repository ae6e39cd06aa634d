"""Fidelity distribution metrics speed: :func:`audit.fidelity.distribution.compare`.

Usage (record the result in BENCHMARKS.md):

    python benchmarks/fidelity_speed.py                       # 2,000 vs 2,000, d = 288, 200 replicates
    python benchmarks/fidelity_speed.py --n 400 --boot 100    # a quick look

Goal: FID + KID + precision/recall/density/coverage with subject-level bootstrap CIs of 2,000
candidate vs 2,000 target feature vectors (d = 288, the judge network's pooled encoder
features) with 200 replicates in well under 60 s on 2 CPU cores. Features are synthetic
(Gaussian with a decaying spectrum, ``--per-subject`` images per subject sharing a subject
effect, the candidate slightly shifted and scaled); their content does not change the cost.
Making the features is not timed. ``--repeats`` runs the timed call several times and reports
the median.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

log = logging.getLogger("fidelity_speed")
GOAL_S = 60.0


def _features(n: int, d: int, per: int, seed: int, shift: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(12345).standard_normal((d, d)))[0]
    sd = 1.0 / np.sqrt(np.arange(1, d + 1))
    k = int(np.ceil(n / per))
    subject = rng.standard_normal((k, d)) * sd * 0.6
    x = np.repeat(subject, per, axis=0)[:n] + rng.standard_normal((n, d)) * sd * 0.8
    x = (scale * x) @ basis.T
    x[:, 0] += shift
    return x.astype(np.float32), np.repeat(np.arange(k), per)[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images per set (candidate and target)")
    ap.add_argument("--d", type=int, default=288, help="feature dimension")
    ap.add_argument("--per-subject", type=int, default=10, help="images per subject")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap replicates")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fidelity_speed.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from audit.fidelity.distribution import compare

    cand, cand_ids = _features(args.n, args.d, args.per_subject, 1, shift=0.5, scale=1.1)
    targ, targ_ids = _features(args.n, args.d, args.per_subject, 2, shift=0.0, scale=1.0)

    load0 = os.getloadavg()[0]
    walls, cpus, stages = [], [], []
    for _ in range(args.repeats):
        timings: dict[str, float] = {}
        c0, t0 = time.process_time(), time.perf_counter()
        out = compare(cand, cand_ids, targ, targ_ids, n_boot=args.boot, seed=0, feature_label="synthetic benchmark",
                      timings=timings)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        stages.append(timings)
    wall = statistics.median(walls)
    result = {
        "benchmark": "fidelity_speed",
        "command": "python benchmarks/fidelity_speed.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__, "cpu_count": os.cpu_count(),
                    "load_avg_1min_before": round(load0, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2)},
        "sizes": {"candidate": args.n, "target": args.n, "d": args.d, "images_per_subject": args.per_subject},
        "n_boot": args.boot,
        "repeats": args.repeats,
        "wall_s": round(wall, 2),
        "wall_s_all": [round(w, 2) for w in walls],
        "cpu_s": round(statistics.median(cpus), 2),
        "stage_wall_s": stages[walls.index(wall)] if wall in walls else stages[-1],
        "goal_s": GOAL_S,
        "goal_met": bool(wall <= GOAL_S),
        "values": {name: {"value": round(e["value"], 5), "ci": [e["ci_low"], e["ci_high"]]}
                   for name, e in out.items() if "value" in e},
    }
    atomic_write_json(args.out, result)
    log.info("fidelity compare %d vs %d (d = %d, %d replicates): %.1f s wall, %.1f s CPU (goal %.0f s); stages %s",
             args.n, args.n, args.d, args.boot, wall, result["cpu_s"], GOAL_S, result["stage_wall_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
