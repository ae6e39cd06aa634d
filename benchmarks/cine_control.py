"""Controllability of the ``cine`` generator (issue 8 requirement 5): requested vs measured EF/EDV/ESV.

Usage (record the result in BENCHMARKS.md, "## Cine generation"):

    python benchmarks/cine_control.py                       # train + audit the quick preset (~25 min on 2 cores)
    python benchmarks/cine_control.py --run benchmarks/runs/cine-quick   # summarise a finished run only

The run is ``audit run --generator cine --preset quick`` with clinical indices measured on up to
``--clinical-subjects`` whole generated stacks (every slice and frame through the judge) and the
privacy and utility audits off (they do not bear on controllability). For requested EF/EDV/ESV
taken from the held-out (``reference``) subjects, the audit measures the indices from (a) the
generator's own segmentation-decoder masks and (b) the independent judge's segmentation of the
generated frames (LV volume per frame by slice summation, ED/ES = frames of largest/smallest LV
volume; :mod:`audit.anatomy.clinical`). This script reads those tables and the temporal measures
(frame-to-frame judge Dice, ``fvd_judge``) from the run directory, draws the requested-vs-measured
scatter plots (``docs/cine_control.png``) and writes ``benchmarks/results/cine_control.json``.

Goals: Pearson r >= 0.8 (judge-measured) for EF, EDV and ESV; mean frame-to-frame judge Dice >= 0.85.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("cine_control")
INDICES = (("lv_ef_pct", "EF", "%"), ("lv_edv_ml", "EDV", "mL"), ("lv_esv_ml", "ESV", "mL"))
SOURCES = (("clinical", "judge segmentation", "clinical_per_subject.csv"),
           ("clinical_generator_masks", "seg-decoder masks", "clinical_generator_masks_per_subject.csv"))


def _value(entry):
    return entry.get("value") if isinstance(entry, dict) else None


def summarise(run: Path) -> dict:
    import numpy as np
    import pandas as pd

    results = json.loads((run / "results.json").read_text("utf-8"))
    state = json.loads((run / "state.json").read_text("utf-8"))
    anatomy = results["anatomy"]
    out: dict = {"run_dir": str(run), "stage_s": {k: round(v.get("seconds", 0.0), 1) for k, v in state["stages"].items()}}
    for key, label, csv in SOURCES:
        section = anatomy.get(key, {})
        table = pd.read_csv(run / csv) if (run / csv).is_file() else None
        rows = {}
        for idx, name, unit in INDICES:
            e = section.get(idx, {})
            row = {m: _value(e.get(m)) for m in ("pearson_r", "mae", "bland_altman_bias")}
            row["pearson_ci"] = (e.get("pearson_r") or {}).get("ci")
            if table is not None:
                ok = table[[f"{idx}_measured", f"{idx}_requested"]].dropna()
                row["n"] = int(len(ok))
                if len(ok):
                    rel = (ok[f"{idx}_measured"] - ok[f"{idx}_requested"]).abs() / ok[f"{idx}_requested"].abs()
                    row["mae_pct_of_requested"] = float(100 * rel.mean())
            rows[name] = row
        out[label] = rows
    fvd = results.get("fidelity", {}).get("fvd_judge", {})
    smooth = fvd.get("temporal_smoothness", {})
    out["frame_to_frame_dice"] = {k: _value(smooth.get(k)) for k in ("synthetic", "real_test")}
    out["fvd_judge"] = {"synthetic_vs_test": _value((fvd.get("synthetic_vs_test") or {}).get("fid")),
                        "real_floor": _value((fvd.get("real_floor") or {}).get("fid"))}
    judge = out["judge segmentation"]
    out["goals"] = {"pearson_r_ge_0.8": {n: (judge[n]["pearson_r"] or 0) >= 0.8 for _, n, _ in INDICES},
                    "frame_to_frame_dice_ge_0.85": (out["frame_to_frame_dice"]["synthetic"] or 0) >= 0.85}
    _plot(run, out)
    return out


def _plot(run: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(2, 3, figsize=(11, 7))
    for r, (_, label, csv) in enumerate(SOURCES):
        if not (run / csv).is_file():
            continue
        t = pd.read_csv(run / csv)
        for c, (idx, name, unit) in enumerate(INDICES):
            ax = axes[r, c]
            q, m = t[f"{idx}_requested"], t[f"{idx}_measured"]
            ax.scatter(q, m, s=18)
            lo, hi = float(min(q.min(), m.min())), float(max(q.max(), m.max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            rr = summary[label][name]["pearson_r"]
            ax.set_title(f"{name} ({label}): r = {rr:.2f}" if rr is not None else f"{name} ({label})", fontsize=9)
            ax.set_xlabel(f"requested {name} ({unit})")
            ax.set_ylabel(f"measured {name} ({unit})")
    fig.suptitle("cine generator, quick preset on the phantom: requested vs measured clinical indices", fontsize=10)
    fig.tight_layout()
    path = ROOT / "docs" / "cine_control.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log.info("wrote %s", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="summarise this finished run directory instead of running one")
    ap.add_argument("--out-run", type=Path, default=ROOT / "benchmarks" / "runs" / "cine-quick")
    ap.add_argument("--clinical-subjects", type=int, default=24)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "cine_control.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run, wall = args.run, None
    if run is None:
        run = args.out_run
        cmd = [sys.executable, "-m", "audit", "--quiet", "run", "--generator", "cine", "--preset", "quick", "--out", str(run),
               "--set", f"audit.clinical_subjects={args.clinical_subjects}", "--set", "audit.privacy=false",
               "--set", "audit.utility=false"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
    summary = summarise(run)
    doc = {"benchmark": "cine_control", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/cine_control.py" + (f" --run {args.run}" if args.run else ""),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "load_avg_1m": os.getloadavg()[0]},
           "wall_s": None if wall is None else round(wall, 1), **summary}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    log.info("%s", json.dumps({k: doc[k] for k in ("judge segmentation", "seg-decoder masks", "frame_to_frame_dice",
                                                      "fvd_judge", "goals", "stage_s")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
