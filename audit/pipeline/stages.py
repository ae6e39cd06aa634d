"""The stages of ``audit run`` (see :mod:`audit.pipeline.run` for the orchestration).

* ``cohort``: resolve the data source (phantom or a dataset directory), load and prepare it
  through the cohort cache, make or reuse subject-level splits (``splits.json``) and a
  leave-one-vendor-out split (``splits_lovo.json``), record the data hash in ``env.json``; with
  ``--utility-test-data`` also load and check the external evaluation cohort (before any training).
* ``fit``: build the training slices of the ``train`` split and fit the generator (trainable
  ones checkpoint into ``checkpoints/`` and resume from there); save it to ``generator/``.
* ``sample``: condition on masks of subjects in ``sample.condition_split`` (default
  ``reference``: neither members nor the membership-inference non-members, and not the
  utility test set, so no audit sees its own labels in the synthetic data) and write
  ``samples.npz``.
* ``anatomy`` (:mod:`audit.pipeline.anatomy_stage`), ``fidelity`` (:mod:`audit.pipeline.fidelity_stage`),
  ``privacy`` (:mod:`audit.pipeline.privacy_stage`) and ``utility`` (:mod:`audit.pipeline.utility_stage`): the audits, each keeping its results section in
  ``sections/<name>.json`` for ``--resume``.
* ``plugins`` (:mod:`audit.pipeline.plugin_stage`): metrics registered by plugins, written into the
  sections above.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError
from audit.pipeline import fitcache
from audit.pipeline.anatomy_stage import run_anatomy
from audit.pipeline.cohort_check import check_cohort_for_run
from audit.pipeline.context import RunContext, Stage, release_fit_workers
from audit.pipeline.fidelity_stage import run_fidelity
from audit.pipeline.plugin_stage import run_plugin_metrics
from audit.pipeline.privacy_stage import run_privacy
from audit.pipeline.stagekit import canary_plan, prepared_cohort, section_loader, split_slices
from audit.pipeline.utility_external import check_external
from audit.pipeline.utility_options import options_from_config
from audit.pipeline.utility_stage import run_utility
from cohorts.splits import Splits, load_splits, make_lovo_splits, make_splits, save_splits
from generators.base import FitContext
from generators.data import StackSet
from generators.dp.summary import results_section
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- cohort


def resolve_protocol(protocol: str, vendors: int, utility: bool, split_kind: str | None = None) -> str:
    """``data.protocol`` as the run applies it: ``auto`` is ``source_only`` where the run has
    unseen-vendor rows (``vendors`` >= 2 and the utility audit on) and ``all_vendors`` otherwise; a
    split file (``split_kind``) decides by its kind. Explicit values pass through unchanged."""
    if protocol != "auto":
        return protocol
    if split_kind is not None:
        return "source_only" if split_kind == "lovo" else "all_vendors"
    return "source_only" if vendors >= 2 and utility else "all_vendors"


def _run_splits(prepared, d, utility: bool = True) -> tuple[Splits, str]:
    """The run's splits and the protocol they follow: a ``--split-file``, or made with
    ``data.split_seed`` -- the standard ones, or under the source-only protocol (``data.protocol``,
    :func:`resolve_protocol`) the leave-one-vendor-out ones (the generator then never sees the
    held-out vendor; its subjects are in ``unseen_vendor_test`` only)."""
    where = prepared.root or d.source
    if d.protocol == "source_only" and len(prepared.vendors) < 2:
        raise UserError(f"{where}: data.protocol=source_only holds one vendor out of the generator's training, but the "
                        f"cohort has {len(prepared.vendors)} vendor ({', '.join(prepared.vendors)}); use all_vendors")
    if d.split_file:
        splits = load_splits(d.split_file, prepared)
        if d.protocol == "source_only" and splits.kind != "lovo":
            raise UserError(f"{d.split_file}: data.protocol=source_only needs a leave-one-vendor-out split file "
                            f"(kind lovo), this one is {splits.kind}")
        return splits, resolve_protocol(d.protocol, len(prepared.vendors), utility, splits.kind)
    protocol = resolve_protocol(d.protocol, len(prepared.vendors), utility)
    try:
        if protocol == "source_only":
            return make_lovo_splits(prepared, d.heldout_vendor or None, seed=d.split_seed), protocol
        return make_splits(prepared, seed=d.split_seed), protocol
    except UserError as exc:  # name the folder: the user has to add subjects there
        raise UserError(f"{where}: {exc}") from None


def run_cohort(ctx: RunContext) -> dict[str, Any]:
    d = ctx.cfg.data
    prepared = prepared_cohort(ctx)
    splits, protocol = _run_splits(prepared, d, bool(ctx.cfg.audit.utility))
    cls = getattr(ctx.entry, "cls", None)  # None: a context built without a registered generator
    check_cohort_for_run(prepared, splits, ctx.cfg, getattr(cls, "data", "slices"), getattr(cls, "trainable", True))
    external = None
    if ctx.cfg.audit.utility and ctx.cfg.audit.utility_test_data:  # checked now, not after the fit
        external = check_external(ctx.cfg, prepared, options_from_config(ctx.cfg).eval_crop)
    save_splits(splits, ctx.run_dir.path / "splits.json")
    info: dict[str, Any] = {"subjects": len(prepared), "data_hash": prepared.data_hash}
    if len(prepared.vendors) >= 2:
        lovo = splits if splits.kind == "lovo" else make_lovo_splits(prepared, d.heldout_vendor or None, seed=d.split_seed)
        save_splits(lovo, ctx.run_dir.path / "splits_lovo.json")
        info["heldout_vendor"] = lovo.heldout_vendor
        info["protocol"] = protocol
    env = json.loads(ctx.run_dir.env_path.read_text("utf-8"))
    env["data_hash"] = prepared.data_hash
    env["data_source"] = d.source
    if external is not None:
        env["utility_test_data"] = external
        info["utility_test_data"] = {k: external[k] for k in ("source", "labelled_subjects")}
    atomic_write_json(ctx.run_dir.env_path, env)
    ctx.artefacts.update(prepared=prepared, splits=splits)
    log.info("cohort: %d subjects (%s), splits %s", len(prepared), prepared.layout,
             {k: len(v) for k, v in splits.assignments.items()})
    return info


def load_cohort(ctx: RunContext) -> None:
    prepared = prepared_cohort(ctx)
    ctx.artefacts.update(prepared=prepared, splits=load_splits(ctx.run_dir.path / "splits.json", prepared))


# --------------------------------------------------------------------------- fit


def _uses_subjects(ctx: RunContext) -> bool:
    return getattr(ctx.entry.cls, "data", "slices") == "subjects"


def train_data(ctx: RunContext):
    """What ``fit`` gets: the train split's slices, less the canaries whose coin left them out (all
    slices of such a canary subject) under ``--dp-audit-canaries`` -- the plan is drawn and checked
    here, before any training step -- or its whole subjects for a 4D generator."""
    if _uses_subjects(ctx):
        ids = ctx.artefacts["splits"].assignments.get("train") or []
        return StackSet.from_prepared(ctx.artefacts["prepared"], ids) if ids else None
    train = split_slices(ctx, "train")
    plan = canary_plan(ctx, train)
    return train if plan is None else train.subset(plan.training_indices())


def _train_size(train) -> dict[str, int]:
    if hasattr(train, "subjects"):
        return {"train_subjects": len(train), "train_slices": train.n_slices}
    return {"train_slices": len(train)}


def run_fit(ctx: RunContext) -> dict[str, Any]:
    train = train_data(ctx)
    if train is None:
        raise UserError("the train split is empty: nothing to fit the generator on")
    if ctx.cfg.dp.enabled and not getattr(ctx.entry.cls, "trainable", True):
        raise UserError(f"generator '{ctx.cfg.generator}' is not trained, so --dp-* has nothing to make private")

    gen_dir, losses = ctx.run_dir.path / "generator", ctx.run_dir.path / "losses.csv"
    if not (ctx.use_cache and getattr(ctx.entry.cls, "trainable", True)):
        return _train(ctx, train, gen_dir, losses, key=None)
    key = fitcache.fit_key(ctx.cfg, ctx.artefacts["prepared"].data_hash, ctx.artefacts["splits"].assignments["train"])
    hit = fitcache.lookup(key, discard_corrupt=False)
    if hit is None:
        # a miss trains under the entry's lock: a concurrent run with the same key waits and reuses it
        with fitcache.building(key):
            hit = fitcache.lookup(key)
            if hit is None:
                return _train(ctx, train, gen_dir, losses, key=key)
    fitcache.restore(hit, gen_dir, losses)
    generator = _placed(ctx.entry.cls.load(gen_dir), ctx)
    ctx.artefacts["generator"] = generator
    _dp_artefacts(ctx, generator)
    log.info("fit: trained generator from the cache (%s); --no-cache retrains", key)
    return {**_train_size(train), "fit_cache": "hit", "fit_cache_key": key}


def _train(ctx: RunContext, train: Any, gen_dir: Path, losses: Path, key: str | None) -> dict[str, Any]:
    """Train the generator into the run directory (resuming from its checkpoints) and, with a
    ``key``, store it in the fit cache."""

    generator = ctx.entry.cls()
    context = FitContext(
        reference=split_slices(ctx, "reference"),
        checkpoint_root=ctx.run_dir.checkpoints,
        losses_path=losses,
        resume=ctx.run_dir.checkpoints.is_dir(),
    )

    release_fit_workers(ctx, train=True, resume=context.resume)  # under torchrun the other ranks join here
    generator.fit(train, ctx.cfg, context)
    generator.save(gen_dir)
    ctx.artefacts["generator"] = generator
    _dp_artefacts(ctx, generator)
    info: dict[str, Any] = _train_size(train)
    if ctx.cfg.device.startswith("cuda"):
        info["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if key is not None:
        fitcache.store(key, gen_dir, losses)
        info.update(fit_cache="stored", fit_cache_key=key)
    return info


def fit_on_worker(ctx: RunContext, resume: bool) -> None:
    """A rank > 0 under torchrun: the same training as rank 0's :func:`run_fit` (same cohort,
    split, config and checkpoint to resume from), writing nothing (rank 0 saves)."""

    prepared = prepared_cohort(ctx)  # rank 0 has built the cohort cache by now
    ctx.artefacts.update(prepared=prepared, splits=load_splits(ctx.run_dir.path / "splits.json", prepared))
    generator = ctx.entry.cls()
    generator.fit(train_data(ctx), ctx.cfg, FitContext(checkpoint_root=ctx.run_dir.checkpoints, resume=resume))


def _dp_artefacts(ctx: RunContext, generator: Any) -> None:
    """The ``dp`` results section and the claim the privacy audit checks, from the accountant.

    A run asked for DP whose generator reports no accounting is an error, never a silent
    non-private run with a claimed epsilon."""

    summary = getattr(generator, "dp_summary", None)
    if ctx.cfg.dp.enabled and summary is None:
        raise UserError(f"generator '{ctx.cfg.generator}' does not support DP training (it reported no DP accounting)")
    if summary is not None:
        ctx.artefacts["results.dp"] = results_section(summary)
        ctx.artefacts["dp_claim"] = (float(summary["epsilon_rdp"]), float(summary["plan"]["delta"]))


def _placed(generator: Any, ctx: RunContext) -> Any:
    """A loaded generator moved to the run's ``--device`` (generators without ``to`` stay where they are)."""
    move = getattr(generator, "to", None)
    if callable(move):
        move(ctx.cfg.device)
    elif ctx.cfg.device != "cpu" and getattr(ctx.entry.cls, "trainable", True):
        log.warning("generator '%s' has no to(device); it runs where it loaded", ctx.cfg.generator)
    return generator


