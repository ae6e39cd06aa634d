"""The privacy section: attack set-up and summary, the membership-inference attacks with their ROC
curves, memorisation (nearest-neighbour distances, the synthetic images closest to the training
set) and differential privacy (claimed vs empirical epsilon, the budget spent over training)."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from audit.core.results import iter_entries
from generators.dp.accountant import Phase, epsilon_rdp
from reports import plots
from reports.formatting import LABELS, fmt_value, gloss_for, is_entry, is_metric, label, num
from reports.sections.base import ReportContext, Section
from reports.sections.samples import frame
from reports.table import Table

N_NEAREST = 8


def privacy_section(ctx: ReportContext) -> Section:
    """Privacy: set-up (members / non-members / attacker data and their splits), ROC curves, attack
    table (AUC, balanced accuracy, TPR@1 % / 0.1 % / lowest supported FPR with CIs), memorisation (copy rate, DCR ratio, distances) with the distance histogram and the
    synthetic images closest to the training set, and DP (claimed epsilon vs empirical LB)."""
    sec, ok = ctx.open_section("privacy", "Privacy", gloss="attack", needs_results=True, with_reasons=True,
                               intro="Can an attacker tell that a patient was in the training set, are there "
                                     "near-copies of training images, and does a differential-privacy claim hold?")
    if not ok:
        return sec
    curves = ctx.inp.curves or {}
    if ctx.inp.curves is None and ctx.res.node("privacy", "attacks") is not None:
        sec.notes.append(f"privacy_curves.json is {ctx.inp.errors.get('privacy_curves.json', 'missing')}: "
                         "no ROC curves, distance histograms or attack descriptions.")
    _summary(ctx, sec)
    _attacks(ctx, sec, curves)
    _memorisation(ctx, sec, curves)
    _dp(ctx, sec)
    ctx.leftover_table(sec, "privacy")
    return sec


def _summary(ctx: ReportContext, sec: Section) -> None:
    """Attack set-up and summary: the best AUCs and the member / non-member / attacker counts."""
    r = ctx.res
    setup = r.node("privacy", "setup")
    summary = r.node("privacy", "summary")
    if not (isinstance(setup, Mapping) or isinstance(summary, Mapping)):
        return
    t = ctx.table("privacy_summary", "Attack set-up and summary", ["value"], row_header="figure", row_gloss="setup")
    for key in ("best_black_box_auc", "best_white_box_auc"):
        e = r.entry("privacy", "summary", key)
        if e is not None:
            t.add(LABELS.get(key, label(key)), [e], gloss="auc", sub=str(e.get("notes") or ""))
    if isinstance(setup, Mapping):
        for key in setup:
            e = r.entry("privacy", "setup", key)
            if e is not None:  # the notes name the splits each role comes from
                t.add(label(key), [e], gloss="setup", sub=str(e.get("notes") or ""))
    sec.table(t)


def _best_auc_per_level(attacks: Mapping[str, Any]) -> dict[str, float]:
    best: dict[str, float] = {}
    for node in attacks.values():
        if isinstance(node, Mapping) and not is_entry(node):
            for lv, sub in node.items():
                auc = sub.get("auc") if isinstance(sub, Mapping) else None
                if is_metric(auc):
                    best[lv] = max(best.get(lv, -1.0), float(auc["value"]))
    return best


def _attack_rows(ctx: ReportContext, t: Table, attacks: Mapping[str, Any],
                 kinds: Mapping[str, str]) -> dict[str, dict[str, float | None]]:
    """One row per attack and level (an attack unavailable as a whole: one row); returns the AUCs."""
    r = ctx.res
    best = _best_auc_per_level(attacks)
    aucs: dict[str, dict[str, float | None]] = {}
    for a, node in attacks.items():
        kind = kinds.get(a, "")
        if is_entry(node):
            r.entry("privacy", "attacks", a)
            kind_text = kind or ("white-box" if "white-box" in str(node.get("reason", "")) else "")
            t.add(a, [kind_text, "", node, node, node, node, node, "", ""], gloss="attack")
            continue
        if not isinstance(node, Mapping):
            continue
        for lv, sub in node.items():
            if not isinstance(sub, Mapping):
                continue
            get = lambda k: r.entry("privacy", "attacks", a, lv, k)  # noqa: E731
            auc = get("auc")
            aucs.setdefault(a, {})[lv] = float(auc["value"]) if is_metric(auc) else None
            nm, nn = get("n_members"), get("n_nonmembers")
            counts = (f"{fmt_value(nm['value'], nm.get('unit'))} / {fmt_value(nn['value'], nn.get('unit'))}"
                      if is_metric(nm) and is_metric(nn) else "")
            hi = is_metric(auc) and float(auc["value"]) == best.get(lv)
            low = get("tpr_at_lowest_fpr")
            low_fpr = (low.get("params") or {}).get("fpr") if is_metric(low) else None
            t.add(a, [kind, label(lv), auc, get("balanced_accuracy"), get("tpr_at_fpr_1%"),
                      get("tpr_at_fpr_0.1%"), low, "" if low_fpr is None else f"{100 * low_fpr:.3g} %",
                      counts], gloss="attack",
                  highlight=[False, False, hi, False, False, False, False, False, False])
            r.mark("privacy", "attacks", a, lv)
    return aucs


def _attacks(ctx: ReportContext, sec: Section, curves: Mapping[str, Any]) -> None:
    """The ROC curves, the attack table and the attacks' descriptions."""
    attacks = ctx.res.node("privacy", "attacks")
    info = curves.get("attacks") if isinstance(curves.get("attacks"), Mapping) else {}
    kinds = {a: str(v.get("kind", "")) for a, v in info.items() if isinstance(v, Mapping)}
    if not isinstance(attacks, Mapping):
        return
    t = ctx.table("privacy_attacks", "Membership-inference attacks",
                  [("kind", "attack"), ("level", "attack_level"), ("AUC", "auc"),
                   ("balanced accuracy", "balanced_accuracy"), ("TPR @ 1 % FPR", "tpr_at_fpr"),
                   ("TPR @ 0.1 % FPR", "tpr_at_fpr"), ("TPR @ lowest FPR", "tpr_at_fpr"),
                   ("lowest FPR", "tpr_at_fpr"), ("members / non-members", "setup")],
                  row_header="attack", row_gloss="attack",
                  caption="95 % CIs: subject-level stratified bootstrap (members and non-members resampled "
                          "separately). The highest AUC per level is marked.")
    aucs = _attack_rows(ctx, t, attacks, kinds)
    roc = curves.get("roc") if isinstance(curves.get("roc"), Mapping) else None
    if roc:
        sec.figure(ctx._figure(
            "privacy_roc", "ROC curves per attack",
            "Linear panels per level; the log-log panel shows the low-FPR regime at image level. "
            "Dotted: chance. Dashed curves: white-box attacks.",
            lambda: plots.roc_figure(roc, aucs=aucs, kinds=kinds), gloss="roc", notes=sec.notes))
    sec.table(t)
    desc = [f"{a} ({v.get('kind', '?')}): {v.get('description', '')}" for a, v in info.items() if isinstance(v, Mapping)]
    if desc:
        sec.text("Attacks", desc, gloss="attack")


