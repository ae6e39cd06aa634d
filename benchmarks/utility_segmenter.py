"""Utility segmenter on a real cohort: Dice and HD95 of the ``real`` setting's net on test subjects.

Usage (record the result in BENCHMARKS.md, "## Utility segmenter on real ACDC"):

    python benchmarks/utility_segmenter.py /path/to/ACDC                       # the code's quick recipe, 2 seeds
    python benchmarks/utility_segmenter.py /path/to/ACDC --steps 400 --width 16 --seeds 1 --set arch=dynunet
    python benchmarks/utility_segmenter.py /path/to/ACDC --centre motion        # label-free crop of the test subjects

It rebuilds the utility stage's data design without a generator (:func:`audit.pipeline.utility_stage.plan_subjects`
on the standard splits of ``data.split_seed`` 0: real training = ``train`` minus the validation
subjects, validation = ``audit.utility_val_fraction`` of ``train``, evaluation = every annotated
subject the generator never sees, i.e. ``holdout`` + ``test``), trains the ``real`` setting's net
with :func:`audit.utility.net.train_segmenter` (the :class:`~audit.utility.net.TrainSpec` of the
quick preset, overridable with ``--steps/--width/--batch/--set key=value``), predicts with
:func:`audit.utility.net.predict` and scores with :func:`audit.utility.metrics.per_image`, per subject
(the unit of the stage's CIs). Reports per-structure Dice and HD95 (mean over subjects of the
per-subject mean over slices and seeds, 95 % subject-bootstrap CI), the ACDC challenge's per-stack
Dice (``dice_volume_*``: overlap pooled over a frame's slices, then the mean over ED and ES), wall time per net, and the
smallest paired Dice difference the CI resolves at these settings (half-width of the 95 % CI of a
per-subject difference between two seeds of the same recipe -- the noise floor of a comparison).

``--centre motion`` prepares the evaluation subjects with the label-free crop
(:class:`cohorts.preprocess.PreprocessConfig` ``centre="motion"``) and also reports how far (mm)
that centre lies from the mask centroid. Nothing from the cohort is written except the JSON of
numbers (``--out``, default ``benchmarks/results/utility_segmenter.json``).
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
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

log = logging.getLogger("utility_segmenter")
NAMES = ("RV", "MYO", "LV")


def _parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def load_design(data: str, *, centre: str = "mask", frames: str = "ed_es", val_fraction: float = 0.2, seed: int = 0,
                max_images: int = 400):
    """(train SliceSet, val SliceSet, evaluation SliceSet, plan, extra info)."""
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig
    from cohorts.splits import make_splits
    from audit.pipeline.utility_stage import cap_per_vendor, labelled_slices, plan_subjects

    cfg = PreprocessConfig(target_spacing=1.5, size=128)
    prepared = load_prepared(data, cfg, progress=False)
    splits = make_splits(prepared, seed=0)
    plan = plan_subjects(prepared, splits, condition_split="reference", sample_subject_ids=None, heldout_vendor=None,
                         val_fraction=val_fraction, seed=seed)
    eval_ids = [i for v in plan.vendors for i in plan.evaluate[v]]
    extra: dict = {}
    eval_cohort = prepared
    if centre != "mask":
        eval_cohort = load_prepared(data, replace(cfg, centre=centre), progress=False)
        err = []
        for i in eval_ids:
            a = np.asarray(prepared[i].metadata["heart_centre"], float)
            b = np.asarray(eval_cohort[i].metadata["heart_centre"], float)
            err.append(float(np.hypot(*(a - b))) * cfg.target_spacing)
        err = np.asarray(err)
        extra["centre_error_mm"] = {"mean": round(float(err.mean()), 2), "median": round(float(np.median(err)), 2),
                                    "p90": round(float(np.percentile(err, 90)), 2), "max": round(float(err.max()), 2),
                                    "n": int(len(err)), "per_subject": {i: round(float(e), 2) for i, e in zip(eval_ids, err)}}
    train = labelled_slices(prepared, plan.train, frames)
    val = labelled_slices(prepared, plan.val, frames)
    evaluation = {"mask": cap_per_vendor(labelled_slices(prepared, eval_ids, frames), max_images, seed=seed)}
    if centre != "mask":  # the same slices (same subjects, frames and slice indices), other crop window
        evaluation[centre] = cap_per_vendor(labelled_slices(eval_cohort, eval_ids, frames), max_images, seed=seed)
    return train, val, evaluation, plan, extra


def per_subject(table, evaluation):
    """Per subject: the per-slice Dice / HD95 means, and the ACDC challenge's per-stack Dice
    (``dice_volume_*``, :func:`audit.utility.metrics.volume_dice`) when the slices carry their frame."""
    from audit.utility.metrics import volume_dice

    table = table.copy()
    table.insert(0, "subject_id", evaluation.subject_ids)
    cols = [f"{k}_{n}" for k in ("dice", "hd95") for n in (*NAMES, "mean")]
    out = table.groupby("subject_id")[cols].mean()
    if evaluation.frame is not None:
        table.insert(0, "frame", evaluation.frame)
        table.insert(0, "seed", 0)
        out = out.join(volume_dice(table).drop(columns="seed").set_index("subject_id"))
    return out


def summarise(per_seed: list, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean over subjects of the seed-mean per-subject scores, with a subject-bootstrap 95 % CI."""
    import pandas as pd

    stack = pd.concat(per_seed, keys=range(len(per_seed)), names=["seed"])
    subj = stack.groupby("subject_id").mean()
    rng = np.random.default_rng(seed)
    out = {}
    for c in subj.columns:
        v = subj[c].dropna().to_numpy()
        boot = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
        out[c] = {"value": round(float(v.mean()), 4), "ci": [round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])],
                  "n": int(len(v))}
    return out


