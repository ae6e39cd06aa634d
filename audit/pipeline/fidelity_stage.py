"""The ``fidelity`` stage: do the synthetic images look like real cine MRI, read against the real floor?

Feature space ``judge``: the independent judge network's deepest encoder tensor, global-average
pooled (288-d; :meth:`cohorts.judge.Judge.segment_and_features`). It is trained on real ACDC
cine MRI, so it encodes cardiac MR appearance; no ImageNet weights are needed (none can be
downloaded here). Features come from the memoised judge pass the anatomy stage already made.

* ``judge.synthetic_vs_test``: FID, KID, precision/recall/density/coverage of the synthetic audit
  subset against the real ``test`` split (:func:`audit.fidelity.distribution.compare`).
* ``judge.real_floor``: the same metrics between two disjoint sets of real subjects (``holdout``
  against ``test``), the synthetic set subsampled to the floor set's size so both rows have the
  same n (FID and KID depend on it). A real set is the best any generator can do.
* ``judge.fid_ratio_to_floor``: synthetic FID / floor FID.
* ``paired``: PSNR/SSIM/MS-SSIM of SDEdit outputs against their references (strength 0.3/0.5/0.7)
  and of the latent autoencoder's reconstructions of real ``test`` images (``ldm``/``flow``).
* ``external`` (``audit.feature_extractor=FILE``, ``audit.feature_extractor_sha256=HASH``): the
  same FID/KID/PRDC rows and ratio in a feature space the user supplies as a TorchScript file, e.g.
  the standard FID Inception network (:mod:`audit.fidelity.external`; loading it runs its code,
  hence the pinned hash), labelled with the file's name and hash; features in
  ``features_external.npz``. Without a file, ``inception`` says why standard Inception FID is
  not computed (no ImageNet weights can be downloaded here); the spaces are never mixed.

* ``fvd_judge`` (cine sample sets ``(N,T,H,W)``): Fréchet distance of video embeddings built from
  per-frame judge features (:mod:`audit.fidelity.cine`) against real ``test`` cines (every slice
  position, resampled to the synthetic frame count), with the ``holdout`` cines as the floor; temporal smoothness
  (frame-to-frame judge Dice) of synthetic and real cines. Image metrics are then per frame.

Features of all three sets go to ``features_judge.npz`` (for re-analysis; no images).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from audit.core.atomic import atomic_save_npz
from audit.core.results import metric, unavailable
from audit.fidelity.cine import fvd_judge, smoothness_entry
from audit.fidelity.distribution import compare
from audit.fidelity.external import ExternalFeatures
from audit.fidelity.paired import paired_metrics, summarise_paired
from audit.pipeline.context import RunContext
from audit.pipeline.stagekit import audit_subset, check_compatible, judge_memo, real_judged, split_slices, store_section
from cohorts.judge import JudgeUnavailable
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

FEATURES = "judge"
FEATURE_DESCRIPTION = "judge (myopari 0.1.6 FC-DenseNet, pooled 288-d encoder) features"


def run_fidelity(ctx: RunContext) -> dict[str, Any]:
    samples: SampleSet = ctx.artefacts["samples"]
    cfg = ctx.cfg
    if not cfg.audit.fidelity:
        store_section(ctx, "fidelity", {FEATURES: unavailable("fidelity audit switched off (audit.fidelity=false)")})
        return {}
    check_compatible(ctx, samples)
    try:
        memo = judge_memo(ctx)
    except JudgeUnavailable as exc:
        store_section(ctx, "fidelity", {FEATURES: unavailable(str(exc))})
        return {}
    if samples.is_cine:
        section = {
            FEATURES: _distribution(ctx, samples.frames(), memo),  # per-frame image metrics
            "fvd_judge": _cine(ctx, samples, memo),
            "i3d": unavailable("I3D FVD needs a local video network; cmr-audit takes image feature extractors only "
                               "(audit.feature_extractor, applied per frame)"),
        }
        if cfg.audit.feature_extractor:
            section["external"] = _external(ctx, samples.frames())
        store_section(ctx, "fidelity", section)
        return {}
    section: dict[str, Any] = {FEATURES: _distribution(ctx, samples, memo)}
    if cfg.audit.feature_extractor:
        section["external"] = _external(ctx, samples)
    else:
        section["inception"] = unavailable(
            "standard Inception FID/KID need ImageNet weight files that cannot be downloaded here; give a local "
            "TorchScript feature extractor with --set audit.feature_extractor=FILE and its pinned hash "
            "--set audit.feature_extractor_sha256=HASH (sha256sum FILE) to compute them")
    section["paired"] = _paired(ctx)
    store_section(ctx, "fidelity", section)
    return {}


def _distribution(ctx: RunContext, samples: SampleSet, memo) -> dict[str, Any]:
    """Synthetic vs ``test`` and the real floor in judge features (from the memoised judge pass)."""
    idx = audit_subset(ctx, len(samples))
    _, syn_f = memo(samples.images[idx], samples.pixel_spacing)
    test, floor = real_judged(ctx, "test"), real_judged(ctx, "holdout")
    return against_real(ctx, samples, idx, syn_f, test and (test[0], test[2]), floor and (floor[0], floor[2]),
                         FEATURE_DESCRIPTION, "judge", "features_judge.npz")


def _external(ctx: RunContext, samples: SampleSet) -> dict[str, Any]:
    """The same comparison in the user's TorchScript feature space (same image subsets as judge)."""

    a = ctx.cfg.audit
    device = ctx.cfg.device if ctx.cfg.device.startswith("cuda") else "cpu"
    extractor = ExternalFeatures(a.feature_extractor, a.feature_extractor_size, device=device,
                                 sha256=a.feature_extractor_sha256)
    idx = audit_subset(ctx, len(samples))
    test, floor = real_judged(ctx, "test"), real_judged(ctx, "holdout")
    out = against_real(ctx, samples, idx, extractor(samples.images[idx]),
                        test and (test[0], extractor(test[0].images)), floor and (floor[0], extractor(floor[0].images)),
                        extractor.label, "external", "features_external.npz")
    log.info("fidelity: external feature extractor %s (sha256 %s)", extractor.path, extractor.sha256)
    return out


