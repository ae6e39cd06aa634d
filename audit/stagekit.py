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

from audit.atomic import atomic_write_json
from audit.run import RunContext
from generators.data import SliceSet


def split_slices(ctx: RunContext, split: str) -> SliceSet | None:
    """The 2D slices (``data.frames``) of a split's subjects, or ``None`` when the split is empty."""
    ids = ctx.artefacts["splits"].assignments.get(split) or []
    if not ids:
        return None
    return SliceSet.from_prepared(ctx.artefacts["prepared"], ids, frames=ctx.cfg.data.frames)


def canary_plan(ctx: RunContext, train: SliceSet | None):
    """The run's canary plan (``canaries.json``): drawn from the run seed and written before the
    first training step, read back on ``--resume`` and by the privacy stage; ``None`` without
    ``--dp-audit-canaries``."""
    k = ctx.cfg.dp.audit_canaries
    if not k or train is None:
        return None
    from audit.privacy.canaries import CanaryPlan, plan_canaries

    path = ctx.run_dir.path / "canaries.json"
    if path.is_file():
        return CanaryPlan.load(path, len(train))
    plan = plan_canaries(train.subject_ids, k, ctx.cfg.seed)
    from generators import distributed

    if distributed.is_main():  # under torchrun every rank draws the same plan; rank 0 records it
        plan.save(path)
    logging.getLogger(__name__).info("one-run DP audit: %d canary images, %d of them trained on (canaries.json)", plan.k, int(plan.included.sum()))
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
        from cohorts.judge import Judge
        from cohorts.judge.memo import JudgeMemo

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
