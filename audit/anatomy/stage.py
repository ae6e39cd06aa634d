"""The ``anatomy`` stage: does the independent judge find the anatomy the generator was asked for?

For the seeded audit subset of the samples (one judge pass per image, memoised by image hash):

* ``judge_agreement``: per structure Dice and HD95 (mm) of the judge's segmentation against
  the conditioning mask (:mod:`audit.anatomy.agreement`); ``judge_agreement_real_test`` is the
  same figure for real ``test`` images against their ground truth (the ceiling a generator is
  read against);
* ``plausibility``: Painchaud-style criteria on the judge's segmentation of the synthetic
  images, next to the same rates for real ``test`` images (:mod:`audit.anatomy.plausibility`);
  this needs no conditioning mask, so it also judges unconditioned or external sample sets;
* ``sdedit`` (diffusion/flow): reference images restyled towards another vendor at strengths
  0.3/0.5/0.7, judge Dice against the reference mask; the restyled images go to ``sdedit.npz``
  for the paired fidelity metrics;
* ``clinical``: whole ED and ES stacks of ``audit.clinical_subjects`` subjects are generated from
  their masks and EDV/ESV/EF/mass of the judge's segmentation are compared with the requested
  values (:mod:`audit.anatomy.clinical`; Bland-Altman plots under ``figures/``).

Per-image scores go to ``anatomy_per_sample.csv`` (the judge's label maps of the audited samples
to ``judge_samples.npz``), per-subject indices to ``clinical_per_subject.csv``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from audit.atomic import atomic_save_npz, atomic_write_text
from audit.errors import UserError
from audit.results import unavailable
from audit.run import RunContext
from audit.stagekit import audit_subset, judge_memo, split_slices, store_section
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

SDEDIT_STRENGTHS = (0.3, 0.5, 0.7)
REAL_STREAM = {"test": 4, "holdout": 5}
"""Seed streams of the real audit subsets (shared with the fidelity stage, so the judge cache hits)."""


def check_compatible(ctx: RunContext, samples: SampleSet) -> None:
    """Samples must have the cohort's image size and spacing: the judge's field of view and the
    real comparison sets depend on both."""
    d = ctx.cfg.data
    shape = tuple(samples.images.shape[-2:])
    sp = tuple(float(s) for s in samples.spacing)
    if shape != (d.size, d.size) or not np.allclose(sp, (d.target_spacing, d.target_spacing), rtol=1e-3):
        raise UserError(
            f"{ctx.run_dir.path / 'samples.npz'}: images are {shape[0]}x{shape[1]} at {sp[0]:g}x{sp[1]:g} mm but the "
            f"cohort is prepared at {d.size}x{d.size} and {d.target_spacing:g} mm; set data.size and data.target_spacing to match"
        )


def real_judged(ctx: RunContext, split: str) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """``(slices, labels, features)`` of the seeded audit subset of a real split, or ``None`` if empty.

    Kept in the run context: the anatomy and fidelity stages both read the ``test`` split."""
    key = f"real_judged.{split}"
    if key not in ctx.artefacts:
        real = split_slices(ctx, split)
        if real is None:
            ctx.artefacts[key] = None
        else:
            real = real.subset(audit_subset(ctx, len(real), stream=REAL_STREAM[split]))
            labels, feats = judge_memo(ctx)(real.images, real.spacing)
            ctx.artefacts[key] = (real, labels, feats)
    return ctx.artefacts[key]


def _subjects(samples: SampleSet, idx: np.ndarray) -> np.ndarray:
    return samples.subject_ids[idx] if samples.subject_ids is not None else idx.astype(str)


def run_anatomy(ctx: RunContext) -> dict[str, Any]:
    from audit.anatomy import agreement, plausibility
    from cohorts.judge import JudgeUnavailable

    samples: SampleSet = ctx.artefacts["samples"]
    cfg = ctx.cfg
    section: dict[str, Any] = {}
    idx = audit_subset(ctx, len(samples))
    if not cfg.audit.anatomy:
        store_section(ctx, "anatomy", {"judge_agreement": unavailable("anatomy audit switched off (audit.anatomy=false)")})
        return {}
    cine = samples.is_cine
    if cine:  # judged frame by frame: agreement and plausibility per frame, clustered by subject
        samples = samples.frames()
        idx = audit_subset(ctx, len(samples))
    check_compatible(ctx, samples)
    try:
        memo = judge_memo(ctx)
    except JudgeUnavailable as exc:
        store_section(ctx, "anatomy", {"judge_agreement": unavailable(str(exc))})
        return {}
    judge_name = memo.judge.precision
    labels, _ = memo(samples.images[idx], samples.spacing)
    subjects = _subjects(samples, idx)
    table = pd.DataFrame({"sample_index": idx, "subject_id": subjects})

    if samples.masks is None:
        section["judge_agreement"] = unavailable("the sample set has no conditioning masks (black-box set without masks)")
    else:
        agree = agreement.per_image(labels, samples.masks[idx], samples.spacing)
        table = pd.concat([table, agree], axis=1)
        section["judge_agreement"] = agreement.summarise(agree, np.asarray(subjects), n_boot=cfg.audit.bootstrap,
                                                         seed=cfg.seed, judge=judge_name)

    # the judge's segmentations travel with the run (report outlines, re-analysis); no image data
    atomic_save_npz(ctx.run_dir.path / "judge_samples.npz", sample_index=idx, labels=labels)
    plaus = plausibility.evaluate(labels, samples.spacing)
    table = pd.concat([table, plaus.add_prefix("plausibility_")], axis=1)
    section["plausibility"] = {
        "synthetic": plausibility.summarise(plaus, np.asarray(subjects), n_boot=cfg.audit.bootstrap, seed=cfg.seed,
                                            source=f"judge ({judge_name}) segmentation of the synthetic images"),
    }
    real = real_judged(ctx, "test")
    if real is None:
        section["plausibility"]["real_test"] = unavailable("the test split is empty: no real plausibility rate to compare with")
    else:
        rs, rl, _ = real
        lab = np.flatnonzero(rs.labelled)
        if len(lab):  # the ceiling: the same judge on real unseen images against their true masks
            section["judge_agreement_real_test"] = agreement.summarise(
                agreement.per_image(rl[lab], rs.masks[lab], rs.spacing), rs.subject_ids[lab], n_boot=cfg.audit.bootstrap,
                seed=cfg.seed, judge=f"{judge_name}; real test-split images, the ceiling", reference="ground-truth mask")
        section["plausibility"]["real_test"] = plausibility.summarise(
            plausibility.evaluate(rl, rs.spacing), rs.subject_ids, n_boot=cfg.audit.bootstrap, seed=cfg.seed,
            source=f"judge ({judge_name}) segmentation of real test-split images")
    atomic_write_text(ctx.run_dir.path / "anatomy_per_sample.csv", table.to_csv(index=False))

    generator = ctx.artefacts.get("generator")
    if hasattr(generator, "sdedit") and cfg.audit.sdedit_images > 0:
        section["sdedit"] = _sdedit_agreement(ctx, generator, memo)
    if cine:
        section["clinical"] = unavailable("clinical indices of cine sample sets need the cine generator's requested EF/EDV/ESV (cine issue; not built yet)")
    else:
        section["clinical"] = _clinical(ctx, generator, memo)
    store_section(ctx, "anatomy", section)
    return {"audited_images": int(len(idx)), **({"cine_frames": True} if cine else {})}


def _sampling_kwargs(ctx: RunContext) -> dict[str, Any]:
    sc = ctx.cfg.sample
    return {"batch_size": sc.batch_size, "steps": sc.sampler_steps, "guidance": sc.guidance_scale}


def _sdedit_agreement(ctx: RunContext, generator, memo) -> dict[str, Any]:
    """Seed 000's use: restyle reference-split images towards another vendor with SDEdit and
    check that the judge still finds the reference's anatomy (judge Dice vs the reference mask)."""
    from audit.anatomy.agreement import per_image, summarise

    pool = split_slices(ctx, ctx.cfg.sample.condition_split)
    pool = pool.subset(np.flatnonzero(pool.labelled))
    k = min(ctx.cfg.audit.sdedit_images, len(pool))
    idx = np.sort(np.random.default_rng([ctx.cfg.seed, 3]).choice(len(pool), k, replace=False))
    ref = pool.subset(idx)
    vendors = list(generator.vocab.vendors)
    target = np.array([vendors[(vendors.index(v) + 1) % len(vendors)] if v in vendors else vendors[0] for v in ref.vendor])
    kw = _sampling_kwargs(ctx)
    generator.sampling = {"steps": kw["steps"], "guidance": kw["guidance"]}
    out: dict[str, Any] = {}
    restyled_all: dict[str, np.ndarray] = {}
    for s in SDEDIT_STRENGTHS:
        restyled = generator.sdedit(ref.images, ref.masks, strength=s, vendor=target, group=ref.group, seed=ctx.cfg.seed)
        labels, _ = memo(restyled, ref.spacing)
        summary = summarise(per_image(labels, ref.masks, ref.spacing), ref.subject_ids, n_boot=ctx.cfg.audit.bootstrap,
                            seed=ctx.cfg.seed, judge=f"{memo.judge.precision}; SDEdit strength {s} towards the next vendor")
        out[f"strength_{s}"] = {"dice": summary["dice"]}
        restyled_all[f"strength_{s}"] = restyled
    # the paired fidelity metrics (PSNR/SSIM vs the reference) read these; no real image is copied
    # into a report from here
    atomic_save_npz(ctx.run_dir.path / "sdedit.npz", reference_index=idx, subject_ids=ref.subject_ids,
                    target_vendor=target, **restyled_all)
    return out