def _memorisation(ctx: ReportContext, sec: Section, curves: Mapping[str, Any]) -> None:
    """Copy rate, DCR ratio and distances per space, the distance histogram and the closest images."""
    r = ctx.res
    mem = r.node("privacy", "memorisation")
    mem_curves = curves.get("memorisation") if isinstance(curves.get("memorisation"), Mapping) else {}
    if not isinstance(mem, Mapping) or is_entry(mem):
        return
    spaces = [s for s in mem if isinstance(mem[s], Mapping)]
    order = ["copy_rate", "holdout_copy_rate", "copy_threshold", "dcr_ratio", "nn_distance_to_train_median",
             "holdout_nn_distance_to_train_median"]
    keys = order + sorted({k for s in spaces if not is_entry(mem[s]) for k in mem[s]} - set(order))
    t = ctx.table("privacy_memorisation", "Memorisation (nearest neighbours)",
                  [(label(s), "nn_distance") for s in spaces], row_header="figure",
                  caption="Distances: " + "; ".join(
                      f"{label(s)} = {mem_curves.get(s, {}).get('distance', '?')}" for s in spaces))
    for k in keys:
        cells = []
        for s in spaces:
            cells.append(mem[s] if is_entry(mem[s]) else r.entry("privacy", "memorisation", s, k))
        if all(c is None for c in cells):
            continue
        t.add(label(k), cells, gloss=gloss_for(k))
    for s in spaces:
        r.mark("privacy", "memorisation", s)
    sec.table(t)
    _distance_histograms(ctx, sec, mem_curves)
    _nearest_synthetic(ctx, sec, mem_curves)


