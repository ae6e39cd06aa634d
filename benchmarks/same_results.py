"""Behaviour check for a refactoring: smoke runs of every generator give the same results.json
figures at two commits.

Usage:

    python benchmarks/same_results.py BEFORE [AFTER] [--generators gan vae ...] [--preset smoke]

BEFORE and AFTER are git revisions (AFTER defaults to the working tree). Each side is exported
with ``git archive`` (the working tree: copied as is) into a scratch folder and run from there
(``PYTHONPATH`` points at it, so the installed package is not used), with its own empty
``CMR_AUDIT_CACHE`` and ``--no-cache``: nothing trained on one side is reused by the other.
Every leaf of results.json is compared exactly, except what names the run rather than its
figures (run id and times, the git commit, stage timings, the config hash). Prints the differences, writes
``benchmarks/results/same_results.json`` and exits 1 when any figure differs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "same_results.json"
GENERATORS = ["gan", "vae", "ddpm", "ldm", "flow", "cine", "copycat", "holdout", "noise"]
#: results.json leaves that identify a run, not its figures (and the config hash: a refactoring that
#: removes a dead config key changes it without changing any figure; the figures are compared)
IGNORED = ("/run/created_utc", "/run/finished_utc", "/run/id", "/provenance/git_commit", "/provenance/timing_s",
           "/provenance/config_sha256")
log = logging.getLogger("same_results")


def export(rev: str | None, dest: Path) -> str:
    """The source tree of ``rev`` (None: the working tree, tracked and untracked-not-ignored files)
    in ``dest``; returns the commit it came from."""
    dest.mkdir(parents=True)
    if rev is None:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                               capture_output=True).stdout.decode().split("\0")
        for f in filter(None, files):
            if (ROOT / f).is_file():
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, dest / f)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() + "+tree"
    tar = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, node


def figures(results: Path) -> dict[str, Any]:
    doc = json.loads(results.read_text("utf-8"))
    return {p: v for p, v in leaves(doc) if not p.startswith(IGNORED)}


def run_side(src: Path, generator: str, preset: str, scratch: Path) -> Path:
    out = scratch / "runs" / generator
    env = {**os.environ, "PYTHONPATH": str(src), "CMR_AUDIT_CACHE": str(scratch / "cache"), "CI": "true"}
    cmd = [sys.executable, "-m", "audit", "run", "--generator", generator, "--preset", preset, "--no-cache",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{src.name} {generator}: audit run failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return out / "results.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="git revision before the change")
    ap.add_argument("after", nargs="?", default=None, help="git revision after the change (default: working tree)")
    ap.add_argument("--generators", nargs="+", default=GENERATORS)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--keep", type=Path, help="keep the scratch folder here instead of deleting it")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    scratch = Path(tempfile.mkdtemp(prefix="same-results-")) if args.keep is None else args.keep
    rows, differ = {}, 0
    try:
        sides = {}
        for side, rev in (("before", args.before), ("after", args.after)):
            sides[side] = (scratch / side, export(rev, scratch / side / "src"))
        for g in args.generators:
            got = {}
            for side, (base, _) in sides.items():
                log.info("%s: %s", g, side)
                got[side] = figures(run_side(base / "src", g, args.preset, base))
            keys = sorted(set(got["before"]) | set(got["after"]))
            diffs = {k: [got["before"].get(k, "<absent>"), got["after"].get(k, "<absent>")] for k in keys
                     if got["before"].get(k, "<absent>") != got["after"].get(k, "<absent>")}
            rows[g] = {"leaves": len(keys), "different": len(diffs), "differences": diffs}
            differ += bool(diffs)
            print(f"{g}: {len(keys)} results.json leaves, {len(diffs)} different")
            for k, (b, a) in list(diffs.items())[:20]:
                print(f"  {k}: {b!r} -> {a!r}")
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    doc = {"benchmark": "same_results", "before": sides["before"][1], "after": sides["after"][1],
           "preset": args.preset, "generators": rows,
           "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version()}}
    OUT.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
