"""How much realism the shared latent autoencoder keeps: judge-feature fidelity of its reconstructions.

Usage (record the result in BENCHMARKS.md, "Shared autoencoder"):

    python benchmarks/autoencoder_fidelity.py --run benchmarks/runs/quick-flow-adv
    python benchmarks/autoencoder_fidelity.py --run ... --compare   # ratios against the recorded JSON

A latent generator can look no more real than its autoencoder's decoder: every sample is a
decoded latent. This reconstructs the run's audit subset of real ``holdout`` slices through
each autoencoder variant and compares the reconstructions with the ``test`` split exactly as
the fidelity audit compares synthetic images (judge features, FID / precision / recall /
density / coverage with subject-level bootstrap CIs, beside the real floor holdout vs test),
plus the paired PSNR / SSIM of each reconstruction against its original.

Variants: the run's own autoencoder options (``as_run``), the same options with the
adversarial term switched off (``pixel_losses``, when the run had one) and any ``--variant
NAME=JSON`` (the run's options updated with the JSON object). Each comes from the autoencoder cache
(``$CMR_AUDIT_CACHE/autoencoders``, keyed by training images, options and seed) or is trained
here on the run's training split with the run's seed; training time is reported when it
happens here.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("autoencoder_fidelity")


def _entry(e: dict) -> dict:
    return {"value": round(float(e["value"]), 4), "ci": [e.get("ci_low"), e.get("ci_high")]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished ldm or flow run directory")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "autoencoder_fidelity.json")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap replicates")
    ap.add_argument("--compare", action="store_true", help="print ratios against the recorded result")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help='another autoencoder: the run\'s options updated with JSON, e.g. '
                         '\'adversarial={"adv_weight": 0.1, "fm_weight": 3.0}\' (repeatable)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import numpy as np

    from audit.pipeline.anatomy_stage import real_judged
    from audit.core.atomic import atomic_write_json
    from audit.fidelity.distribution import compare
    from audit.fidelity.paired import paired_metrics
    from audit.pipeline.stagekit import judge_memo, split_slices
    from generators.autoencoder import shared_autoencoder, without_adversarial
    from runkit import scratch_context  # benchmarks/runkit.py; this directory is sys.path[0]

    with tempfile.TemporaryDirectory() as work:
        ctx = scratch_context(args.run, Path(work) / "scratch")
        gen = ctx.artefacts["generator"]
        if getattr(gen, "ae", None) is None:
            raise SystemExit(f"{args.run}: generator '{ctx.cfg.generator}' has no latent autoencoder")
        train = split_slices(ctx, "train")
        memo = judge_memo(ctx)
        test, floor = real_judged(ctx, "test"), real_judged(ctx, "holdout")
        ts, _, test_f = test
        fs, _, floor_f = floor
        common = dict(n_boot=args.boot, seed=ctx.cfg.seed, feature_label="judge")
        floor_row = compare(floor_f, fs.subject_ids, test_f, ts.subject_ids, **common)
        as_run = dict(gen.ae.options)
        variants = {"as_run": as_run}
        if float(as_run.get("adv_weight") or 0) or float(as_run.get("fm_weight") or 0):
            variants["pixel_losses"] = without_adversarial(as_run)
        for v in args.variant:
            name, _, spec = v.partition("=")
            try:
                variants[name] = {**as_run, **json.loads(spec)}
            except json.JSONDecodeError as exc:
                raise SystemExit(f"--variant {v!r}: not NAME=JSON ({exc})") from None
        rows = {}
        for name, options in variants.items():
            t0 = time.perf_counter()
            ae = shared_autoencoder(train.images, options, int(ctx.cfg.seed))
            fit_s = time.perf_counter() - t0
            rec = ae.reconstruct(fs.images)
            _, feats = memo(rec, fs.spacing)
            out = compare(feats, fs.subject_ids, test_f, ts.subject_ids, **common)
            paired = paired_metrics(rec, fs.images)
            rows[name] = {
                "options": options,
                "seconds_here": round(fit_s, 1),
                "fid_ratio_to_floor": round(out["fid"]["value"] / floor_row["fid"]["value"], 3),
                **{k: _entry(out[k]) for k in ("fid", "precision", "recall", "density", "coverage")},
                "psnr_db": round(float(np.mean(paired["psnr"])), 2),
                "ssim": round(float(np.mean(paired["ssim"])), 3),
            }
            log.info("%s: FID %.2f (%.2fx floor), precision %.2f, recall %.2f, PSNR %.1f dB", name,
                     out["fid"]["value"], rows[name]["fid_ratio_to_floor"], out["precision"]["value"],
                     out["recall"]["value"], rows[name]["psnr_db"])
    doc = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "command": "python benchmarks/autoencoder_fidelity.py --run " + str(args.run)
                   + "".join(f" --variant '{v}'" for v in args.variant),
        "run": str(args.run),
        "n_reconstructed": int(len(fs)),
        "n_test": int(len(ts)),
        "real_floor": {k: _entry(floor_row[k]) for k in ("fid", "precision", "recall", "density", "coverage")},
        "variants": rows,
    }
    if args.compare:
        from runkit import compare_with_recorded

        print("\n".join(compare_with_recorded(doc, args.out)))
        return 0
    atomic_write_json(args.out, doc)
    print(json.dumps({k: {m: v[m] for m in ("fid_ratio_to_floor", "precision", "recall", "psnr_db")}
                      for k, v in rows.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
