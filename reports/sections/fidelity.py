"""The fidelity section: distribution metrics per feature space beside the real floor (with the
FID / floor ratio and a precision / recall / density / coverage chart) and the paired metrics."""

from __future__ import annotations

import re
from typing import Any, Mapping

from reports import plots
from reports.formatting import gloss_for, is_entry, is_metric, label
from reports.sections.base import ReportContext, Section
from reports.table import Table

_ORDER = ["fid", "kid", "kid_std", "precision", "recall", "density", "coverage"]
_BETTER = {"fid": "lower", "kid": "lower", "kid_std": "", "precision": "higher", "recall": "higher",
           "density": "about 1", "coverage": "higher"}
_PRDC = ("precision", "recall", "density", "coverage")
_SPACE_RE = re.compile(r"\bin (.+?) features\b")


def feature_space(node: Any) -> str | None:
    """The feature space named in a method string, e.g. ``judge (myopari 0.1.6 FC-DenseNet, ...)``."""
    if not isinstance(node, Mapping):
        return None
    for e in node.values():
        if is_metric(e):
            m = _SPACE_RE.search(str(e.get("method", "")))
            if m:
                return m.group(1)
    return None


def fidelity_section(ctx: ReportContext) -> Section:
    """Fidelity: distribution metrics beside the real floor, in the named feature space; the FID /
    floor ratio; paired metrics (SDEdit, autoencoder reconstructions)."""

    sec, ok = ctx.open_section("fidelity", "Fidelity", gloss="real_floor", needs_results=True, with_reasons=True,
                               intro="Do the images look like real cardiac MR? Every distribution metric is shown "
                                     "beside the real floor: the same metric between two sets of real subjects.")
    if not ok:
        return sec
    for group, node in (ctx.res.node("fidelity") or {}).items():
        if not isinstance(node, Mapping) or is_entry(node):
            continue
        syn, floor = node.get("synthetic_vs_test"), node.get("real_floor")
        if syn is None and floor is None:
            continue
        _distribution_group(ctx, sec, group, syn, floor)
    _paired(ctx, sec)
    ctx.leftover_table(sec, "fidelity")
    return sec


def _metric_rows(ctx: ReportContext, t: Table, group: str, syn: Any, floor: Any) -> tuple[list[str], dict[str, list]]:
    """One row per metric (synthetic, floor, ratio); returns the PRDC keys shown and their bars."""
    r = ctx.res
    keys = _ORDER + sorted(set((syn or {}) if not is_entry(syn) else {}) - set(_ORDER))
    prdc: dict[str, list] = {"synthetic vs test": [], "real floor": []}
    prdc_keys = []
    for k in keys:
        se = syn if is_entry(syn) else r.entry("fidelity", group, "synthetic_vs_test", k)
        fe = floor if is_entry(floor) else r.entry("fidelity", group, "real_floor", k)
        if se is None and fe is None:
            continue
        ratio: Any = ""
        if is_metric(se) and is_metric(fe) and float(fe["value"]) > 0 and k != "kid_std":
            ratio = float(se["value"]) / float(fe["value"])
        t.add(k.upper() if k in ("fid", "kid") else label(k), [_BETTER.get(k, ""), se, fe, ratio], gloss=gloss_for(k))
        if k in _PRDC:
            prdc_keys.append(k)
            for lab, e in (("synthetic vs test", se), ("real floor", fe)):
                prdc[lab].append((float(e["value"]), e.get("ci_low"), e.get("ci_high")) if is_metric(e) else None)
    return prdc_keys, prdc


def _distribution_group(ctx: ReportContext, sec: Section, group: str, syn: Any, floor: Any) -> None:
    """The distribution metrics of one results group (one feature space) and their PRDC chart."""
    r = ctx.res
    space = feature_space(syn) or feature_space(floor) or group
    sec.text(f"Feature space: {space}", [
        f"Metrics computed in the {space} features (results group fidelity.{group})."], gloss="feature_space")
    t = ctx.table(f"fidelity_{group}", f"Distribution metrics ({group} features)",
                  [("better", None), ("synthetic vs test", None), ("real floor (holdout vs test)", "real_floor"),
                   ("synthetic \u00f7 floor", "real_floor")], row_header="metric",
                  caption="Synthetic vs real test images, beside the same metric between real holdout and "
                          "test subjects at the same n.")
    prdc_keys, prdc = _metric_rows(ctx, t, group, syn, floor)
    ratio_e = r.entry("fidelity", group, "fid_ratio_to_floor")
    if ratio_e is not None:
        t.add("FID / real floor", ["lower", ratio_e, "", ""], gloss="fid_ratio")
    r.mark("fidelity", group, "synthetic_vs_test")
    r.mark("fidelity", group, "real_floor")
    if is_entry(syn):
        r.used.add(f"fidelity.{group}.synthetic_vs_test")
    if is_entry(floor):
        r.used.add(f"fidelity.{group}.real_floor")
    sec.table(t)
    if prdc_keys and any(v is not None for vals in prdc.values() for v in vals):
        sec.figure(ctx._figure(
            f"fidelity_prdc_{group}", "Precision / recall / density / coverage vs the real floor",
            "Bars: estimate; whiskers: 95 % CI.",
            lambda: plots.bar_ci_figure([label(k) for k in prdc_keys], prdc, ylabel="value",
                                        title=f"synthetic vs real floor ({group} features)"),
            gloss="precision", notes=sec.notes))


def _paired(ctx: ReportContext, sec: Section) -> None:
    """Paired metrics: each output (SDEdit, autoencoder reconstruction) against its own reference."""
    r = ctx.res
    paired = r.node("fidelity", "paired")
    if not isinstance(paired, Mapping):
        return
    names = list(paired)
    metric_keys: list[str] = []
    for n in names:
        if isinstance(paired[n], Mapping) and not is_entry(paired[n]):
            metric_keys += [k for k in paired[n] if k not in metric_keys]
    t = ctx.table("fidelity_paired", "Paired metrics", [(k.upper().replace("_", "-"), gloss_for(k)) for k in metric_keys]
                  or ["value"], row_header="pair", row_gloss="paired",
                  caption="Each output against its own reference image.")
    for n in names:
        node = paired[n]
        if is_entry(node):
            r.entry("fidelity", "paired", n)
            t.add(label(n), [node] * max(1, len(metric_keys)), gloss="paired")
        elif isinstance(node, Mapping):
            t.add(label(n), [r.entry("fidelity", "paired", n, k) for k in metric_keys], gloss="paired")
            r.mark("fidelity", "paired", n)
    sec.table(t)
