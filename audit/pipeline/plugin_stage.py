"""The ``plugins`` stage: metrics registered by third-party packages (``cmr_audit.metrics``).

Each plugin metric gets the run's sample set and the real slices of every split, and returns
``{figure: entry}``; the figures land in ``results[<section>]["plugins"][<metric name>]``. A
plugin that is broken, raises, or returns something that is not a metric / unavailable entry
is recorded as unavailable with the reason -- the run never fails because of a plugin, and a
plugin never gets to write a bare number. Without plugins the stage does nothing.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping

from audit.core import plugins
from audit.core.results import unavailable
from audit.pipeline.context import RunContext
from audit.pipeline.stagekit import split_slices, store_section

log = logging.getLogger(__name__)

_METRIC_KEYS = {"value", "unit", "ci_low", "ci_high", "n", "method"}


def entry_problem(e: Any) -> str:
    """Why ``e`` is not a valid results entry ('' if it is one)."""
    if not isinstance(e, Mapping):
        return f"a {type(e).__name__}, not an entry (use audit.core.results.metric or unavailable)"
    if "status" in e:
        ok = e.get("status") == "unavailable" and isinstance(e.get("reason"), str) and e["reason"].strip()
        return "" if ok and set(e) == {"status", "reason"} else "malformed unavailable entry"
    missing = _METRIC_KEYS - set(e)
    if missing:
        return f"metric entry without {', '.join(sorted(missing))}"
    extra = set(e) - _METRIC_KEYS - {"notes", "params"}
    if extra:
        return f"metric entry with unknown key(s) {', '.join(sorted(extra))}"
    params = e.get("params", {})
    if not isinstance(params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for k, v in params.items()):
        return "params must map names to finite numbers"
    v = e["value"]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return f"value {v!r} is not a finite number"
    if not isinstance(e["unit"], str) or not e["unit"] or not isinstance(e["method"], str) or not e["method"]:
        return "unit and method must be non-empty strings"
    return ""


def run_plugin_metrics(ctx: RunContext) -> dict[str, Any]:
    found = plugins.metrics()
    if not found:
        return {}
    real = {name: split_slices(ctx, name) for name in ("train", "holdout", "reference", "test")}
    samples = ctx.artefacts["samples"]
    touched: dict[str, dict[str, Any]] = {}
    for p in found:
        section = "fidelity" if p.broken else p.obj.section
        if p.broken:
            figures: dict[str, Any] = {"metric": unavailable(f"metric plugin {p.source} is broken: {p.error}")}
        else:
            try:
                got = p.obj.compute(samples, real, seed=ctx.cfg.seed)
                if not isinstance(got, Mapping) or not got:
                    raise TypeError(f"compute() returned {type(got).__name__}, expected a non-empty mapping of entries")
                figures = {}
                for key, e in got.items():
                    why = entry_problem(e)
                    figures[str(key)] = unavailable(f"plugin returned an invalid entry: {why}") if why else dict(e)
            except Exception as exc:  # noqa: BLE001 - a failing plugin must not lose the run
                log.warning("metric plugin %s failed", p.name, exc_info=True)
                figures = {"metric": unavailable(f"metric plugin {p.source} failed: {type(exc).__name__}: {exc}")}
        node = touched.setdefault(section, dict(ctx.artefacts.get(f"results.{section}") or {}))
        node.setdefault("plugins", {})[p.name] = figures
        log.info("plugins: metric %s -> %s.plugins.%s (%d figure(s))", p.name, section, p.name, len(figures))
    for section, node in touched.items():
        store_section(ctx, section, node)
    return {"metrics": len(found), "broken": sum(p.broken for p in found)}
