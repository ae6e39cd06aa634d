"""The ``utility`` stage: does a segmentation net trained on the synthetic images work on real
scans, also from a vendor it never saw?

Two of the papers this audit builds on answer that question with downstream segmentation: *Can
Diffusion Models Bridge the Domain Gap in Cardiac MR Imaging?* (Wong et al., arXiv 2508.06327:
SDEdit-restyled images for domain generalisation across vendors) and *Anatomy-Guided Residual
Motion Diffusion for Controllable 4D Cardiac MRI Synthesis* (arXiv 2606.26764: nnU-Net Dice
+1.4 % and HD -3.0 mm with synthetic augmentation). A small MONAI 2D U-Net
(:mod:`audit.utility.net`) is trained under four settings, each with ``audit.utility_seeds``
seeds, and scored per subject on real images the generator never saw
(:mod:`audit.utility.metrics`).

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

The subject lists of ``splits_lovo.json`` are *not* used for training and testing, only its
held-out vendor: that split is drawn independently of the standard one, so its ``test``
subjects overlap the generator's ``train`` and ``reference`` subjects. Scoring there would reward
a generator for replaying its own training subjects (the ``holdout`` reference generator would
hand the net real images *and masks* of test subjects).
With fewer than two vendors there is no held-out vendor: the same design runs on the standard
splits alone, every subject is "seen", and the unseen-vendor figures are absent (the section's
``design`` entry says so).

Settings
--------

* ``real``: real training slices (seen vendors only, so the held-out vendor is never seen);
  validation on the real validation subjects.
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
* ``data``: images per setting and evaluation subjects per vendor.

A vendor without evaluation subjects, a sample set without masks or a missing SDEdit sampler
gives *unavailable* entries with the reason, never 0. Per-subject scores go to
``utility_per_subject.csv`` and per-training figures (steps, best step, seconds per step) to
``utility_training.csv``.

Evaluation images are the annotated slices (``data.frames``) of the evaluation subjects, at
most ``audit.max_images`` per vendor (drawn with the run seed); metrics are averaged per subject
first, so subjects, not slices, are the unit of every CI and test.

Cost and what the quick preset can show: one training = ``audit.utility_steps`` steps of
``audit.utility_batch_size`` images, five validations, and the prediction and scoring of every
evaluation image (timings: BENCHMARKS.md "Utility audit"). At the quick preset's budget the
nets are not converged (the best validation step is usually the last), so a setting that adds
images sees each real image less often in the same number of steps: small negative differences
at the quick preset partly reflect the budget, and the GPU-sized full preset (more steps, wider
nets: ``PRESETS["full"]`` in :mod:`audit.pipeline.config`) is the reference for release decisions.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from audit.core.errors import UserError
from audit.core.logs import progress_disabled
from audit.core.results import metric, unavailable
from audit.core.tables import write_csv
from audit.pipeline.context import RunContext
from audit.pipeline.stagekit import check_compatible, store_section
from audit.utility.metrics import absolute_entries, paired_entries, per_image
from audit.utility.net import Pool, TrainSpec, predict, train_segmenter
from cohorts.splits import load_splits, make_lovo_splits
from generators.data import SliceSet
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

SETTINGS = ("real", "synthetic", "real+synthetic", "real+sdedit")
_KEY_BAD = re.compile(r"[^A-Za-z0-9_@.%+-]")

@dataclass(frozen=True)
class UtilityOptions:
    seeds: int = 3
    steps: int = 160
    batch_size: int = 8
    width: int = 8
    synthetic_ratio: float = 1.0
    sdedit_strength: float = 0.5
    val_fraction: float = 0.2
    patience: int = 3
    lr: float = 3e-3
    device: str = "cpu"
    threads: int = 0

    def spec(self) -> TrainSpec:
        return TrainSpec(steps=self.steps, batch_size=self.batch_size, width=self.width, lr=self.lr,
                         patience=self.patience, device=self.device)

    def check(self) -> None:
        if self.seeds < 1 or self.steps < 1 or self.batch_size < 1 or self.width < 1:
            raise UserError("audit.utility_seeds, audit.utility_steps, audit.utility_batch_size and audit.utility_width "
                            f"must be >= 1 (got {self.seeds}, {self.steps}, {self.batch_size}, {self.width})")
        if not (np.isfinite(self.synthetic_ratio) and self.synthetic_ratio >= 0):
            raise UserError(f"audit.utility_synthetic_ratio must be a finite number >= 0, got {self.synthetic_ratio}")
        if not 0 < self.sdedit_strength <= 1:
            raise UserError(f"audit.utility_sdedit_strength must be in (0, 1], got {self.sdedit_strength}")
        if not 0 < self.val_fraction < 1:
            raise UserError(f"audit.utility_val_fraction must be in (0, 1), got {self.val_fraction}")


def options_from_config(cfg) -> UtilityOptions:
    """The ``audit.utility_*`` keys of the run config (preset values in :data:`audit.pipeline.config.PRESETS`)."""
    a = cfg.audit
    device = str(getattr(cfg, "device", "cpu") or "cpu")
    if device != "cpu":
        if not torch.cuda.is_available():
            log.warning("utility: device %r is not available; training on the CPU", device)
            device = "cpu"
    opts = UtilityOptions(
        seeds=int(a.utility_seeds),
        steps=int(a.utility_steps),
        batch_size=int(a.utility_batch_size),
        width=int(a.utility_width),
        synthetic_ratio=float(a.utility_synthetic_ratio),
        sdedit_strength=float(a.utility_sdedit_strength),
        val_fraction=float(a.utility_val_fraction),
        device=device,
        threads=int(getattr(getattr(cfg, "train", None), "num_threads", 0) or 0),
    )
    opts.check()
    return opts


def vendor_key(vendor: str) -> str:
    """A vendor name as a results key (the schema allows ``[A-Za-z0-9_@.%+-]``)."""
    return _KEY_BAD.sub("_", str(vendor)) or "_"


# --------------------------------------------------------------------------- subjects


@dataclass
class SubjectPlan:
    """Which real subjects train, validate and evaluate (see the module docstring)."""

    vendors: list[str]
    heldout_vendor: str | None
    train: list[str]
    val: list[str]
    evaluate: dict[str, list[str]]
    """vendor -> evaluation subjects (every cohort vendor is a key, possibly with an empty list)"""
    excluded: dict[str, int] = field(default_factory=dict)
    """vendor -> annotated subjects the generator saw (train, conditioning or sample ids)"""

    def missing_reason(self, vendor: str) -> str:
        role = "the held-out vendor" if vendor == self.heldout_vendor else "vendor"
        return (f"no evaluation subject of {role} {vendor}: all {self.excluded.get(vendor, 0)} of its annotated subjects "
                "trained the generator or conditioned the samples")


def _annotated(prepared, ids) -> list[str]:
    return [i for i in ids if prepared[i].mask is not None and bool(np.any(prepared[i].labelled))]


def plan_subjects(prepared, splits, *, condition_split: str, sample_subject_ids, heldout_vendor: str | None,
                  val_fraction: float, seed: int) -> SubjectPlan:
    """Split the cohort's annotated subjects into real training, validation and evaluation
    subjects; raise :class:`UserError` when there is too little real training data."""
    vendors = list(prepared.vendors)
    if heldout_vendor is not None and heldout_vendor not in vendors:
        raise UserError(f"utility: held-out vendor {heldout_vendor!r} is not in the cohort (vendors: {', '.join(vendors)})")
    a = splits.assignments
    exposed = set(a.get("train") or []) | set(a.get(condition_split) or [])
    if sample_subject_ids is not None:
        exposed |= set(np.asarray(sample_subject_ids).astype(str).tolist()) & set(prepared.ids)
    annotated = _annotated(prepared, prepared.ids)
    train = sorted(i for i in _annotated(prepared, a.get("train") or []) if prepared[i].vendor != heldout_vendor)
    if len(train) < 2:
        raise UserError(f"utility: the train split has {len(train)} annotated subject(s) of the seen vendors; the real "
                        "baseline needs at least 2 (one is carved off for validation)")
    rng = np.random.default_rng([seed, 12])
    n_val = min(len(train) - 1, max(1, int(round(val_fraction * len(train)))))
    perm = [train[i] for i in rng.permutation(len(train))]
    val, train = sorted(perm[:n_val]), sorted(perm[n_val:])
    evaluate = {v: sorted(i for i in annotated if prepared[i].vendor == v and i not in exposed) for v in vendors}
    excluded = {v: sum(1 for i in annotated if prepared[i].vendor == v and i in exposed) for v in vendors}
    return SubjectPlan(vendors, heldout_vendor, train, val, evaluate, excluded)


def labelled_slices(prepared, ids: list[str], frames: str) -> SliceSet | None:
    """Annotated 2D slices of ``ids`` (``None`` when there are none)."""
    if not ids:
        return None
    s = SliceSet.from_prepared(prepared, ids, frames=frames)
    keep = np.flatnonzero(s.labelled)
    return s.subset(keep) if len(keep) else None


def cap_per_vendor(slices: SliceSet, cap: int, *, seed: int) -> SliceSet:
    """At most ``cap`` evaluation slices per vendor (``audit.max_images``), drawn with the run seed."""
    keep = []
    for v in np.unique(slices.vendor):
        idx = np.flatnonzero(slices.vendor == v)
        if len(idx) > cap:
            idx = np.sort(np.random.default_rng([seed, 17]).choice(idx, cap, replace=False))
        keep.append(idx)
    return slices.subset(np.sort(np.concatenate(keep)))


# --------------------------------------------------------------------------- settings


@dataclass
class SettingData:
    train: Pool
    val: Pool
    describe: str
    notes: list[str] = field(default_factory=list)


def _synthetic_pool(samples: SampleSet, plan: SubjectPlan) -> tuple[SampleSet | None, list[str], str | None]:
    """The usable synthetic image/mask pairs: ``(set or None, notes, reason if None)``."""
    if samples.masks is None:
        return None, [], ("the sample set has no masks: a segmentation net cannot be trained on it "
                          "(train-on-synthetic is impossible for a black-box sample set without masks)")
    notes: list[str] = []
    keep = np.ones(len(samples), bool)
    if plan.heldout_vendor is not None:
        if samples.vendor is not None:
            drop = np.asarray(samples.vendor).astype(str) == plan.heldout_vendor
            if drop.any():
                notes.append(f"{int(drop.sum())} synthetic images conditioned on the held-out vendor {plan.heldout_vendor} "
                             "dropped")
            keep &= ~drop
        else:
            notes.append("the sample set has no vendor labels: images in the held-out vendor's style cannot be removed, "
                         "so the unseen-vendor figures of the synthetic settings may be optimistic")
    if not keep.any():
        return None, notes, f"no synthetic image left after dropping those of the held-out vendor {plan.heldout_vendor}"
    idx = np.flatnonzero(keep)
    sub = SampleSet(images=samples.images[idx], spacing=samples.spacing, masks=samples.masks[idx],
                    subject_ids=None if samples.subject_ids is None else np.asarray(samples.subject_ids)[idx],
                    vendor=None if samples.vendor is None else np.asarray(samples.vendor)[idx])
    return sub, notes, None


SDEDIT_CHUNK = {"cpu": 32, "cuda": 256}
"""Images per ``generator.sdedit`` call in the utility stage, by the generator's device type. 32
on the CPU (memory, progress); 256 on a CUDA GPU, where 32 leaves the GPU mostly idle (BENCHMARKS.md
"GPU") -- about the size of the full preset's sampling batches (``sample.batch_size`` 250)."""


