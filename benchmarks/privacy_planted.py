"""Planted-effect table of the privacy audit on the phantom (issue 9, requirement 7).

Usage:

    CMR_AUDIT_CACHE=.pytest_cache/cmr-audit-cache python benchmarks/privacy_planted.py --subjects 40

Runs :func:`audit.privacy.privacy_section` for the ``copycat`` (leak: training images lightly
augmented) and ``holdout`` (no leak: real images of reference-split subjects) reference
generators on the phantom at 3 mm / 64 x 64 (splits 40/20/20/20 %), 5 synthetic images per
pool image, and writes ``benchmarks/results/privacy_planted.json`` plus a Markdown table
(generator x attack: AUC [95 % CI], TPR at FPR 1 %, copy rate) on stdout. Trained generators
(``gan``, ``vae``, ``ddpm``, ``ldm``, ``flow``) need the pipeline wiring (a run directory) and
are not part of this script.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402


def _fmt(e: dict, digits: int = 3) -> str:
    if "value" not in e:
        return "n/a"
    ci = "" if e["ci_low"] is None else f" [{e['ci_low']:.{digits}f}, {e['ci_high']:.{digits}f}]"
    return f"{e['value']:.{digits}f}{ci}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=40)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "privacy_planted.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from audit.privacy import privacy_section
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig
    from cohorts.splits import make_splits
    from generators.base import FitContext
    from generators.data import SliceSet
    from generators.reference import CopycatGenerator, HoldoutGenerator

    root = source.resolve("phantom", phantom_subjects=args.subjects, phantom_seed=0)
    prepared = load_prepared(root, PreprocessConfig(target_spacing=3.0, size=64), progress=False)
    splits = make_splits(prepared, seed=0)
    sets = {k: SliceSet.from_prepared(prepared, splits.assignments[k], frames="ed_es") for k in ("train", "holdout", "reference")}
    out: dict = {"benchmark": "privacy_planted", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "command": "python benchmarks/privacy_planted.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "machine": {"platform": platform.platform(), "python": platform.python_version()},
                 "sizes": {k: {"images": len(v), "subjects": len(set(v.subject_ids))} for k, v in sets.items()},
                 "results": {}}
    rows = ["| generator | attack | AUC image [95% CI] | AUC subject mean [95% CI] | TPR@FPR 1% [95% CI] | copy rate pixel-corr | copy rate PCA |",
            "|---|---|---|---|---|---|---|"]
    for G in (CopycatGenerator, HoldoutGenerator):
        gen = G()
        gen.fit(sets["train"], None, FitContext(reference=sets["reference"]))
        samples = gen.sample(5 * len(gen.pool), seed=0)
        section, _, extras = privacy_section(sets["train"], sets["holdout"], sets["reference"], samples, gen,
                                             n_boot=args.boot, seed=0)
        out["results"][G.name] = {"privacy": section, "attacks": extras["attacks"], "timing_s": extras["timing_s"]}
        mem = section["memorisation"]
        for name, e in section["attacks"].items():
            if "image" not in e:
                rows.append(f"| {G.name} | {name} | unavailable: {e['reason']} | | | | |")
                continue
            rows.append(f"| {G.name} | {name} | {_fmt(e['image']['auc'])} | {_fmt(e['subject_mean']['auc'])} | "
                        f"{_fmt(e['image']['tpr_at_fpr_1%'])} | {_fmt(mem['pixel_correlation']['copy_rate'])} | "
                        f"{_fmt(mem['pca']['copy_rate'])} |")
        rows.append(f"| {G.name} | DCR ratio (pixel-corr / PCA) | {_fmt(mem['pixel_correlation']['dcr_ratio'])} / "
                    f"{_fmt(mem['pca']['dcr_ratio'])} | | | | |")
    atomic_write_json(args.out, out)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
