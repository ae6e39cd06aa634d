"""Utility audit at the quick preset: time and figures of the ``utility`` stage on finished runs.

Usage (record the result in BENCHMARKS.md, "## Utility audit"):

    python benchmarks/utility_quick.py                                   # quick-holdout, quick-noise, quick-gan, quick-ldm
    python benchmarks/utility_quick.py benchmarks/runs/quick-ldm         # one run
    python benchmarks/utility_quick.py --probe-only                      # per-step time at 128x128 only (~1 min)
    python benchmarks/utility_quick.py --seeds 1 --steps 10 --out /tmp/u.json   # plumbing check (~1 min per run)

For every run directory given (default: the ``quick-*`` runs under ``benchmarks/runs`` that the
generator benchmark wrote), the run must be *finished* (``state.json``); it is only read: its
config, cohort splits, generator and ``samples.npz`` are loaded and :func:`audit.pipeline.utility_stage.run_utility`
runs in a scratch run directory ``benchmarks/runs/utility-quick/<run>/`` (git-ignored; the
per-subject and per-training CSVs and the section land there). A probe first times training steps of the
quick network (BasicUNet width 8, batch 8) at 128x128 on random data.

Goal: the whole utility stage for one generator <= 600 s at 128x128 on 2 CPU cores (issue 24; quick
preset: five settings x ``audit.utility_seeds`` trainings for generators with SDEdit, four otherwise).
The ``audit.utility_*`` keys come from the current code's preset (and the family's preset), not from the source run's
config.json (``--run-utility-keys`` keeps the run's). Acceptance (requirement 5): ``holdout`` TSTR Dice within 0.03 of ``real``; ``noise``
TSTR clearly worse; ``real+synthetic`` vs ``real`` on the unseen vendor reported with its CI.
The result goes to ``benchmarks/results/utility_quick.json``; the machine's load average is
recorded because other jobs on a 2-core machine change the times a lot.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402
from audit.core.cpus import usable_cores  # noqa: E402
from runkit import scratch_context  # noqa: E402  (benchmarks/runkit.py; this directory is sys.path[0])

log = logging.getLogger("utility_quick")
GOAL_S = 600.0
DEFAULT_RUNS = ("quick-holdout", "quick-noise", "quick-gan", "quick-ldm")


def probe(size: int = 128, steps: int = 20, threads: int = 0) -> dict:
    """Seconds per training step of the quick preset's recipe (median after 3 warm-up steps) and per predicted image."""
    from dataclasses import replace

    import torch

    from audit.pipeline.utility_options import UtilityOptions
    from audit.utility.net import Pool, predict, train_segmenter

    spec = replace(UtilityOptions().spec(), steps=steps, eval_every=10 ** 6)
    width, batch = spec.width, spec.batch_size
    threads = threads or usable_cores()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(0)
        pool = Pool(rng.random((64, size, size), dtype=np.float32), rng.integers(0, 4, (64, size, size)).astype(np.uint8))
        net, info = train_segmenter(pool, Pool(pool.images[:8], pool.masks[:8]), spec, seed=0)
        t0 = time.perf_counter()
        predict(net, pool.images)
        per_image = (time.perf_counter() - t0) / len(pool)
    finally:
        torch.set_num_threads(old)
    return {"size": size, "width": width, "batch_size": batch, "crop": spec.crop, "bf16": spec.bf16, "threads": threads,
            "steps": steps,
            "step_s": round(info["step_s"], 4), "predict_s_per_image": round(per_image, 4)}


def _headline(section: dict) -> dict:
    """Mean Dice per setting and vendor (per slice, and per stack as the ACDC challenge scores it), and
    real+synthetic / synthetic minus real per vendor."""
    def fmt(e):
        if not isinstance(e, dict):
            return None
        if "value" in e:
            return {k: (round(e[k], 4) if isinstance(e[k], float) else e[k]) for k in ("value", "ci_low", "ci_high", "n")} | (
                {"notes": e["notes"]} if e.get("notes") else {})
        return {"unavailable": e.get("reason")}

    out: dict = {"dice_mean": {}, "dice_volume_mean": {}, "dice_diff": {}}
    for s, per in section.get("settings", {}).items():
        for key, kind in (("dice_mean", "dice"), ("dice_volume_mean", "dice_volume")):  # per slice; per stack (ACDC challenge)
            out[key][s] = fmt(per) if "status" in per else {v: fmt((node.get(kind) or {}).get("mean")) if kind in node else fmt(node)
                                                            for v, node in per.items()}
    for s, per in section.get("vs_real", {}).items():
        out["dice_diff"][s] = {v: fmt(node.get("dice_diff")) for v, node in per.items()}
    return out


