"""The words of the distribution entries: the method strings and notes that ``results.json``
carries for FID, KID and PRDC, built from the numbers of
:func:`audit.fidelity.distribution_stats.distribution_stats` (which holds no wording)."""

from __future__ import annotations

from typing import Any

from audit.core.results import metric, unavailable
from audit.fidelity.distribution_stats import PRDC_NAMES, DistributionStats
from audit.fidelity.frechet import ESTIMATOR_NAMES


def set_sizes(s: DistributionStats) -> str:
    """Both sets' image and subject counts, as every entry's notes end."""
    return (f"candidate {s.n_candidate} images / {s.candidate_subjects} subjects, "
            f"target {s.n_target} images / {s.target_subjects} subjects")


def no_ci_note(s: DistributionStats) -> str | None:
    """Why no entry has a CI (None when the bootstrap ran)."""
    if s.no_ci == "n_boot":
        return "no CI: n_boot = 0"
    if s.no_ci == "subjects":
        return f"no CI: the subject-level bootstrap needs at least 2 subjects per set ({set_sizes(s)})"
    return None


def prdc_reason(s: DistributionStats) -> str:
    """Why precision / recall / density / coverage were not computed."""
    if s.prdc_skip == "subjects":
        return (f"needs at least k = {s.k} images of other subjects around every image "
                f"(subject-aware k-NN radii); the {' and '.join(s.prdc_sparse_sets)} set has too few ({set_sizes(s)})")
    return f"needs at least k+1 = {s.k + 1} images per set ({set_sizes(s)})"


def _entry(s: DistributionStats, name: str, unit: str, method: str, notes: list[str]) -> dict[str, Any]:
    """A metric entry with its interval described in the method and the bootstrap's details in the notes."""
    e = s.estimates[name]
    notes = list(notes)
    boot_note = no_ci_note(s)
    if boot_note:
        notes.append(boot_note)
    elif e.ci is None:
        notes.append(f"no CI: only {e.n_ok} of {s.n_boot} bootstrap replicates were computable "
                     f"(too few distinct images)")
    else:
        level = f"{100 * (1 - s.alpha):g}%"
        method += (f"; subject-level cluster bootstrap {level} CI (percentile, recentred on the estimate; "
                   f"{e.n_ok} replicates)")
        notes.append(f"bootstrap median - estimate = {e.shift:+.4g} (resampling bias, removed by recentring)")
        if e.n_ok < s.n_boot:
            notes.append(f"{s.n_boot - e.n_ok} of {s.n_boot} replicates not computable (too few distinct images)")
    notes.append(set_sizes(s))
    return metric(e.value, unit, method=method, ci=e.ci, n=s.n_candidate, notes="; ".join(notes))


def distribution_entries(s: DistributionStats) -> dict[str, Any]:
    """Results entries ``fid``, ``kid``, ``kid_std``, ``precision``, ``recall``, ``density``, ``coverage``."""
    space, d, m_kid = s.space, s.d, s.kid_subset_size
    est_txt = ESTIMATOR_NAMES[s.estimator] + (
        ", n <= d" if s.estimator == "ledoit_wolf" and min(s.n_candidate, s.n_target) <= d else "")
    out: dict[str, Any] = {}
    out["fid"] = _entry(s, "fid", "feature units^2", f"FID (Heusel et al. 2017) in {space} (d = {d}; {est_txt})",
                        ["FID is biased upward by ~1/n: compare only at equal sample sizes and estimator"])
    out["kid"] = _entry(s, "kid", "1", f"KID (Binkowski et al. 2018) in {space}: unbiased MMD^2, polynomial kernel "
                                       f"(x.y/{d} + 1)^3, mean over {s.kid_subsets} subsets of {m_kid} images per set",
                        [f"std over subsets = {s.kid_std:.4g} (entry kid_std)",
                         "bootstrap replicate: one unbiased MMD^2 on the whole resampled sets "
                         "(copies from another draw of the same subject not paired)"])
    out["kid_std"] = metric(s.kid_std, "1", method=f"standard deviation (ddof=0) of KID over {s.kid_subsets} subsets "
                                                    f"of {m_kid} images per set, in {space}", n=s.n_candidate,
                            notes=set_sizes(s))
    for name in PRDC_NAMES:
        if s.prdc_skip is None:
            out[name] = _entry(s, name, "1", f"{name} (Naeem et al. 2020) in {space}, k = {s.k} nearest neighbours "
                                             f"of other subjects (subject-aware radii), Euclidean; target = real, "
                                             f"candidate = fake",
                               ["bootstrap: copies of an image and images of its own subject are never its neighbours"])
        else:
            out[name] = unavailable(f"{name} (Naeem et al. 2020) with k = {s.k} {prdc_reason(s)}")
    return out