def against_real(ctx: RunContext, samples: SampleSet, idx: np.ndarray, syn_f: np.ndarray, test, floor, label: str,
                 short: str, npz: str) -> dict[str, Any]:
    """FID/KID/PRDC of the synthetic features vs ``test`` and of ``holdout`` vs ``test`` (the real
    floor) at the same n, and their FID ratio. ``test``/``floor``: ``(slices, features)`` or None."""

    cfg = ctx.cfg
    syn_c = samples.subject_ids[idx] if samples.subject_ids is not None else idx.astype(str)
    if test is None:
        return {"synthetic_vs_test": unavailable("the test split is empty: no real images to compare with")}
    ts, test_f = test
    out: dict[str, Any] = {}
    n = len(idx) if floor is None else min(len(idx), len(floor[0]))
    rng = np.random.default_rng([cfg.seed, 7])
    sel = np.sort(rng.choice(len(idx), n, replace=False))
    common = dict(n_boot=min(cfg.audit.bootstrap, 200), seed=cfg.seed, feature_label=label)
    out["synthetic_vs_test"] = compare(syn_f[sel], syn_c[sel], test_f, ts.subject_ids, **common)
    arrays = {"synthetic": syn_f[sel], "synthetic_index": idx[sel], "test": test_f}
    if floor is None:
        out["real_floor"] = unavailable("the holdout split is empty: no second real set for the floor")
    else:
        fs, floor_f = floor
        fsel = np.sort(rng.choice(len(fs), n, replace=False))
        out["real_floor"] = compare(floor_f[fsel], fs.subject_ids[fsel], test_f, ts.subject_ids, **common)
        arrays["real_floor"] = floor_f[fsel]
        syn_fid, floor_fid = out["synthetic_vs_test"].get("fid", {}), out["real_floor"].get("fid", {})
        if "value" in syn_fid and "value" in floor_fid and floor_fid["value"] > 0:
            out["fid_ratio_to_floor"] = metric(
                syn_fid["value"] / floor_fid["value"], "1", n=n,
                method=f"FID(synthetic, test) / FID(holdout, test) in {short} features, same n and covariance estimator")
        else:
            out["fid_ratio_to_floor"] = unavailable("FID of the synthetic set or of the real floor is not available")
    atomic_save_npz(ctx.run_dir.path / npz, **arrays)
    log.info("fidelity: %s-feature FID %s (real floor %s), n=%d per set", short,
             out["synthetic_vs_test"].get("fid", {}).get("value"), out.get("real_floor", {}).get("fid", {}).get("value"), n)
    return out