def sdedit_chunk(generator) -> tuple[int, dict[str, int]]:
    """``(images per call, extra keyword arguments)`` for ``generator.sdedit``: the chunk of
    :data:`SDEDIT_CHUNK` for the generator's device, and ``batch_size`` = that chunk when its
    ``sdedit`` takes one (the diffusion families batch internally, 32 by default). The noise of
    each call is seeded with ``seed + first index``, so a different chunk draws different (equally
    valid) noise: restyled images are reproducible per device type, not across them."""

    device = getattr(getattr(generator, "device", None), "type", None) or str(getattr(generator, "device", "cpu"))
    chunk = SDEDIT_CHUNK["cuda" if str(device).startswith("cuda") else "cpu"]
    try:
        takes_batch = "batch_size" in inspect.signature(generator.sdedit).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        takes_batch = False
    return chunk, ({"batch_size": chunk} if takes_batch else {})


def _sdedit_pool(generator, real: SliceSet, plan: SubjectPlan, opts: UtilityOptions, *, seed: int,
                 sampling: dict[str, Any]) -> tuple[Pool | None, str]:
    """Real training slices restyled by SDEdit towards another seen vendor; ``(pool, what or reason)``."""
    if generator is None or not hasattr(generator, "sdedit"):
        name = "an external sample set" if generator is None else f"generator '{getattr(generator, 'name', type(generator).__name__)}'"
        return None, f"{name} has no SDEdit sampler (only the diffusion and flow families have one)"
    vocab = getattr(generator, "vocab", None)
    known = list(getattr(vocab, "vendors", []) or [])
    targets = [v for v in known if v != plan.heldout_vendor]
    if not targets:
        return None, "the generator knows no seen vendor to restyle towards"
    n = int(round(opts.synthetic_ratio * len(real)))
    if n == 0:
        return None, "audit.utility_synthetic_ratio is 0: no restyled image to add"
    rng = np.random.default_rng([seed, 14])
    src = rng.permutation(np.resize(np.arange(len(real)), n)) if n > len(real) else np.sort(rng.choice(len(real), n, replace=False))
    target = []
    for v in real.vendor[src]:
        others = [t for t in targets if t != v] or targets
        target.append(others[int(rng.integers(len(others)))])
    target = np.array(target)
    if hasattr(generator, "sampling"):
        generator.sampling = dict(sampling)

    out = np.empty((n, *real.shape), np.float32)
    t0 = time.perf_counter()
    chunk, extra = sdedit_chunk(generator)
    for lo in tqdm(range(0, n, chunk), desc="utility: SDEdit", unit="batch", disable=progress_disabled(), leave=False):
        hi = min(lo + chunk, n)
        out[lo:hi] = generator.sdedit(real.images[src[lo:hi]], real.masks[src[lo:hi]], strength=opts.sdedit_strength,
                                      vendor=target[lo:hi], group=real.group[src[lo:hi]], seed=seed + lo, **extra)
    log.info("utility: %d real training slices restyled with SDEdit (strength %g, batches of %d) in %.1f s", n,
             opts.sdedit_strength, chunk, time.perf_counter() - t0)
    what = (f"{n} real training slices restyled with the generator's SDEdit sampler (strength {opts.sdedit_strength:g}) "
            f"towards another seen vendor ({', '.join(targets)}), masks reused")
    return Pool(np.clip(out, 0, 1), real.masks[src].copy()), what


