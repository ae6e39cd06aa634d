"""Helpers shared by the benchmark scripts that re-audit finished run directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def scratch_context(src: Path, work: Path):
    """A RunContext that reads the finished run ``src`` and writes into ``work`` (the source is never written)."""
    from audit.pipeline import config as C
    from audit.pipeline.rundir import RunDir
    from audit.pipeline.context import RunContext
    from audit.pipeline.stages import load_cohort
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
    for section in sorted((src / "sections").glob("*.json")):  # the finished stages' figures (e.g. anatomy for utility)
        ctx.artefacts[f"results.{section.stem}"] = json.loads(section.read_text("utf-8"))
    return ctx


def run_state(run: Path) -> dict:
    """A run directory's ``state.json`` (``{}`` before the run started)."""
    p = run / "state.json"
    return json.loads(p.read_text("utf-8")) if p.is_file() else {}


def _numeric_leaves(node, prefix: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numeric_leaves(v, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            key = v.get("family", v.get("name", i)) if isinstance(v, dict) else i
            key = f"{key}/{v['phase']}" if isinstance(v, dict) and "phase" in v else key
            yield from _numeric_leaves(v, f"{prefix}{key}.")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix[:-1], float(node)


def compare_with_recorded(new: dict, recorded_path: Path, *, git_ref: str = "HEAD") -> list[str]:
    """Lines ``key: old -> new (x ratio)`` for every numeric figure present in both ``new`` and the
    last recorded result (``recorded_path`` as committed at ``git_ref``; else the file on disk)."""
    import subprocess

    old = None
    try:
        rel = recorded_path.resolve().relative_to(Path(__file__).resolve().parents[1])
        out = subprocess.run(["git", "show", f"{git_ref}:{rel.as_posix()}"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=30)
        if out.returncode == 0:
            old = json.loads(out.stdout)
    except (ValueError, OSError, json.JSONDecodeError, subprocess.SubprocessError):
        old = None
    if old is None and recorded_path.is_file():
        old = json.loads(recorded_path.read_text("utf-8"))
    if old is None:
        return [f"no recorded run to compare with ({recorded_path})"]
    before = dict(_numeric_leaves(old))
    lines = [f"compared with {recorded_path.name} at {git_ref} ({old.get('date', 'undated')}):"]
    for key, value in _numeric_leaves(new):
        if key in before and not key.startswith(("machine.", "date")):
            b = before[key]
            ratio = f"x{value / b:.2f}" if b else "n/a"
            lines.append(f"  {key}: {b:g} -> {value:g} ({ratio})")
    return lines
