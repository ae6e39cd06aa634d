"""Statistical power of the privacy audit and one-run DP auditing (BENCHMARKS.md "Privacy power").

Usage:

    python benchmarks/privacy_power.py main                   # README command 1: audit run --generator ldm
    python benchmarks/privacy_power.py acdc --data DATA_DIR   # the same on a real ACDC folder
    python benchmarks/privacy_power.py one-run                # ldm, quick preset, eps 1 / 8 / inf, 32 canary subjects
    python benchmarks/privacy_power.py collect                # re-read finished runs, rewrite the JSON + tables

Every run is one ``audit run`` into ``benchmarks/runs-privacy/<name>`` (git-ignored; an unfinished
run is resumed, a finished one only read), followed by ``audit signoff`` with the default policy.
``one-run`` switches the utility, anatomy and fidelity stages off (it reads only the privacy section). Its ``inf`` row is
DP-SGD without meaningful noise (noise multiplier 0.001: clipping and subject-level sampling as in
the DP rows, an accountant epsilon far beyond any claim): ``--dp-audit-canaries`` audits a DP run,
so the non-private reference has to go through the same DP-SGD training loop.

Canaries (``--canaries K``, ``--canary-unit``): by default K = 32 canary *subjects*, the most the
quick phantom's 64 training subjects allow (half of them). With seed 0, 18 of the 32 coins keep
their subject, so DP trains on N = 50 subjects and delta = 1/(10 N) = 0.002; the game can then prove
at most epsilon 1.79 (guess counts 12 and 16 per side, every guess right). A claim of 1 can be
audited; a claim of 8 cannot (no canary count this cohort allows reaches it), so ``audit run``
refuses the eps-8 row before training and the row records that refusal (``refused``), not a run.
The ``inf`` row's claim is not known before training (a noise multiplier), so it runs and its
results entry records that its claim lies above the ceiling. Run directories are named by unit
and K (``one-run-ldm-subject32-eps1``), so runs with other canaries are never mixed up.

Per run the script records the member / non-member counts and the splits they come from, per attack
the subject-level (mean score) AUC with its bootstrap CI and half-width, TPR at 1 %, 0.1 % and at
the lowest supported FPR (with that FPR), the one-run epsilon lower bound, the sign-off criterion
by criterion, and the stage times. Output: ``benchmarks/results/privacy_power.json`` and markdown
tables on stdout.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from runkit import run_state as _state  # noqa: E402

log = logging.getLogger("privacy_power")
RUNS = ROOT / "benchmarks" / "runs-privacy"
OUT = ROOT / "benchmarks" / "results" / "privacy_power.json"
#: noise multiplier of the "epsilon = infinity" one-run row (see the module docstring)
NO_NOISE = 0.001


def plans(args: argparse.Namespace) -> dict[str, list[str]]:
    """``{run name: audit run arguments}`` for the requested group."""
    if args.group == "main":
        return {"main-ldm": ["--generator", "ldm"]}
    if args.group == "acdc":
        if not args.data:
            raise SystemExit("acdc: give --data DATA_DIR (an ACDC folder, see ../shared/tools/acdc_from_h5.py)")
        return {"acdc-ldm": ["--generator", "ldm", "--data", str(args.data)]}
    if args.group == "one-run":
        base = ["--generator", "ldm", "--preset", "quick", "--dp-audit-canaries", str(args.canaries),
                "--set", f"dp.audit_canary_unit={args.canary_unit}"]
        base += [a for k in ("utility", "anatomy", "fidelity") for a in ("--set", f"audit.{k}=false")]
        out = {}
        for eps in args.eps:
            dp = ["--dp-noise-multiplier", f"{NO_NOISE:g}"] if eps == "inf" else ["--dp-epsilon", eps]
            out[f"one-run-ldm-{args.canary_unit}{args.canaries}-eps{eps}"] = base + dp
        return out
    return {}


def run_one(name: str, argv: list[str], refusable: bool = False) -> str | None:
    """Run (or resume) one ``audit run``; ``None`` when it finished. With ``refusable`` an exit 2
    (a request refused before training, e.g. a canary game that cannot reach the claim) returns
    the one-line refusal instead of stopping the benchmark."""
    out = RUNS / name
    st = _state(out)
    if st.get("status") != "finished":
        cmd = ["audit", "run", *argv, "--out", str(out)] + (["--resume"] if st else [])
        log.info("%s", " ".join(cmd))
        env = {**os.environ, "CI": "true"}  # no progress bars in the captured log
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            if refusable and proc.returncode == 2 and "fit" not in (_state(out).get("stages") or {}):
                log.info("%s: refused before training: %s", name, msg)
                return msg
            raise SystemExit(f"{name}: audit run failed: {msg}")
    sign_off(out)
    return None


def sign_off(run: Path) -> None:
    """``audit signoff`` with the default policy (its exit code is the verdict; signoff.json is what we read)."""
    subprocess.run(["audit", "signoff", str(run)], cwd=ROOT, env={**os.environ, "CI": "true"},
                   capture_output=True, text=True)


def _entry(node: Any, *path: str) -> dict | None:
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node if isinstance(node, dict) and "value" in node else None


def _num(e: dict | None) -> float | None:
    return None if e is None else e.get("value")


def collect(run: Path) -> dict[str, Any]:
    doc = json.loads((run / "results.json").read_text("utf-8"))
    cfg = json.loads((run / "config.json").read_text("utf-8"))
    priv = doc.get("privacy", {})
    setup = priv.get("setup", {})
    row: dict[str, Any] = {
        "run": str(run.relative_to(ROOT)), "generator": cfg.get("generator"), "preset": cfg.get("preset"),
        "data": cfg["data"]["source"] if cfg["data"]["source"] == "phantom" else "real folder",
        "phantom_subjects": cfg["data"]["phantom_subjects"] if cfg["data"]["source"] == "phantom" else None,
        "dp": {k: cfg["dp"].get(k) for k in ("epsilon", "noise_multiplier", "audit_canaries", "audit_canary_unit")},
        "member_subjects": _num(_entry(setup, "member_subjects")),
        "member_images": _num(_entry(setup, "member_images")),
        "nonmember_subjects": _num(_entry(setup, "nonmember_subjects")),
        "nonmember_images": _num(_entry(setup, "nonmember_images")),
        "nonmember_splits": (_entry(setup, "nonmember_subjects") or {}).get("notes"),
        "attacks": {},
    }
    for name, node in (priv.get("attacks") or {}).items():
        a: dict[str, Any] = {}
        for level in ("image", "subject_mean"):
            auc = _entry(node, level, "auc")
            if auc is None:
                a[level] = {"unavailable": (node.get("reason") if isinstance(node, dict) else None)}
                continue
            lo, hi = auc.get("ci_low"), auc.get("ci_high")
            low = _entry(node, level, "tpr_at_lowest_fpr")
            a[level] = {
                "auc": auc["value"], "ci": [lo, hi],
                "ci_half_width": None if lo is None or hi is None else (hi - lo) / 2,
                "lowest_fpr": (low or {}).get("params", {}).get("fpr"),
            }
            for key, rkey in (("tpr_at_1%", "tpr_at_fpr_1%"), ("tpr_at_0.1%", "tpr_at_fpr_0.1%"),
                              ("tpr_at_lowest_fpr", "tpr_at_lowest_fpr")):
                e = _entry(node, level, rkey)
                a[level][key] = _num(e)
                a[level][key + "_ci"] = None if e is None else [e.get("ci_low"), e.get("ci_high")]
        row["attacks"][name] = a
    one = _entry(priv, "dp_verification", "one_run_epsilon_lb")
    row["one_run"] = None if one is None else {"epsilon_lb": one["value"], **(one.get("params") or {}),
                                               "notes": one.get("notes"), "canary_auc": _canary_auc(run)}
    row["epsilon_claimed"] = _num(_entry(doc, "dp", "epsilon"))
    row["noise_multiplier"] = _num(_entry(doc, "dp", "noise_multiplier"))
    so = run / "signoff.json"
    if so.is_file():
        s = json.loads(so.read_text("utf-8"))
        row["signoff"] = {"overall": s.get("verdict"),
                          "criteria": [{"id": c.get("id"), "verdict": c.get("verdict"), "observed": c.get("observed"),
                                        "reason": c.get("reason")}
                                       for c in s.get("criteria", [])]}
    row["stage_seconds"] = {k: v.get("seconds") for k, v in (_state(run).get("stages") or {}).items()}
    return row


def _canary_auc(run: Path) -> float | None:
    """How well the canary scores separate trained-on from left-out canaries (ROC AUC, ties 1/2),
    from ``privacy_curves.json``; ``None`` without both kinds of canary."""
    curves = run / "privacy_curves.json"
    one = json.loads(curves.read_text("utf-8")).get("one_run") if curves.is_file() else None
    if not one:
        return None
    pos = [s for s, i in zip(one["scores"], one["included"]) if i]
    neg = [s for s, i in zip(one["scores"], one["included"]) if not i]
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def tables(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if "refused" in r:
            out.append(f"\n### {r['run']}\n\nrefused before training: {r['refused']}")
            continue
        out.append(f"\n### {r['run']}  (members {r['member_subjects']} subjects / {r['member_images']} images; "
                   f"non-members {r['nonmember_subjects']} / {r['nonmember_images']}: {r['nonmember_splits']})\n")
        out.append("| attack | subject AUC [95 % CI] | half-width | subject TPR @ lowest FPR (FPR) | image AUC [CI] "
                   "| image TPR @ 1 % FPR [CI] | image TPR @ 0.1 % FPR [CI] | image TPR @ lowest FPR (FPR) |")
        out.append("|---|---|---|---|---|---|---|---|")

        def ci(d: dict, key: str) -> str:
            c = d.get(key + "_ci") or [None, None]
            return f"{_f(d.get(key))} [{_f(c[0])}, {_f(c[1])}]"

        for name, a in r["attacks"].items():
            s, i = a.get("subject_mean", {}), a.get("image", {})
            if "auc" not in s or "auc" not in i:
                out.append(f"| {name} | unavailable: {s.get('unavailable')} |||||||")
                continue
            out.append(f"| {name} | {_f(s['auc'])} [{_f(s['ci'][0])}, {_f(s['ci'][1])}] | {_f(s['ci_half_width'])} | "
                       f"{_f(s['tpr_at_lowest_fpr'])} ({_f(s['lowest_fpr'], 4)}) | {_f(i['auc'])} [{_f(i['ci'][0])}, "
                       f"{_f(i['ci'][1])}] | {ci(i, 'tpr_at_1%')} | {ci(i, 'tpr_at_0.1%')} | "
                       f"{_f(i['tpr_at_lowest_fpr'])} ({_f(i['lowest_fpr'], 4)}) |")
        if r.get("one_run"):
            o = r["one_run"]
            out.append(f"\none-run epsilon lower bound {_f(o['epsilon_lb'], 2)} (claimed {_f(r['epsilon_claimed'], 2)}, "
                       f"noise multiplier {_f(r['noise_multiplier'], 3)}; {r['dp'].get('audit_canaries')} canary "
                       f"{r['dp'].get('audit_canary_unit') or 'image'}s, canary AUC {_f(o.get('canary_auc'))}): "
                       f"{o.get('notes')}")
        if r.get("signoff"):
            out.append(f"\nsign-off {r['signoff']['overall']}: "
                       + "; ".join(f"{c['id']} {c['verdict']}" for c in r["signoff"]["criteria"]))
        out.append(f"\nstage seconds: {r['stage_seconds']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("group", choices=["main", "acdc", "one-run", "collect"])
    ap.add_argument("--data", type=Path, help="ACDC folder for 'acdc'")
    ap.add_argument("--eps", nargs="+", default=["1", "8", "inf"], help="one-run: target epsilons ('inf' = no noise)")
    ap.add_argument("--canaries", type=int, default=32,
                    help="one-run: canaries K (default 32 subjects: half the quick phantom's 64 training subjects)")
    ap.add_argument("--canary-unit", choices=["subject", "image"], default="subject",
                    help="one-run: what a canary is (dp.audit_canary_unit)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="extra audit run --set for every run (e.g. train.num_threads=1 when two run side by side)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    refused = {}
    for name, run_args in plans(args).items():
        argv = run_args + [a for kv in args.sets for a in ("--set", kv)]
        msg = run_one(name, argv, refusable=args.group == "one-run")
        if msg is not None:
            refused[name] = {"run": str((RUNS / name).relative_to(ROOT)), "argv": argv, "refused": msg}
    doc = json.loads(OUT.read_text("utf-8")) if OUT.is_file() else {"benchmark": "privacy_power", "rows": {}}
    doc["rows"].update(refused)
    for run in sorted(RUNS.glob("*")) if RUNS.is_dir() else []:
        if _state(run).get("status") == "finished" and (run / "results.json").is_file():
            sign_off(run)  # with the policy of this checkout
            doc["rows"][run.name] = collect(run)
    doc.update({"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]}})
    atomic_write_json(OUT, doc)
    print(tables(list(doc["rows"].values())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
