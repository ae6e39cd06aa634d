"""Print ratios of a benchmark's current result against the last recorded one (issue 13, req. 7).

Usage:

    python benchmarks/compare.py dp_speed                # benchmarks/results/dp_speed.json vs git HEAD
    python benchmarks/compare.py nn_speed --ref HEAD~3

Every numeric figure present in both files is listed as ``old -> new (x ratio)`` (machine and
date fields excluded). Scripts with a ``--compare`` flag (``dp_speed.py``, ``nn_speed.py``) print
the same after they run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from runkit import compare_with_recorded  # benchmarks/runkit.py; this directory is sys.path[0]

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="result name (benchmarks/results/<name>.json) or a path")
    ap.add_argument("--ref", default="HEAD", help="git revision holding the recorded result")
    args = ap.parse_args(argv)
    path = Path(args.name) if args.name.endswith(".json") else ROOT / "benchmarks" / "results" / f"{args.name}.json"
    if not path.is_file():
        print(f"{path}: no such result", file=sys.stderr)
        return 2
    print("\n".join(compare_with_recorded(json.loads(path.read_text("utf-8")), path, git_ref=args.ref)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