def build_settings(real: SliceSet, val: SliceSet, samples: SampleSet, generator, plan: SubjectPlan,
                   opts: UtilityOptions, *, seed: int, sampling: dict[str, Any] | None = None
                   ) -> dict[str, SettingData | str]:
    """Training and validation pools of every setting, or the reason it is unavailable."""
    real_pool, val_pool = Pool(real.images, real.masks), Pool(val.images, val.masks)
    n_real = len(real_pool)
    out: dict[str, SettingData | str] = {
        "real": SettingData(real_pool, val_pool, f"{n_real} real training slices of {len(plan.train)} subjects "
                                                 f"(train split, seen vendors); validation: {len(val)} slices of "
                                                 f"{len(plan.val)} real subjects"),
    }
    syn, notes, reason = _synthetic_pool(samples, plan)
    if syn is None:
        out["synthetic"] = out["real+synthetic"] = reason
    else:
        out["synthetic"] = SettingData(Pool(syn.images, syn.masks), val_pool,
                                       f"{len(syn)} synthetic images only; validation on the real validation subjects",
                                       list(notes))
        k = int(round(opts.synthetic_ratio * n_real))
        if k == 0:
            out["real+synthetic"] = "audit.utility_synthetic_ratio is 0: no synthetic image to add"
        else:
            rng = np.random.default_rng([seed, 15])
            replace = k > len(syn)
            pick = np.sort(rng.choice(len(syn), k, replace=replace))
            extra = list(notes) + ([f"only {len(syn)} synthetic images for {k} draws: drawn with replacement"] if replace else [])
            out["real+synthetic"] = SettingData(
                Pool(np.concatenate([real.images, syn.images[pick]]), np.concatenate([real.masks, syn.masks[pick]])),
                val_pool, f"{n_real} real training slices + {k} synthetic images (ratio {opts.synthetic_ratio:g}); "
                          "validation on the real validation subjects", extra)
    sd, what = _sdedit_pool(generator, real, plan, opts, seed=seed, sampling=sampling or {})
    if sd is None:
        out["real+sdedit"] = what
    else:
        out["real+sdedit"] = SettingData(Pool(np.concatenate([real.images, sd.images]), np.concatenate([real.masks, sd.masks])),
                                         val_pool, f"{n_real} real training slices + {what}; validation on the real "
                                                   "validation subjects")
    return out


