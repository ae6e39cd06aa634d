"""The anatomy section: judge Dice / HD95 per structure beside the real ceiling, plausibility pass
rates synthetic vs real, SDEdit structure preservation, and the clinical indices with the
Bland-Altman figures written by the anatomy stage."""

from __future__ import annotations

from typing import Any, Mapping

from reports import plots
from reports.formatting import data_uri, gloss_for, is_entry, is_metric, label
from reports.sections.base import Figure, ReportContext, Section
from reports.table import Table

_STRUCTURES = ("RV", "MYO", "LV", "mean")
_CLINICAL = (("clinical", "Clinical indices: judge-measured vs requested"),
             ("clinical_generator_masks", "Clinical indices: measured on the generator's own masks "
                                          "(its segmentation decoder) vs requested"))
_CLINICAL_COLS = ["pearson_r", "mae", "bland_altman_bias", "loa_low", "loa_high"]


def _structure_order(subs: list[str]) -> list[str]:
    """RV, MYO, LV, mean first, then any other structure in the order met."""
    return [s for s in _STRUCTURES if s in subs] + [s for s in subs if s not in _STRUCTURES]


def anatomy_section(ctx: ReportContext) -> Section:
    """Anatomy: judge Dice / HD95 per structure beside the real ceiling (with a bar chart),
    plausibility criteria pass rates synthetic vs real, SDEdit Dice, clinical indices with the
    Bland-Altman figures."""

    sec, ok = ctx.open_section("anatomy", "Anatomy", gloss="dice", needs_results=True, with_reasons=True,
                               intro="Is the heart where the conditioning mask put it, and is it anatomically "
                                     "plausible? Measured with the independent judge segmentation network.")
    if not ok:
        return sec
    _agreement(ctx, sec)
    _plausibility(ctx, sec)
    _sdedit(ctx, sec)
    for key, title in _CLINICAL:  # cine sets: also measured on the generator's own masks
        _clinical(ctx, sec, key, title)
    for png in ctx.inp.clinical_pngs:
        sec.figure(_clinical_png(sec, png))
    ctx.leftover_table(sec, "anatomy")
    return sec


def _agreement_rows(ctx: ReportContext, t: Table, syn: Any, real: Any) -> tuple[list[str], dict[str, list]]:
    """Dice and HD95 rows per structure (synthetic, real ceiling, ratio); returns the Dice bars."""
    r = ctx.res
    bars: dict[str, list] = {"synthetic": [], "real ceiling": []}
    structures: list[str] = []
    for m in ("dice", "hd95_mm"):
        subs = []
        for node in (syn, real):
            if isinstance(node, Mapping) and isinstance(node.get(m), Mapping) and not is_entry(node.get(m)):
                subs += [s for s in node[m] if s not in subs]
        for s in _structure_order(subs):
            cells = []
            for name, node in (("judge_agreement", syn), ("judge_agreement_real_test", real)):
                if is_entry(node):
                    r.entry("anatomy", name)
                    cells.append(node)
                elif isinstance(node, Mapping) and is_entry(node.get(m)):
                    cells.append(r.entry("anatomy", name, m))
                else:
                    cells.append(r.entry("anatomy", name, m, s))
            ratio: Any = ""
            if m == "dice" and is_metric(cells[0]) and is_metric(cells[1]) and cells[1]["value"] > 0:
                ratio = float(cells[0]["value"]) / float(cells[1]["value"])
            t.add(f"{'Dice' if m == 'dice' else 'HD95'} {s}", cells + [ratio], gloss=gloss_for(m),
                  sub=str((cells[0] or {}).get("notes") or ""))
            if m == "dice":
                structures.append(s)
                for lab, e in zip(bars, cells):
                    bars[lab].append((float(e["value"]), e.get("ci_low"), e.get("ci_high")) if is_metric(e) else None)
    return structures, bars


def _agreement(ctx: ReportContext, sec: Section) -> None:
    """Judge agreement per structure beside the real ceiling, with the Dice bar chart."""
    r = ctx.res
    syn, real = r.node("anatomy", "judge_agreement"), r.node("anatomy", "judge_agreement_real_test")
    if syn is None and real is None:
        return
    t = ctx.table("anatomy_agreement", "Judge agreement per structure",
                  [("synthetic (judge vs conditioning mask)", None),
                   ("real ceiling (judge vs ground truth)", "ceiling"), ("synthetic \u00f7 ceiling", "ceiling")],
                  row_header="metric", caption="Mean over images; 95 % CI: subject bootstrap.")
    if real is None:
        sec.notes.append("no real ceiling in results.json (anatomy.judge_agreement_real_test): the judge's "
                         "accuracy on real images is not shown")
    structures, bars = _agreement_rows(ctx, t, syn, real)
    for node_name, node in (("judge_agreement", syn), ("judge_agreement_real_test", real)):
        if is_entry(node):
            r.entry("anatomy", node_name)
    sec.table(t)
    if structures and any(v is not None for vals in bars.values() for v in vals):
        sec.figure(ctx._figure("anatomy_dice", "Judge Dice per structure vs the real ceiling",
                               "Bars: mean Dice; whiskers: 95 % CI.",
                               lambda: plots.bar_ci_figure(
                                   structures, bars, ylabel="Dice", ylim=(0, 1.05),
                                   title="judge Dice" + (": synthetic vs real ceiling" if any(bars["real ceiling"]) else "")),
                               gloss="dice", notes=sec.notes))


