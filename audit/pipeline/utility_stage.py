"""The ``utility`` stage: does a segmentation net trained on the synthetic images work on real
scans, also from a vendor it never saw?

Two of the papers this audit builds on answer that question with downstream segmentation: *Can
Diffusion Models Bridge the Domain Gap in Cardiac MR Imaging?* (Wong et al., arXiv 2508.06327:
SDEdit-restyled images for domain generalisation across vendors) and *Anatomy-Guided Residual
Motion Diffusion for Controllable 4D Cardiac MRI Synthesis* (arXiv 2606.26764: nnU-Net Dice
+1.4 % and HD -3.0 mm with synthetic augmentation). A MONAI 2D U-Net (:mod:`audit.utility.net`)
is trained under five settings, each with ``audit.utility_seeds`` seeds, and scored per subject
on real images the generator never saw (:mod:`audit.utility.metrics`). The module is one of
four: the options (:mod:`~audit.pipeline.utility_options`), the subject plan
(:mod:`~audit.pipeline.utility_plan`), the training data of each setting
(:mod:`~audit.pipeline.utility_pools`) and, here, the trainings, the results section and the
stage.

Data design (which real subjects play which role)
-------------------------------------------------

The generator was fitted on the standard ``train`` split and its samples are conditioned on
masks of ``sample.condition_split`` (``reference``). The utility audit keeps three disjoint
groups of real subjects:

* **real training data** = the ``train`` split minus the held-out vendor: the data the
  generator was fitted on, i.e. what the data holder owns; ``audit.utility_val_fraction`` of
  these subjects (at least one) is carved off *by subject* as the validation set for early
  stopping of every setting;
* **evaluation subjects** = every annotated subject the generator never saw: not in ``train``,
  not in the conditioning split, and not named in the sample set's ``subject_ids`` (normally
  the ``holdout`` and ``test`` splits). They are scored per vendor: the seen vendors, and the
  **held-out vendor** of the leave-one-vendor-out split (``splits_lovo.json``, written by the
  cohort stage when the cohort has >= 2 vendors);
* the conditioning (``reference``) subjects enter only through the synthetic images.

Under the source-only protocol (``data.protocol = source_only``, or ``auto``, the default, on a
cohort with two or more vendors) the leave-one-vendor-out splits *are* the run's splits: the
generator never trained on the held-out vendor, whose subjects (``unseen_vendor_test``) are all
evaluation subjects; ``design.generator_vendors`` states the protocol either way. Otherwise the
subject lists of ``splits_lovo.json`` are *not* used for training and testing, only its
held-out vendor: that split is drawn independently of the standard one, so its ``test``
subjects overlap the generator's ``train`` and ``reference`` subjects. Scoring there would reward
a generator for replaying its own training subjects (the ``holdout`` reference generator would
hand the net real images *and masks* of test subjects).
With fewer than two vendors there is no held-out vendor: the same design runs on the standard
splits alone, every subject is "seen", and the unseen-vendor figures are absent (the section's
``design`` entry says so).

With ``--utility-test-data DIR`` (``audit.utility_test_data``) every annotated subject of a second
dataset is scored too, per vendor, under the keys ``external@<vendor>``: the cross-dataset domain
gap. It is checked in the cohort stage and never trains anything
(:mod:`audit.pipeline.utility_external`).

Test-time adaptation (:mod:`audit.pipeline.utility_tta`): the unseen domains' evaluation scans (the
held-out vendor, the external vendors) are also restyled *without labels* by the generator's
SDEdit sampler towards a seen vendor at each strength of ``audit.utility_tta_strengths``, scored
by the same nets, and the ``real`` nets' figures on them are compared with the raw scans, paired
by subject (``test_time_adaptation``).

Settings
--------

* ``real``: real training slices (seen vendors only, so the held-out vendor is never seen);
  validation on the real validation subjects.
* ``real+augmentation``: the same real slices with strong conventional augmentation (affine,
  elastic, bias field, gamma, contrast, noise, blur: :mod:`audit.utility.augment`) -- the ad-hoc
  baseline Wong et al. compare synthetic data with. Every generator setting is compared with it
  as well as with ``real``: synthetic data earn their place only if they beat what a few
  transforms give for free.
* ``synthetic`` (train on synthetic, test on real; TSTR): only the generator's image/mask
  pairs are trained on. Synthetic images whose conditioning vendor is the held-out vendor are
  dropped when the sample set has vendor labels (otherwise they cannot be told apart, and a note
  says the unseen-vendor figures may be optimistic).
* ``real+synthetic``: the real training slices plus ``audit.utility_synthetic_ratio`` synthetic
  images per real slice (drawn from the same filtered synthetic set, with replacement only if
  the set is smaller); validation on the real validation subjects.
* ``real+sdedit`` (Wong et al.'s augmentation): the real training slices plus as many of them restyled with the
  generator's SDEdit sampler (``audit.utility_sdedit_strength``) towards another *seen* vendor
  (drawn uniformly; the held-out vendor is never a target, which would be domain adaptation
  rather than generalisation), masks reused. Only for generators with ``sdedit`` (diffusion,
  flow); otherwise unavailable with the reason.

Every setting trains for at most ``audit.utility_steps`` steps (same budget) and is early-stopped
on the *same* real validation subjects, so settings differ only in their training data, not in
training length or model selection. (Validating TSTR on held-back synthetic images instead, the
strictest reading of TSTR, is not done: it would take conditioning subjects away from the
synthetic training set and make the stopping point noisier.)

Results (``results.json`` ``utility`` section)
----------------------------------------------

* ``settings.<setting>.<vendor>.{dice,hd95_mm,assd_mm}.{RV,MYO,LV,mean}``: absolute figures,
  mean over subjects of the per-subject mean over images and seeds, 95 % CI over subjects and
  seeds;
* ``vs_real.<setting>.<vendor>``: ``dice_diff`` (mean Dice over RV/MYO/LV, setting minus
  ``real``, paired by subject; the sign-off criterion ``utility_vs_real`` reads
  ``vs_real.real+synthetic.<vendor>.dice_diff``, ``utility_hd95_vs_real`` its
  ``hd95_diff_mm.mean``), ``dice_diff_by_structure``, ``hd95_diff_mm``,
  ``assd_diff_mm`` (with the verdict ``improves`` / ``no evidence`` / ``worsens`` -- the 95 %
  CI of the difference above 0, across 0, below 0; lower is better for distances -- in
  ``notes``) and ``wilcoxon_p`` (paired signed-rank test per structure);
* ``vs_augmentation.<setting>.<vendor>``: the same paired figures for the generator settings
  (``synthetic``, ``real+synthetic``, ``real+sdedit``) minus ``real+augmentation``;
* ``data``: images per setting and evaluation subjects per vendor;
* ``synthetic_masks`` (sample sets with masks): the judge's check of the synthetic image/mask
  pairs before anyone reads the synthetic settings -- the anatomy stage's judge Dice of the pairs
  and its fraction of the judge's real-scan ceiling, with the verdict ``consistent`` or ``doubtful``
  (``audit.utility_mask_agreement``; a doubtful verdict is also noted on the ``synthetic`` and
  ``real+synthetic`` settings). It matters most for the cine generator, whose masks come from its
  own segmentation decoder (:mod:`audit.pipeline.utility_masks`).

A vendor without evaluation subjects, a sample set without masks or a missing SDEdit sampler
gives *unavailable* entries with the reason, never 0. Per-subject scores go to
``utility_per_subject.csv`` and per-training figures (steps, best step, seconds per step) to
``utility_training.csv``.

Evaluation images are the annotated slices (``audit.utility_frames``, by default ``data.frames``; the
real training and validation slices are the same frames) of the evaluation subjects, at
most ``audit.max_images`` per vendor (drawn with the run seed); metrics are averaged per subject
first, so subjects, not slices, are the unit of every CI and test. The ground truth never places
the window a net segments: the validation and evaluation subjects are cut from the cohort
prepared with ``centre="motion"`` (``audit.utility_eval_crop``; the heart found where the image
changes over the cardiac cycle, :func:`cohorts.preprocess.motion_centre`), while the training
slices keep the cohort stage's mask-centred windows (the data holder's own labels) and the
training augmentation (affine, random patches) teaches the net hearts anywhere in the window.
Every predicted map keeps only its largest connected heart (``audit.utility_postprocess``,
:mod:`audit.utility.postprocess`, nnU-Net's first post-processing step), the validation maps too;
``audit.utility_predict_scales`` averages the class probabilities of zoomed copies before the
arg-max (:mod:`audit.utility.multiscale`; off at ``1``).

Cost: one training = at most ``audit.utility_steps`` steps of ``audit.utility_batch_size``
images (patches of ``audit.utility_crop``), five validations, and the prediction and scoring of
every evaluation image; the stage's wall time and the Dice the recipe reaches on real scans are
in BENCHMARKS.md ("Utility segmenter on real ACDC").
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from audit.core.cpus import usable_cores
from audit.core.errors import UserError
from audit.core.logs import progress_disabled
from audit.core.results import metric, unavailable
from audit.core.tables import write_csv
from audit.pipeline.context import RunContext
from audit.pipeline.stagekit import check_compatible, prepared_cohort, store_section
from audit.pipeline.utility_external import VENDOR_PREFIX, concat_slices, external_slices, is_external, load_external
from audit.pipeline.utility_options import UtilityOptions, options_from_config, vendor_key
from audit.pipeline.utility_plan import SubjectPlan, cap_per_vendor, labelled_slices, plan_subjects
from audit.pipeline.utility_masks import doubtful_note, mask_check
from audit.pipeline.utility_pools import MASK_SETTINGS, SETTINGS, SYNTHETIC_SETTINGS, SettingData, build_settings
from audit.pipeline.utility_tta import adapt_unseen, tta_section, unavailable_tta
from audit.utility.metrics import absolute_entries, paired_entries, per_image
from audit.utility.net import Pool, TrainSpec, predict, train_segmenter
from cohorts.parallel import ordered_map, spawn_works
from cohorts.splits import load_splits, make_lovo_splits
from generators.base import Generator
from generators.data import SliceSet
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

__all__ = ["SETTINGS", "SYNTHETIC_SETTINGS", "SettingData", "SubjectPlan", "UtilityOptions", "build_settings",
           "cap_per_vendor", "labelled_slices", "options_from_config", "plan_subjects", "run_utility",
           "train_and_score", "unavailable_section", "utility_section", "vendor_key"]


# --------------------------------------------------------------------------- trainings


def train_one_and_score(train: Pool, val: Pool, evaluation: SliceSet, spec: TrainSpec, *, seed: int, k: int,
                        on_step=None, metric_workers: int | None = None) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Train the ``k``-th net of a setting (its seed derived from the run ``seed``) and score the
    evaluation slices: the net, the per-image metrics table and the training summary with the
    prediction and metric times (``predict_s``, ``metrics_s``)."""
    train_seed = int(np.random.SeedSequence([seed, 16, k]).generate_state(1)[0])
    net, info = train_segmenter(train, val, spec, train_seed, on_step=on_step)
    t0 = time.perf_counter()
    pred = predict(net, evaluation.images, device=spec.device)
    info["predict_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = per_image(pred, evaluation.masks, evaluation.spacing, workers=metric_workers)
    info["metrics_s"] = time.perf_counter() - t0
    return net, table, info


def _train_job(train: Pool, val: Pool, evaluation: SliceSet, spec: TrainSpec, seed: int, k: int, threads: int,
               metric_workers: int | None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One training in a worker process (:func:`cohorts.parallel.ordered_map`): the per-image table
    and the training summary (the net stays in the worker)."""
    torch.set_num_threads(threads)
    _, table, info = train_one_and_score(train, val, evaluation, spec, seed=seed, k=k, metric_workers=metric_workers)
    return table, info


def _workers(opts: UtilityOptions, threads: int, n: int) -> int:
    """Trainings at once: on the CPU one per core pair of threads (a small net keeps two threads
    only about two-thirds busy -- the loss, optimiser step and augmentation run on one -- so one
    single-threaded net per core finishes the settings sooner); on a GPU one."""
    if opts.device != "cpu" or n < 2 or not spawn_works():
        return 1
    return max(1, min(threads, n))


def train_and_score(settings: dict[str, SettingData | str], evaluation: SliceSet, opts: UtilityOptions, *, seed: int
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every available setting with every seed; score the evaluation slices.

    With two or more usable CPU threads the trainings run side by side in ``spawn`` worker
    processes, each with ``threads // workers`` torch threads (those of a last, incomplete round
    with the threads left idle); results are gathered in setting order, and each net's seed
    depends only on the run seed, its setting position and ``k``. On the CPU a net's figures do
    not depend on the number of workers (test), only on its own thread count.
    Returns the per-image table (``setting, seed, subject_id, vendor, frame`` + metrics) and the
    per-training table."""

    spec = opts.spec()
    todo = [(s, k) for s in SETTINGS if isinstance(settings.get(s), SettingData) for k in range(opts.seeds)]
    threads = opts.threads if opts.threads > 0 else usable_cores()
    workers = _workers(opts, threads, len(todo))
    per_worker = max(1, threads // workers)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(per_worker)
    rows, runs = [], []
    jobs = []
    for i, (setting, k) in enumerate(todo):
        data = settings[setting]
        assert isinstance(data, SettingData)
        # the trainings of a last, incomplete round run with the threads their idle partners leave
        last_round = workers > 1 and i >= len(todo) - len(todo) % workers
        n_threads = per_worker * (workers // (len(todo) % workers)) if last_round else per_worker
        jobs.append((data.train, data.val, evaluation, replace(spec, strong=data.strong), seed, k, n_threads,
                     1 if workers > 1 else None))  # no processes inside the workers
    log.info("utility: %d trainings, %d at a time with %d torch thread(s) each", len(jobs), workers, per_worker)
    try:
        with tqdm(total=len(todo) * spec.steps, desc="utility", unit="step", disable=progress_disabled()) as bar:
            for (setting, k), (table, info) in zip(todo, ordered_map(_train_job, jobs, workers=workers)):
                data = settings[setting]
                bar.set_postfix_str(f"{setting} seed {k} done")
                bar.update(spec.steps)
                if evaluation.frame is not None:  # the cine frame: the per-stack (challenge) Dice pools by it
                    table.insert(0, "frame", evaluation.frame)
                table.insert(0, "vendor", evaluation.vendor)
                table.insert(0, "subject_id", evaluation.subject_ids)
                table.insert(0, "seed", k)
                table.insert(0, "setting", setting)
                rows.append(table)
                runs.append({"setting": setting, "seed": k, "train_images": len(data.train), "val_images": len(data.val),
                             **info})
                log.info("utility %s seed %d: %d steps (best %d, validation Dice %.3f) in %.1f s (%.3f s/step); "
                         "prediction %.1f s, metrics %.1f s", setting, k, info["steps"], info["best_step"],
                         info["best_val_dice"], info["seconds"], info["step_s"], info["predict_s"], info["metrics_s"])
    finally:
        torch.set_num_threads(old_threads)
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), pd.DataFrame(runs)


def per_subject_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, seed, subject): mean of every metric over the subject's images, the number
    of images and of empty predictions per structure."""
    if table.empty:
        return table
    keys = ["setting", "seed", "subject_id", "vendor"]
    metric_cols = [c for c in table.columns if c.split("_")[0] in ("dice", "hd95", "assd")]
    empty_cols = [c for c in table.columns if c.startswith("empty_pred_")]
    g = table.groupby(keys, sort=False)
    out = g[metric_cols].mean()
    out[empty_cols] = g[empty_cols].sum().astype(int)
    out.insert(0, "images", g.size())
    return out.reset_index()


# --------------------------------------------------------------------------- section


def _data_entries(settings: dict[str, SettingData | str], plan: SubjectPlan) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for s in SETTINGS:
        d = settings.get(s)
        if isinstance(d, SettingData):
            notes = "; ".join(d.notes) or None
            data[s] = {"train_images": metric(len(d.train), "images", method=d.describe, notes=notes),
                       "val_images": metric(len(d.val), "images", method=f"validation (early stopping) of {s}")}
        else:
            data[s] = {"train_images": unavailable(d or "not computed")}
    data["eval_subjects"] = {}
    for v in plan.vendors:
        n = len(plan.evaluate[v])
        if is_external(v):
            data["eval_subjects"][vendor_key(v)] = metric(
                n, "subjects", method=f"every annotated subject of vendor {v[len(VENDOR_PREFIX):]} of the external dataset "
                                      f"{plan.external} (--utility-test-data): in no training set, no validation")
            continue
        role = "held out: in no training set" if v == plan.heldout_vendor else "seen"
        data["eval_subjects"][vendor_key(v)] = (
            metric(n, "subjects", method=f"annotated subjects of vendor {v} ({role}) that the generator never saw (neither "
                                         f"trained nor conditioned on); {plan.excluded.get(v, 0)} it saw are excluded")
            if n else unavailable(plan.missing_reason(v)))
    return data


def _paired(table: pd.DataFrame, setting: str, baseline: str, vendor: str, subjects: list[str], seeds: list[int], *,
            n_boot: int, seed: int) -> dict[str, Any]:
    rows = table[(table["setting"] == setting) & (table["vendor"] == vendor)]
    base = table[(table["setting"] == baseline) & (table["vendor"] == vendor)]
    return paired_entries(rows, base, subjects, seeds, seeds, n_boot=n_boot, seed=seed, setting=setting, baseline=baseline)


def utility_section(table: pd.DataFrame, settings: dict[str, SettingData | str], plan: SubjectPlan, *, seeds: int,
                    n_boot: int, seed: int) -> dict[str, Any]:
    """The ``utility`` results section from the per-image table (see the module docstring)."""
    seed_list = list(range(seeds))
    section: dict[str, Any] = {"settings": {}, "vs_real": {}, "vs_augmentation": {},
                               "data": _data_entries(settings, plan)}
    baselines = {"vs_real": "real", "vs_augmentation": "real+augmentation"}
    ok = {b: isinstance(settings.get(b), SettingData) and not table.empty for b in baselines.values()}
    for s in SETTINGS:
        d = settings.get(s)
        compare = [(key, b) for key, b in baselines.items() if s != b and (b == "real" or s in SYNTHETIC_SETTINGS)]
        if not isinstance(d, SettingData):
            section["settings"][s] = unavailable(d or "not computed")
            for key, _ in compare:
                section[key][s] = {vendor_key(v): {"dice_diff": unavailable(f"setting {s} unavailable: {d}")}
                                   for v in plan.vendors}
            continue
        section["settings"][s] = {}
        for key, _ in compare:
            section[key][s] = {}
        for v in plan.vendors:
            vk = vendor_key(v)
            subjects = plan.evaluate[v]
            if not subjects:
                section["settings"][s][vk] = unavailable(plan.missing_reason(v))
                for key, _ in compare:
                    section[key][s][vk] = {"dice_diff": unavailable(plan.missing_reason(v))}
                continue
            rows = table[(table["setting"] == s) & (table["vendor"] == v)]
            held = (" (held-out vendor)" if v == plan.heldout_vendor else
                    f" of the external dataset {plan.external}" if is_external(v) else "")
            section["settings"][s][vk] = absolute_entries(rows, subjects, seed_list, n_boot=n_boot, seed=seed,
                                                          what=f"a net trained on {s} data, real subjects of vendor {v}{held}")
            for key, b in compare:
                section[key][s][vk] = (_paired(table, s, b, v, subjects, seed_list, n_boot=n_boot, seed=seed) if ok[b] else
                                       {"dice_diff": unavailable(f"the {b} baseline is unavailable")})
    return section


def unavailable_section(reason: str, vendors: list[str]) -> dict[str, Any]:
    """Everything unavailable for one reason (per vendor, so the sign-off names the vendors)."""
    per_vendor = {vendor_key(v): {"dice_diff": unavailable(reason)} for v in vendors}
    return {"audit": unavailable(reason),
            "vs_real": {s: dict(per_vendor) for s in SETTINGS[1:]},
            "vs_augmentation": {s: dict(per_vendor) for s in SYNTHETIC_SETTINGS}}


# --------------------------------------------------------------------------- stage


def heldout_vendor_of(ctx: RunContext, vendors: list[str]) -> str | None:
    """The leave-one-vendor-out held-out vendor (``splits_lovo.json``), ``None`` below 2 vendors."""
    if len(vendors) < 2:
        return None

    path = ctx.run_dir.path / "splits_lovo.json"
    prepared = ctx.artefacts["prepared"]
    if path.is_file():
        held = load_splits(path, prepared).heldout_vendor
        if held:
            return str(held)
    # no saved split (the cohort stage writes one for >= 2 vendors): the same rule, from the one place it lives
    d = ctx.cfg.data
    return str(make_lovo_splits(prepared, d.heldout_vendor or None, seed=d.split_seed).heldout_vendor)


def _protocol_entry(ctx: RunContext, held: str) -> dict[str, Any]:
    """``design.generator_vendors``: how many vendors the generator was fitted on, and the protocol
    in words (source-only: the held-out vendor was never in its training data)."""
    prepared, splits = ctx.artefacts["prepared"], ctx.artefacts["splits"]
    seen = sorted({prepared[i].vendor for i in splits.assignments.get("train") or []})
    if splits.kind != "lovo":  # the standard splits deal every vendor, the held-out one included, into train
        how = (f"all-vendors protocol (data.protocol={ctx.cfg.data.protocol}, standard splits): the generator was "
               f"fitted on the standard train split (vendors {', '.join(seen)}), which may hold subjects of the held-out "
               f"vendor {held}; only the segmentation nets never saw vendor {held}, so its rows show domain "
               "generalisation of the segmenter with a generator that may know the target domain (data.protocol "
               "source_only, or auto without a standard split file, rules that out)")
    else:
        how = (f"source-only protocol (Wong et al.): the generator, its autoencoder and every cached model were fitted "
               f"on vendors {', '.join(seen)} only; the held-out vendor {held} was never in any training data, so its "
               "rows show generalisation to a truly unseen domain")
    return metric(len(seen), "vendors", method=how)


def run_utility(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    prepared = ctx.artefacts["prepared"]
    vendors = list(prepared.vendors)
    if not cfg.audit.utility:
        store_section(ctx, "utility", unavailable_section("utility audit switched off (audit.utility=false)", vendors))
        return {}
    samples: SampleSet = ctx.artefacts["samples"]
    if samples.is_cine:
        samples = samples.frames()
    check_compatible(ctx, samples)
    opts = options_from_config(cfg)
    held = heldout_vendor_of(ctx, vendors)
    try:
        plan = plan_subjects(prepared, ctx.artefacts["splits"], condition_split=cfg.sample.condition_split,
                             sample_subject_ids=samples.subject_ids, heldout_vendor=held,
                             val_fraction=opts.val_fraction, seed=cfg.seed)
    except UserError as exc:
        store_section(ctx, "utility", unavailable_section(f"utility audit not possible: {exc}", vendors))
        return {}
    frames = opts.frames or cfg.data.frames
    # the net trains on the cohort's windows (placed with the training masks: labels the data holder owns); the
    # validation and evaluation subjects are cut from windows the ground truth did not place (audit.utility_eval_crop)
    windows = None if opts.eval_crop == "mask" else prepared_cohort(ctx, centre=opts.eval_crop)
    real = labelled_slices(prepared, plan.train, frames)
    val = labelled_slices(prepared, plan.val, frames, windows=windows)
    evaluation = labelled_slices(prepared, [i for v in plan.vendors for i in plan.evaluate[v]], frames, windows=windows)
    if cfg.audit.utility_test_data:  # a second dataset, scored per vendor as well (checked in the cohort stage)
        ext, ext_subjects = external_slices(load_external(cfg, opts.eval_crop), frames)
        if ext is None:
            raise UserError(f"--utility-test-data {cfg.audit.utility_test_data}: no annotated slices for frames={frames!r}")
        plan.add_external(str(cfg.audit.utility_test_data), ext_subjects)
        evaluation = concat_slices(evaluation, ext)
    if evaluation is not None:
        evaluation = cap_per_vendor(evaluation, cfg.audit.max_images, seed=cfg.seed)
    if real is None or val is None or evaluation is None:
        what = "real training" if real is None else "validation" if val is None else "evaluation"
        store_section(ctx, "utility", unavailable_section(f"no annotated {what} slices for frames={frames!r}", vendors))
        return {}
    log.info("utility: real training %d subjects (%d slices), validation %d subjects, evaluation %s; held-out vendor %s; "
             "%d seeds x <= %d steps of %d images", len(plan.train), len(real), len(plan.val),
             {v: len(ids) for v, ids in plan.evaluate.items()}, held, opts.seeds, opts.steps, opts.batch_size)
    sc = cfg.sample
    generator = ctx.artefacts.get("generator")
    settings = build_settings(real, val, samples, generator, plan, opts, seed=cfg.seed, sampling=sc.sampler_settings())
    # the judge's check of the synthetic pairs (from the anatomy stage): reported, and noted on the settings they train
    masks_check = mask_check(ctx.artefacts.get("results.anatomy"), threshold=opts.mask_agreement,
                             mask_source=getattr(getattr(ctx.entry, "cls", None), "mask_source", Generator.mask_source))
    note = doubtful_note(masks_check)
    for s in MASK_SETTINGS:
        if note and isinstance(settings.get(s), SettingData):
            settings[s].notes.append(note)
    # test-time adaptation: the unseen domains' scans restyled without labels, scored by the same nets
    adapted, targets = adapt_unseen(generator, evaluation, plan, opts.tta_strengths, seed=cfg.seed,
                                    sampling=sc.sampler_settings())
    t0 = time.perf_counter()
    table, runs = train_and_score(settings, concat_slices(evaluation, adapted), opts, seed=cfg.seed)
    section = utility_section(table, settings, plan, seeds=opts.seeds, n_boot=cfg.audit.bootstrap, seed=cfg.seed)
    section["test_time_adaptation"] = (
        tta_section(table, plan, opts.tta_strengths, targets, seeds=opts.seeds, n_boot=cfg.audit.bootstrap, seed=cfg.seed)
        if adapted is not None and isinstance(settings.get("real"), SettingData) else unavailable_tta(targets))
    if samples.masks is not None:
        section["synthetic_masks"] = masks_check
    if held is not None:
        section["design"] = {"generator_vendors": _protocol_entry(ctx, held)}
    else:
        section["design"] = {"heldout_vendor": unavailable(
            f"the cohort has {len(vendors)} vendor(s): no leave-one-vendor-out split, so no unseen-vendor evaluation; "
            "the standard splits are used (real training = train, evaluation = subjects the generator never saw)")}
    subj = per_subject_table(table)
    write_csv(ctx.run_dir.path / "utility_per_subject.csv", subj)
    write_csv(ctx.run_dir.path / "utility_training.csv", runs)
    store_section(ctx, "utility", section)
    info: dict[str, Any] = {"trainings": int(len(runs)), "heldout_vendor": held, "eval_crop": opts.eval_crop,
                            "predict_scales": list(opts.scales),
                            "training_and_scoring_s": round(time.perf_counter() - t0, 1)}
    if len(runs):
        info["step_s"] = round(float(runs["step_s"].mean()), 4)
        info["seconds_per_training"] = round(float(runs["seconds"].mean()), 2)
    return info
