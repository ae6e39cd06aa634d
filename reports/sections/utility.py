"""The utility section: the figures of the utility audit (with the Dice bars per setting) when
present, otherwise why they are not."""

from __future__ import annotations

from typing import Mapping

from audit.core.results import iter_entries
from audit.utility.metrics import dice_bars
from reports import plots
from reports.formatting import gloss_for
from reports.sections.base import ReportContext, Section


VERDICT_WORDS = {"improves": "beats", "worsens": "is worse than", "no evidence": "is not distinguishable from"}


def augmentation_sentences(util: Mapping) -> list[str]:
    """One sentence per generator setting and vendor: does it beat the real+augmentation baseline
    (the paired mean-Dice difference and its 95 % CI, ``vs_augmentation`` in results.json)?"""
    out = []
    for setting, per_vendor in (util.get("vs_augmentation") or {}).items():
        if not isinstance(per_vendor, Mapping):
            continue
        for vendor, node in per_vendor.items():
            e = node.get("dice_diff") if isinstance(node, Mapping) else None
            if not isinstance(e, Mapping):
                continue
            if e.get("status") == "unavailable":
                out.append(f"{setting}, vendor {vendor}: not compared with real+augmentation ({e.get('reason', 'unavailable')}).")
                continue
            if "value" not in e:
                continue
            verdict = next((part.split(":", 1)[1].strip() for part in str(e.get("notes") or "").split(";")
                            if part.strip().startswith("verdict:")), "no evidence")
            ci = (f" [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]" if e.get("ci_low") is not None and e.get("ci_high") is not None
                  else "")
            out.append(f"{setting}, vendor {vendor}: {VERDICT_WORDS.get(verdict, verdict)} real+augmentation "
                       f"(mean Dice difference {e['value']:+.3f}{ci}, paired over {e.get('n', '?')} subjects).")
    return out


def utility_section(ctx: ReportContext) -> Section:
    """Utility: the figures of the utility audit when present (bars with CIs per setting), else
    the unavailable reason."""

    sec, ok = ctx.open_section("utility", "Utility", gloss="utility", needs_results=True,
                               intro="Does a segmentation network trained on the synthetic images work on real "
                                     "scans, also from an unseen vendor?")
    if not ok:
        return sec
    r = ctx.res
    reasons = r.section_reasons("utility")
    util = r.node("utility")
    entries = list(iter_entries(util)) if isinstance(util, Mapping) else []
    if not entries and not reasons:
        reasons = ["the utility audit is not available yet (no utility figures in results.json)"]
    sec.notes.extend(reasons)
    if entries:
        t = ctx.table("utility", "Utility figures", ["value"], row_header="results key")
        for k, e in entries:
            if f"utility.{k}" in r.used:
                continue
            r.used.add(f"utility.{k}")
            t.add(k, [e], gloss=gloss_for(k))

        sentences = augmentation_sentences(util)
        if sentences:
            sec.text("Synthetic data against conventional augmentation", sentences, gloss="utility")
        bars = dice_bars(util)  # absolute Dice per setting / vendor / structure (not the differences)
        sec.table(t)
        if bars:
            sec.figure(ctx._figure("utility_dice", "Utility: Dice per setting", "Bars: estimate; whiskers: 95 % CI.",
                                   lambda: plots.bar_ci_figure([b[0] for b in bars], {"Dice": [b[1] for b in bars]},
                                                               ylabel="Dice", ylim=(0, 1.05), title="utility"),
                                   gloss="utility", notes=sec.notes))
    return sec
