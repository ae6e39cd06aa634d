"""Nearest neighbours at scale: 100k synthetic x 100k training embeddings (issue 9, req. 8).

Usage (record the result in BENCHMARKS.md, "## Privacy audit"):

    python benchmarks/nn_speed.py                       # 100,000 x 100,000, 32-d (the PCA space), ~1 min
    python benchmarks/nn_speed.py --n 20000 --dim 64

Exact Euclidean nearest neighbour of every query row among the base rows with
:func:`audit.privacy.space.nearest` (batched float32 matrix products in chunks of
``space.CHUNK`` query rows, so memory is bounded by chunk x n_base distances, not n x n).
Embeddings are random Gaussian vectors (the cost does not depend on content); a 2,000-row
sample of the result is checked against a brute-force scipy ``cdist``. Goal: <= 60 s on 2
cores. Output: ``benchmarks/results/nn_speed.json`` with wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402
from audit.privacy import space  # noqa: E402

GOAL_S = 60.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--compare", action="store_true", help="print ratios against the last recorded result (git HEAD)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "nn_speed.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    query = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    base = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    dist, idx = space.nearest(query, base, k=1)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from scipy.spatial.distance import cdist

    check = rng.choice(args.n, 2000, replace=False)
    ref = cdist(query[check], base)
    exact = bool(np.array_equal(idx[check, 0], ref.argmin(axis=1)))
    doc = {"benchmark": "nn_speed", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "numpy": np.__version__, "load_avg_1m": os.getloadavg()[0]},
           "command": "python benchmarks/nn_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "n_query": args.n, "n_base": args.n, "dim": args.dim, "chunk": space.CHUNK, "wall_s": round(wall, 2),
           "peak_rss_mb": round(rss, 1), "rss_before_mb": round(rss0, 1), "goal_s": GOAL_S, "met": wall <= GOAL_S,
           "sample_matches_brute_force": exact}
    if args.compare:
        from runkit import compare_with_recorded  # benchmarks/runkit.py; this directory is sys.path[0]

        print("\n".join(compare_with_recorded(doc, args.out)))
    atomic_write_json(args.out, doc)
    print(f"{args.n:,} x {args.n:,} x {args.dim}-d: {wall:.1f} s, peak RSS {rss:.0f} MB (inputs {rss0:.0f} MB), exact: {exact}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
