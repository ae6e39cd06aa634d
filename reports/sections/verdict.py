"""The verdict card: one tile per audit axis (privacy, fidelity, anatomy, utility) with its
headline figure, the lines under it and a level from the tile thresholds
(:mod:`reports.thresholds`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from audit.core.results import iter_entries
from reports.formatting import fmt_value, is_entry, is_metric
from reports.results_view import Results
from reports.sections.base import ReportContext
from reports.thresholds import LEVEL_ORDER, LEVEL_WORDS, tile_level

#: a tile's level from a figure and the tile-threshold key that rates it
Level = Callable[[float | None, str], str]


def _value_of(e: Mapping | None) -> float | None:
    return float(e["value"]) if is_metric(e) else None


def _reason_of(*nodes: Any) -> str:
    for n in nodes:
        if is_entry(n) and n.get("status") == "unavailable":
            return str(n.get("reason"))
    return ""


def privacy_tile(ctx: ReportContext, level: Level) -> dict[str, Any]:
    """The best membership-inference AUC (black- or white-box) and the pixel-space copy rate."""
    r = ctx.res
    bb = r.node("privacy", "summary", "best_black_box_auc")
    wb = r.node("privacy", "summary", "best_white_box_auc")
    aucs = [(_value_of(bb), "black-box", bb), (_value_of(wb), "white-box", wb)]
    known = [(v, k, e) for v, k, e in aucs if v is not None]
    subs = []
    if known:
        v, kind, e = max(known, key=lambda t: t[0])
        head = fmt_value(v)
        ci = f" [{fmt_value(e.get('ci_low'))}, {fmt_value(e.get('ci_high'))}]" if e.get("ci_low") is not None else ""
        subs.append(f"best {kind} membership-inference AUC{ci}" + (f"; {e['notes']}" if e.get("notes") else ""))
        if isinstance(e.get("ci_low"), (int, float)) and e["ci_low"] <= 0.5:
            subs.append("its 95 % CI includes 0.5: not distinguishable from guessing at this n")
        other = [t for t in aucs if t[1] != kind]
        for ov, okind, oe in other:
            subs.append(f"best {okind} AUC: " + (fmt_value(ov) if ov is not None else f"n/a ({_reason_of(oe) or 'absent'})"))
        lv = level(v, "privacy_auc")
    else:
        head, lv = "n/a", "na"
        subs.append(_reason_of(bb, r.node("privacy", "audit")) or ctx.absent_reason("privacy"))
    copy = r.node("privacy", "memorisation", "pixel_correlation", "copy_rate")
    if is_metric(copy):
        hold = r.node("privacy", "memorisation", "pixel_correlation", "holdout_copy_rate")
        extra = f" (holdout {fmt_value(hold['value'], hold.get('unit'))} %)" if is_metric(hold) else ""
        subs.append(f"copy rate {fmt_value(copy['value'], copy.get('unit'))} %{extra}, pixel correlation")
    return {"axis": "privacy", "title": "Privacy", "headline": head, "sub": subs, "level": lv,
            "gloss": "auc", "metric": "best MIA AUC"}


def fidelity_tile(ctx: ReportContext, level: Level) -> dict[str, Any]:
    """FID / real floor in the judge's features."""
    r = ctx.res
    ratio = r.node("fidelity", "judge", "fid_ratio_to_floor")
    subs = []
    if is_metric(ratio):
        head = f"{fmt_value(ratio['value'])}\u00d7"
        lv = level(float(ratio["value"]), "fidelity_fid_ratio")
        syn = r.node("fidelity", "judge", "synthetic_vs_test", "fid")
        flo = r.node("fidelity", "judge", "real_floor", "fid")
        if is_metric(syn) and is_metric(flo):
            subs.append(f"FID {fmt_value(syn['value'])} vs real floor {fmt_value(flo['value'])} (judge features)")
    else:
        head, lv = "n/a", "na"
        subs.append(_reason_of(ratio, r.node("fidelity", "judge"), r.node("fidelity", "audit"))
                    or ctx.absent_reason("fidelity"))
    return {"axis": "fidelity", "title": "Fidelity", "headline": head, "sub": subs, "level": lv,
            "gloss": "fid_ratio", "metric": "FID / real floor"}


