"""The provenance section: what produced the figures -- run identity, input hashes, code version,
seed, environment and package versions, the resolved configuration and the stage timings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from reports.formatting import label
from reports.sections.base import ReportContext, Section


def _sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def _plain(v: Any) -> str:
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(v)


def _flatten(node: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def provenance_section(ctx: ReportContext) -> Section:
    """Provenance: run identity, hashes, git commit, seed, environment and packages, the full
    configuration and the stage timings."""
    sec, _ = ctx.open_section("provenance", "Provenance",
                              intro="What produced these figures: the run, its inputs' hashes, the code version, "
                                    "the environment, the resolved configuration and how long each stage took.")
    doc = ctx.inp.results or {}
    prov = doc.get("provenance") if isinstance(doc.get("provenance"), Mapping) else {}
    _run_table(ctx, sec, doc, prov)
    _environment_tables(ctx, sec)
    timings = _timings(ctx, prov)
    if timings:
        tt = ctx.table("provenance_timings", "Stage timings", ["seconds", "finished (UTC)", "details"], row_header="stage")
        for stage, (secs, fin, det) in timings.items():
            tt.add(stage, [secs, fin, det])
        sec.table(tt)
    if ctx.inp.config:
        tc = ctx.table("provenance_config", "Configuration (config.json)", ["value"], row_header="key")
        for k, v in _flatten(ctx.inp.config):
            tc.add(k, [_plain(v)])
        sec.table(tc)
    else:
        sec.notes.append(f"config.json is {ctx.inp.errors.get('config.json', 'missing')}: no configuration table.")
    if ctx.inp.state is None:
        sec.notes.append(f"state.json is {ctx.inp.errors.get('state.json', 'missing')}: timings from results.json only.")
    return sec


def _run_table(ctx: ReportContext, sec: Section, doc: Mapping[str, Any], prov: Mapping[str, Any]) -> None:
    """Run identity, schema, commit, seed and hashes."""
    run = doc.get("run") if isinstance(doc.get("run"), Mapping) else {}
    env = ctx.inp.env or {}
    git = env.get("git") if isinstance(env.get("git"), Mapping) else {}
    t = ctx.table("provenance_run", "Run", ["value"], row_header="field")
    for k in ("id", "generator", "preset", "created_utc", "finished_utc"):
        if k in run:
            t.add(label(k), [str(run[k])])
    t.add("schema", [str(doc.get("schema", "n/a"))])
    commit = prov.get("git_commit") or git.get("commit")
    t.add("git commit", [f"{commit}{' (uncommitted changes)' if git.get('dirty') else ''}" if commit else "n/a"])
    t.add("seed", [str(prov.get("seed", (ctx.inp.config or {}).get("seed", "n/a")))])
    t.add("config sha256", [str(prov.get("config_sha256", "n/a"))])
    t.add("data hash", [str(prov.get("data_hash") or env.get("data_hash") or "n/a")])
    for name in ("results.json", "samples.npz"):
        digest = _sha256(ctx.inp.run_dir / name)
        t.add(f"{name} sha256", [digest or "n/a (missing)"])
    for k, v in prov.items():
        if k not in ("config_sha256", "data_hash", "git_commit", "seed", "timing_s"):
            t.add(label(k), [_plain(v)])
    sec.table(t)


def _environment_tables(ctx: ReportContext, sec: Section) -> None:
    """The environment (env.json) and the package versions."""
    env = ctx.inp.env or {}
    if not env:
        sec.notes.append(f"env.json is {ctx.inp.errors.get('env.json', 'missing')}: no versions.")
        return
    te = ctx.table("provenance_env", "Environment", ["value"], row_header="field")
    for k, v in env.items():
        if k in ("packages", "git"):
            continue
        te.add(label(k), [_plain(v)])
    sec.table(te)
    pk = env.get("packages")
    if isinstance(pk, Mapping):
        tp = ctx.table("provenance_packages", "Package versions", ["version"], row_header="package")
        for k, v in pk.items():
            tp.add(str(k), [str(v)])
        sec.table(tp)


def _timings(ctx: ReportContext, prov: Mapping[str, Any]) -> dict[str, tuple[Any, str, str]]:
    out: dict[str, tuple[Any, str, str]] = {}
    stages = (ctx.inp.state or {}).get("stages")
    if isinstance(stages, Mapping):
        for stage, info in stages.items():
            if not isinstance(info, Mapping):
                continue
            secs = info.get("seconds")
            det = ", ".join(f"{label(k)} {_plain(v)}" for k, v in info.items() if k not in ("seconds", "finished_utc"))
            out[str(stage)] = (float(secs) if isinstance(secs, (int, float)) else "n/a",
                               str(info.get("finished_utc", "")), det)
    ts = prov.get("timing_s")
    if isinstance(ts, Mapping):
        for stage, secs in ts.items():
            if str(stage) not in out:
                out[str(stage)] = (float(secs) if isinstance(secs, (int, float)) else "n/a", "", "from results.json")
    return out
