"""The ``full`` preset of one generator plus the whole audit on a CUDA GPU (issue 13, req. 6;
issue 6, req. 6-7): wall time per stage (goal: everything within 8 minutes on one H100/H200),
training time, sampling speed, peak GPU memory and judge Dice against the real-image ceiling.

Run it through ``benchmarks/gpu.sh`` on a lent GPU machine::

    bash benchmarks/gpu.sh ldm                 # -> benchmarks/results/gpu_full.json + a table row

One ``audit run --generator G --preset full --device cuda --no-cache`` in its own process, its
log streamed to ``<out>/full-<G>.log``. ``--timeout`` stops the run (the stages that finished are
still reported, the rest are marked unfinished: a result, not a crash). The ceiling is the same
run's ``judge_agreement_real_test`` (the judge on real test-split images with their true masks).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

GOAL_S = 8 * 60
STAGES = ("cohort", "fit", "sample", "anatomy", "fidelity", "privacy", "utility", "report")


def _value(doc: dict, *path: str) -> Any:
    node: Any = doc
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node.get("value") if isinstance(node, dict) else node


def summarise(run: Path, wall: float, returncode: int | None, gen: str) -> dict[str, Any]:
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
    stages = state.get("stages", {})
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    dice = _value(results, "anatomy", "judge_agreement", "dice", "mean")
    ceiling = _value(results, "anatomy", "judge_agreement_real_test", "dice", "mean")
    n = (cfg.get("sample") or {}).get("n_samples")
    fit = stages.get("fit") or {}
    sample_s = (stages.get("sample") or {}).get("seconds")
    return {
        "generator": gen, "status": state.get("status", "not started"), "returncode": returncode,
        "wall_s": round(wall, 1), "within_goal": bool(state.get("status") == "finished" and wall <= GOAL_S),
        "stage_s": {k: round(stages[k]["seconds"], 1) for k in STAGES if k in stages and "seconds" in stages[k]},
        "train_slices": fit.get("train_slices"), "gpu_peak_mb": fit.get("gpu_peak_mb"),
        "train_steps": (cfg.get("train") or {}).get("steps"), "batch_size": (cfg.get("train") or {}).get("batch_size"),
        "size": (cfg.get("data") or {}).get("size"), "subjects": (cfg.get("data") or {}).get("phantom_subjects"),
        "sample_images_per_s": round(n / sample_s, 1) if n and sample_s else None,
        "judge_dice": dice, "dice_ceiling": ceiling,
        "fraction_of_ceiling": round(dice / ceiling, 3) if dice is not None and ceiling else None,
        "fid_ratio_to_floor": _value(results, "fidelity", "judge", "fid_ratio_to_floor"),
        "best_bb_auc": _value(results, "privacy", "summary", "best_black_box_auc"),
        "best_wb_auc": _value(results, "privacy", "summary", "best_white_box_auc"),
        "run_dir": str(run),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generator", default="ldm")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs-gpu")
    ap.add_argument("--timeout", type=float, default=0, help="stop the run after this many seconds (0 = never)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_full.json")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set KEY=VALUE")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_full: no CUDA GPU here; this benchmark needs one", file=sys.stderr)
        return 2
    run = args.out / f"full-{args.generator}"
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = ["audit", "run", "--generator", args.generator, "--preset", "full", "--device", "cuda", "--out", str(run),
           "--force", "--no-cache", *[x for kv in args.sets for x in ("--set", kv)]]
    log = args.out / f"full-{args.generator}.log"
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "CI": "true"})
        try:
            rc: int | None = proc.wait(timeout=args.timeout or None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
    wall = time.perf_counter() - t0
    row = summarise(run, wall, rc, args.generator)
    doc = {"benchmark": "gpu_full", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"gpu": torch.cuda.get_device_name(0), "cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "command": "bash benchmarks/gpu.sh " + args.generator, "goal_s": GOAL_S, "rows": [row]}
    atomic_write_json(args.results, doc)
    print(json.dumps(row, indent=1))
    return 0 if row["status"] == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
