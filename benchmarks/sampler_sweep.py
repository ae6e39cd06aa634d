"""Fidelity of a fitted generator under other sampler settings, without refitting or re-auditing.

Usage:

    python benchmarks/sampler_sweep.py --run benchmarks/runs/quick-flow \
        --setting 8:2.0 --setting 16:2.0 --setting 8:1.0 --setting 8:2.0:heun

Each ``--setting STEPS:GUIDANCE[:SAMPLER]`` (``SAMPLER``: a ``sample.sampler`` value, e.g. the
flow family's ODE solver ``euler`` / ``heun`` / ``midpoint``; default the run's) draws the run's
``sample.n_samples`` images from the run's generator on the run's conditions and seed, judges
the run's audit subset of them and compares it with the ``test`` split through the fidelity
stage's own comparison (:func:`audit.pipeline.fidelity_stage.against_real`: same subsets, same n as the
real floor, judge features): FID and its ratio to the floor, precision / recall / density / coverage (Naeem et al.
2020), plus sampling speed. For the setting the run used the figures equal the audit's. Results
go to ``benchmarks/results/sampler_sweep_<run>.json`` (point estimates; the CIs are in the
stage's output but not kept here).

Training-length curves: ``--checkpoint DIR`` (repeatable; a checkpoint directory ``step-NNNNNN``
of this run's training, e.g. kept with ``train.keep_checkpoints=0``) evaluates the sampling (EMA)
weights saved at that step instead of the final ones, each under every ``--setting``; the rows
carry ``train_step``. The trainer's learning rate is constant and its EMA does not depend on the
total length, so the weights at step N of a long run are those an N-step run ends with.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("sampler_sweep")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run directory of a trained generator")
    ap.add_argument("--setting", action="append", required=True, metavar="STEPS:GUIDANCE[:SAMPLER]")
    ap.add_argument("--checkpoint", action="append", type=Path, default=[],
                    help="a training checkpoint of this run to evaluate instead of the final weights (repeatable)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from audit.pipeline.anatomy_stage import real_judged
    from audit.core.atomic import atomic_write_json
    from audit.core.provenance import environment
    from audit.pipeline.stagekit import judge_memo
    from audit.pipeline.stages import conditions_for
    from runkit import scratch_context  # benchmarks/runkit.py; this directory is sys.path[0]

    settings = []
    for s in args.setting:
        try:
            steps, guidance, *sampler = s.split(":")
            if len(sampler) > 1:
                raise ValueError
            settings.append((int(steps), float(guidance), sampler[0] if sampler else None))
        except ValueError:
            raise SystemExit(f"--setting {s!r}: expected STEPS:GUIDANCE[:SAMPLER], e.g. 8:2.0 or 8:2.0:heun") from None
    rows = []
    with tempfile.TemporaryDirectory() as work:
        ctx = scratch_context(args.run, Path(work) / "scratch")
        cfg, gen, memo = ctx.cfg, ctx.artefacts["generator"], judge_memo(ctx)
        test, floor = real_judged(ctx, "test"), real_judged(ctx, "holdout")
        cond = conditions_for(ctx)
        for ckpt_dir in args.checkpoint or [None]:
            train_step = use_checkpoint(gen, ckpt_dir) if ckpt_dir is not None else None
            for steps, guidance, sampler in settings:
                row = evaluate(ctx, gen, memo, cond, test, floor, steps, guidance, sampler)
                out = row.pop("_out")
                if train_step is not None:
                    row = {"train_step": train_step, **row}
                rows.append(row)
                log.info("%s", row)
        floor_fid, n = out["real_floor"]["fid"]["value"], out["real_floor"]["fid"]["n"]
    env = environment()
    ckpts = "".join(f" --checkpoint {c}" for c in args.checkpoint)
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "run": str(args.run),
           "command": "python benchmarks/sampler_sweep.py --run " + str(args.run) + "".join(f" --setting {s}" for s in args.setting) + ckpts,
           "real_floor_fid": round(float(floor_fid), 4), "n": int(n), "settings": rows,
           "machine": {**{k: env[k] for k in ("platform", "cpu", "cpu_count", "gpus")}, "torch": env["packages"]["torch"],
                       "note": "images_per_s compare only within one file: CPUs of the same name differ ~2x between machines"}}
    out_path = args.out or ROOT / "benchmarks" / "results" / f"sampler_sweep_{args.run.name}.json"
    atomic_write_json(out_path, doc)
    print(json.dumps(rows, indent=1))
    return 0


def evaluate(ctx, gen, memo, cond, test, floor, steps: int, guidance: float, sampler: str | None) -> dict:
    """One sampler setting: the run's samples drawn again, judged and compared with the test split."""
    from audit.pipeline.fidelity_stage import FEATURE_DESCRIPTION, against_real
    from audit.pipeline.stagekit import audit_subset

    cfg = ctx.cfg
    sampler = sampler or cfg.sample.sampler
    t0 = time.perf_counter()
    smp = gen.sample(cfg.sample.n_samples, conditions=cond, seed=cfg.seed, batch_size=cfg.sample.batch_size,
                     steps=steps, guidance=guidance, sampler=sampler)
    rate = len(smp) / (time.perf_counter() - t0)
    idx = audit_subset(ctx, len(smp))
    _, feats = memo(smp.images[idx], smp.pixel_spacing)
    out = against_real(ctx, smp, idx, feats, (test[0], test[2]), (floor[0], floor[2]), FEATURE_DESCRIPTION,
                       "judge", "features_judge.npz")
    syn = out["synthetic_vs_test"]
    row = {"steps": steps, "guidance": guidance, "sampler": sampler, "images_per_s": round(rate, 2),
           "fid_ratio_to_floor": round(out["fid_ratio_to_floor"]["value"], 3)}
    row.update({k: round(float(syn[k]["value"]), 4) for k in ("fid", "precision", "recall", "density", "coverage")})
    return {**row, "_out": out}


def use_checkpoint(gen, path: Path) -> int:
    """Load the sampling weights (the EMA copies, else the raw ones) of training checkpoint ``path``
    into ``gen``; returns the checkpoint's step."""
    from generators import checkpoint as ckpt

    found = ckpt.load(path, generator=gen.name)
    for name, net in gen.nets.items():
        prefix = f"ema.{name}." if any(k.startswith(f"ema.{name}.") for k in found.weights) else f"{name}."
        state = {k[len(prefix):]: v for k, v in found.weights.items() if k.startswith(prefix)}
        net.load_state_dict(state)
    log.info("checkpoint %s: step %d", path, found.step)
    return found.step


if __name__ == "__main__":
    raise SystemExit(main())