def _dp(ctx: ReportContext, sec: Section) -> None:
    """Claimed vs empirical epsilon, the accountant's figures and the budget spent over training."""
    r = ctx.res
    dpv = r.node("privacy", "dp_verification")
    dp = r.node("dp")
    t = ctx.table("privacy_dp", "Differential privacy: claimed vs empirical epsilon", ["value"], row_header="figure",
                  caption="If the empirical lower bound exceeds the claimed epsilon, the DP claim is violated.")
    if is_entry(dpv):
        t.add("DP verification", [r.entry("privacy", "dp_verification")], gloss="epsilon_lb")
    elif isinstance(dpv, Mapping):
        first = [k for k in ("claimed_epsilon", "epsilon_lb", "epsilon_lb_image_level", "violation") if k in dpv]
        for k in first + [k for k in dpv if k not in first]:
            e = r.entry("privacy", "dp_verification", k)
            if e is not None:
                t.add(LABELS.get(k, label(k)), [e], gloss=gloss_for(k), sub=str(e.get("notes") or ""))
        claimed, lb = dpv.get("claimed_epsilon"), dpv.get("epsilon_lb")
        if is_metric(claimed) and is_metric(lb):
            ok = float(lb["value"]) <= float(claimed["value"])
            sec.notes.append(f"empirical \u03b5 lower bound {fmt_value(lb['value'])} "
                             f"{'<=' if ok else '>'} claimed \u03b5 {fmt_value(claimed['value'])}: "
                             f"{'consistent with the claim' if ok else 'the DP claim is violated'}")
    if isinstance(dp, Mapping):
        for k, e in iter_entries(dp):
            r.used.add(f"dp.{k}")
            t.add(f"dp.{k}", [e], gloss="dp_accounting", sub=str(e.get("notes") or e.get("method") or ""))
    sec.table(t)
    if isinstance(dp, Mapping) and isinstance(dp.get("phases"), Mapping):
        sec.figure(ctx._figure("dp_budget", "Privacy budget spent over training", (
            "Epsilon of the steps taken so far, all phases composed by the RDP accountant (recomputed from the "
            "dp section: noise multiplier, sampling rate and steps of each phase). A phase touching private "
            "data outside this curve would void the claim."), lambda: budget_plot(dp), gloss="dp_accounting",
            notes=sec.notes))


def budget_plot(dp: Mapping[str, Any]):
    """The figure behind "Privacy budget spent over training" (None when the section lacks the figures)."""

    def val(e: Any) -> float | None:
        return float(e["value"]) if is_metric(e) else None

    sigma, delta = val(dp.get("noise_multiplier")), val(dp.get("delta"))
    phases = [(name, val(node.get("sample_rate")), val(node.get("steps"))) for name, node in dp["phases"].items()
              if isinstance(node, Mapping)]
    if sigma is None or delta is None or not phases or any(q is None or n is None for _, q, n in phases):
        return None
    total = sum(int(n) for _, _, n in phases)
    grid = sorted({0, total, *np.linspace(0, total, 41).astype(int).tolist()})
    xs, ys, bounds, start = [], [], [], 0
    for name, _, n in phases:
        bounds.append((start, name))
        start += int(n)
    for x in grid:
        done, left = [], x
        for name, q, n in phases:
            take = min(int(n), left)
            if take > 0:
                done.append(Phase(name, sigma, q, take))
            left -= take
        xs.append(x)
        ys.append(epsilon_rdp(done, delta))
    return plots.budget_figure(xs, ys, bounds, claimed=val(dp.get("epsilon")))


def _csv_histograms(df: Any) -> list[dict[str, Any]]:
    """Histogram panels from privacy_per_sample.csv: each real image's distance to its nearest
    synthetic image, members vs non-members."""
    panels = []
    for col in [c for c in df.columns if c.startswith("nn_distance_")]:
        vals = df[col].to_numpy(float)
        member = df["member"].astype(str).str.lower().isin(["true", "1"]).to_numpy() if "member" in df else None
        ok = np.isfinite(vals)
        if member is None or ok.sum() < 2:
            continue
        edges = np.histogram_bin_edges(vals[ok], bins=20)
        panels.append({"title": label(col[len("nn_distance_"):]), "xlabel": "distance to the nearest synthetic image",
                       "bin_edges": edges, "threshold": None,
                       "series": {"train (members)": np.histogram(vals[ok & member], edges)[0],
                                  "holdout (non-members)": np.histogram(vals[ok & ~member], edges)[0]}})
    return panels


