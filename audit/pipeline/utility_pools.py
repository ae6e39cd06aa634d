"""The training data of every utility setting (``real``, ``real+augmentation``, ``synthetic``,
``real+synthetic``, ``real+sdedit``), or the reason a setting is unavailable; see
:mod:`audit.pipeline.utility_stage` for what each setting means."""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from audit.core.logs import progress_disabled
from audit.pipeline.utility_options import UtilityOptions
from audit.pipeline.utility_plan import SubjectPlan
from audit.utility.net import Pool
from generators.data import SliceSet
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)

SETTINGS = ("real", "real+augmentation", "synthetic", "real+synthetic", "real+sdedit")
SYNTHETIC_SETTINGS = ("synthetic", "real+synthetic", "real+sdedit")
"""The settings that use the generator; each is compared with ``real`` and with ``real+augmentation``."""
MASK_SETTINGS = ("synthetic", "real+synthetic")
"""The settings that train on the generator's masks (``real+sdedit`` reuses the real masks)."""

@dataclass
class SettingData:
    train: Pool
    val: Pool
    describe: str
    notes: list[str] = field(default_factory=list)
    strong: bool = False
    """Train with the strong conventional augmentation (:class:`audit.utility.augment.StrongAugment`)."""


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
        "real+augmentation": SettingData(real_pool, val_pool,
                                         f"the same {n_real} real training slices with strong conventional augmentation "
                                         "(affine, elastic, bias field, gamma, contrast, noise, blur; "
                                         "audit.utility.augment.StrongAugment); the same validation", strong=True),
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