def load_fit(ctx: RunContext) -> None:
    ctx.artefacts["generator"] = _placed(ctx.entry.cls.load(ctx.run_dir.path / "generator"), ctx)
    _dp_artefacts(ctx, ctx.artefacts["generator"])


# --------------------------------------------------------------------------- sample


def stack_conditions(ctx: RunContext) -> dict[str, np.ndarray]:
    """Clinical priors of ``sample.condition_split`` subjects (group, EF/EDV/ESV from their ED and ES
    masks, number of slices, slice spacing), cycled to ``sample.n_samples`` stacks."""
    split = ctx.cfg.sample.condition_split
    prepared = ctx.artefacts["prepared"]
    rows = []
    for sid in ctx.artefacts["splits"].assignments.get(split) or []:
        s = prepared[sid]
        e = s.ejection_fraction()
        if e is not None and e["edv"] > 0:
            rows.append((sid, s.group, s.vendor, e["ef"], e["edv"], e["esv"], s.n_slices, float(s.spacing[2])))
    if not rows:
        raise UserError(f"sample.condition_split '{split}' has no subject with annotated ED and ES frames to take "
                        "clinical priors from")
    accepts = getattr(ctx.artefacts.get("generator"), "accepts", None)
    if callable(accepts):  # e.g. a slice count the model was not trained for: skip that subject, say so
        ok = [r for r in rows if accepts(group=r[1], n_slices=r[6], slice_spacing=r[7])]
        if len(ok) < len(rows):
            log.warning("sample: %d of %d %s subjects have priors outside the generator's trained range; "
                        "conditioning on the other %d", len(rows) - len(ok), len(rows), split, len(ok))
        if not ok:
            raise UserError(f"no {split} subject has priors inside generator '{ctx.cfg.generator}''s trained range")
        rows = ok
    n = ctx.cfg.sample.n_samples
    rng = np.random.default_rng([ctx.cfg.seed, 1])
    idx = rng.permutation(np.resize(np.arange(len(rows)), n)) if n > len(rows) else rng.choice(len(rows), n, replace=False)
    cols = list(zip(*[rows[i] for i in idx]))
    keys = ("subject_ids", "group", "vendor", "ef", "edv", "esv", "n_slices", "slice_spacing")
    return {k: np.asarray(v) for k, v in zip(keys, cols)}


