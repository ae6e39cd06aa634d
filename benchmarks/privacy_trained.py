"""Privacy audit of the trained generators at the quick preset (issue 9, req. 7, last bullet).

Usage (record the result in BENCHMARKS.md, "## Privacy audit"):

    python benchmarks/privacy_trained.py                   # the quick runs of the generator benchmark
    python benchmarks/privacy_trained.py benchmarks/runs/quick-ldm benchmarks/runs-dp/quick-ldm-eps8

Each finished run directory is only read: its generator, samples and splits are loaded into a
scratch run directory (``benchmarks/runs/privacy-trained/<run>``, git-ignored) and the current
privacy stage runs there (so runs trained before an attack existed -- e.g. PIA -- get it). The
table: every attack's image-level AUC with its subject-bootstrap 95 % CI and TPR at 1 % FPR, the
copy rate in both spaces, and the white-box cost. Output: ``benchmarks/results/privacy_trained.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402
from runkit import scratch_context  # noqa: E402  (benchmarks/runkit.py; this directory is sys.path[0])

log = logging.getLogger("privacy_trained")
DEFAULT = ("runs/quick-gan", "runs-vae/quick-vae", "runs/quick-ddpm", "runs/quick-ldm", "runs/quick-flow",
           "runs/quick-holdout-128", "runs/quick-copycat")


def _fmt(e: dict | None, pct: bool = False) -> str:
    if not isinstance(e, dict) or "value" not in e:
        return "n/a"
    k = 100.0 if pct else 1.0
    ci = f" [{e['ci_low'] * k:.2f}, {e['ci_high'] * k:.2f}]" if e.get("ci_low") is not None else ""
    return f"{e['value'] * k:.3f}{ci}" if not pct else f"{e['value'] * k:.1f}{ci}"


def rows_of(name: str, section: dict) -> list[dict]:
    rows = []
    for attack, node in section.get("attacks", {}).items():
        if "image" not in node:
            rows.append({"run": name, "attack": attack, "status": node.get("reason", "unavailable")})
            continue
        img = node["image"]
        rows.append({"run": name, "attack": attack, "auc": img.get("auc"), "tpr_1": img.get("tpr_at_fpr_1%"),
                     "subject_auc": (node.get("subject_mean") or {}).get("auc"),
                     "cost_img_s": (node.get("cost") or {}).get("value")})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "runs" / "privacy-trained")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "privacy_trained.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from audit.pipeline.privacy_stage import run_privacy

    runs = [Path(r) for r in args.runs] or [ROOT / "benchmarks" / r for r in DEFAULT]
    out: dict = {"benchmark": "privacy_trained", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
                 "command": "python benchmarks/privacy_trained.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "runs": {}}
    lines = ["| run | attack | AUC image [95% CI] | AUC subject mean | TPR @ 1 % FPR (%) | cost (images/s) |",
             "|---|---|---|---|---|---|"]
    for src in runs:
        state = json.loads((src / "state.json").read_text()) if (src / "state.json").is_file() else {}
        if state.get("status") != "finished":
            log.warning("%s: not finished, skipped", src)
            continue
        ctx = scratch_context(src, args.work / src.name)
        ctx.cfg.audit.privacy = True
        t0 = time.perf_counter()
        run_privacy(ctx)
        wall = time.perf_counter() - t0
        section = ctx.artefacts["results.privacy"]
        mem = section.get("memorisation", {})
        copy = {space: node.get("copy_rate") for space, node in mem.items() if isinstance(node, dict)}
        out["runs"][src.name] = {"privacy_stage_s": round(wall, 1), "attacks": rows_of(src.name, section),
                                 "copy_rate": copy, "summary": section.get("summary")}
        for r in rows_of(src.name, section):
            if "status" in r:
                lines.append(f"| {src.name} | {r['attack']} | unavailable: {r['status'][:70]} | | | |")
            else:
                cost = "" if r["cost_img_s"] is None else f"{r['cost_img_s']:.1f}"
                lines.append(f"| {src.name} | {r['attack']} | {_fmt(r['auc'])} | {_fmt(r['subject_auc'])} | "
                             f"{_fmt(r['tpr_1'], pct=True)} | {cost} |")
        lines.append(f"| {src.name} | copy rate pixel-corr / PCA | {_fmt(copy.get('pixel_correlation'))} / "
                     f"{_fmt(copy.get('pca'))} | | | |")
        atomic_write_json(args.out, out)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
