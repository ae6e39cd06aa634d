"""The "inputs" section: which files of the run directory the report found, and for each missing
one what it would have fed and why it is missing."""

from __future__ import annotations

from reports.formatting import is_entry
from reports.results_view import Results
from reports.run_inputs import INPUT_FILES
from reports.sections.base import ReportContext, Section


def _why_missing(ctx: ReportContext, axis: str | None) -> str:
    """Why a missing input file is missing: the config switch, the audit's unavailable reasons, or the log."""
    if axis and ctx.config_switch(axis) is False:
        return f"audit.{axis} = false in config.json"
    if axis and ctx.inp.results is not None:
        reasons = ctx.res.section_reasons(axis)
        return "; ".join(reasons) or "not written by this run (stage not run, failed or not built yet; see run.log)"
    return "not written by this run (see run.log)"


def _clinical_reason(ctx: ReportContext) -> str:
    c = ctx.res.node("anatomy", "clinical")
    if is_entry(c) and c.get("status") == "unavailable":
        return str(c.get("reason"))
    return "not written by this run"


def inputs_section(ctx: ReportContext) -> Section:
    """Which input files the report found, and why each missing one is missing."""
    sec, _ = ctx.open_section("inputs", "Inputs and missing parts",
                              intro="Files of the run directory the report reads. A missing file leaves the parts it "
                                    "feeds out of the report; the reason comes from the configuration or from "
                                    "results.json.")
    t = ctx.table("inputs", "Input files", ["status", "feeds", "why missing"], row_header="file")
    for name, (feeds, axis) in INPUT_FILES.items():
        err = ctx.inp.errors.get(name)
        if err is None:
            t.add(name, ["present", feeds, ""])
            continue
        t.add(name, [err, feeds, _why_missing(ctx, axis) if err == "missing" else ""])
    n_png = len(ctx.inp.clinical_pngs)
    t.add("figures/clinical_*.png", ["present" if n_png else "missing", "Bland-Altman figures of the clinical indices",
                                     "" if n_png else _clinical_reason(ctx)])
    sec.table(t)
    if ctx.inp.results is not None:
        r = Results(ctx.inp.results)
        reasons = [(s, rr) for s in ("privacy", "fidelity", "anatomy", "utility", "dp") for rr in r.section_reasons(s)]
        if reasons:
            s2 = ctx.table("inputs_sections", "Audits recorded as unavailable", ["reason"], row_header="section")
            for s, rr in reasons:
                s2.add(s, [rr])
            sec.table(s2)
    sec.notes.extend(f"{n}: {e}" for n, e in ctx.inp.errors.items() if e != "missing")
    return sec
