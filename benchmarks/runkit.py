"""Helpers shared by the benchmark scripts that re-audit finished run directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def scratch_context(src: Path, work: Path):
    """A RunContext that reads the finished run ``src`` and writes into ``work`` (the source is never written)."""
    from audit import config as C
    from audit.rundir import RunDir
    from audit.run import RunContext
    from audit.stages import load_cohort
    from generators import registry
    from generators.sampleset import SampleSet

    cfg = C.config_from_dict(json.loads((src / "config.json").read_text("utf-8")))
    w, s = work.resolve(), src.resolve()
    if w == s or s.is_relative_to(w) or w.is_relative_to(s):
        raise SystemExit(f"--work {work} overlaps the run directory {src}: the source run is only read, never written")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in ("config.json", "env.json", "splits.json", "splits_lovo.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, work / name)
    entry = registry.get(cfg.generator)
    ctx = RunContext(cfg=cfg, run_dir=RunDir(work), entry=entry)
    load_cohort(ctx)
    ctx.artefacts["generator"] = entry.cls.load(src / "generator")
    ctx.artefacts["samples"] = SampleSet.load(src / "samples.npz")
    return ctx
