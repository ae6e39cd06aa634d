"""The ``privacy`` stage: membership inference (black- and white-box), memorisation and the
empirical DP lower bound, on members (``train``), non-members (``holdout``) and the attacker's
reference data (``reference``); see :func:`audit.privacy.privacy_section`."""

from __future__ import annotations

from typing import Any

from audit.errors import UserError
from audit.results import unavailable
from audit.run import RunContext
from audit.stagekit import split_slices, store_section
from generators.sampleset import SampleSet


def run_privacy(ctx: RunContext) -> dict[str, Any]:
    from audit.privacy import privacy_section, write_artifacts

    samples: SampleSet = ctx.artefacts["samples"]
    cfg = ctx.cfg
    section: dict[str, Any]
    info: dict[str, Any] = {}
    if not cfg.audit.privacy:
        section = {"audit": unavailable("privacy audit switched off (audit.privacy=false)")}
    else:
        sets = {name: split_slices(ctx, name) for name in ("train", "holdout", "reference")}
        empty = [name for name, s in sets.items() if s is None]
        if empty:
            section = {"audit": unavailable(f"split(s) {', '.join(empty)} are empty: membership inference needs members, non-members and reference data")}
        else:
            try:
                section, table, extras = privacy_section(
                    sets["train"], sets["holdout"], sets["reference"], samples, ctx.artefacts.get("generator"),
                    n_boot=cfg.audit.bootstrap, seed=cfg.seed, max_images=cfg.audit.max_images,
                    claimed_epsilon=ctx.artefacts["dp_claim"][0] if "dp_claim" in ctx.artefacts else None,
                    delta=ctx.artefacts["dp_claim"][1] if "dp_claim" in ctx.artefacts else 0.0,
                )
            except UserError as exc:
                section = {"audit": unavailable(f"privacy audit not possible: {exc}")}
            else:
                write_artifacts(ctx.run_dir.path, table, extras)
                info["members"] = int(table["member"].sum())
    store_section(ctx, "privacy", section)
    return info
