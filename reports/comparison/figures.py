"""The comparison's figures: the privacy-vs-fidelity and privacy-vs-utility scatters with CIs,
policy thresholds and the Pareto front, and the DP trade-off against the claimed epsilon."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from reports import plots
from reports.comparison.columns import CHANCE_AUC, COLUMN_BY_ID
from reports.comparison.ranking import pareto_front
from reports.comparison.runs import RunData
from reports.formatting import data_uri, is_metric
from reports.plots import _MARKERS, OKABE_ITO, PALETTE, new_figure, style
from reports.policy import Criterion, Policy
from reports.sections.base import Figure

log = logging.getLogger(__name__)


def _policy_threshold(policy: Policy, test: Callable[[Criterion], bool]) -> Criterion | None:
    return next((c for c in policy.criteria if test(c)), None)


def _ci(e: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if not is_metric(e):
        return None
    lo, hi = e.get("ci_low"), e.get("ci_high")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and math.isfinite(lo) and math.isfinite(hi):
        return float(lo), float(hi)
    return None


def tradeoff_figure(points: Sequence[Mapping[str, Any]], *, xlabel: str, ylabel: str, title: str,
                    x_better: str, y_better: str = "lower", x_floor: float | None = None,
                    y_floor: float | None = CHANCE_AUC, lines: Sequence[Mapping[str, Any]] = (), note: str = ""):
    """A privacy-vs-X scatter: one point per run with 95 % CI whiskers, the Pareto front (dashed
    steps), reference lines (``{"axis": "x"|"y", "at", "label", "style"}``) and, with no points, the
    panel with ``note`` in it. ``points``: ``{"label", "x", "y", "xci", "yci", "reference"}``;
    reference runs are drawn hollow. ``x_floor`` / ``y_floor``: values below count as the floor in
    the Pareto comparison (AUC: chance)."""

    with style():
        fig = new_figure(8.2, 5.0)
        ax = fig.subplots()
        for i, p in enumerate(points):
            colour, marker = PALETTE[i % len(PALETTE)], _MARKERS[i % len(_MARKERS)]
            xerr = yerr = None
            if p.get("xci"):
                xerr = [[max(0.0, p["x"] - p["xci"][0])], [max(0.0, p["xci"][1] - p["x"])]]
            if p.get("yci"):
                yerr = [[max(0.0, p["y"] - p["yci"][0])], [max(0.0, p["yci"][1] - p["y"])]]
            ax.errorbar([p["x"]], [p["y"]], xerr=xerr, yerr=yerr, color=colour, marker=marker, ms=8, lw=1.0,
                        capsize=3, ls="none", mfc="white" if p.get("reference") else colour, mec=colour, mew=1.6,
                        label=p["label"] + (" (reference)" if p.get("reference") else ""), zorder=3)
            ax.annotate(p["label"], (p["x"], p["y"]), xytext=(6, 5), textcoords="offset points", fontsize=8.5,
                        color="0.15", zorder=4)
        if points:
            def floored(v: float, floor: float | None, better: str) -> float:
                return max(v, floor) if floor is not None and better == "lower" else v

            xy = [(floored(p["x"], x_floor, x_better), floored(p["y"], y_floor, y_better)) for p in points]
            front = sorted(pareto_front(xy, x_better=x_better, y_better=y_better), key=lambda i: points[i]["x"])
            if front:
                fx = [points[i]["x"] for i in front]
                fy = [points[i]["y"] for i in front]
                # the boundary of the dominated region: along x first when smaller x is better
                steps = "steps-post" if x_better == "lower" else "steps-pre"
                ax.plot(fx, fy, color="0.25", ls="--", lw=1.3, drawstyle=steps if len(front) > 1 else "default",
                        marker="o", ms=14, mfc="none", mec="0.25", label="Pareto front", zorder=2)
        for ln in lines:
            draw = ax.axhline if ln["axis"] == "y" else ax.axvline
            draw(ln["at"], color=ln.get("colour", OKABE_ITO["vermillion"]), ls=ln.get("style", "--"), lw=1.1,
                 label=ln["label"], zorder=1)
        xs = [p["x"] for p in points]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:  # e.g. FID ratios of 1 and 80: a log axis shows both
            ax.set_xscale("log")
        if not points:
            ax.set_xlim(-0.1, 0.1)
            ax.text(0.5, 0.5, note or "no run has both figures", ha="center", va="center", transform=ax.transAxes,
                    wrap=True, fontsize=10, color="0.25", bbox={"boxstyle": "round", "fc": "#f6f6f4", "ec": "0.7"})
            ax.set_ylim(0.4, 1.0)
        x_arrow = "\u2190" if x_better == "lower" else "\u2192"
        y_arrow = "\u2193" if y_better == "lower" else "\u2191"
        ax.set_xlabel(f"{xlabel}  ({x_arrow} better)")
        ax.set_ylabel(f"{ylabel}  ({y_arrow} better)")
        ax.set_title(title)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def _points(runs: Sequence[RunData], xcol: str, ycol: str) -> tuple[list[dict[str, Any]], list[str]]:
    pts, missing = [], []
    for r in runs:
        x, y = r.value(xcol), r.value(ycol)
        if x is None or y is None:
            why = "; ".join(f"{COLUMN_BY_ID[c].label}: {r.cells[c].get('reason', 'unavailable')}"
                            for c, v in ((xcol, x), (ycol, y)) if v is None)
            missing.append(f"{r.label}: {why}")
            continue
        pts.append({"label": r.label, "x": x, "y": y, "xci": _ci(r.cells[xcol]), "yci": _ci(r.cells[ycol]),
                    "reference": r.is_reference})
    return pts, missing


@dataclass
class _Figure(Figure):
    """A run-report figure plus notes shown under it (runs not plotted, why a panel is empty)."""

    notes: list[str] = field(default_factory=list)


def comparison_figures(runs: Sequence[RunData], policy: Policy, fig_dir: Path) -> list[_Figure]:
    auc_c = _policy_threshold(policy, lambda c: c.metric[:2] == ("privacy", "attacks") and c.metric[-1] == "auc")
    fid_c = _policy_threshold(policy, lambda c: c.metric == ("fidelity", "judge", "synthetic_vs_test", "fid")
                              and c.reference == ("fidelity", "judge", "real_floor", "fid"))
    util_c = _policy_threshold(policy, lambda c: c.metric[0] == "utility" and c.metric[-1] == "dice_diff")
    ylines: list[dict[str, Any]] = [{"axis": "y", "at": CHANCE_AUC, "label": "chance (AUC 0.5)", "colour": "0.55",
                                     "style": ":"}]
    if auc_c is not None:
        ylines.append({"axis": "y", "at": auc_c.threshold, "label": f"policy: AUC {auc_c.op} {auc_c.threshold:g}"})
        if auc_c.warn_threshold is not None:
            ylines.append({"axis": "y", "at": auc_c.warn_threshold, "style": "-.",
                           "label": f"policy: warn limit {auc_c.warn_threshold:g}"})
    ylabel = "best black-box MIA AUC (image level)"
    out = []

    specs = [
        ("privacy_vs_fidelity", "fid_ratio", "Privacy vs fidelity", "FID / real floor (judge features)",
         [{"axis": "x", "at": fid_c.threshold, "label": f"policy: FID ratio {fid_c.op} {fid_c.threshold:g}"}]
         if fid_c else [], "lower"),
        ("privacy_vs_utility", "utility", "Privacy vs utility", "utility: worst-vendor \u0394Dice (real+synthetic vs real)",
         [{"axis": "x", "at": util_c.threshold, "label": f"policy: \u0394Dice {util_c.op} {util_c.threshold:g}"}]
         if util_c else [], "higher"),
    ]
    for fid_id, xcol, title, xlabel, xlines, x_better in specs:
        pts, missing = _points(runs, xcol, "mia_auc_bb")
        notes = [f"not plotted: {m}" for m in missing]
        note = ""
        if not pts:
            reasons = sorted({r.cells[xcol].get("reason", "") for r in runs if r.value(xcol) is None} - {""})
            note = (f"{COLUMN_BY_ID[xcol].label.split(':')[0]} is not available for any run"
                    + (f":\n{reasons[0][:110]}" if reasons else ""))
            notes = [f"no run has both figures; {note.replace(chr(10), ' ')}"]
        try:
            fig = tradeoff_figure(pts, xlabel=xlabel, ylabel=ylabel, title=title, x_better=x_better,
                                  lines=list(xlines) + ylines, note=note)
            png = plots.save_figure(fig, fig_dir, fid_id)
        except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the comparison
            log.warning("compare: figure %s failed: %s", fid_id, exc, exc_info=True)
            notes.append(f"the figure could not be drawn: {type(exc).__name__}: {exc}")
            out.append(_Figure(fid_id, title, "", "", [], notes=notes))
            continue
        caption = ("One point per run with 95 % CI whiskers (x whiskers of the FID ratio: the FID's CI over the "
                   "floor's point estimate); hollow markers: reference runs; dashed steps: the Pareto front; "
                   "vermillion lines: the policy's thresholds.")
        out.append(_Figure(fid_id, title, caption, data_uri(plots.compact_png(png)),
                           [f"{fig_dir.name}/{fid_id}.png", f"{fig_dir.name}/{fid_id}.svg"], "pareto", notes=notes))
    dp = _epsilon_figure(runs, fig_dir)
    if dp is not None:
        out.append(dp)
    return out


#: panels of the DP trade-off figure: (column, axis label, which direction is better)
_EPS_PANELS = (("dice", "judge Dice (mean)", "higher"), ("fid_ratio", "FID / real floor", "lower"),
               ("mia_auc_bb", "best black-box MIA AUC", "lower"), ("mia_auc_wb", "best white-box MIA AUC", "lower"))


def epsilon_figure(series: Mapping[str, Sequence[Mapping[str, Any]]]):
    """Quality and attack success against the claimed epsilon, one line per generator.

    ``series[generator]``: points ``{"eps": float | None, column: value, ...}``; ``eps=None``
    (trained without DP) is drawn at an "inf" position right of the largest finite epsilon."""

    finite = [p["eps"] for pts in series.values() for p in pts if p["eps"] is not None]
    inf_x = max(finite) * 3 if finite else 1.0
    with style():
        fig = new_figure(11.0, 3.4)
        axes = fig.subplots(1, len(_EPS_PANELS))
        for ax, (col, label, better) in zip(axes, _EPS_PANELS):
            for i, (gen, pts) in enumerate(sorted(series.items())):
                xy = sorted((inf_x if p["eps"] is None else p["eps"], p[col]) for p in pts if p.get(col) is not None)
                if xy:
                    ax.plot(*zip(*xy), color=PALETTE[i % len(PALETTE)], marker=_MARKERS[i % len(_MARKERS)], label=gen)
            if col.startswith("mia"):
                ax.axhline(CHANCE_AUC, color="0.55", ls=":", lw=1)
            ax.set_xscale("log")
            ticks = sorted(set(finite)) + [inf_x]
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks[:-1]] + ["∞"])  # accountant epsilons: 7.99999 -> 8
            ax.minorticks_off()
            ax.set_xlabel("claimed ε")
            ax.set_title(f"{label} ({'↑' if better == 'higher' else '↓'} better)", fontsize=9.5)
        handles, labels = axes[0].get_legend_handles_labels()
        if labels:  # one legend for all panels, beside the last one
            axes[-1].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return fig


def _epsilon_figure(runs: Sequence[RunData], fig_dir: Path) -> _Figure | None:
    """The privacy-utility trade-off of DP training: only when some run makes a DP claim; the
    non-DP runs of the same generators are the epsilon = infinity end of each line."""

    dp_gens = {r.generator for r in runs if r.value("eps_claimed") is not None}
    if not dp_gens:
        return None
    series: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r.generator in dp_gens and not r.is_reference:
            series.setdefault(r.generator, []).append(
                {"eps": r.value("eps_claimed"), **{c: r.value(c) for c, _, _ in _EPS_PANELS}})
    fid_id, title = "dp_tradeoff", "DP trade-off: quality and attack success against the claimed epsilon"
    try:
        png = plots.save_figure(epsilon_figure(series), fig_dir, fid_id)
    except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the comparison
        log.warning("compare: figure %s failed: %s", fid_id, exc, exc_info=True)
        return _Figure(fid_id, title, "", "", [], notes=[f"the figure could not be drawn: {type(exc).__name__}: {exc}"])
    caption = ("One line per generator trained at several privacy budgets; ∞ = the same generator trained without "
               "DP. Claimed ε is the accountant's end-to-end figure (results.json dp.epsilon). Missing points: "
               "the figure is unavailable for that run.")
    return _Figure(fid_id, title, caption, data_uri(plots.compact_png(png)),
                   [f"{fig_dir.name}/{fid_id}.png", f"{fig_dir.name}/{fid_id}.svg"], "claimed_epsilon")