def conditions_for(ctx: RunContext) -> dict[str, np.ndarray]:
    """Conditioning masks and labels: labelled slices of ``sample.condition_split``, cycled to n
    (clinical priors of whole subjects for a 4D generator, :func:`stack_conditions`)."""
    if _uses_subjects(ctx):
        return stack_conditions(ctx)
    split = ctx.cfg.sample.condition_split
    pool = split_slices(ctx, split)
    if pool is None or not pool.labelled.any():
        raise UserError(f"sample.condition_split '{split}' has no annotated slices to condition on")
    pool = pool.subset(np.flatnonzero(pool.labelled))
    n = ctx.cfg.sample.n_samples
    rng = np.random.default_rng([ctx.cfg.seed, 1])
    idx = rng.permutation(np.resize(np.arange(len(pool)), n)) if n > len(pool) else rng.choice(len(pool), n, replace=False)
    out = {"masks": pool.masks[idx], "vendor": pool.vendor[idx], "group": pool.group[idx], "subject_ids": pool.subject_ids[idx]}
    return _known_labels(out, ctx.artefacts.get("generator"), split)


def _known_labels(cond: dict[str, np.ndarray], generator: Any, split: str) -> dict[str, np.ndarray]:
    """Vendor / group labels the generator never trained on (a vendor held out of its training by
    ``data.protocol = source_only``, a group absent from a small train split) become the null
    label of classifier-free guidance -- that image is conditioned on its mask alone -- with a
    warning, instead of an error: the mask is what the audit asks for."""
    vocab = getattr(generator, "vocab", None)
    for key, known in (("vendor", getattr(vocab, "vendors", None)), ("group", getattr(vocab, "groups", None))):
        if known is None or key not in cond:
            continue
        values = np.asarray(cond[key]).astype(str)
        unknown = ~np.isin(values, list(known)) & (values != "")
        if unknown.any():
            log.warning("sample: %d of %d %s conditions have a %s the generator never trained on (%s); they are sampled "
                        "with the null %s (mask only)", int(unknown.sum()), len(values), split, key,
                        ", ".join(sorted(set(values[unknown]))), key)
            cond[key] = np.where(unknown, "", values)
    return cond


