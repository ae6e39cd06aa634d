"""Matplotlib figures of the run report (and, later, the comparison report).

Every function builds a :class:`matplotlib.figure.Figure` attached to the Agg canvas, so no
pyplot global state is touched and no display is needed. Style: readable fonts (10 pt body,
11 pt titles), the Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), and line styles /
markers that also tell series apart in greyscale print.

:func:`save_figure` writes a figure as PNG (for the HTML report, inlined as a data URI) and SVG
(for papers) into ``run_dir/figures/`` with atomic writes and returns the PNG bytes. Outputs are
deterministic for the same inputs (no dates in the metadata, fixed SVG hash salt).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import textwrap
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from audit.core.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = [
    "OKABE_ITO",
    "PALETTE",
    "CONDITIONING_COLOUR",
    "JUDGE_COLOUR",
    "style",
    "new_figure",
    "figure_bytes",
    "compact_png",
    "save_figure",
    "roc_figure",
    "distance_histogram_figure",
    "bar_ci_figure",
    "image_grid_figure",
]

#: Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), safe for the common
#: colour-vision deficiencies.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
#: order in which series take colours (the most distinct first; yellow last, it is weak on white)
PALETTE: tuple[str, ...] = tuple(OKABE_ITO[k] for k in (
    "blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "black", "yellow"))
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

#: outline colours of the sample grid: the conditioning mask (orange, solid) and the judge
#: segmentation (sky blue, dashed); both bright enough on a dark MR background
CONDITIONING_COLOUR = OKABE_ITO["orange"]
JUDGE_COLOUR = OKABE_ITO["sky_blue"]

PNG_DPI = 110

_RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "figure.titlesize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "svg.fonttype": "none",  # text stays text in the SVG: smaller, editable in a paper
    "svg.hashsalt": "cmr-audit",  # deterministic SVG ids
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The report's rcParams, active only inside the block (build and save figures inside it)."""
    import matplotlib  # lazy: matplotlib only when a figure is drawn

    with matplotlib.rc_context(_RC):
        yield