def _distance_histograms(ctx: ReportContext, sec: Section, mem_curves: Mapping[str, Any]) -> None:
    panels = []
    for space in sorted(mem_curves, key=lambda k: (k != "pixel_correlation", k)):
        node = mem_curves[space]
        h = node.get("histogram") if isinstance(node, Mapping) else None
        if not isinstance(h, Mapping) or "bin_edges" not in h:
            continue
        keys = sorted((k for k in h if k.endswith("_to_train") and isinstance(h[k], list)),
                      key=lambda k: (not k.startswith("synthetic"), k))
        series = {k.replace("_", " "): h[k] for k in keys}
        panels.append({"title": label(space), "xlabel": str(node.get("distance", "distance")),
                       "bin_edges": h["bin_edges"], "series": series, "threshold": h.get("copy_threshold")})
    caption = ("Synthetic-to-train vs holdout-to-train nearest distances (fraction of each set per bin); "
               "the dotted line is the copy threshold.")
    if not panels and ctx.inp.privacy_csv is not None:  # fall back on the per-sample table
        panels = _csv_histograms(ctx.inp.privacy_csv)
        caption = ("From privacy_per_sample.csv: distance of each real image to its nearest synthetic image, "
                   "members vs non-members.")
    if panels:
        sec.figure(ctx._figure("privacy_nn_distance", "Nearest-neighbour distance histogram", caption,
                               lambda: plots.distance_histogram_figure(panels), gloss="nn_distance", notes=sec.notes))


def _closest_pairs(pairs: list[Any]) -> list[dict[str, Any]]:
    """Up to :data:`N_NEAREST` pairs by distance, one per synthetic image."""
    seen: list[dict[str, Any]] = []
    for p in sorted((p for p in pairs if isinstance(p, Mapping)), key=lambda p: float(p.get("distance", math.inf))):
        if p.get("synthetic_index") not in {q.get("synthetic_index") for q in seen}:
            seen.append(p)
        if len(seen) >= N_NEAREST:
            break
    return seen


def _nearest_synthetic(ctx: ReportContext, sec: Section, mem_curves: Mapping[str, Any]) -> None:
    """The synthetic images closest to a training image (synthetic side of the NN pairs)."""

    samples = ctx.inp.samples
    spaces = sorted(mem_curves, key=lambda k: (k != "pixel_correlation", k))
    for space in spaces:
        node = mem_curves[space]
        pairs = node.get("top_pairs") if isinstance(node, Mapping) else None
        if not pairs:
            continue
        thr = (node.get("histogram") or {}).get("copy_threshold")
        seen = _closest_pairs(pairs)
        t = ctx.table(f"privacy_nearest_{space}", f"Synthetic images closest to the training set ({label(space)})",
                      ["nearest train subject", "distance", "below copy threshold"], row_header="synthetic image",
                      caption=f"Distance: {node.get('distance', '?')}. The real side of each pair is not shown "
                              "(real images are not rendered by this report).")
        for p in seen:
            d = p.get("distance")
            below = "yes" if (isinstance(d, (int, float)) and isinstance(thr, (int, float)) and d < thr) else "no"
            t.add(f"#{p.get('synthetic_index')}", [str(p.get("train_subject", "?")),
                                                    float(d) if isinstance(d, (int, float)) else "?", below],
                  gloss="copy_rate")
        if samples is not None:
            idx = [int(p["synthetic_index"]) for p in seen
                   if isinstance(p.get("synthetic_index"), int) and 0 <= p["synthetic_index"] < len(samples)]
            if idx:
                imgs = [frame(samples.images[i]) for i in idx]
                titles = [f"#{i}  d={num(float(p['distance']))}" for i, p in zip(idx, seen)]
                sec.figure(ctx._figure(
                    f"privacy_nearest_{space}", f"Closest synthetic images ({label(space)})",
                    "The synthetic images with the smallest distance to any training image (synthetic side only).",
                    lambda: plots.image_grid_figure(imgs, titles=titles, ncols=min(4, len(imgs)), panel_inches=1.8),
                    gloss="copy_rate", notes=sec.notes))
        sec.table(t)
        break  # the first distance (pixel correlation) is enough for the report