def run_sample(ctx: RunContext) -> dict[str, Any]:
    generator = ctx.artefacts["generator"]
    sc = ctx.cfg.sample
    samples = generator.sample(sc.n_samples, conditions=conditions_for(ctx), seed=ctx.cfg.seed,
                               batch_size=sc.batch_size, **sc.sampler_settings())
    if not isinstance(samples, SampleSet):
        raise TypeError(f"generator '{ctx.cfg.generator}' returned {type(samples).__name__}, not a SampleSet")
    samples.save(ctx.run_dir.path / "samples.npz")
    ctx.artefacts["samples"] = samples
    return {"samples": len(samples)}


def load_sample(ctx: RunContext) -> None:
    ctx.artefacts["samples"] = SampleSet.load(ctx.run_dir.path / "samples.npz")


# --------------------------------------------------------------------------- pipeline

PIPELINE: list[Stage] = [
    Stage("cohort", run_cohort, load_cohort),
    Stage("fit", run_fit, load_fit),
    Stage("sample", run_sample, load_sample),
    Stage("anatomy", run_anatomy, section_loader("anatomy")),
    Stage("fidelity", run_fidelity, section_loader("fidelity")),
    Stage("privacy", run_privacy, section_loader("privacy")),
    Stage("utility", run_utility, section_loader("utility")),
    # third-party metrics (entry points cmr_audit.metrics); they update the sections above
    Stage("plugins", run_plugin_metrics, None),
]
