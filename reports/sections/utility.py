"""The utility section: the figures of the utility audit (with the Dice bars per setting) when
present, otherwise why they are not."""

from __future__ import annotations

from typing import Mapping

from audit.core.results import iter_entries
from audit.pipeline.utility_masks import mask_source_of
from audit.utility.metrics import dice_bars
from reports import plots
from reports.formatting import gloss_for
from reports.sections.base import ReportContext, Section


VERDICT_WORDS = {"improves": "beats", "worsens": "is worse than", "no evidence": "is not distinguishable from"}


def _verdict(e: Mapping) -> str | None:
    """The ``verdict: ...`` part of an entry's notes (entries join their notes with ``;``), or ``None``."""
    return next((part.split(":", 1)[1].strip() for part in str(e.get("notes") or "").split(";")
                 if part.strip().startswith("verdict:")), None)


def _paired_sentence(subject: str, e: object, baseline: str) -> str | None:
    """``"<subject>: beats / is worse than / is not distinguishable from <baseline> (difference [CI], n)."``
    for a paired ``dice_diff`` entry; ``None`` when it is not one."""
    if not isinstance(e, Mapping):
        return None
    if e.get("status") == "unavailable":
        return f"{subject}: not compared with {baseline} ({e.get('reason', 'unavailable')})."
    if "value" not in e:
        return None
    verdict = _verdict(e) or "no evidence"
    ci = (f" [{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]" if e.get("ci_low") is not None and e.get("ci_high") is not None
          else "")
    return (f"{subject}: {VERDICT_WORDS.get(verdict, verdict)} {baseline} "
            f"(mean Dice difference {e['value']:+.3f}{ci}, paired over {e.get('n', '?')} subjects).")


def augmentation_sentences(util: Mapping) -> list[str]:
    """One sentence per generator setting and vendor: does it beat the real+augmentation baseline
    (the paired mean-Dice difference and its 95 % CI, ``vs_augmentation`` in results.json)?"""
    out = []
    for setting, per_vendor in (util.get("vs_augmentation") or {}).items():
        if not isinstance(per_vendor, Mapping):
            continue
        for vendor, node in per_vendor.items():
            line = _paired_sentence(f"{setting}, vendor {vendor}", node.get("dice_diff") if isinstance(node, Mapping)
                                    else None, "real+augmentation")
            if line:
                out.append(line)
    return out


def adaptation_sentences(util: Mapping) -> list[str]:
    """One sentence per SDEdit strength and unseen vendor: do the real-trained nets segment the
    restyled scans better than the raw ones (``test_time_adaptation`` in results.json)?"""
    node = util.get("test_time_adaptation")
    if not isinstance(node, Mapping):
        return []
    gone = node.get("adaptation")
    if isinstance(gone, Mapping) and gone.get("status") == "unavailable":
        return [f"Not done: {gone.get('reason', 'unavailable')}."]
    out = []
    for strength, per_vendor in node.items():
        if not isinstance(per_vendor, Mapping):
            continue
        for vendor, v in per_vendor.items():
            e = v.get("vs_raw", {}).get("dice_diff") if isinstance(v, Mapping) else None
            line = _paired_sentence(f"vendor {vendor}, restyled at {strength.replace('_', ' ')}", e,
                                    "the raw scans for the real-trained nets")
            if line:
                out.append(line)
    return out


def mask_sentences(util: Mapping) -> list[str]:
    """The judge's check of the synthetic image/mask pairs the synthetic settings train on
    (``synthetic_masks`` in results.json): their judge Dice, its fraction of the real-scan
    ceiling and the verdict, or why the check is unavailable."""
    node = util.get("synthetic_masks")
    if not isinstance(node, Mapping):
        return []
    dice, frac = node.get("judge_dice"), node.get("fraction_of_ceiling")
    if not isinstance(dice, Mapping) or "value" not in dice:
        return [f"Not checked: {(dice or {}).get('reason', 'unavailable')}."]
    source = mask_source_of(dice) or "the sample set"
    ci = f" [{dice['ci_low']:.3f}, {dice['ci_high']:.3f}]" if dice.get("ci_low") is not None else ""
    line = (f"The synthetic masks come from {source}. The judge's segmentation of the synthetic images agrees "
            f"with them at Dice {dice['value']:.3f}{ci}")
    if isinstance(frac, Mapping) and "value" in frac:
        verdict = (_verdict(frac) or "").split(" ")[0]
        line += (f", {frac['value']:.2f} of the judge's Dice on real scans: "
                 + ("the labels the synthetic settings learn from are consistent with their images."
                    if verdict == "consistent" else
                    "doubtful labels -- the synthetic settings' figures partly measure label noise."))
    else:
        line += f" (no real-scan ceiling to compare with: {(frac or {}).get('reason', 'unavailable')})."
    return [line]


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

        sentences = mask_sentences(util)
        if sentences:
            sec.text("Are the synthetic masks trustworthy labels? (the judge's check)", sentences, gloss="utility")
        sentences = augmentation_sentences(util)
        if sentences:
            sec.text("Synthetic data against conventional augmentation", sentences, gloss="utility")
        sentences = adaptation_sentences(util)
        if sentences:
            sec.text("Test-time adaptation of unseen-domain scans (SDEdit without labels)", sentences, gloss="utility")
        bars = dice_bars(util)  # absolute Dice per setting / vendor / structure (not the differences)
        sec.table(t)
        if bars:
            sec.figure(ctx._figure("utility_dice", "Utility: Dice per setting", "Bars: estimate; whiskers: 95 % CI.",
                                   lambda: plots.bar_ci_figure([b[0] for b in bars], {"Dice": [b[1] for b in bars]},
                                                               ylabel="Dice", ylim=(0, 1.05), title="utility"),
                                   gloss="utility", notes=sec.notes))
    return sec