def new_figure(width: float, height: float, *, layout: str | None = "constrained"):
    """A :class:`~matplotlib.figure.Figure` on the Agg canvas (constrained layout by default;
    image grids pass ``layout=None`` and place their axes themselves, which is much faster)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib only when a figure is drawn
    from matplotlib.figure import Figure  # lazy: matplotlib only when a figure is drawn

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig, fmt: str) -> bytes:
    """Render ``fig`` as ``png`` or ``svg`` bytes (no dates or software tags in the metadata)."""
    buf = io.BytesIO()
    with style():
        if fmt == "png":
            fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
        elif fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        else:  # pragma: no cover - programming error
            raise ValueError(f"unsupported figure format {fmt!r}")
    return buf.getvalue()


def compact_png(png: bytes, colours: int = 256) -> bytes:
    """A palette (256-colour, median-cut) version of ``png`` for inlining in the HTML report:
    about half the size, visually the same for plots and grey images with coloured outlines.
    Returns ``png`` unchanged if Pillow fails or the result is not smaller. The files in
    ``figures/`` keep full colour."""
    try:
        from PIL import Image  # lazy: Pillow only when an image file is written

        with Image.open(io.BytesIO(png)) as im:
            q = im.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        q.save(buf, "PNG", optimize=True)
    except Exception as exc:  # noqa: BLE001 - the full PNG is always a valid fallback
        log.debug("PNG palette compaction failed (%s); inlining the full PNG", exc)
        return png
    out = buf.getvalue()
    return out if len(out) < len(png) else png


def save_figure(fig, figures_dir: str | Path, stem: str) -> bytes:
    """Write ``figures_dir/stem.png`` and ``.svg`` atomically; return the PNG bytes."""
    figures_dir = Path(figures_dir)
    png = figure_bytes(fig, "png")
    svg = figure_bytes(fig, "svg")
    atomic_write_bytes(figures_dir / f"{stem}.png", png)
    atomic_write_bytes(figures_dir / f"{stem}.svg", svg)
    log.debug("wrote figure %s (.png %d B, .svg %d B)", figures_dir / stem, len(png), len(svg))
    return png


# --------------------------------------------------------------------------- ROC curves

_LEVEL_TITLES = {
    "image": "image level",
    "subject_max": "subject level (max score)",
    "subject_mean": "subject level (mean score)",
}


def roc_figure(
    roc: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    *,
    aucs: Mapping[str, Mapping[str, float | None]] | None = None,
    kinds: Mapping[str, str] | None = None,
):
    """ROC curves of the membership-inference attacks.

    ``roc[attack][level] = {"fpr": [...], "tpr": [...]}``. One panel per level (image, subject
    max, subject mean) on linear axes, plus an image-level panel on log-log axes that shows the
    low-FPR regime (where privacy is decided). Each attack keeps its colour in all panels;
    white-box attacks are dashed. The legend gives each attack's AUC at that level.
    """
    aucs = aucs or {}
    kinds = kinds or {}
    attacks = [a for a in roc if isinstance(roc[a], Mapping)]
    levels = [lv for lv in ("image", "subject_max", "subject_mean") if any(lv in roc[a] for a in attacks)]
    panels: list[tuple[str, bool]] = []
    if "image" in levels:
        panels += [("image", False), ("image", True)]
    panels += [(lv, False) for lv in levels if lv != "image"]
    ncols = 2
    nrows = max(1, math.ceil(len(panels) / ncols))
    with style():
        fig = new_figure(9.0, 4.1 * nrows)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, (level, logscale) in zip(axes, panels):
            floor = 1.0
            for i, attack in enumerate(attacks):
                curve = roc[attack].get(level)
                if not curve:
                    continue
                fpr = np.asarray(curve.get("fpr", []), float)
                tpr = np.asarray(curve.get("tpr", []), float)
                if fpr.size == 0 or fpr.shape != tpr.shape:
                    continue
                auc = (aucs.get(attack) or {}).get(level)
                label = attack if auc is None else f"{attack} (AUC {auc:.3f})"
                ls = "--" if kinds.get(attack) == "white-box" else "-"
                if logscale:
                    pos = fpr[fpr > 0]
                    if pos.size:
                        floor = min(floor, float(pos.min()))
                ax.plot(fpr, tpr, color=PALETTE[i % len(PALETTE)], ls=ls, lw=1.6, label=label)
            if logscale:
                lo = max(min(floor, 1e-2) / 2.0, 1e-4)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlim(lo, 1.0)
                ax.set_ylim(lo, 1.02)
                grid = np.logspace(math.log10(lo), 0, 50)
                ax.plot(grid, grid, color="0.5", ls=":", lw=1, label="chance")
                ax.set_title(f"{_LEVEL_TITLES[level]}, log-log (low FPR)")
            else:
                ax.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1, label="chance")
                ax.set_xlim(0, 1)
                ax.set_ylim(0, 1.02)
                ax.set_aspect("equal")
                ax.set_title(_LEVEL_TITLES.get(level, level))
            ax.set_xlabel("false positive rate (non-members flagged)")
            ax.set_ylabel("true positive rate (members found)")
            ax.legend(loc="lower right")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        if not panels:
            axes[0].set_visible(True)
            axes[0].text(0.5, 0.5, "no ROC curves", ha="center", va="center", transform=axes[0].transAxes)
        fig.suptitle("Membership-inference ROC curves (members = train subjects, non-members = never-seen subjects)")
    return fig


# --------------------------------------------------------------------------- distances

def distance_histogram_figure(panels: Sequence[Mapping]):
    """Nearest-neighbour distance histograms, one panel per distance.

    Each panel: ``{"title", "xlabel", "bin_edges", "series": {label: counts}, "threshold"}``.
    Counts are shown as the fraction of each set per bin (the sets differ in size); a vertical
    line marks the copy threshold. A synthetic histogram shifted left of the holdout one means
    synthetic images sit closer to the training images than new real patients do.
    """
    n = max(1, len(panels))
    with style():
        fig = new_figure(min(4.6 * n, 13.8), 3.8)
        axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            edges = np.asarray(panel["bin_edges"], float)
            centres = (edges[:-1] + edges[1:]) / 2.0
            for i, (label, counts) in enumerate(panel["series"].items()):
                counts = np.asarray(counts, float)
                total = counts.sum()
                if counts.shape != centres.shape or total <= 0:
                    continue
                ax.stairs(counts / total, edges, color=PALETTE[i % len(PALETTE)], lw=1.6,
                          ls=_LINESTYLES[i % len(_LINESTYLES)], label=f"{label} (n = {int(total)})",
                          fill=False)
            thr = panel.get("threshold")
            if thr is not None and np.isfinite(thr):
                ax.axvline(float(thr), color=OKABE_ITO["vermillion"], lw=1.2, ls=":", label=f"copy threshold {thr:.3g}")
            ax.set_xlabel(textwrap.fill(str(panel.get("xlabel", "distance")), 48))
            ax.set_ylabel("fraction of the set per bin")
            ax.set_title(panel.get("title", ""))
            ax.legend(loc="best")
        fig.suptitle("Nearest-neighbour distance to the training set")
    return fig


# --------------------------------------------------------------------------- DP budget

def budget_figure(steps: Sequence[float], epsilons: Sequence[float], boundaries: Sequence[tuple[float, str]],
                  *, claimed: float | None = None):
    """Epsilon spent (RDP accountant, composed) against the cumulative training step, with the
    training phases marked; ``boundaries``: ``(first step of the phase, phase name)``."""
    with style():
        fig = new_figure(7.5, 3.6)
        ax = fig.subplots()
        ax.plot(steps, epsilons, color=PALETTE[0], lw=2, label="\u03b5 spent (composed)")
        for i, (x, name) in enumerate(boundaries):
            if i:
                ax.axvline(x, color="0.6", ls=":", lw=1)
            ax.annotate(name, (x, 0.93 - 0.08 * (i % 3)), xycoords=ax.get_xaxis_transform(), xytext=(4, 0),
                        textcoords="offset points", fontsize=8.5, color="0.3")  # staggered: a 1-step phase is narrow
        if claimed is not None:
            ax.axhline(claimed, color=OKABE_ITO["vermillion"], ls="--", lw=1.1, label=f"claimed \u03b5 = {claimed:.3g}")
        ax.set_xlabel("training step (all phases, in order)")
        ax.set_ylabel("\u03b5 at the run's \u03b4")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", frameon=False)
    return fig


# --------------------------------------------------------------------------- bars with CIs

def bar_ci_figure(
    groups: Sequence[str],
    series: Mapping[str, Sequence[tuple[float, float | None, float | None] | None]],
    *,
    ylabel: str,
    title: str,
    ylim: tuple[float, float] | None = None,
):
    """Grouped bars with 95 % CI whiskers. ``series[label][i]`` is ``(value, ci_low, ci_high)``
    for ``groups[i]``, or ``None`` where the figure is unavailable (marked "n/a")."""
    labels = [lab for lab in series if any(it is not None and it[0] is not None for it in series[lab])] or list(series)
    k = max(1, len(labels))
    width = 0.8 / k
    x = np.arange(len(groups), dtype=float)
    with style():
        fig = new_figure(min(9.0, max(4.5, 0.8 * len(groups) * k + 1.5)), 3.6)
        ax = fig.subplots()
        hatches = ("", "//", "..", "xx")
        for i, label in enumerate(labels):
            pos = x - 0.4 + width * (i + 0.5)
            labelled = False
            for j, item in enumerate(series[label]):
                if item is None or item[0] is None or not np.isfinite(item[0]):
                    ax.text(pos[j], 0.0, "n/a", ha="center", va="bottom", fontsize=8, color="0.35", rotation=90)
                    continue
                v, lo, hi = item
                yerr = None
                if lo is not None and hi is not None:
                    yerr = [[max(0.0, v - lo)], [max(0.0, hi - v)]]
                ax.bar(pos[j], v, width * 0.92, color=PALETTE[i % len(PALETTE)], hatch=hatches[i % len(hatches)],
                       edgecolor="white", linewidth=0.5, label=None if labelled else label)
                labelled = True
                if yerr is not None:
                    ax.errorbar(pos[j], v, yerr=yerr, color="0.15", capsize=3, lw=1)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="best")
        ax.set_xticks(x, list(groups))
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(axis="x", visible=False)
        ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- image grids

def _outline(ax, labels: np.ndarray, colour: str, ls: str) -> None:
    for value in (1, 2, 3):
        region = labels == value
        if region.any() and not region.all():
            ax.contour(region.astype(float), levels=[0.5], colors=[colour], linewidths=1.1, linestyles=[ls])


def image_grid_figure(
    images: Sequence[np.ndarray],
    *,
    titles: Sequence[str] | None = None,
    conditioning: Sequence[np.ndarray | None] | None = None,
    judge: Sequence[np.ndarray | None] | None = None,
    ncols: int = 4,
    suptitle: str = "",
    panel_inches: float = 2.0,
):
    """A grid of 2D images in grey (intensity window [0, 1]), each optionally outlined with
    its conditioning mask (orange, solid) and the judge segmentation (sky blue, dashed); every
    structure (RV, MYO, LV) gets its own outline. A legend names the two outlines.

    Images are shown transposed (array axis 0 horizontal), the usual view of nibabel-ordered
    cardiac MR slices.
    """
    from matplotlib.lines import Line2D  # lazy: matplotlib only when a figure is drawn

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    have_cond = conditioning is not None and any(m is not None for m in conditioning)
    have_judge = judge is not None and any(m is not None for m in judge)
    with style():
        title_h = 0.25 if titles is not None else 0.04
        legend_h = 0.4 if (have_cond or have_judge) else 0.05
        sup_h = 0.35 if suptitle else 0.0
        width = panel_inches * ncols
        height = (panel_inches + title_h) * nrows + legend_h + sup_h
        fig = new_figure(width, height, layout=None)
        grid = fig.add_gridspec(nrows, ncols, left=0.01, right=0.99, bottom=legend_h / height,
                                top=1.0 - (sup_h + title_h) / height, wspace=0.04, hspace=title_h / panel_inches)
        axes = np.array([fig.add_subplot(grid[r, c]) for r in range(nrows) for c in range(ncols)])
        for i, ax in enumerate(axes):
            ax.set_axis_off()
            if i >= n:
                continue
            ax.imshow(np.asarray(images[i], float).T, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if have_cond and conditioning[i] is not None:
                _outline(ax, np.asarray(conditioning[i]).T, CONDITIONING_COLOUR, "solid")
            if have_judge and judge[i] is not None:
                _outline(ax, np.asarray(judge[i]).T, JUDGE_COLOUR, "dashed")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8.5)
        handles = []
        if have_cond:
            handles.append(Line2D([], [], color=CONDITIONING_COLOUR, lw=1.6, ls="solid", label="conditioning mask (RV, MYO, LV)"))
        if have_judge:
            handles.append(Line2D([], [], color=JUDGE_COLOUR, lw=1.6, ls="dashed", label="judge segmentation (RV, MYO, LV)"))
        if handles:
            fig.legend(handles=handles, loc="lower center", ncols=len(handles), frameon=False,
                       bbox_to_anchor=(0.5, 0.0))
        if suptitle:
            fig.suptitle(suptitle, y=1.0 - 0.05 / height, va="top")
    return fig
