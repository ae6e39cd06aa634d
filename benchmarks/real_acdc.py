"""Generators on real ACDC scans at the quick preset: quality, privacy and cost per family.

Usage (an ACDC folder made with ``python ../shared/tools/acdc_from_h5.py``; never commit it):

    python benchmarks/real_acdc.py DATA_DIR                                  # every family + references
    python benchmarks/real_acdc.py DATA_DIR --generators ldm flow --set train.steps=1500
    python benchmarks/real_acdc.py DATA_DIR --generators ldm --reaudit       # keep the fit, redo the audits

Each family (and the ``holdout`` and ``noise`` references: real unseen images with their own masks,
and pure noise) is one ``audit run --generator G --preset quick --data DATA_DIR`` in its own process
(:func:`generators_quality.run_one`, so peak memory and wall time are its own) into
``benchmarks/runs-acdc/quick-G`` (git-ignored: run directories hold real images); a finished run
there is only read again unless ``--force``. Per family:
fit seconds, sampling images/s, judge Dice and its fraction of the real-image ceiling (the
``holdout`` row), FID / real floor, precision, recall, coverage, density, plausible rate (and the
real test set's), HD95 per structure (and real's), the best black-box and white-box
membership-inference AUC and the copy rate. The utility stage is switched off (no figure here reads
it; ``benchmarks/utility_segmenter.py`` measures utility on real scans).

Writes ``benchmarks/results/real_acdc.json``, rewrites the block between the ``real_acdc`` markers
of BENCHMARKS.md (machine, date, command, table) and draws the synthetic samples of every trained
family into ``docs/real_acdc_samples.png`` (synthetic images and their conditioning masks only: the
``holdout`` reference's samples are real scans and are never drawn).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from audit.core.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from generators_quality import _value as _v  # noqa: E402
from generators_quality import collect_row, run_one  # noqa: E402
from runkit import run_state  # noqa: E402

FAMILIES = ["ldm", "flow", "gan", "vae", "ddpm"]
REFERENCES = ["holdout", "noise"]
RUNS = ROOT / "benchmarks" / "runs-acdc"
OUT = ROOT / "benchmarks" / "results" / "real_acdc.json"
FIGURE = ROOT / "docs" / "real_acdc_samples.png"
BEGIN, END = "<!-- real_acdc:begin -->", "<!-- real_acdc:end -->"


def extra_figures(run_dir: Path) -> dict:
    """The figures :func:`generators_quality.run_one` does not read."""
    res = json.loads((run_dir / "results.json").read_text("utf-8"))
    out = {
        "coverage": _v(res, "fidelity", "judge", "synthetic_vs_test", "coverage"),
        "density": _v(res, "fidelity", "judge", "synthetic_vs_test", "density"),
        "floor_coverage": _v(res, "fidelity", "judge", "real_floor", "coverage"),
        "hd95_mm": {s: _v(res, "anatomy", "judge_agreement", "hd95_mm", s) for s in ("LV", "MYO", "RV")},
        "hd95_mm_real": {s: _v(res, "anatomy", "judge_agreement_real_test", "hd95_mm", s) for s in ("LV", "MYO", "RV")},
        "ceiling_dice_in_run": _v(res, "anatomy", "judge_agreement_real_test", "dice", "mean"),
        "best_black_box_auc": _v(res, "privacy", "summary", "best_black_box_auc"),
        "best_white_box_auc": _v(res, "privacy", "summary", "best_white_box_auc"),
        "copy_rate": _v(res, "privacy", "memorisation", "pca", "copy_rate"),
    }
    return out


def _f(v, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def table(rows: list[dict]) -> str:
    head = ("| generator | fit s | sample img/s | judge Dice (fraction of ceiling) | FID / floor | precision / recall "
            "| coverage / density | plausible (real) | HD95 LV / MYO / RV mm (real) | best AUC black / white | copy rate |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['generator']} | error: {r['error']} ||||||||||")
            continue
        h, hr = r["hd95_mm"], r["hd95_mm_real"]
        lines.append(
            f"| {r['generator']} | {r['fit_s']:.0f} | {r['sample_images_per_s']:.1f} | {_f(r['judge_dice'].get('mean'))} "
            f"({_f(r.get('fraction_of_ceiling'), 2)}) | {_f(r.get('fid_ratio_to_floor'), 2)} | {_f(r.get('precision'), 2)} / "
            f"{_f(r.get('recall'), 2)} | {_f(r.get('coverage'), 2)} / {_f(r.get('density'), 2)} | "
            f"{_f(r.get('plausible_rate'), 2)} ({_f(r.get('plausible_rate_real'), 2)}) | "
            f"{_f(h['LV'], 1)} / {_f(h['MYO'], 1)} / {_f(h['RV'], 1)} ({_f(hr['LV'], 1)} / {_f(hr['MYO'], 1)} / "
            f"{_f(hr['RV'], 1)}) | {_f(r.get('best_black_box_auc'), 2)} / {_f(r.get('best_white_box_auc'), 2)} | "
            f"{_f(r.get('copy_rate'), 3)} |")
    return "\n".join(lines)


def draw_samples(rows: list[dict], path: Path, per_family: int = 6) -> Path | None:
    """A grid of each trained family's first synthetic samples with their conditioning-mask outlines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from generators.sampleset import SampleSet

    fams = [r for r in rows if "error" not in r and r["generator"] not in REFERENCES]
    if not fams:
        return None
    fig, axes = plt.subplots(len(fams), per_family, figsize=(1.6 * per_family, 1.7 * len(fams)), squeeze=False)
    for i, r in enumerate(fams):
        s = SampleSet.load(Path(r["run_dir"]) / "samples.npz")
        for j in range(per_family):
            ax = axes[i][j]
            ax.axis("off")
            if j >= len(s):
                continue
            ax.imshow(np.asarray(s.images[j]), cmap="gray")
            ax.contour(np.asarray(s.masks[j]), levels=[0.5, 1.5, 2.5], colors=["#e66", "#6c6", "#69f"], linewidths=0.5)
        axes[i][0].set_title(r["generator"], fontsize=8, loc="left")
    fig.suptitle("synthetic samples on real ACDC (quick preset); outlines: conditioning masks", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_section(doc: dict) -> None:
    bench = ROOT / "BENCHMARKS.md"
    text = bench.read_text("utf-8")
    body = (f"{BEGIN}\nMachine: {doc['machine']}, {doc['date_utc']} UTC. Command: `{doc['command']}`. "
            f"Data: {doc['subjects']}.\n\n{table(doc['rows'])}\n{END}")
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: body, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Generators on real ACDC (quick preset)\n\n" + body + "\n"
    atomic_write_text(bench, text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="an ACDC folder (official layout)")
    ap.add_argument("--generators", nargs="+", default=FAMILIES + REFERENCES)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra --set KEY=VALUE for every run")
    ap.add_argument("--reaudit", action="store_true", help="reuse each run's fit and samples; redo the audits")
    ap.add_argument("--force", action="store_true", help="rerun finished runs too (default: only read them)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"error: {args.data}: not a folder (make one with ../shared/tools/acdc_from_h5.py)")
    # the utility stage (about 10 min per run) feeds no figure of this table: BENCHMARKS "Utility"
    extra = ["--data", str(args.data.resolve()), "--set", "audit.utility=false"] + [x for kv in args.sets for x in ("--set", kv)]
    gens = list(dict.fromkeys(args.generators + ["holdout"]))  # the ceiling is always measured
    old = json.loads(OUT.read_text("utf-8")).get("rows", []) if OUT.is_file() else []
    rows = {r["generator"]: r for r in old}
    for g in gens:
        out = RUNS / f"quick-{g}"
        if run_state(out).get("status") == "finished" and not (args.force or args.reaudit):
            row = {**rows.get(g, {}), **collect_row(g, out)}  # keep the measured wall time / memory
        else:
            row = run_one(g, "quick", out, extra, args.reaudit)
        if "error" not in row:
            row.update(extra_figures(out))
        row["command_sets"] = args.sets
        rows[g] = row
        print(json.dumps(row), flush=True)
    ceiling = (rows.get("holdout") or {}).get("judge_dice", {}).get("mean")
    for r in rows.values():
        d = (r.get("judge_dice") or {}).get("mean")
        r["fraction_of_ceiling"] = d / ceiling if d is not None and ceiling else None
    order = [g for g in FAMILIES + REFERENCES if g in rows] + [g for g in rows if g not in FAMILIES + REFERENCES]
    n_subj = len([p for p in (args.data / "training").glob("patient*")]) if (args.data / "training").is_dir() else None
    doc = {
        "benchmark": "real_acdc",
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": " ".join(["python", "benchmarks/real_acdc.py", "DATA_DIR", *(argv if argv is not None else sys.argv[2:])]),
        "subjects": f"{n_subj} ACDC subjects" if n_subj else "ACDC folder",
        "rows": [rows[g] for g in order],
    }
    atomic_write_json(OUT, doc)
    write_section(doc)
    fig = draw_samples(doc["rows"], FIGURE)
    print(table(doc["rows"]))
    if fig:
        print(f"samples figure: {fig}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
