"""The ``privacy`` stage: membership inference (black- and white-box), memorisation and the
empirical DP lower bound, on members (``train``), non-members (every subject never trained on
whose masks did not condition the samples: ``holdout`` + ``test``, :mod:`audit.privacy.design`)
and the attacker's reference data (``reference``); see :func:`audit.privacy.privacy_section`."""

from __future__ import annotations

from typing import Any

from audit.core.errors import UserError
from audit.core.results import unavailable
from audit.pipeline.context import RunContext
from audit.pipeline.stagekit import canary_plan, split_slices, store_section
from audit.privacy import privacy_section, write_artifacts
from audit.privacy.design import membership_design
from generators.data import SliceSet
from generators.sampleset import SampleSet


def run_privacy(ctx: RunContext) -> dict[str, Any]:
    samples: SampleSet = ctx.artefacts["samples"]
    cfg = ctx.cfg
    section: dict[str, Any]
    info: dict[str, Any] = {}
    if not cfg.audit.privacy:
        section = {"audit": unavailable("privacy audit switched off (audit.privacy=false)")}
    else:
        prepared = ctx.artefacts["prepared"]
        design = membership_design(ctx.artefacts["splits"].assignments, condition_split=cfg.sample.condition_split,
                                   sample_subject_ids=samples.subject_ids, cohort_ids=prepared.ids)
        sets = {name: split_slices(ctx, name) for name in ("train", "reference")}
        plan = canary_plan(ctx, sets["train"])
        canaries = None
        if plan is not None:  # canaries' membership is a coin flip: out of the member set, into the one-run audit
            canaries = plan.canary_set(sets["train"])
            sets["train"] = sets["train"].subset(plan.member_indices())
            info["canaries"] = plan.k
        sets["non-member"] = (SliceSet.from_prepared(prepared, list(design.nonmembers), frames=cfg.data.frames)
                              if design.nonmembers else None)
        empty = [name for name, s in sets.items() if s is None]
        if empty:
            section = {"audit": unavailable(f"no {', '.join(empty)} subjects: membership inference needs members, "
                                            f"non-members and reference data ({design.describe()['nonmembers']})")}
        else:
            try:
                section, table, extras = privacy_section(
                    sets["train"], sets["non-member"], sets["reference"], samples, ctx.artefacts.get("generator"),
                    n_boot=cfg.audit.bootstrap, seed=cfg.seed, max_images=cfg.audit.privacy_max_images,
                    claimed_epsilon=ctx.artefacts["dp_claim"][0] if "dp_claim" in ctx.artefacts else None,
                    delta=ctx.artefacts["dp_claim"][1] if "dp_claim" in ctx.artefacts else 0.0,
                    design=design, canaries=canaries,
                )
            except UserError as exc:
                section = {"audit": unavailable(f"privacy audit not possible: {exc}")}
            else:
                write_artifacts(ctx.run_dir.path, table, extras)
                info["members"] = int(table["member"].sum())
    store_section(ctx, "privacy", section)
    return info
