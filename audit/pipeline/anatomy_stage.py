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
  For a cine sample set with ``subject_ids``, ``slice_index``, a ``(3,)`` spacing and requested
  ``ef``/``edv``/``esv``, up to ``audit.clinical_subjects`` whole subjects (every slice, every
  frame; complete stacks only) are judged frame by frame; per subject EDV/ESV/EF come from slice
  summation with ED/ES = the frames of largest/smallest LV volume
  (:func:`audit.anatomy.clinical.cine_indices_table`) and are compared with the requested values.
  ``clinical_generator_masks`` is the same from the sample set's own masks (the generator's
  segmentation decoder), when it has them. Temporal coherence of the judge's segmentation (mean
  frame-to-frame Dice) is in ``fidelity.fvd_judge.temporal_smoothness``.

Per-image scores go to ``anatomy_per_sample.csv`` (the judge's label maps of the audited samples
to ``judge_samples.npz``), per-subject indices to ``clinical_per_subject.csv`` (cine, from the
generator's masks: ``clinical_generator_masks_per_subject.csv``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from audit.anatomy import agreement, clinical, plausibility
from audit.anatomy.agreement import per_image, summarise
from audit.anatomy.clinical import CINE_REQUESTED
from audit.core.atomic import atomic_save_npz
from audit.core.results import unavailable
from audit.core.tables import write_csv
from audit.pipeline.context import RunContext
from audit.pipeline.stagekit import audit_subset, check_compatible, judge_memo, real_judged, split_slices, store_section
from cohorts.judge import JudgeUnavailable
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

SDEDIT_STRENGTHS = (0.3, 0.5, 0.7)


def _subjects(samples: SampleSet, idx: np.ndarray) -> np.ndarray:
    return samples.subject_ids[idx] if samples.subject_ids is not None else idx.astype(str)


def run_anatomy(ctx: RunContext) -> dict[str, Any]:
    samples: SampleSet = ctx.artefacts["samples"]
    cfg = ctx.cfg
    section: dict[str, Any] = {}
    idx = audit_subset(ctx, len(samples))
    if not cfg.audit.anatomy:
        store_section(ctx, "anatomy", {"judge_agreement": unavailable("anatomy audit switched off (audit.anatomy=false)")})
        return {}
    cine = samples.is_cine
    cine_samples = samples
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
    labels, _ = memo(samples.images[idx], samples.pixel_spacing)
    subjects = _subjects(samples, idx)
    table = pd.DataFrame({"sample_index": idx, "subject_id": subjects})

    if samples.masks is None:
        section["judge_agreement"] = unavailable("the sample set has no conditioning masks (black-box set without masks)")
    else:
        agree = agreement.per_image(labels, samples.masks[idx], samples.pixel_spacing)
        table = pd.concat([table, agree], axis=1)
        section["judge_agreement"] = agreement.summarise(agree, np.asarray(subjects), n_boot=cfg.audit.bootstrap,
                                                         seed=cfg.seed, judge=judge_name)

    # the judge's segmentations travel with the run (report outlines, re-analysis); no image data
    atomic_save_npz(ctx.run_dir.path / "judge_samples.npz", sample_index=idx, labels=labels)
    plaus = plausibility.evaluate(labels, samples.pixel_spacing)
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
    write_csv(ctx.run_dir.path / "anatomy_per_sample.csv", table)

    generator = ctx.artefacts.get("generator")
    if hasattr(generator, "sdedit") and cfg.audit.sdedit_images > 0:
        section["sdedit"] = _sdedit_agreement(ctx, generator, memo)
    if cine:
        section.update(_cine_clinical(ctx, cine_samples, memo))
    else:
        section["clinical"] = _clinical(ctx, generator, memo)
    store_section(ctx, "anatomy", section)
    return {"audited_images": int(len(idx)), **({"cine_frames": True} if cine else {})}


def _sampling_kwargs(ctx: RunContext) -> dict[str, Any]:
    sc = ctx.cfg.sample
    return {"batch_size": sc.batch_size, **sc.sampler_settings()}


def _sdedit_agreement(ctx: RunContext, generator, memo) -> dict[str, Any]:
    """The use in *Can Diffusion Models Bridge the Domain Gap in Cardiac MR Imaging?* (Wong et al.):
    restyle reference-split images towards another vendor with SDEdit and check that the judge
    still finds the reference's anatomy (judge Dice vs the reference mask)."""

    pool = split_slices(ctx, ctx.cfg.sample.condition_split)
    pool = pool.subset(np.flatnonzero(pool.labelled))
    k = min(ctx.cfg.audit.sdedit_images, len(pool))
    idx = np.sort(np.random.default_rng([ctx.cfg.seed, 3]).choice(len(pool), k, replace=False))
    ref = pool.subset(idx)
    vendors = list(generator.vocab.vendors)
    target = np.array([vendors[(vendors.index(v) + 1) % len(vendors)] if v in vendors else vendors[0] for v in ref.vendor])
    generator.sampling = ctx.cfg.sample.sampler_settings()
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
    section = clinical.clinical_section(table, n_boot=ctx.cfg.audit.bootstrap, seed=ctx.cfg.seed)
    write_clinical(ctx.run_dir.path, table, "clinical_per_subject.csv", "clinical_",
                   ("lv_ef_pct", "lv_edv_ml", "lv_esv_ml", "lv_mass_g"))
    return section


def write_clinical(out_dir, table, csv: str, prefix: str, names, **labels) -> None:
    """The per-subject table as ``out_dir/csv`` and a Bland-Altman figure per index with at least 3
    finite pairs (``out_dir/figures/<prefix><index>.png``; ``labels``: who measured / requested)."""

    write_csv(out_dir / csv, table)
    figures = out_dir / "figures"
    figures.mkdir(exist_ok=True)
    for name in names:
        m, r = table[f"{name}_measured"].to_numpy(float), table[f"{name}_requested"].to_numpy(float)
        if np.isfinite(m - r).sum() >= 3:
            clinical.bland_altman_plot(m, r, figures / f"{prefix}{name}.png", name=name, unit=clinical.UNITS[name], **labels)


# --------------------------------------------------------------------------- cine clinical indices

CINE_CLINICAL_STREAM = 6
"""Seed stream of the subjects whose whole cine stacks enter the clinical indices (as for stacks)."""


def cine_clinical_unmet(samples: SampleSet) -> str | None:
    """Why the clinical indices of a cine sample set cannot be measured, or ``None`` if they can."""

    lacks = []
    if samples.subject_ids is None:
        lacks.append("subject_ids")
    if samples.slice_index is None:
        lacks.append("slice_index (each row's slice position in its subject's stack)")
    if samples.slice_spacing is None:
        lacks.append(f"a (3,) spacing with the slice spacing (it has {samples.spacing.shape[0]} values)")
    if all(getattr(samples, f) is None for f in CINE_REQUESTED):
        lacks.append("requested " + "/".join(CINE_REQUESTED))
    if not lacks:
        return None
    return ("clinical indices of a cine sample set need subject_ids, slice_index, a (3,) spacing (in-plane + slice "
            "spacing, mm) and requested ef/edv/esv; this set lacks " + "; ".join(lacks))


def cine_clinical_subjects(samples: SampleSet, k_max: int, seed: int) -> tuple[np.ndarray, str]:
    """Rows of up to ``k_max`` whole subjects with complete stacks (slice positions 0..max, no gap),
    drawn with the run seed; whole subjects only, since a volume needs every slice and ED/ES need
    every frame. Returns the sorted row indices and a sentence saying what was used."""
    ids = samples.subject_ids
    subjects = sorted(set(ids.tolist()))
    complete = [s for s in subjects if np.array_equal(np.sort(samples.slice_index[ids == s]), np.arange((ids == s).sum()))]
    k = min(k_max, len(complete))
    rng = np.random.default_rng([seed, CINE_CLINICAL_STREAM])
    chosen = [complete[i] for i in np.sort(rng.choice(len(complete), k, replace=False))] if k else []
    rows = np.flatnonzero(np.isin(ids, chosen))
    t = samples.images.shape[1]
    gaps = len(subjects) - len(complete)
    note = (f"whole cine stacks of {k} subject(s) ({len(rows)} rows = slices, {len(rows) * t} frames, every one measured), "
            f"drawn with the run seed among {len(complete)} with complete stacks (audit.clinical_subjects = {k_max}; "
            f"{len(subjects)} subjects in the sample set{f', {gaps} with missing slice positions left out' if gaps else ''})")
    return rows, note


def cine_clinical_sections(samples: SampleSet, labels: np.ndarray | None, *, note: str, n_boot: int, seed: int,
                           out_dir=None) -> dict[str, Any]:
    """``clinical`` (from the judge's per-frame ``labels``, ``(N,T,H,W)``, of the rows of
    ``samples``) and ``clinical_generator_masks`` (from ``samples.masks``) of a cine sample set of
    whole subjects. With ``out_dir`` the per-subject tables go to CSV files there and the
    Bland-Altman figures under ``out_dir/figures``."""

    requested = {idx: getattr(samples, f) for f, idx in clinical.CINE_REQUESTED.items() if getattr(samples, f) is not None}
    asked = "/".join(f for f in clinical.CINE_REQUESTED if getattr(samples, f) is not None)
    sources = {
        "clinical": (labels, "judge", "judge-measured (slice summation over the judge's segmentation of every frame; "
                                      "ED/ES = frames of largest/smallest LV volume)", "clinical_per_subject.csv", "clinical_"),
        "clinical_generator_masks": (samples.masks, "generator seg decoder",
                                     "measured on the generator's own masks (its segmentation decoder; slice summation, "
                                     "ED/ES = frames of largest/smallest LV volume)",
                                     "clinical_generator_masks_per_subject.csv", "clinical_generator_masks_"),
    }
    out: dict[str, Any] = {}
    for key, (lab, who, measured_by, csv, prefix) in sources.items():
        if lab is None:
            out[key] = unavailable("the sample set has no masks of its own (the generator's segmentation decoder)"
                                   if key == "clinical_generator_masks" else "no judge segmentation")
            continue
        table = clinical.cine_indices_table(lab, samples.subject_ids, samples.slice_index, samples.spacing, requested)
        out[key] = clinical.cine_clinical_section(table, measured_by=measured_by, requested_from=f"requested (the sample set's {asked})",
                                                  notes=note, n_boot=n_boot, seed=seed)
        if out_dir is not None:
            write_clinical(out_dir, table, csv, prefix, requested, measured_by=who, requested_from=f"sample set's {asked}")
    return out


def _cine_clinical(ctx: RunContext, samples: SampleSet, memo) -> dict[str, Any]:
    """The judge (and the generator's masks) measure EDV/ESV/EF of whole generated cine stacks."""
    reason = cine_clinical_unmet(samples)
    k_max = ctx.cfg.audit.clinical_subjects
    if reason is None and k_max <= 0:
        reason = "clinical indices switched off (audit.clinical_subjects=0)"
    if reason is None:
        rows, note = cine_clinical_subjects(samples, k_max, ctx.cfg.seed)
        n_subjects = len(set(samples.subject_ids[rows].tolist()))
        if n_subjects < 3:
            reason = f"clinical indices need at least 3 whole subjects; {note}"
    if reason is not None:
        log.info("cine clinical indices unavailable: %s", reason)
        return {"clinical": unavailable(reason)}
    sub = SampleSet(images=samples.images[rows], spacing=samples.spacing, subject_ids=samples.subject_ids[rows],
                    slice_index=samples.slice_index[rows],
                    masks=None if samples.masks is None else samples.masks[rows],
                    **{f: getattr(samples, f)[rows] for f in ("ef", "edv", "esv") if getattr(samples, f) is not None})
    n, t = sub.images.shape[:2]
    log.info("cine clinical indices: judging %d frames of %d subjects' whole stacks", n * t, n_subjects)
    labels, _ = memo(sub.images.reshape(n * t, *sub.images.shape[2:]), sub.pixel_spacing)
    labels = labels.reshape(sub.images.shape)
    return cine_clinical_sections(sub, labels, note=note, n_boot=ctx.cfg.audit.bootstrap, seed=ctx.cfg.seed,
                                  out_dir=ctx.run_dir.path)