def _judge_dice_line(r: Results, dice: Mapping, ceil: Any, level: Level, levels: list[str]) -> str:
    """The judge-Dice line of the anatomy tile (rated when a real ceiling exists)."""
    if is_metric(ceil) and ceil["value"] > 0:
        frac = float(dice["value"]) / float(ceil["value"])
        levels.append(level(frac, "anatomy_dice_ratio"))
        return (f"judge Dice {fmt_value(dice['value'])} vs real ceiling {fmt_value(ceil['value'])} "
                f"({fmt_value(frac, 'fraction')} % of it)")
    return (f"judge Dice {fmt_value(dice['value'])} (no real ceiling: "
            f"{_reason_of(ceil, r.node('anatomy', 'judge_agreement_real_test')) or 'not in results'})")


def anatomy_tile(ctx: ReportContext, level: Level) -> dict[str, Any]:
    """The plausible-image rate and the judge Dice against the real ceiling; the worse one rates it."""
    r = ctx.res
    plaus = r.node("anatomy", "plausibility", "synthetic", "plausible_rate")
    dice = r.node("anatomy", "judge_agreement", "dice", "mean")
    ceil = r.node("anatomy", "judge_agreement_real_test", "dice", "mean")
    subs, levels = [], []
    if is_metric(plaus):
        head = f"{fmt_value(plaus['value'], 'fraction')} %"
        levels.append(level(float(plaus["value"]), "anatomy_plausible"))
        real = r.node("anatomy", "plausibility", "real_test", "plausible_rate")
        subs.append("plausible synthetic images" + (f" (real test {fmt_value(real['value'], 'fraction')} %)" if is_metric(real) else ""))
    else:
        head = None
    if is_metric(dice):
        subs.append(_judge_dice_line(r, dice, ceil, level, levels))
        if head is None:
            head = fmt_value(dice["value"])
    if head is None:
        head = "n/a"
        subs.append(_reason_of(plaus, r.node("anatomy", "plausibility"), dice, r.node("anatomy", "judge_agreement"),
                               r.node("anatomy", "audit")) or ctx.absent_reason("anatomy"))
    lv = max(levels, key=LEVEL_ORDER.get) if levels else "na"
    if not levels and head != "n/a":
        subs.append("not rated: the tile colour needs the plausible-image rate or the real ceiling")
    return {"axis": "anatomy", "title": "Anatomy", "headline": head, "sub": subs, "level": lv,
            "gloss": "plausible_rate", "metric": "plausible-image rate" if is_metric(plaus) else "judge Dice"}


def utility_tile(ctx: ReportContext) -> dict[str, Any]:
    """Always grey (no tile threshold is defined): the number of utility figures, or why there are none."""
    r = ctx.res
    util = r.node("utility")
    metrics = [k for k, e in iter_entries(util)] if isinstance(util, Mapping) else []
    metrics = [k for k in metrics if is_metric(r.node("utility", *k.split(".")))]
    if metrics:
        head, subs = "see section", [f"{len(metrics)} utility figures; no tile threshold defined yet"]
    else:
        reasons = [str(e.get("reason")) for _, e in iter_entries(util)] if isinstance(util, Mapping) else []
        head, subs = "not available yet", [reasons[0] if reasons else "the utility audit is not built yet"]
    return {"axis": "utility", "title": "Utility", "headline": head, "sub": subs, "level": "na",
            "gloss": "utility", "metric": "segmentation on real scans"}


def verdict_tiles(ctx: ReportContext, thresholds: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The four verdict tiles (privacy, fidelity, anatomy, utility) with headline and level."""

    def level(value: float | None, key: str) -> str:
        return tile_level(value, thresholds.get(key))

    tiles = [privacy_tile(ctx, level), fidelity_tile(ctx, level), anatomy_tile(ctx, level), utility_tile(ctx)]
    for t in tiles:
        t["level_word"] = LEVEL_WORDS[t["level"]]
    return tiles