def resolution(per_seed: list) -> dict | None:
    """Half-width of the 95 % CI of a paired per-subject mean-Dice difference (seed 0 vs seed 1 of the
    same recipe: a difference that is pure training noise), t-interval over subjects."""
    if len(per_seed) < 2:
        return None
    from scipy import stats

    a, b = per_seed[0]["dice_mean"], per_seed[1]["dice_mean"]
    d = (a - b).dropna().to_numpy()
    n = len(d)
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))
    return {"n_subjects": n, "sd_paired_diff": round(sd, 4), "ci95_half_width": round(half, 4),
            "note": "smallest mean-Dice difference a paired 95 % CI over these subjects resolves when each setting has "
                    "one net; with k seeds per setting the seed part of the variance shrinks about k-fold"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="cohort folder (e.g. ACDC in its official layout)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="override the quick preset's audit.utility_steps")
    ap.add_argument("--width", type=int, default=0, help="override audit.utility_width")
    ap.add_argument("--batch", type=int, default=0, help="override audit.utility_batch_size")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other TrainSpec field")
    ap.add_argument("--centre", default="mask", help="crop centre of the evaluation subjects (mask | motion)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-images", type=int, default=0,
                    help="evaluation slices per vendor (default: the preset's audit.max_images; a large number keeps "
                         "every slice, i.e. whole ED/ES stacks for the challenge's per-stack Dice)")
    ap.add_argument("--postprocess-both", action="store_true",
                    help="score every net's maps raw and with the largest heart component kept "
                         "(audit.utility.postprocess), paired on the same nets")
    ap.add_argument("--label", default="", help="name of this trial in the JSON")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "utility_segmenter.json"),
                    help="JSON file; trials are appended under 'trials'")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from audit.pipeline.config import resolve_config
    from audit.utility.metrics import per_image
    from audit.utility.net import Pool, predict
    from audit.pipeline.utility_stage import options_from_config, train_one_and_score

    torch.set_num_threads(args.threads)
    cfg = resolve_config(preset="quick", generator="holdout")
    if args.steps:
        cfg.audit.utility_steps = args.steps
    if args.width:
        cfg.audit.utility_width = args.width
    if args.batch:
        cfg.audit.utility_batch_size = args.batch
    opts = options_from_config(cfg)
    spec = opts.spec()
    names = {f.name for f in fields(spec)}
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k not in names:
            ap.error(f"--set {k}: not a TrainSpec field ({', '.join(sorted(names))})")
        spec = replace(spec, **{k: _parse_value(v)})

    t0 = time.perf_counter()
    train, val, evals, plan, extra = load_design(args.data, centre=args.centre, val_fraction=opts.val_fraction,
                                                      max_images=args.max_images or cfg.audit.max_images)
    evaluation = evals["mask"]
    load_s = time.perf_counter() - t0
    log.info("train %d subjects / %d slices, val %d / %d, evaluation %d subjects / %d slices (%.1f s)", len(plan.train),
             len(train), len(plan.val), len(val), len(set(evaluation.subject_ids)), len(evaluation), load_s)
    trial: dict = {
        "label": args.label or f"{spec}",
        "command": "python benchmarks/utility_segmenter.py DATA " + " ".join(argv if argv is not None else sys.argv[2:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "threads": args.threads,
                    "load_avg_1min_before": round(os.getloadavg()[0], 2)},
        "spec": {f.name: getattr(spec, f.name) for f in fields(spec)},
        "centre": args.centre,
        "data": {"train_subjects": len(plan.train), "train_slices": len(train), "val_subjects": len(plan.val),
                 "val_slices": len(val), "eval_subjects": len(set(evaluation.subject_ids)), "eval_slices": len(evaluation)},
        **extra,
        "nets": [],
    }
    per_seed, per_centre, per_post = [], {}, {}
    for k in range(args.seeds):
        net, table, info = train_one_and_score(Pool(train.images, train.masks), Pool(val.images, val.masks), evaluation,
                                               spec, seed=0, k=k)  # the stage's own step, run seed 0
        subj = per_subject(table, evaluation)
        per_seed.append(subj)
        for name, ev in evals.items():
            if name != "mask":
                sub_c = per_subject(per_image(predict(net, ev.images, device=spec.device), ev.masks, ev.spacing), ev)
                per_centre.setdefault(name, []).append(sub_c)
                info[f"test_dice_mean_{name}"] = float(sub_c["dice_mean"].mean())
        if args.postprocess_both:
            from audit.utility.postprocess import postprocess

            for name, ev in evals.items():
                raw = predict(net, ev.images, device=spec.device, postprocess="none")
                for how in ("none", "largest_component"):
                    sub_p = per_subject(per_image(postprocess(raw, how), ev.masks, ev.spacing), ev)
                    per_post.setdefault(f"{name}:{how}", []).append(sub_p)
        s = summarise([subj])
        info.update({f"test_dice_{n}": s[f"dice_{n}"]["value"] for n in (*NAMES, "mean")})
        info["test_hd95_mean"] = s["hd95_mean"]["value"]
        trial["nets"].append({k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in info.items()})
        log.info("seed %d: %s", k, trial["nets"][-1])
    trial["test"] = summarise(per_seed)
    for name, rows in per_centre.items():
        import pandas as pd

        trial[f"test_{name}"] = summarise(rows)
        d = (pd.concat(rows).groupby("subject_id")["dice_mean"].mean()
             - pd.concat(per_seed).groupby("subject_id")["dice_mean"].mean()).dropna().to_numpy()
        from scipy import stats

        half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
        trial[f"dice_cost_{name}"] = {"mean_diff": round(float(d.mean()), 4), "ci95": [round(float(d.mean() - half), 4),
                                      round(float(d.mean() + half), 4)], "n": int(len(d)),
                                      "what": f"per-subject mean Dice with the {name} crop minus the mask-centred crop"}
    for key, rows in per_post.items():
        trial[f"test_post_{key}"] = summarise(rows)
    for name in evals:
        if f"{name}:none" in per_post:
            import pandas as pd

            a = pd.concat(per_post[f"{name}:largest_component"]).groupby("subject_id")[["dice_mean", "hd95_mean"]].mean()
            b = pd.concat(per_post[f"{name}:none"]).groupby("subject_id")[["dice_mean", "hd95_mean"]].mean()
            d = (a - b).dropna()
            trial[f"postprocess_effect_{name}"] = {
                c: {"mean_diff": round(float(d[c].mean()), 4), "n": int(d[c].notna().sum())} for c in d.columns}
    trial["resolution"] = resolution(per_seed)
    trial["seconds_per_net"] = round(float(np.mean([n["seconds"] for n in trial["nets"]])), 1)
    trial["machine"]["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    doc = json.loads(out.read_text("utf-8")) if out.is_file() else {"benchmark": "utility_segmenter", "trials": []}
    doc["trials"].append(trial)
    atomic_write_json(out, doc)
    t = trial["test"]
    print(json.dumps({"label": trial["label"], "s/net": trial["seconds_per_net"],
                      "val": [n["best_val_dice"] for n in trial["nets"]], "best_step": [n["best_step"] for n in trial["nets"]],
                      **{n: t[f"dice_{n}"]["value"] for n in (*NAMES, "mean")}, "ci_mean": t["dice_mean"]["ci"],
                      **{f"vol_{n}": t[f"dice_volume_{n}"]["value"] for n in (*NAMES, "mean") if f"dice_volume_{n}" in t},
                      "hd95": t["hd95_mean"]["value"], "res": (trial["resolution"] or {}).get("ci95_half_width"),
                      **({"centre_err_mm": extra["centre_error_mm"]["mean"]} if extra else {}),
                      **{f"cost_{n}": trial[f"dice_cost_{n}"]["mean_diff"] for n in per_centre},
                      **{f"post_{k}": {c: trial[f"test_post_{k}"][f"{c}_mean"]["value"] for c in ("dice", "hd95")}
                         for k in per_post},
                      **{f"{n}_{c}": trial[f"test_{n}"][f"dice_{c}"]["value"] for n in per_centre for c in (*NAMES, "mean")},
                      **{f"{n}_vol_{c}": trial[f"test_{n}"][f"dice_volume_{c}"]["value"] for n in per_centre
                         for c in (*NAMES, "mean") if f"dice_volume_{c}" in trial[f"test_{n}"]}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
