"""The stages of ``audit run`` (see :mod:`audit.run` for the orchestration).

* ``cohort``: resolve the data source (phantom or a dataset directory), load and prepare it
  through the cohort cache, make or reuse subject-level splits (``splits.json``) and a
  leave-one-vendor-out split (``splits_lovo.json``), record the data hash in ``env.json``.
* ``fit``: build the training slices of the ``train`` split and fit the generator (trainable
  ones checkpoint into ``checkpoints/`` and resume from there); save it to ``generator/``.
* ``sample``: condition on masks of subjects in ``sample.condition_split`` (default
  ``reference``: neither members nor the membership-inference non-members, and not the
  utility test set, so no audit sees its own labels in the synthetic data) and write
  ``samples.npz``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from audit.atomic import atomic_write_json
from audit.errors import UserError
from audit.logs import progress_disabled
from audit.run import RunContext, Stage
from generators.base import FitContext
from generators.data import SliceSet
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- cohort


def _prepared(ctx: RunContext):
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig

    d = ctx.cfg.data
    root = source.resolve(d.source, phantom_subjects=d.phantom_subjects, phantom_seed=d.phantom_seed)
    config = PreprocessConfig(target_spacing=d.target_spacing, size=d.size)
    return load_prepared(root, config, progress=not progress_disabled())


def run_cohort(ctx: RunContext) -> dict[str, Any]:
    from cohorts.splits import load_splits, make_lovo_splits, make_splits, save_splits

    d = ctx.cfg.data
    prepared = _prepared(ctx)
    if d.split_file:
        splits = load_splits(d.split_file, prepared)
    else:
        splits = make_splits(prepared, seed=d.split_seed)
    save_splits(splits, ctx.run_dir.path / "splits.json")
    info: dict[str, Any] = {"subjects": len(prepared), "data_hash": prepared.data_hash}
    if len(prepared.vendors) >= 2:
        lovo = make_lovo_splits(prepared, d.heldout_vendor or None, seed=d.split_seed)
        save_splits(lovo, ctx.run_dir.path / "splits_lovo.json")
        info["heldout_vendor"] = lovo.heldout_vendor
    env = json.loads(ctx.run_dir.env_path.read_text("utf-8"))
    env["data_hash"] = prepared.data_hash
    env["data_source"] = d.source
    atomic_write_json(ctx.run_dir.env_path, env)
    ctx.artefacts.update(prepared=prepared, splits=splits)
    log.info("cohort: %d subjects (%s), splits %s", len(prepared), prepared.layout,
             {k: len(v) for k, v in splits.assignments.items()})
    return info


def load_cohort(ctx: RunContext) -> None:
    from cohorts.splits import load_splits

    prepared = _prepared(ctx)
    ctx.artefacts.update(prepared=prepared, splits=load_splits(ctx.run_dir.path / "splits.json", prepared))


# --------------------------------------------------------------------------- fit


def _slices(ctx: RunContext, split: str) -> SliceSet | None:
    ids = ctx.artefacts["splits"].assignments.get(split) or []
    if not ids:
        return None
    return SliceSet.from_prepared(ctx.artefacts["prepared"], ids, frames=ctx.cfg.data.frames)


def run_fit(ctx: RunContext) -> dict[str, Any]:
    train = _slices(ctx, "train")
    if train is None:
        raise UserError("the train split is empty: nothing to fit the generator on")
    generator = ctx.entry.cls()
    context = FitContext(
        reference=_slices(ctx, "reference"),
        checkpoint_root=ctx.run_dir.checkpoints,
        losses_path=ctx.run_dir.path / "losses.csv",
        resume=ctx.run_dir.checkpoints.is_dir(),
    )
    generator.fit(train, ctx.cfg, context)
    generator.save(ctx.run_dir.path / "generator")
    ctx.artefacts["generator"] = generator
    return {"train_slices": len(train)}


def load_fit(ctx: RunContext) -> None:
    ctx.artefacts["generator"] = ctx.entry.cls.load(ctx.run_dir.path / "generator")


# --------------------------------------------------------------------------- sample


def conditions_for(ctx: RunContext) -> dict[str, np.ndarray]:
    """Conditioning masks and labels: labelled slices of ``sample.condition_split``, cycled to n."""
    split = ctx.cfg.sample.condition_split
    pool = _slices(ctx, split)
    if pool is None or not pool.labelled.any():
        raise UserError(f"sample.condition_split '{split}' has no annotated slices to condition on")
    pool = pool.subset(np.flatnonzero(pool.labelled))
    n = ctx.cfg.sample.n_samples
    rng = np.random.default_rng([ctx.cfg.seed, 1])
    idx = rng.permutation(np.resize(np.arange(len(pool)), n)) if n > len(pool) else rng.choice(len(pool), n, replace=False)
    return {"masks": pool.masks[idx], "vendor": pool.vendor[idx], "group": pool.group[idx], "subject_ids": pool.subject_ids[idx]}


def run_sample(ctx: RunContext) -> dict[str, Any]:
    generator = ctx.artefacts["generator"]
    sc = ctx.cfg.sample
    samples = generator.sample(sc.n_samples, conditions=conditions_for(ctx), seed=ctx.cfg.seed,
                               batch_size=sc.batch_size, steps=sc.sampler_steps, guidance=sc.guidance_scale)
    if not isinstance(samples, SampleSet):
        raise TypeError(f"generator '{ctx.cfg.generator}' returned {type(samples).__name__}, not a SampleSet")
    samples.save(ctx.run_dir.path / "samples.npz")
    ctx.artefacts["samples"] = samples
    return {"samples": len(samples)}


def load_sample(ctx: RunContext) -> None:
    ctx.artefacts["samples"] = SampleSet.load(ctx.run_dir.path / "samples.npz")


# --------------------------------------------------------------------------- anatomy


def _audit_subset(ctx: RunContext, n: int) -> np.ndarray:
    """Indices of at most ``audit.max_images`` samples (seeded), the judge being the bottleneck."""
    k = min(n, ctx.cfg.audit.max_images)
    return np.sort(np.random.default_rng([ctx.cfg.seed, 2]).choice(n, k, replace=False))


def run_anatomy(ctx: RunContext) -> dict[str, Any]:
    """Judge segmentation of the samples vs their conditioning masks (Dice, HD95 in mm)."""
    from audit.anatomy.agreement import per_image, summarise
    from audit.results import unavailable
    from cohorts.judge import Judge, JudgeUnavailable

    samples: SampleSet = ctx.artefacts["samples"]
    section: dict[str, Any] = {}
    idx = _audit_subset(ctx, len(samples))
    if not ctx.cfg.audit.anatomy:
        section["judge_agreement"] = unavailable("anatomy audit switched off (audit.anatomy=false)")
    elif samples.masks is None:
        section["judge_agreement"] = unavailable("the sample set has no conditioning masks (black-box set without masks)")
    elif samples.is_cine:
        section["judge_agreement"] = unavailable("cine sample sets are audited per frame by the cine audit (not built yet)")
    else:
        try:
            judge = Judge(precision=ctx.cfg.audit.judge_precision)
        except JudgeUnavailable as exc:
            section["judge_agreement"] = unavailable(str(exc))
        else:
            pred = judge.segment(samples.images[idx], spacing=tuple(samples.spacing))
            table = per_image(pred, samples.masks[idx], samples.spacing)
            subjects = samples.subject_ids[idx] if samples.subject_ids is not None else idx.astype(str)
            table.insert(0, "sample_index", idx)
            table.insert(1, "subject_id", subjects)
            from audit.atomic import atomic_write_text

            atomic_write_text(ctx.run_dir.path / "anatomy_per_sample.csv", table.to_csv(index=False))
            section["judge_agreement"] = summarise(table, np.asarray(subjects), n_boot=ctx.cfg.audit.bootstrap,
                                                   seed=ctx.cfg.seed, judge=f"{judge.precision}")
            generator = ctx.artefacts.get("generator")
            if hasattr(generator, "sdedit") and ctx.cfg.audit.sdedit_images > 0:
                section["sdedit"] = _sdedit_agreement(ctx, generator, judge)
    _store_section(ctx, "anatomy", section)
    return {"audited_images": int(len(idx))}


# --------------------------------------------------------------------------- privacy


def run_privacy(ctx: RunContext) -> dict[str, Any]:
    """Membership inference (black- and white-box), memorisation and the DP lower bound."""
    from audit.privacy import privacy_section, write_artifacts
    from audit.results import unavailable

    samples: SampleSet = ctx.artefacts["samples"]
    cfg = ctx.cfg
    section: dict[str, Any]
    info: dict[str, Any] = {}
    if not cfg.audit.privacy:
        section = {"audit": unavailable("privacy audit switched off (audit.privacy=false)")}
    else:
        sets = {name: _slices(ctx, name) for name in ("train", "holdout", "reference")}
        empty = [name for name, s in sets.items() if s is None]
        if empty:
            section = {"audit": unavailable(f"split(s) {', '.join(empty)} are empty: membership inference needs members, non-members and reference data")}
        else:
            try:
                section, table, extras = privacy_section(
                    sets["train"], sets["holdout"], sets["reference"], samples, ctx.artefacts.get("generator"),
                    n_boot=cfg.audit.bootstrap, seed=cfg.seed, max_images=cfg.audit.max_images,
                    claimed_epsilon=cfg.dp.epsilon if cfg.dp.enabled and cfg.dp.epsilon > 0 else None,
                    delta=cfg.dp.delta,
                )
            except UserError as exc:
                section = {"audit": unavailable(f"privacy audit not possible: {exc}")}
            else:
                write_artifacts(ctx.run_dir.path, table, extras)
                info["members"] = int(table["member"].sum())
    _store_section(ctx, "privacy", section)
    return info


SDEDIT_STRENGTHS = (0.3, 0.5, 0.7)


def _sdedit_agreement(ctx: RunContext, generator, judge) -> dict[str, Any]:
    """Seed 000's use: restyle reference-split images towards another vendor with SDEdit and
    check that the judge still finds the reference's anatomy (judge Dice vs the reference mask)."""
    from audit.anatomy.agreement import per_image, summarise

    pool = _slices(ctx, ctx.cfg.sample.condition_split)
    pool = pool.subset(np.flatnonzero(pool.labelled))
    k = min(ctx.cfg.audit.sdedit_images, len(pool))
    idx = np.sort(np.random.default_rng([ctx.cfg.seed, 3]).choice(len(pool), k, replace=False))
    ref = pool.subset(idx)
    vendors = list(generator.vocab.vendors)
    target = np.array([vendors[(vendors.index(v) + 1) % len(vendors)] if v in vendors else vendors[0] for v in ref.vendor])
    sc = ctx.cfg.sample
    generator.sampling = {"steps": sc.sampler_steps, "guidance": sc.guidance_scale}
    out: dict[str, Any] = {}
    for s in SDEDIT_STRENGTHS:
        restyled = generator.sdedit(ref.images, ref.masks, strength=s, vendor=target, group=ref.group, seed=ctx.cfg.seed)
        table = per_image(judge.segment(restyled, spacing=tuple(ref.spacing)), ref.masks, ref.spacing)
        summary = summarise(table, ref.subject_ids, n_boot=ctx.cfg.audit.bootstrap, seed=ctx.cfg.seed,
                            judge=f"{judge.precision}; SDEdit strength {s} towards the next vendor")
        out[f"strength_{s}"] = {"dice": summary["dice"]}
    return out


def _section_path(ctx: RunContext, name: str):
    return ctx.run_dir.path / "sections" / f"{name}.json"


def _store_section(ctx: RunContext, name: str, section: dict[str, Any]) -> None:
    """Keep an audit's results section on disk so a resumed run reuses it."""
    atomic_write_json(_section_path(ctx, name), section)
    ctx.artefacts[f"results.{name}"] = section


def _section_loader(name: str):
    def load(ctx: RunContext) -> None:
        ctx.artefacts[f"results.{name}"] = json.loads(_section_path(ctx, name).read_text("utf-8"))

    return load


PIPELINE: list[Stage] = [
    Stage("cohort", run_cohort, load_cohort),
    Stage("fit", run_fit, load_fit),
    Stage("sample", run_sample, load_sample),
    Stage("anatomy", run_anatomy, _section_loader("anatomy")),
    Stage("privacy", run_privacy, _section_loader("privacy")),
]
