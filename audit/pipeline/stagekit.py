"""What the audit stages share: split slices, the seeded audit subset, the memoised judge and
results sections that survive ``--resume``.

Every audit stage keeps its results section in ``sections/<name>.json`` (atomic write), so a
resumed run reloads a finished audit instead of recomputing it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError
from audit.core.logs import progress_disabled
from audit.pipeline.context import RunContext
from audit.privacy.canaries import CanaryPlan, check_game, plan_canaries
from cohorts import source
from cohorts.cache import load_prepared
from cohorts.judge import Judge
from cohorts.judge.memo import JudgeMemo
from cohorts.preprocess import PreprocessConfig
from generators import distributed
from generators.data import SliceSet
from generators.dp.plan import n_units
from generators.sampleset import SampleSet


def prepared_cohort(ctx: RunContext, *, centre: str = "mask"):
    """The run's cohort on the working grid (``data.target_spacing``, ``data.size``), from the
    content-addressed cohort cache: windows centred on the masks (the cohort stage's), or with
    ``centre="motion"`` placed without the ground truth (:mod:`cohorts.preprocess`)."""
    d = ctx.cfg.data
    root = source.resolve(d.source, phantom_subjects=d.phantom_subjects, phantom_seed=d.phantom_seed)
    config = PreprocessConfig(target_spacing=d.target_spacing, size=d.size, centre=centre)
    return load_prepared(root, config, progress=not progress_disabled())

REAL_STREAM = {"test": 4, "holdout": 5}
"""Seed streams of the real audit subsets (shared with the fidelity stage, so the judge cache hits)."""


def split_slices(ctx: RunContext, split: str) -> SliceSet | None:
    """The 2D slices (``data.frames``) of a split's subjects, or ``None`` when the split is empty."""
    ids = ctx.artefacts["splits"].assignments.get(split) or []
    if not ids:
        return None
    return SliceSet.from_prepared(ctx.artefacts["prepared"], ids, frames=ctx.cfg.data.frames)


def canary_plan(ctx: RunContext, train: SliceSet | None) -> CanaryPlan | None:
    """The run's canary plan (``canaries.json``): drawn from the run seed and checked against the
    DP claim (:func:`audit.privacy.canaries.check_game`) before the first training step, then
    written; read back on ``--resume`` and by the privacy stage. ``None`` without
    ``--dp-audit-canaries``."""
    dp = ctx.cfg.dp
    if not dp.audit_canaries or train is None:
        return None
    path = ctx.run_dir.path / "canaries.json"
    if path.is_file():
        return _stored_plan(ctx, path, train)
    plan = plan_canaries(train.subject_ids, dp.audit_canaries, ctx.cfg.seed, unit=dp.audit_canary_unit)
    # the delta the DP plan will take (generators.dp.plan.make_plan): 1/(10 N) over the units actually trained on
    fit_ids = train.subject_ids[plan.training_indices()]
    delta = float(dp.delta) or 1.0 / (10 * max(1, n_units(fit_ids, dp.unit)))
    ceiling = check_game(plan.k, delta=delta, claimed_epsilon=dp.epsilon or None, unit=plan.unit)
    if distributed.is_main():  # under torchrun every rank draws the same plan; rank 0 records it
        plan.save(path)
    logging.getLogger(__name__).info(
        "one-run DP audit: %d canary %ss (%d training slices), %d of them trained on; at delta %.3g the game can "
        "prove at most epsilon %.2f (canaries.json)", plan.k, plan.unit, plan.indices.size, int(plan.included.sum()),
        delta, ceiling)
    return plan


def _stored_plan(ctx: RunContext, path: Path, train: SliceSet) -> CanaryPlan:
    """``canaries.json`` read back; it must be the plan this run's config would draw (count, unit).
    A v1 file (image canaries, written before the canary unit existed) keeps its image canaries:
    the generator was trained with them."""
    plan = CanaryPlan.load(path, train.subject_ids)
    dp = ctx.cfg.dp
    if plan.k != dp.audit_canaries:
        raise UserError(f"{path}: the plan holds {plan.k} canaries but dp.audit_canaries is {dp.audit_canaries}; "
                        "resume with the same options or start a new run")
    if plan.unit != dp.audit_canary_unit:
        if plan.version >= 2:
            raise UserError(f"{path}: the plan holds {plan.unit} canaries but dp.audit_canary_unit is "
                            f"{dp.audit_canary_unit}; resume with the same options or start a new run")
        logging.getLogger(__name__).warning(
            "%s: a v1 canary plan (image canaries, written by an older cmr-audit); the run keeps them", path)
    return plan


def audit_subset(ctx: RunContext, n: int, stream: int = 2) -> np.ndarray:
    """Sorted indices of at most ``audit.max_images`` of ``n`` items, drawn with the run seed.

    ``stream`` separates independent draws (samples, each real split) so they do not coincide.
    """
    k = min(n, ctx.cfg.audit.max_images)
    return np.sort(np.random.default_rng([ctx.cfg.seed, stream]).choice(n, k, replace=False))


def judge_memo(ctx: RunContext):
    """The run's judge (``audit.judge_precision``, on ``--device``) behind the image-hash cache, built once per run.

    Raises :class:`cohorts.judge.JudgeUnavailable` when the network cannot be fetched.
    """
    memo = ctx.artefacts.get("judge_memo")
    if memo is None:

        # on a CUDA run the judge runs there too (torch runner, fp32); ONNX Runtime on the CPU otherwise
        memo = JudgeMemo(Judge(precision=ctx.cfg.audit.judge_precision, device=ctx.cfg.device))
        ctx.artefacts["judge_memo"] = memo
    return memo


def section_path(ctx: RunContext, name: str) -> Path:
    return ctx.run_dir.path / "sections" / f"{name}.json"


def store_section(ctx: RunContext, name: str, section: dict[str, Any]) -> None:
    """Keep an audit's results section on disk so a resumed run reuses it."""
    atomic_write_json(section_path(ctx, name), section)
    ctx.artefacts[f"results.{name}"] = section


def section_loader(name: str) -> Callable[[RunContext], None]:
    def load(ctx: RunContext) -> None:
        ctx.artefacts[f"results.{name}"] = json.loads(section_path(ctx, name).read_text("utf-8"))

    return load


def check_compatible(ctx: RunContext, samples: SampleSet) -> None:
    """Samples must have the cohort's image size and spacing: the judge's field of view and the
    real comparison sets depend on both."""
    d = ctx.cfg.data
    shape = tuple(samples.images.shape[-2:])
    sp = tuple(float(s) for s in samples.pixel_spacing)
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
