"""Privacy-utility trade-off of DP training at the quick preset on the phantom (issue 7, req. 6).

Usage (record the result in BENCHMARKS.md, "## Differential privacy"):

    python benchmarks/dp_tradeoff.py                          # ldm and vae at epsilon 1, 4, 8 (+ the non-DP runs)
    python benchmarks/dp_tradeoff.py --generators ldm --eps 8
    python benchmarks/dp_tradeoff.py --collect-only           # just re-read finished runs and rewrite the table

Each (generator, epsilon) is one ``audit run --preset quick --dp-epsilon EPS`` (subject-level DP,
delta = 1/(10 N)) into ``benchmarks/runs-dp/quick-<gen>-eps<EPS>`` (git-ignored), with the utility
stage switched off (the trade-off reads judge Dice, FID and the membership-inference AUCs). A
budget the accountant refuses (the noise multiplier would exceed 100) is recorded as refused with
the message -- that is a result, not a failure. An unfinished run is resumed, a finished one only
read. epsilon = infinity is the non-DP quick run of the generator benchmark
(``benchmarks/runs/quick-<gen>``, or ``--baseline GEN=DIR``). The comparison report of all runs
(``audit compare``) carries the trade-off figure; its PNG is copied to ``docs/dp_tradeoff.png``.
Output: ``benchmarks/results/dp_tradeoff.json`` and a markdown table on stdout.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

log = logging.getLogger("dp_tradeoff")
RUNS = ROOT / "benchmarks" / "runs-dp"
BASELINES = {"ldm": ROOT / "benchmarks" / "runs" / "quick-ldm", "vae": ROOT / "benchmarks" / "runs-vae" / "quick-vae",
             "gan": ROOT / "benchmarks" / "runs" / "quick-gan", "flow": ROOT / "benchmarks" / "runs" / "quick-flow",
             "ddpm": ROOT / "benchmarks" / "runs" / "quick-ddpm"}


def _value(doc: dict, *path: str) -> float | None:
    node: Any = doc
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return float(node["value"]) if isinstance(node, dict) and "value" in node else None


def _state(run: Path) -> dict:
    p = run / "state.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def run_one(gen: str, eps: float) -> tuple[Path, str | None]:
    """Train and audit (or resume); returns the run dir and the refusal message if refused."""
    out = RUNS / f"quick-{gen}-eps{eps:g}"
    st = _state(out)
    if st.get("status") == "finished":
        return out, None
    cmd = ["audit", "run", "--generator", gen, "--preset", "quick", "--dp-epsilon", f"{eps:g}", "--out", str(out),
           "--set", "audit.utility=false"]
    if st:
        cmd.append("--resume")
    log.info("%s", " ".join(cmd))
    env = {**os.environ, "CI": "true"}  # no progress bars in the log
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        if "impossible" in msg or "sane bound" in msg:
            return out, msg
        raise RuntimeError(f"{gen} eps {eps}: audit run failed: {msg}")
    return out, None


def collect(gen: str, eps: float | None, run: Path | None, refused: str | None) -> dict:
    row: dict[str, Any] = {"generator": gen, "epsilon_target": eps, "run": str(run.relative_to(ROOT)) if run else None}
    if refused:
        return {**row, "status": "refused", "reason": refused}
    doc = json.loads((run / "results.json").read_text())
    st = _state(run)
    row.update({
        "status": "finished",
        "epsilon_rdp": _value(doc, "dp", "epsilon"), "epsilon_prv": _value(doc, "dp", "epsilon_prv"),
        "noise_multiplier": _value(doc, "dp", "noise_multiplier"), "delta": _value(doc, "dp", "delta"),
        "privacy_units": _value(doc, "dp", "privacy_units"),
        "judge_dice": _value(doc, "anatomy", "judge_agreement", "dice", "mean"),
        "dice_ceiling": _value(doc, "anatomy", "judge_agreement_real_test", "dice", "mean"),
        "fid_ratio": _value(doc, "fidelity", "judge", "fid_ratio_to_floor"),
        "plausible_rate": _value(doc, "anatomy", "plausibility", "synthetic", "plausible_rate"),
        "best_bb_auc": _value(doc, "privacy", "summary", "best_black_box_auc"),
        "best_wb_auc": _value(doc, "privacy", "summary", "best_white_box_auc"),
        "epsilon_lb": _value(doc, "privacy", "dp_verification", "epsilon_lb"),
        "fit_s": (st.get("stages", {}).get("fit") or {}).get("seconds"),
    })
    return row


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def table(rows: list[dict], slowdown: dict[str, float]) -> str:
    lines = ["| generator | target ε | ε (RDP / PRV) | σ | judge Dice (ceiling) | FID / floor | plausible | best MIA AUC black-box / white-box | ε lower bound | fit s | DP slowdown |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = "∞ (no DP)" if r["epsilon_target"] is None else f"{r['epsilon_target']:g}"
        if r["status"] == "refused":
            lines.append(f"| {r['generator']} | {target} | refused before training: {r['reason']} |||||||||")
            continue
        eps = "-" if r["epsilon_rdp"] is None else f"{r['epsilon_rdp']:.2f} / {_fmt(r['epsilon_prv'], 2)}"
        lines.append(
            f"| {r['generator']} | {target} | {eps} | {_fmt(r['noise_multiplier'], 2) if r['noise_multiplier'] else '-'} | "
            f"{_fmt(r['judge_dice'])} ({_fmt(r['dice_ceiling'])}) | {_fmt(r['fid_ratio'], 2)} | {_fmt(r['plausible_rate'])} | "
            f"{_fmt(r['best_bb_auc'])} / {_fmt(r['best_wb_auc'])} | {_fmt(r['epsilon_lb'], 2)} | {_fmt(r['fit_s'], 0)} | "
            f"{'-' if r['epsilon_target'] is None else 'x' + format(slowdown.get(r['generator'], float('nan')), '.2f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generators", nargs="+", default=["ldm", "vae"])
    ap.add_argument("--eps", nargs="+", type=float, default=[8.0, 4.0, 1.0])
    ap.add_argument("--baseline", action="append", default=[], help="GEN=RUN_DIR of the non-DP run")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dp_tradeoff.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    baselines = dict(BASELINES)
    baselines.update({k: Path(v) for k, v in (b.split("=", 1) for b in args.baseline)})
    speed_path = ROOT / "benchmarks" / "results" / "dp_speed.json"
    slowdown = {}
    if speed_path.is_file():
        slowdown = {r["family"]: r["slowdown"] for r in json.loads(speed_path.read_text())["rows"] if r["phase"] != "autoencoder"}
    rows, dirs = [], []
    for gen in args.generators:
        base = baselines.get(gen)
        if base is not None and _state(base).get("status") == "finished":
            rows.append(collect(gen, None, base, None))
            dirs.append(base)
        for eps in args.eps:
            out = RUNS / f"quick-{gen}-eps{eps:g}"
            if args.collect_only:
                st = _state(out)
                refused = st.get("error") if "impossible" in str(st.get("error", "")) else None
                if st.get("status") != "finished" and refused is None:
                    continue
            else:
                out, refused = run_one(gen, eps)
            rows.append(collect(gen, eps, None if refused else out, refused))
            if not refused:
                dirs.append(out)
            doc = {"benchmark": "dp_tradeoff", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                   "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                               "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
                   "command": "python benchmarks/dp_tradeoff.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "rows": rows}
            atomic_write_json(args.out, doc)  # after every run: a long benchmark keeps what it measured
    print(table(rows, slowdown))
    if len(dirs) >= 2:
        html = RUNS / "compare.html"
        subprocess.run(["audit", "compare", *map(str, dirs), "--out", str(html)], cwd=ROOT, check=True,
                       env={**os.environ, "CI": "true"}, capture_output=True)
        png = RUNS / "compare_figures" / "dp_tradeoff.png"
        if png.is_file():
            shutil.copyfile(png, ROOT / "docs" / "dp_tradeoff.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