def _acceptance(runs: dict) -> dict:
    """Issue 11 requirement 5 from the headlines: holdout TSTR gap, noise gap, unseen-vendor figure."""
    out: dict = {}

    def gaps(head, setting):
        real, other = head["dice_mean"].get("real") or {}, head["dice_mean"].get(setting) or {}
        return {v: round(other[v]["value"] - real[v]["value"], 4) for v in real
                if isinstance(real.get(v), dict) and "value" in real[v] and isinstance(other.get(v), dict) and "value" in other[v]}

    for name, r in runs.items():
        head = r.get("headline")
        if not head:
            continue
        gen = r.get("generator")
        if gen == "holdout":
            g = gaps(head, "synthetic")
            out["holdout_tstr_minus_real"] = {"per_vendor": g, "within_0.03": bool(g) and all(abs(x) <= 0.03 for x in g.values())}
        elif gen == "noise":
            g = gaps(head, "synthetic")
            out["noise_tstr_minus_real"] = {"per_vendor": g, "clearly_worse": bool(g) and all(x <= -0.1 for x in g.values())}
        else:
            held = (r.get("info") or {}).get("heldout_vendor")
            out.setdefault("unseen_vendor_real+synthetic_minus_real", {})[name] = (
                head["dice_diff"].get("real+synthetic", {}).get(held) if held else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="finished run directories (default: benchmarks/runs/quick-{holdout,noise,gan,ldm})")
    ap.add_argument("--probe-only", action="store_true", help="only time training steps at 128x128")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores, the stage's default)")
    ap.add_argument("--seeds", type=int, default=0, help="override audit.utility_seeds (a quick look, not the benchmark)")
    ap.add_argument("--steps", type=int, default=0, help="override audit.utility_steps (a quick look, not the benchmark)")
    ap.add_argument("--run-utility-keys", action="store_true",
                    help="keep the source run's audit.utility_* values (default: the current code's preset values, "
                         "so the benchmark measures today's stage on an older run)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "runs" / "utility-quick"),
                    help="scratch run directories, one per run (git-ignored)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "utility_quick.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    load0 = os.getloadavg()[0]
    result: dict = {
        "benchmark": "utility_quick",
        "command": "python benchmarks/utility_quick.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "load_avg_1min_before": round(load0, 2)},
        "goal_s": GOAL_S,
    }
    result["probe"] = probe(threads=args.threads)
    log.info("probe: %s", result["probe"])
    if not args.probe_only:
        from audit.pipeline.utility_stage import run_utility
        from audit.pipeline.utility_stage import options_from_config

        runs = [Path(r) for r in args.runs] or [ROOT / "benchmarks" / "runs" / r for r in DEFAULT_RUNS]
        result["runs"] = {}
        for src in runs:
            state = json.loads((src / "state.json").read_text("utf-8")) if (src / "state.json").is_file() else {}
            if state.get("status") != "finished":
                log.warning("%s: not finished (status %r): skipped", src, state.get("status"))
                result["runs"][src.name] = {"skipped": f"status {state.get('status')!r}, not finished"}
                continue
            ctx = scratch_context(src, Path(args.work) / src.name)
            ctx.cfg.audit.utility = True  # a re-audit: also of runs made with the stage switched off
            if not args.run_utility_keys:
                from dataclasses import fields

                from audit.pipeline.config import resolve_config

                now = resolve_config(preset=ctx.cfg.preset, generator=ctx.cfg.generator,
                                     generator_preset=(ctx.entry.presets or {}).get(ctx.cfg.preset, {})).audit
                for f in fields(now):
                    if f.name.startswith("utility_"):
                        setattr(ctx.cfg.audit, f.name, getattr(now, f.name))
            if args.threads:
                ctx.cfg.train.num_threads = args.threads
            if args.seeds:
                ctx.cfg.audit.utility_seeds = args.seeds
            if args.steps:
                ctx.cfg.audit.utility_steps = args.steps
            opts = options_from_config(ctx.cfg)
            t0 = time.perf_counter()
            info = run_utility(ctx)
            wall = time.perf_counter() - t0
            section = ctx.artefacts["results.utility"]
            import pandas as pd

            from audit.core.tables import read_csv  # strips the spreadsheet guards of the run-dir table

            runs_csv = Path(args.work) / src.name / "utility_training.csv"
            trainings = read_csv(runs_csv) if runs_csv.is_file() and runs_csv.stat().st_size > 1 else pd.DataFrame()
            result["runs"][src.name] = {
                "generator": ctx.cfg.generator, "preset": ctx.cfg.preset, "wall_s": round(wall, 1), "goal_met": bool(wall <= GOAL_S),
                "options": {k: getattr(opts, k) for k in ("seeds", "steps", "batch_size", "width", "synthetic_ratio", "sdedit_strength")},
                "info": info,
                "trainings": [] if trainings.empty else trainings.round(4).to_dict(orient="records"),
                "headline": _headline(section),
            }
            log.info("%s: utility stage %.1f s (goal %.0f s)", src.name, wall, GOAL_S)
            result["machine"]["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
            atomic_write_json(args.out, result)  # after every run: a long benchmark keeps what it has
    result["machine"]["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    if result.get("runs"):
        result["acceptance"] = _acceptance(result["runs"])
    atomic_write_json(args.out, result)
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
