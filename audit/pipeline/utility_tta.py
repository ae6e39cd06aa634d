"""Test-time adaptation in the utility audit: restyle unseen-domain scans towards the training
domain with the generator, then segment them with the net trained on real data.

The second half of Wong et al. (arXiv 2508.06327, "Can Diffusion Models Bridge the Domain Gap in
Cardiac MR Imaging?"): instead of teaching the segmenter new domains, move the new domain's
images towards the one it knows. Here the scans of every *unseen* evaluation domain -- the
leave-one-vendor-out held-out vendor and each vendor of the external dataset
(``--utility-test-data``) -- are restyled with the generator's SDEdit sampler (Meng et al. 2022):
noised to each strength of ``audit.utility_tta_strengths`` and denoised towards a *seen* vendor
(drawn per image with the run seed). **Without labels**: a test scan has no segmentation, so the
mask condition is classifier-free guidance's null mask and the pathology group is null too; only
the vendor steers, and the anatomy is what survives the partial noising. (Conditioning on the
ground truth would leak the answer into the image; conditioning on the net's own prediction would
make the net agree with itself.)

The restyled copies are evaluated beside the raw scans by every net of the stage (same images,
same subjects) under pseudo-vendor keys ``tta<strength>@<vendor>`` that never enter the per-vendor
figures. The results (``utility.test_time_adaptation``) compare, for the ``real`` setting's nets,
the adapted scans with the raw ones, paired by subject: ``<strength key>.<vendor>`` holds the
absolute Dice / HD95 / ASSD on the adapted scans (``adapted``) and the paired differences
(``vs_raw``: ``dice_diff``, ``hd95_diff_mm`` ... with the verdict in ``notes``). A generator
without SDEdit, or a run without an unseen domain, gives one *unavailable* entry with the reason.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from audit.core.logs import progress_disabled
from audit.core.results import unavailable
from audit.pipeline.utility_external import is_external
from audit.pipeline.utility_options import vendor_key
from audit.pipeline.utility_plan import SubjectPlan
from audit.pipeline.utility_pools import sdedit_chunk
from audit.utility.metrics import absolute_entries, paired_entries
from generators.data import SliceSet

log = logging.getLogger(__name__)

SETTING = "real"
"""The setting whose nets segment the adapted scans (the paper's real-trained segmenter)."""

__all__ = ["SETTING", "adapt_unseen", "strength_key", "tta_section", "tta_vendor", "unavailable_tta",
           "unseen_vendors"]


def strength_key(strength: float) -> str:
    return f"sdedit_{strength:g}"


def tta_vendor(strength: float, vendor: str) -> str:
    """The pseudo-vendor key of ``vendor``'s scans adapted at ``strength``."""
    return f"tta{strength:g}@{vendor}"


def unseen_vendors(plan: SubjectPlan) -> list[str]:
    """Evaluation vendors no utility net trained on: the held-out vendor and the external ones."""
    return [v for v in plan.vendors if (v == plan.heldout_vendor or is_external(v)) and plan.evaluate.get(v)]


def adapt_unseen(generator, evaluation: SliceSet, plan: SubjectPlan, strengths: tuple[float, ...], *, seed: int,
                 sampling: dict[str, Any]) -> tuple[SliceSet | None, str]:
    """The unseen vendors' evaluation slices restyled at every strength, as one :class:`SliceSet`
    with pseudo-vendor keys (:func:`tta_vendor`), or ``(None, reason)``."""
    if not strengths:
        return None, "test-time adaptation switched off (audit.utility_tta_strengths is empty)"
    if generator is None or not hasattr(generator, "sdedit"):
        name = "an external sample set" if generator is None else f"generator '{getattr(generator, 'name', type(generator).__name__)}'"
        return None, f"{name} has no SDEdit sampler to restyle test scans with (only the diffusion and flow families have one)"
    unseen = unseen_vendors(plan)
    if not unseen:
        return None, ("no unseen domain to adapt: the cohort has no held-out vendor (one vendor) and no external "
                      "evaluation dataset (--utility-test-data)")
    known = list(getattr(getattr(generator, "vocab", None), "vendors", []) or [])
    targets = [v for v in known if v != plan.heldout_vendor]
    if not targets:
        return None, "the generator knows no seen vendor to restyle towards"
    if hasattr(generator, "sampling"):
        generator.sampling = dict(sampling)
    chunk, extra = sdedit_chunk(generator)
    rng = np.random.default_rng([seed, 18])
    parts: list[SliceSet] = []
    t0 = time.perf_counter()
    jobs = [(s, v, np.flatnonzero(evaluation.vendor == v)) for s in strengths for v in unseen]
    for strength, vendor, idx in tqdm(jobs, desc="utility: test-time adaptation", unit="set", disable=progress_disabled(),
                                      leave=False):
        src = evaluation.subset(idx)
        target = np.asarray(targets)[rng.integers(len(targets), size=len(src))]
        out = np.empty_like(src.images)
        for lo in range(0, len(src), chunk):
            hi = min(lo + chunk, len(src))
            out[lo:hi] = generator.sdedit(src.images[lo:hi], None, strength=strength, vendor=target[lo:hi], group=None,
                                          seed=seed + 1000 * len(parts) + lo, **extra)
        src.images = np.clip(out, 0, 1).astype(np.float32)
        src.vendor = np.full(len(src), tta_vendor(strength, vendor))
        parts.append(src)
    n = sum(len(p) for p in parts)
    log.info("utility: %d unseen-domain test slices restyled without labels (strengths %s, towards %s) in %.1f s", n,
             ", ".join(f"{s:g}" for s in strengths), ", ".join(targets), time.perf_counter() - t0)
    return SliceSet.concat(parts), ", ".join(targets)


def tta_section(table, plan: SubjectPlan, strengths: tuple[float, ...], targets: str, *, seeds: int, n_boot: int,
                seed: int) -> dict[str, Any]:
    """``utility.test_time_adaptation`` from the per-image table (see the module docstring)."""
    seed_list = list(range(seeds))
    real = table[table["setting"] == SETTING]
    out: dict[str, Any] = {}
    for strength in strengths:
        node = out[strength_key(strength)] = {}
        for vendor in unseen_vendors(plan):
            subjects = plan.evaluate[vendor]
            raw = real[real["vendor"] == vendor]
            adapted = real[real["vendor"] == tta_vendor(strength, vendor)]
            what = (f"the {SETTING} nets on vendor {vendor}'s scans restyled without labels by the generator's SDEdit "
                    f"sampler (strength {strength:g}, towards {targets})")
            node[vendor_key(vendor)] = {
                "adapted": absolute_entries(adapted, subjects, seed_list, n_boot=n_boot, seed=seed, what=what),
                "vs_raw": paired_entries(adapted, raw, subjects, seed_list, seed_list, n_boot=n_boot, seed=seed,
                                         setting=f"adapted (SDEdit {strength:g})", baseline="raw scans"),
            }
    return out


def unavailable_tta(reason: str) -> dict[str, Any]:
    """The section's ``test_time_adaptation`` node when nothing was adapted."""
    return {"adaptation": unavailable(reason)}