def _clinical(ctx: RunContext, generator, memo) -> dict[str, Any]:
    """EDV/ESV/EF/mass of generated whole stacks, judged, vs the values of the conditioning masks."""
    from audit.anatomy import clinical

    k_max = ctx.cfg.audit.clinical_subjects
    if k_max <= 0:
        return unavailable("clinical indices switched off (audit.clinical_subjects=0)")
    if generator is None:
        return unavailable("clinical indices need the generator to synthesise whole stacks from masks (not possible for an external sample set)")
    prepared = ctx.artefacts["prepared"]
    ids = ctx.artefacts["splits"].assignments.get(ctx.cfg.sample.condition_split) or []
    eligible = [prepared[i] for i in ids if prepared[i].mask is not None
                and bool(prepared[i].labelled[prepared[i].ed]) and bool(prepared[i].labelled[prepared[i].es])]
    if len(eligible) < 3:
        return unavailable(f"split {ctx.cfg.sample.condition_split} has {len(eligible)} subjects with annotated ED and ES stacks; at least 3 are needed")
    rng = np.random.default_rng([ctx.cfg.seed, 6])
    chosen = [eligible[i] for i in np.sort(rng.choice(len(eligible), min(k_max, len(eligible)), replace=False))]
    masks, vendor, group, sid = [], [], [], []
    for s in chosen:
        for t in (s.ed, s.es):
            masks.append(s.mask[t])
            vendor += [s.vendor] * s.n_slices
            group += [s.group] * s.n_slices
            sid += [s.subject_id] * s.n_slices
    cond_masks = np.concatenate(masks).astype(np.uint8)
    conditions = {"masks": cond_masks, "vendor": np.array(vendor), "group": np.array(group), "subject_ids": np.array(sid)}
    log.info("clinical indices: generating the ED and ES stacks of %d subjects (%d slices)", len(chosen), len(cond_masks))
    out = generator.sample(len(cond_masks), conditions=conditions, seed=ctx.cfg.seed, **_sampling_kwargs(ctx))
    if out.masks is None or out.masks.shape != cond_masks.shape or not np.array_equal(out.masks, cond_masks):
        return unavailable("the generator does not follow the conditioning masks (its returned masks differ), "
                                      "so requested clinical indices are not defined for its images")
    labels, _ = memo(out.images, out.spacing)
    ed_pred, es_pred, ed_ref, es_ref = [], [], [], []
    lo = 0
    for s in chosen:
        z = s.n_slices
        ed_pred.append(labels[lo:lo + z])
        es_pred.append(labels[lo + z:lo + 2 * z])
        ed_ref.append(cond_masks[lo:lo + z])
        es_ref.append(cond_masks[lo + z:lo + 2 * z])
        lo += 2 * z
    spacing = np.array([s.spacing for s in chosen], np.float64)  # slice spacing differs between real subjects
    table = clinical.indices_table([s.subject_id for s in chosen], ed_pred, es_pred, ed_ref, es_ref, spacing)
    atomic_write_text(ctx.run_dir.path / "clinical_per_subject.csv", table.to_csv(index=False))
    section = clinical.clinical_section(table, n_boot=ctx.cfg.audit.bootstrap, seed=ctx.cfg.seed)
    figures = ctx.run_dir.path / "figures"
    figures.mkdir(exist_ok=True)
    for name, unit in (("lv_ef_pct", "%"), ("lv_edv_ml", "mL"), ("lv_esv_ml", "mL"), ("lv_mass_g", "g")):
        m, r = table[f"{name}_measured"].to_numpy(float), table[f"{name}_requested"].to_numpy(float)
        if np.isfinite(m - r).sum() >= 3:
            clinical.bland_altman_plot(m, r, figures / f"clinical_{name}.png", name=name, unit=unit)
    return section