def _paired(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    out: dict[str, Any] = {}
    sdedit = ctx.run_dir.path / "sdedit.npz"
    if sdedit.is_file():
        pool = split_slices(ctx, cfg.sample.condition_split)
        pool = pool.subset(np.flatnonzero(pool.labelled))
        with np.load(sdedit, allow_pickle=False) as z:
            ref = pool.subset(z["reference_index"])
            for key in sorted(k for k in z.files if k.startswith("strength_")):
                table = paired_metrics(z[key], ref.images)
                out[f"sdedit_{key}"] = summarise_paired(table, ref.subject_ids, n_boot=cfg.audit.bootstrap, seed=cfg.seed,
                                                        what=f"SDEdit output ({key.replace('_', ' ')}, towards the next vendor) vs its reference image")
    else:
        out["sdedit"] = unavailable("no SDEdit outputs (the generator has no SDEdit sampler, or audit.sdedit_images=0)")
    generator = ctx.artefacts.get("generator")
    ae = getattr(generator, "ae", None)
    if ae is not None and hasattr(ae, "reconstruct"):
        test = split_slices(ctx, "test")
        if test is not None:
            test = test.subset(audit_subset(ctx, len(test), stream=4))
            table = paired_metrics(ae.reconstruct(test.images), test.images)
            out["autoencoder"] = summarise_paired(table, test.subject_ids, n_boot=cfg.audit.bootstrap, seed=cfg.seed,
                                                  what="latent autoencoder reconstruction of real test images")
    else:
        out["autoencoder"] = unavailable("the generator has no latent autoencoder")
    return out


def _real_videos(ctx: RunContext, split: str, k: int, stream: int, frames: int):
    """Up to ``k`` real cines of a split (one per subject and slice position), judged.

    Each is resampled to ``frames`` frames evenly spaced over its cardiac cycle (nearest frame),
    the synthetic cines' frame count: the embedding's frame-difference term depends on the
    temporal sampling, so real and synthetic cines must be compared at the same frame count."""
    ids = ctx.artefacts["splits"].assignments.get(split) or []
    prepared = ctx.artefacts["prepared"]
    pool = [(sid, z) for sid in ids for z in range(prepared[sid].n_slices)]
    if len(pool) < 2:
        return None
    rng = np.random.default_rng([ctx.cfg.seed, stream])
    chosen = [pool[i] for i in np.sort(rng.choice(len(pool), min(k, len(pool)), replace=False))]
    memo = judge_memo(ctx)
    labels, feats, subjects = [], [], []
    for sid, z in chosen:
        s = prepared[sid]
        pick = np.unique(np.round(np.linspace(0, s.n_frames - 1, min(frames, s.n_frames))).astype(int))
        lab, f = memo(s.image[pick, z], s.spacing[:2])
        labels.append(lab)
        feats.append(f)
        subjects.append(sid)
    return labels, feats, np.array(subjects)


def _cine(ctx: RunContext, samples: SampleSet, memo) -> dict[str, Any]:
    cfg = ctx.cfg
    n, t = samples.images.shape[:2]
    k = max(2, min(n, cfg.audit.max_images // t))
    test = _real_videos(ctx, "test", k, 9, t)
    if test is None:
        return {"synthetic_vs_test": unavailable("the test split has fewer than 2 cine slices")}
    floor = _real_videos(ctx, "holdout", k, 10, t)
    if floor is not None:
        k = min(k, len(floor[1]))  # the synthetic and floor rows at the same number of videos
    idx = np.sort(np.random.default_rng([cfg.seed, 8]).choice(n, k, replace=False))
    labels, feats = memo(samples.images[idx].reshape(-1, *samples.images.shape[2:]), samples.pixel_spacing)
    syn_l, syn_f = labels.reshape(k, t, *labels.shape[1:]), feats.reshape(k, t, -1)
    syn_c = samples.subject_ids[idx] if samples.subject_ids is not None else idx.astype(str)
    nb = dict(n_boot=min(cfg.audit.bootstrap, 200), seed=cfg.seed)
    return {
        "synthetic_vs_test": fvd_judge(syn_f, syn_c, test[1], test[2], **nb),
        "real_floor": (fvd_judge(floor[1], floor[2], test[1], test[2], **nb) if floor is not None
                       else unavailable("the holdout split has fewer than 2 cine slices")),
        "temporal_smoothness": {
            "synthetic": smoothness_entry(syn_l, syn_c, n_boot=cfg.audit.bootstrap, seed=cfg.seed, what="synthetic cines"),
            "real_test": smoothness_entry(test[0], test[2], n_boot=cfg.audit.bootstrap, seed=cfg.seed, what="real test-split cines"),
        },
    }
