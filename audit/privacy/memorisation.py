"""Nearest-neighbour memorisation analysis of a synthetic sample set.

For every synthetic image, its nearest training (member) image and nearest non-member image
(the privacy audit's non-members: ``holdout`` + ``test`` subjects, :mod:`audit.privacy.design`;
"holdout" below and in the result keys) are found in two spaces (:mod:`audit.privacy.space`): pixel space with the
correlation distance ``1 - r`` and the PCA embedding fitted on reference images.

* **DCR ratio** (distance to closest record; Zhao et al. 2021 / Platzer & Reutterer 2021
  style, and the "nearest-neighbour distance ratio" of the review *Synthetic Cardiac MRI Image
  Generation using Deep Generative Models*, Kumarasinghe et al., arXiv 2603.24764): the
  share of synthetic images whose closest real image is a training image rather than a holdout
  image. The larger of the two real sets is subsampled (seeded) to the size of the smaller,
  otherwise the bigger set would win by numbers alone (first to the same number of subjects,
  then of images: more subjects mean more diversity and closer neighbours by chance); 0.5 = no preference (ideal), 1 = every
  sample sits on the training data. Ties count one half.
* **Copy rate** (Carlini et al. 2023, *Extracting training data from diffusion models*; Dar et
  al. 2024 for MRI): the share of synthetic images closer to some training image than a
  threshold calibrated on real data, the 1st percentile of the holdout-to-train nearest
  distances -- so an unseen real image would be flagged a "copy" about 1 % of the time.
* **Top-k closest pairs** (indices and distances only; images appear in reports on opt-in).

CIs: :func:`audit.core.stats.cluster_bootstrap` over synthetic images, clustered by their
conditioning subject when the sample set has ``subject_ids`` (otherwise per image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.core.results import metric
from audit.core.stats import cluster_bootstrap
from audit.privacy import space

COPY_PERCENTILE = 1.0


@dataclass
class SpaceResult:
    name: str
    unit_note: str
    entries: dict[str, Any]
    syn_to_train: np.ndarray  # (M,) distance of each synthetic image to its nearest train image
    syn_train_index: np.ndarray  # (M,) index of that train image
    real_to_syn: np.ndarray  # (n_train + n_holdout,) distance of each real image to its nearest synthetic image
    real_syn_index: np.ndarray
    threshold: float
    top_pairs: list[dict[str, Any]]
    histogram: dict[str, list[float]]


def _features(name: str, images: np.ndarray, emb: space.Embedding | None) -> np.ndarray:
    return space.correlation_features(images) if name == "pixel_correlation" else emb.transform(images)


def _to_distance(name: str, d: np.ndarray) -> np.ndarray:
    """Euclidean distance on the features -> the reported distance (``1 - r`` for correlation)."""
    d = d.astype(np.float64)
    return d ** 2 / 2.0 if name == "pixel_correlation" else d


def analyse_space(name: str, synthetic: np.ndarray, train: np.ndarray, holdout: np.ndarray, *,
                  train_subjects: np.ndarray, holdout_subjects: np.ndarray, emb: space.Embedding | None, syn_clusters: np.ndarray | None,
                  n_boot: int, seed: int, top_k: int = 20) -> SpaceResult:
    unit_note = ("correlation distance 1 - r over pixels (Pearson r)" if name == "pixel_correlation"
                 else "Euclidean distance in the PCA embedding of reference images (intensity units)")
    fs = _features(name, synthetic, emb)
    ft = _features(name, train, emb)
    fh = _features(name, holdout, emb)
    m = len(fs)
    d_st, i_st = space.nearest(fs, ft, k=1)
    d_st, i_st = _to_distance(name, d_st[:, 0]), i_st[:, 0]
    # DCR ratio: all real images, per-subject nearest distances, odds-adjusted for the set sizes
    g_t, _ = space.nearest_by_group(fs, ft, train_subjects)
    g_h, _ = space.nearest_by_group(fs, fh, holdout_subjects)
    d_tb, d_hb = g_t.min(axis=1), g_h.min(axis=1)
    closer = np.where(d_tb < d_hb, 1.0, np.where(d_tb == d_hb, 0.5, 0.0))
    q0 = g_t.shape[1] / (g_t.shape[1] + g_h.shape[1])
    # copy threshold from holdout-to-train nearest distances
    d_ht = _to_distance(name, space.nearest(fh, ft, k=1)[0][:, 0])
    tau = float(np.percentile(d_ht, COPY_PERCENTILE))
    copies = (d_st < tau).astype(np.float64)
    # each real image's nearest synthetic image (for the risk table)
    d_rs, i_rs = space.nearest(np.concatenate([ft, fh]), fs, k=1)
    d_rs, i_rs = _to_distance(name, d_rs[:, 0]), i_rs[:, 0]

    clusters = syn_clusters if syn_clusters is not None else np.arange(m)
    by = "conditioning subject" if syn_clusters is not None else "synthetic image"
    boot = f"bootstrap 95% CI over synthetic images clustered by {by}"
    entries = {
        "dcr_ratio": metric(adjust_share(closer.mean(), q0), "1", n=m,
                            ci=_ci(dcr_ratio_ci(g_t, g_h, clusters, n_boot=n_boot, seed=seed)),
                            method=f"share q of synthetic images whose nearest real image ({unit_note}) is a train image "
                                   f"rather than a non-member (holdout) image (ties 1/2), odds-adjusted for the subject counts: "
                                   f"q(1-q0)/(q(1-q0)+(1-q)q0) with q0 = n_train_subjects/(n_train+n_nonmember subjects), "
                                   f"the share expected if samples were unrelated to both; 0.5 = ideal, 1 = all closer to "
                                   f"train; two-way bootstrap 95% CI resampling synthetic images (clustered by {by}) and "
                                   f"train and non-member subjects",
                            notes=f"raw share {closer.mean():.4f}, q0 {q0:.4f}"),
        "copy_rate": metric(copies.mean(), "fraction", n=m,
                            ci=_ci(cluster_bootstrap(copies, clusters, n_boot=n_boot, seed=seed)),
                            method=f"share of synthetic images whose nearest train image is closer than the copy "
                                   f"threshold ({unit_note}); {boot}"),
        "copy_threshold": metric(tau, "1", n=len(d_ht),
                                 method=f"{COPY_PERCENTILE:g}st percentile of non-member-to-train nearest distances "
                                        f"({unit_note}); a real unseen image is a 'copy' about 1% of the time"),
        "holdout_copy_rate": metric(float((d_ht < tau).mean()), "fraction", n=len(d_ht),
                                    method="share of non-member (holdout) images closer to a train image than the copy threshold "
                                           "(calibration check, about 0.01 by construction)"),
        "nn_distance_to_train_median": metric(float(np.median(d_st)), "1", n=m,
                                              method=f"median over synthetic images of the nearest train distance ({unit_note})"),
        "holdout_nn_distance_to_train_median": metric(float(np.median(d_ht)), "1", n=len(d_ht),
                                                      method=f"median over non-member (holdout) images of the nearest train distance ({unit_note})"),
    }
    order = np.argsort(d_st, kind="mergesort")[:top_k]
    top = [{"synthetic_index": int(j), "train_index": int(i_st[j]), "train_subject": str(train_subjects[i_st[j]]),
            "distance": float(d_st[j])} for j in order]
    hi_edge = float(np.percentile(np.r_[d_st, d_ht], 99.5)) or 1.0
    bins = np.linspace(0.0, hi_edge, 41)
    hist = {"bin_edges": bins.round(8).tolist(),
            "synthetic_to_train": np.histogram(np.clip(d_st, 0, hi_edge), bins)[0].tolist(),
            "holdout_to_train": np.histogram(np.clip(d_ht, 0, hi_edge), bins)[0].tolist(),
            "copy_threshold": tau}
    return SpaceResult(name, unit_note, entries, d_st, i_st, d_rs, i_rs, tau, top, hist)


def _ci(ci: tuple[float, float]) -> tuple[float, float] | None:
    return ci if np.all(np.isfinite(ci)) else None


def dcr_ratio_ci(g_t: np.ndarray, g_h: np.ndarray, clusters: np.ndarray, *, n_boot: int, seed: int,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of the DCR ratio resampling synthetic clusters *and* real subjects.

    ``g_t``/``g_h``: (M, subjects) nearest distances per train/holdout subject. The ratio depends
    on which real subjects were drawn as much as on the synthetic images (a "hub" subject near
    many samples moves it), so both are resampled (a two-way cluster bootstrap).
    """
    rng = np.random.default_rng([seed, 6])
    ids, inv = np.unique(np.asarray(clusters), return_inverse=True)
    stats = np.empty(n_boot)
    for b in range(n_boot):  # loop over replicates only; each is vectorised over images and subjects
        w = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))[inv].astype(np.float64)
        pt = np.unique(rng.integers(0, g_t.shape[1], g_t.shape[1]))
        ph = np.unique(rng.integers(0, g_h.shape[1], g_h.shape[1]))
        dt, dh = g_t[:, pt].min(axis=1), g_h[:, ph].min(axis=1)
        c = np.where(dt < dh, 1.0, np.where(dt == dh, 0.5, 0.0))
        stats[b] = adjust_share((w * c).sum() / w.sum(), len(pt) / (len(pt) + len(ph)))
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def adjust_share(q: float, q0: float) -> float:
    """Map the raw share ``q`` to 0.5 at its null value ``q0`` (odds ratio form); 0 and 1 stay fixed."""
    num = q * (1 - q0)
    den = num + (1 - q) * q0
    return float(num / den) if den > 0 else 0.5