def _plausibility(ctx: ReportContext, sec: Section) -> None:
    """Pass rates per plausibility criterion, synthetic vs real test images."""
    r = ctx.res
    pl = r.node("anatomy", "plausibility")
    if not isinstance(pl, Mapping) or is_entry(pl):  # a top-level unavailable entry is in the notes
        return
    sets = [s for s in ("synthetic", "real_test") if s in pl] + [s for s in pl if s not in ("synthetic", "real_test")]
    t = ctx.table("anatomy_plausibility", "Anatomical plausibility: pass rates",
                  [(label(s).replace("real test", "real test images"), "plausibility") for s in sets],
                  row_header="criterion", row_gloss="plausibility",
                  caption="Share of images passing each criterion among those where it applies (n). "
                          "95 % CI: subject-level cluster bootstrap.")
    t.add("plausible image (all criteria)", [pl[s] if is_entry(pl[s]) else r.entry("anatomy", "plausibility", s, "plausible_rate")
                                             for s in sets], gloss="plausible_rate")
    crits: list[str] = []
    for s in sets:
        c = pl[s].get("criteria") if isinstance(pl[s], Mapping) and not is_entry(pl[s]) else None
        if isinstance(c, Mapping):
            crits += [k for k in c if k not in crits]
    for k in crits:
        cells = [pl[s] if is_entry(pl[s]) else r.entry("anatomy", "plausibility", s, "criteria", k) for s in sets]
        desc = next((str(e.get("method", "")).split(":")[0] for e in cells if is_metric(e)), "")
        t.add(label(k), cells, gloss="plausibility", sub=desc)
    for s in sets:
        r.mark("anatomy", "plausibility", s)
    sec.table(t)


def _sdedit(ctx: ReportContext, sec: Section) -> None:
    """SDEdit structure preservation: judge Dice of restyled images per strength."""
    r = ctx.res
    sd = r.node("anatomy", "sdedit")
    if not isinstance(sd, Mapping) or is_entry(sd):
        return
    structs: list[str] = []
    for node in sd.values():
        d = node.get("dice") if isinstance(node, Mapping) else None
        if isinstance(d, Mapping) and not is_entry(d):
            structs += [s for s in d if s not in structs]
    structs = _structure_order(structs)
    t = ctx.table("anatomy_sdedit", "SDEdit: judge Dice of restyled images vs the reference mask",
                  [(f"Dice {s}", "dice") for s in structs] or ["Dice"], row_header="strength", row_gloss="sdedit")
    for strength, node in sd.items():
        d = node.get("dice") if isinstance(node, Mapping) else node
        if is_entry(d):
            t.add(label(strength), [d] * max(1, len(structs)), gloss="sdedit")
        elif isinstance(d, Mapping):
            t.add(label(strength), [r.entry("anatomy", "sdedit", strength, "dice", s) for s in structs], gloss="sdedit")
        r.mark("anatomy", "sdedit", strength)
    sec.table(t)


def _clinical(ctx: ReportContext, sec: Section, key: str, title: str) -> None:
    """One clinical-indices table (Pearson r, MAE, Bland-Altman bias and limits per index)."""
    r = ctx.res
    cl = r.node("anatomy", key)
    if not isinstance(cl, Mapping) or is_entry(cl):
        return
    t = ctx.table(f"anatomy_{key}", title,
                  [("Pearson r", "pearson_r"), ("MAE", "mae"), ("bias", "bland_altman"),
                   ("lower LoA", "bland_altman"), ("upper LoA", "bland_altman")],
                  row_header="index", row_gloss="clinical")
    for idx, node in cl.items():
        if is_entry(node):
            t.add(label(idx), [node] * len(_CLINICAL_COLS), gloss="clinical")
        elif isinstance(node, Mapping):
            t.add(label(idx), [r.entry("anatomy", key, idx, c) for c in _CLINICAL_COLS], gloss="clinical")
        r.mark("anatomy", key, idx)
    sec.table(t)


def _clinical_png(sec: Section, png: Any) -> Figure | None:
    """A Bland-Altman figure written by the anatomy stage, inlined as it is (None, with a note, when unusable)."""
    try:
        data = png.read_bytes()
    except OSError as exc:
        sec.notes.append(f"figures/{png.name}: unreadable: {exc}")
        return None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        sec.notes.append(f"figures/{png.name}: not a PNG file, left out")
        return None
    own = png.stem.startswith("clinical_generator_masks_")
    name = png.stem[len("clinical_generator_masks_" if own else "clinical_"):].replace("_", " ")
    by = "measured on the generator's own masks" if own else "judge-measured"
    return Figure(png.stem, f"Clinical index {name}" + (" (generator's own masks)" if own else ""),
                  f"Left: {by} vs requested with the identity line; right: Bland-Altman plot "
                  "(written by the anatomy stage).", data_uri(plots.compact_png(data)), [f"figures/{png.name}"],
                  "bland_altman")