# --------------------------------------------------------------------------- trainings


def train_one_and_score(train: Pool, val: Pool, evaluation: SliceSet, spec: TrainSpec, *, seed: int, k: int,
                        on_step=None) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """Train the ``k``-th net of a setting (its seed derived from the run ``seed``) and score the
    evaluation slices: the net, the per-image metrics table and the training summary with the
    prediction and metric times (``predict_s``, ``metrics_s``)."""
    train_seed = int(np.random.SeedSequence([seed, 16, k]).generate_state(1)[0])
    net, info = train_segmenter(train, val, spec, train_seed, on_step=on_step)
    t0 = time.perf_counter()
    pred = predict(net, evaluation.images, device=spec.device)
    info["predict_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = per_image(pred, evaluation.masks, evaluation.spacing)
    info["metrics_s"] = time.perf_counter() - t0
    return net, table, info


def train_and_score(settings: dict[str, SettingData | str], evaluation: SliceSet, opts: UtilityOptions, *, seed: int
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every available setting with every seed; score the evaluation slices.

    Returns the per-image table (``setting, seed, subject_id, vendor`` + metrics) and the
    per-training table."""

    spec = opts.spec()
    todo = [(s, k) for s in SETTINGS if isinstance(settings.get(s), SettingData) for k in range(opts.seeds)]
    threads = opts.threads if opts.threads > 0 else max(1, os.cpu_count() or 1)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows, runs = [], []
    try:
        with tqdm(total=len(todo) * spec.steps, desc="utility", unit="step", disable=progress_disabled()) as bar:
            for setting, k in todo:
                data = settings[setting]
                assert isinstance(data, SettingData)
                bar.set_postfix_str(f"{setting} seed {k}")
                _, table, info = train_one_and_score(data.train, data.val, evaluation, spec, seed=seed, k=k,
                                                  on_step=bar.update)
                bar.update(spec.steps - info["steps"])
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
        role = "held out: in no training set" if v == plan.heldout_vendor else "seen"
        n = len(plan.evaluate[v])
        data["eval_subjects"][vendor_key(v)] = (
            metric(n, "subjects", method=f"annotated subjects of vendor {v} ({role}) that the generator never saw (neither "
                                         f"trained nor conditioned on); {plan.excluded.get(v, 0)} it saw are excluded")
            if n else unavailable(plan.missing_reason(v)))
    return data


def utility_section(table: pd.DataFrame, settings: dict[str, SettingData | str], plan: SubjectPlan, *, seeds: int,
                    n_boot: int, seed: int) -> dict[str, Any]:
    """The ``utility`` results section from the per-image table (see the module docstring)."""
    seed_list = list(range(seeds))
    section: dict[str, Any] = {"settings": {}, "vs_real": {}, "data": _data_entries(settings, plan)}
    real_ok = isinstance(settings.get("real"), SettingData) and not table.empty
    for s in SETTINGS:
        d = settings.get(s)
        if not isinstance(d, SettingData):
            section["settings"][s] = unavailable(d or "not computed")
            if s != "real":
                section["vs_real"][s] = {vendor_key(v): {"dice_diff": unavailable(f"setting {s} unavailable: {d}")}
                                         for v in plan.vendors}
            continue
        what = f"a net trained on {s} data"
        section["settings"][s] = {}
        if s != "real":
            section["vs_real"][s] = {}
        for v in plan.vendors:
            vk = vendor_key(v)
            subjects = plan.evaluate[v]
            if not subjects:
                section["settings"][s][vk] = unavailable(plan.missing_reason(v))
                if s != "real":
                    section["vs_real"][s][vk] = {"dice_diff": unavailable(plan.missing_reason(v))}
                continue
            rows = table[(table["setting"] == s) & (table["vendor"] == v)]
            held = " (held-out vendor)" if v == plan.heldout_vendor else ""
            section["settings"][s][vk] = absolute_entries(rows, subjects, seed_list, n_boot=n_boot, seed=seed,
                                                          what=f"{what}, real subjects of vendor {v}{held}")
            if s == "real":
                continue
            if not real_ok:
                section["vs_real"][s][vk] = {"dice_diff": unavailable("the real baseline is unavailable")}
                continue
            base = table[(table["setting"] == "real") & (table["vendor"] == v)]
            section["vs_real"][s][vk] = paired_entries(rows, base, subjects, seed_list, seed_list, n_boot=n_boot,
                                                       seed=seed, setting=s)
    return section


def unavailable_section(reason: str, vendors: list[str]) -> dict[str, Any]:
    """Everything unavailable for one reason (per vendor, so the sign-off names the vendors)."""
    return {"audit": unavailable(reason),
            "vs_real": {s: {vendor_key(v): {"dice_diff": unavailable(reason)} for v in vendors} for s in SETTINGS[1:]}}


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
    frames = cfg.data.frames
    real, val = labelled_slices(prepared, plan.train, frames), labelled_slices(prepared, plan.val, frames)
    evaluation = labelled_slices(prepared, [i for v in plan.vendors for i in plan.evaluate[v]], frames)
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
    settings = build_settings(real, val, samples, ctx.artefacts.get("generator"), plan, opts, seed=cfg.seed,
                              sampling=sc.sampler_settings())
    t0 = time.perf_counter()
    table, runs = train_and_score(settings, evaluation, opts, seed=cfg.seed)
    section = utility_section(table, settings, plan, seeds=opts.seeds, n_boot=cfg.audit.bootstrap, seed=cfg.seed)
    if held is None:
        section["design"] = {"heldout_vendor": unavailable(
            f"the cohort has {len(vendors)} vendor(s): no leave-one-vendor-out split, so no unseen-vendor evaluation; "
            "the standard splits are used (real training = train, evaluation = subjects the generator never saw)")}
    subj = per_subject_table(table)
    write_csv(ctx.run_dir.path / "utility_per_subject.csv", subj)
    write_csv(ctx.run_dir.path / "utility_training.csv", runs)
    store_section(ctx, "utility", section)
    info: dict[str, Any] = {"trainings": int(len(runs)), "heldout_vendor": held,
                            "training_and_scoring_s": round(time.perf_counter() - t0, 1)}
    if len(runs):
        info["step_s"] = round(float(runs["step_s"].mean()), 4)
        info["seconds_per_training"] = round(float(runs["seconds"].mean()), 2)
    return info
