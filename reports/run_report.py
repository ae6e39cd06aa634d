"""The run report: ``report.html``, one self-contained file per run directory.

:func:`write_report` reads what a run wrote (``results.json``, ``config.json``, ``env.json``,
``state.json``, ``samples.npz``, ``judge_samples.npz``, ``privacy_curves.json``, the per-sample
CSVs and ``figures/clinical_*.png``) and renders ``run_dir/report.html`` with Jinja2
(autoescaping on: every subject id, file name and config string is HTML-escaped). The file has
inline CSS, figures inlined as base64 PNG data URIs, a Content-Security-Policy that forbids any
network request or script, and needs no JavaScript. Every figure is also written as PNG and SVG
to ``run_dir/figures/`` and every table as a long-format CSV to ``run_dir/tables/`` (one row per
cell: value, unit, CI, n, status, reason, method), all with atomic writes.

Sections (their HTML ids are :data:`SECTION_IDS`):

* ``verdict``: four tiles (privacy, fidelity, anatomy, utility), each with its headline number
  and a colour from the fixed thresholds below. The tiles are a reading aid; the binding
  PASS / WARN / FAIL is ``audit signoff`` (its verdict is shown when ``signoff.json`` exists).
* ``inputs``: which input files are present, and for each missing one what it would have fed
  and why it is missing (the audit switched off in the config, or the section's unavailable
  reason from ``results.json``).
* ``privacy``: attack set-up (members / non-members), ROC curves per attack (linear and
  log-log), AUC / balanced accuracy / TPR at 1 % and 0.1 % FPR with CIs per attack and level,
  memorisation (copy rate, DCR ratio, nearest-neighbour distances) per distance, the
  nearest-neighbour distance histogram, the synthetic images closest to the training set, and
  DP (claimed epsilon vs the empirical lower bound, accountant details).
* ``fidelity``: distribution metrics (FID, KID, precision / recall / density / coverage) in the
  feature space named from the method strings, each beside the real floor (the same metric
  between two real subject sets), the FID / floor ratio, and paired metrics (PSNR, SSIM,
  MS-SSIM of SDEdit outputs and autoencoder reconstructions).
* ``anatomy``: judge Dice / HD95 per structure beside the real ceiling, plausibility criteria
  pass rates synthetic vs real, SDEdit structure preservation, clinical indices with the
  Bland-Altman figures written by the anatomy stage.
* ``utility``: the utility figures when present, otherwise the unavailable reason.
* ``samples``: a grid of up to 16 synthetic images with their conditioning-mask outlines and
  the judge-segmentation outlines, and a caption table (subject, vendor, group, judge Dice).
* ``provenance``: run identity, hashes (config, data, results, samples), git commit, seed,
  environment and package versions, the full configuration and stage timings.
* ``glossary``: "what this means / how to read it" for every metric; each metric label in the
  report links to its entry.

Any section whose entries were not placed in a dedicated table lists them in an "other
figures" table, so nothing in ``results.json`` is silently dropped.

Verdict-tile colours (:func:`tile_thresholds`; good / borderline / concern, grey when unavailable)
come from the sign-off policy the run was signed off with (``signoff.json``), or the shipped
default policy: a figure is *good* when its policy criterion passes on the point estimate,
*borderline* when it lands in the criterion's warning band, a *concern* when it fails. The binding
verdict (which reads confidence bounds where the policy says so) is the sign-off's.

* privacy: the best membership-inference AUC (black- or white-box, image or subject level as
  the privacy summary reports it), criterion ``mia_auc``.
* fidelity: FID(synthetic, test) / FID(real floor), criterion ``fid_vs_real_floor``.
* anatomy: the worse of the synthetic plausible-image rate (``plausible_rate``) and the judge Dice
  as a fraction of the real ceiling (``judge_dice_vs_ceiling``).
* utility: always grey (no tile threshold is defined); the tile counts the utility figures, and
  the section and the sign-off policy carry them.

Real patient images are never read by this module. With ``include_real_images=True`` the report
carries a banner saying that it may contain patient data; rendering the real side of
nearest-neighbour pairs is not implemented yet (the report says so).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from audit.core import tables
from audit.core.atomic import atomic_write_text
from audit.core.errors import UserError
from audit.core.results import iter_entries, load_results
from audit.utility.metrics import dice_bars
from generators.dp.accountant import Phase, epsilon_rdp
from generators.sampleset import SampleSet
from reports import plots
from reports.glossary import GLOSSARY
from reports.policy import Policy, load_policy

log = logging.getLogger(__name__)

__all__ = ["REPORT_NAME", "SECTION_IDS", "TILE_CRITERIA", "GLOSSARY", "tile_thresholds", "write_report", "render_report"]

REPORT_NAME = "report.html"
SECTION_IDS = ("verdict", "inputs", "privacy", "fidelity", "anatomy", "utility", "samples", "provenance", "glossary")
TEMPLATE = "run_report.html.j2"
N_GRID = 16
N_NEAREST = 8

#: verdict-tile figure -> the sign-off policy criterion whose thresholds colour it
TILE_CRITERIA: dict[str, str] = {
    "privacy_auc": "mia_auc",
    "fidelity_fid_ratio": "fid_vs_real_floor",
    "anatomy_plausible": "plausible_rate",
    "anatomy_dice_ratio": "judge_dice_vs_ceiling",
}


def tile_thresholds(policy: Policy) -> dict[str, dict[str, Any]]:
    """``{tile figure: {"pass", "warn", "better", "criterion"}}`` from ``policy``'s criteria; a
    figure whose criterion the policy does not have is left out (its tile stays grey)."""
    by_id = {c.id: c for c in policy.criteria}
    out: dict[str, dict[str, Any]] = {}
    for key, cid in TILE_CRITERIA.items():
        c = by_id.get(cid)
        if c is not None and c.op in ("<=", "<", ">=", ">"):
            out[key] = {"pass": c.threshold, "warn": c.warn_threshold, "better": "lower" if c.op in ("<=", "<") else "higher",
                        "criterion": cid}
    return out


def _tile_level(value: float | None, th: Mapping[str, Any] | None) -> str:
    if value is None or th is None:
        return "na"
    lower = th["better"] == "lower"
    if (value <= th["pass"]) if lower else (value >= th["pass"]):
        return "good"
    warn = th.get("warn")
    if warn is not None and ((value <= warn) if lower else (value >= warn)):
        return "warn"
    return "bad"


_LEVEL_WORDS = {"good": "good", "warn": "borderline", "bad": "concern", "na": "not available"}
_LEVEL_ORDER = {"good": 0, "warn": 1, "bad": 2}

# --------------------------------------------------------------------------- glossary

_GLOSS_ALIASES = {
    "tpr_at_fpr_1%": "tpr_at_fpr", "tpr_at_fpr_0.1%": "tpr_at_fpr", "tpr_at_lowest_fpr": "tpr_at_fpr",
    "hd95_mm": "hd95", "holdout_copy_rate": "copy_rate",
    "nn_distance_to_train_median": "nn_distance", "holdout_nn_distance_to_train_median": "nn_distance",
    "epsilon_lb_image_level": "epsilon_lb", "violation": "epsilon_lb",
    "bland_altman_bias": "bland_altman", "loa_low": "bland_altman", "loa_high": "bland_altman",
    "best_black_box_auc": "auc", "best_white_box_auc": "auc", "fid_ratio_to_floor": "fid_ratio",
    "accounting": "dp_accounting", "n_members": "setup", "n_nonmembers": "setup",
}


def gloss_for(key: str) -> str:
    """The glossary anchor for a (dotted) results key: its last part, an alias, else the generic note."""
    parts = key.split(".")
    for part in reversed(parts):
        if part in GLOSSARY:
            return part
        if part in _GLOSS_ALIASES:
            return _GLOSS_ALIASES[part]
        if part.startswith("tpr_at_fpr"):
            return "tpr_at_fpr"
    if any(p.startswith("strength_") for p in parts):
        return "sdedit"
    return "metric_entry"


# --------------------------------------------------------------------------- formatting

def _is_entry(node: Any) -> bool:
    return isinstance(node, Mapping) and ("value" in node or "status" in node)


def _is_metric(node: Any) -> bool:
    return isinstance(node, Mapping) and "value" in node and isinstance(node.get("value"), (int, float))


def _num(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e4:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}"


def _scaled(v: float, unit: str | None) -> float:
    return v * 100.0 if unit == "fraction" else v


def _unit_suffix(unit: str | None) -> str:
    if unit in (None, "", "1", "images", "subjects"):
        return ""
    if unit == "fraction":
        return "%"
    return str(unit)


def fmt_value(v: float | None, unit: str | None = None) -> str:
    """A value for display: 3 significant digits, fractions as percent, counts as integers."""
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "n/a"
    if unit in ("images", "subjects") and float(v).is_integer():
        return str(int(v))
    return _num(_scaled(float(v), unit))


def _headline(entry: Mapping | None) -> str:
    if not _is_metric(entry):
        return "n/a"
    suffix = _unit_suffix(entry.get("unit"))
    text = fmt_value(entry["value"], entry.get("unit"))
    return f"{text} {suffix}".strip() if suffix and suffix != "feature units^2" else text


def _sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _label(key: str) -> str:
    return _LABELS.get(key, key.replace("_", " "))


_LABELS = {
    "best_black_box_auc": "best black-box AUC", "best_white_box_auc": "best white-box AUC",
    "claimed_epsilon": "claimed \u03b5", "epsilon_lb": "empirical \u03b5 lower bound (subject level)",
    "epsilon_lb_image_level": "empirical \u03b5 lower bound (image level)", "violation": "violation (lower bound > claimed \u03b5)",
    "nonmember_images": "non-member images", "nonmember_subjects": "non-member subjects",
    "dcr_ratio": "DCR ratio", "nn_distance_to_train_median": "median NN distance to train (synthetic)",
    "holdout_nn_distance_to_train_median": "median NN distance to train (holdout)",
    "pixel_correlation": "pixel correlation", "pca": "PCA embedding",
    "subject_max": "subject (max)", "subject_mean": "subject (mean)",
}


# --------------------------------------------------------------------------- tables

class Table:
    """A report table: header, rows of cells, numbered unavailable reasons and method notes.

    Cells are built from results entries (metric or unavailable), ``None`` (absent from the
    results) or plain text. :meth:`csv_text` gives the long-format CSV (one row per cell).
    """

    def __init__(self, tid: str, title: str, columns: Sequence[str | tuple[str, str | None]], *,
                 caption: str = "", row_header: str = "", row_gloss: str | None = None):
        self.id = tid
        self.title = title
        self.caption = caption
        self.row_header = row_header
        self.row_gloss = row_gloss
        self.columns = [{"label": c, "gloss": None} if isinstance(c, str) else {"label": c[0], "gloss": c[1]}
                        for c in columns]
        self.rows: list[dict[str, Any]] = []
        self.reasons: list[str] = []
        self.methods: list[str] = []
        self._csv: list[list[Any]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def _note(self, reason: str) -> int:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return self.reasons.index(reason) + 1

    def cell(self, row_label: str, col_label: str, x: Any, *, unit_override: str | None = None,
             highlight: bool = False) -> dict[str, Any]:
        if _is_entry(x) and x.get("status") == "unavailable":
            reason = str(x.get("reason") or "no reason given")
            self._csv.append([row_label, col_label, "", "", "", "", "", "unavailable", reason, "", ""])
            return {"kind": "na", "text": "n/a", "note": self._note(reason)}
        if _is_metric(x):
            unit = unit_override or x.get("unit")
            lo, hi = x.get("ci_low"), x.get("ci_high")
            ci = ""
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
                ci = f"[{fmt_value(lo, unit)}, {fmt_value(hi, unit)}]"
            method = str(x.get("method") or "")
            if method and method not in self.methods:
                self.methods.append(method)
            notes = str(x.get("notes") or "")
            self._csv.append([row_label, col_label, x["value"], x.get("unit"), lo, hi, x.get("n"), "ok", "", method, notes])
            return {"kind": "metric", "text": fmt_value(x["value"], unit), "unit": _unit_suffix(unit), "ci": ci,
                    "n": "" if x.get("n") is None or unit in ("images", "subjects") else f"n={x['n']}", "method": method, "notes": notes,
                    "highlight": highlight}
        if x is None:
            self._csv.append([row_label, col_label, "", "", "", "", "", "absent", "not in results.json", "", ""])
            return {"kind": "absent", "text": "\u2014"}
        if isinstance(x, float):
            self._csv.append([row_label, col_label, x, "", "", "", "", "ok", "", "", ""])
            return {"kind": "text", "text": fmt_value(x)}
        self._csv.append([row_label, col_label, str(x), "", "", "", "", "ok", "", "", ""])
        return {"kind": "text", "text": str(x)}

    def add(self, label: str, cells: Sequence[Any], *, gloss: str | None = None, sub: str = "",
            highlight: Sequence[bool] | None = None) -> None:
        if gloss is not None and gloss not in GLOSSARY:  # pragma: no cover - programming error
            raise KeyError(f"glossary has no entry {gloss!r}")
        built = [self.cell(label, self.columns[i]["label"] if i < len(self.columns) else str(i), c,
                           highlight=bool(highlight and highlight[i]))
                 for i, c in enumerate(cells)]
        for c in built:
            c.setdefault("highlight", False)
        self.rows.append({"label": label, "gloss": gloss, "sub": sub, "cells": built})

    #: header of :meth:`csv_text` (one entry per value in a row of ``_csv``)
    CSV_COLUMNS: tuple[str, ...] = ("row", "column", "value", "unit", "ci_low", "ci_high", "n", "status", "reason",
                                    "method", "notes")

    def csv_text(self) -> str:
        """The long-format CSV, spreadsheet-safe (:mod:`audit.core.tables`): row labels and text cells can
        come from the sample set (subject ids, vendor, group), so formula-like text is guarded."""
        return tables.csv_text(self._csv, self.CSV_COLUMNS)


# --------------------------------------------------------------------------- run-dir inputs

#: input file -> (what it feeds in the report, the audit axis that writes it or None)
INPUT_FILES: dict[str, tuple[str, str | None]] = {
    "results.json": ("every figure of the privacy, fidelity, anatomy and utility sections and the verdict card", None),
    "config.json": ("provenance: the resolved configuration", None),
    "env.json": ("provenance: versions, git commit, data hash", None),
    "state.json": ("provenance: stage timings", None),
    "samples.npz": ("the sample grid and the synthetic images closest to the training set", None),
    "judge_samples.npz": ("judge-segmentation outlines in the sample grid", "anatomy"),
    "privacy_curves.json": ("ROC curves, distance histograms, attack descriptions, closest synthetic images", "privacy"),
    "privacy_per_sample.csv": ("per-image membership scores (distance histogram fallback)", "privacy"),
    "anatomy_per_sample.csv": ("per-image judge Dice in the sample grid", "anatomy"),
    "clinical_per_subject.csv": ("per-subject clinical indices behind the Bland-Altman figures", "anatomy"),
}


@dataclass
class RunInputs:
    """Everything read from a run directory; ``errors[name]`` says why a file could not be used."""

    run_dir: Path
    results: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    env: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    samples: Any = None
    judge: dict[str, np.ndarray] | None = None
    curves: dict[str, Any] | None = None
    privacy_csv: Any = None
    anatomy_csv: Any = None
    clinical_csv: Any = None
    clinical_pngs: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    present: dict[str, bool] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def load_inputs(run_dir: Path) -> RunInputs:
    """Read every input of the report; a missing or unreadable file is recorded, never raised."""

    inp = RunInputs(run_dir=run_dir)

    def attempt(name: str, loader: Callable[[Path], Any]) -> Any:
        path = run_dir / name
        inp.present[name] = path.is_file()
        if not path.is_file():
            inp.errors[name] = "missing"
            return None
        try:
            return loader(path)
        except UserError as exc:
            inp.errors[name] = f"unreadable: {exc}"
        except Exception as exc:  # noqa: BLE001 - a broken file must not break the report
            inp.errors[name] = f"unreadable: {type(exc).__name__}: {exc}"
        log.warning("report: cannot use %s: %s", path, inp.errors[name])
        return None

    def load_samples(path: Path):
        return SampleSet.load(path)

    def load_npz(path: Path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def load_csv(path: Path):
        return tables.read_csv(path)  # our own run-dir tables: strip the spreadsheet guards again

    inp.results = attempt("results.json", load_results)
    inp.config = attempt("config.json", _read_json)
    inp.env = attempt("env.json", _read_json)
    inp.state = attempt("state.json", _read_json)
    inp.samples = attempt("samples.npz", load_samples)
    inp.judge = attempt("judge_samples.npz", load_npz)
    inp.curves = attempt("privacy_curves.json", _read_json)
    inp.privacy_csv = attempt("privacy_per_sample.csv", load_csv)
    inp.anatomy_csv = attempt("anatomy_per_sample.csv", load_csv)
    inp.clinical_csv = attempt("clinical_per_subject.csv", load_csv)
    for name, kind in (("config.json", dict), ("env.json", dict), ("state.json", dict), ("privacy_curves.json", dict)):
        attr = {"config.json": "config", "env.json": "env", "state.json": "state", "privacy_curves.json": "curves"}[name]
        if getattr(inp, attr) is not None and not isinstance(getattr(inp, attr), kind):
            inp.errors[name] = "unreadable: not a JSON object"
            setattr(inp, attr, None)
    fig_dir = run_dir / "figures"
    if fig_dir.is_dir():
        inp.clinical_pngs = sorted(p for p in fig_dir.glob("clinical_*.png") if p.is_file())
    return inp


# --------------------------------------------------------------------------- results access

class Results:
    """Read-only access to ``results.json`` that remembers which entries the report placed,
    so the rest can be listed in "other figures" tables."""

    def __init__(self, doc: Mapping[str, Any] | None):
        self.doc = doc or {}
        self.used: set[str] = set()

    def node(self, *path: str) -> Any:
        cur: Any = self.doc
        for p in path:
            if not isinstance(cur, Mapping) or p not in cur:
                return None
            cur = cur[p]
        return cur

    def entry(self, *path: str) -> Mapping[str, Any] | None:
        n = self.node(*path)
        if _is_entry(n):
            self.used.add(".".join(path))
            return n
        return None

    def mark(self, *path: str) -> None:
        """Mark every entry at or below ``path`` as placed."""

        n = self.node(*path)
        prefix = ".".join(path)
        if _is_entry(n):
            self.used.add(prefix)
        elif isinstance(n, Mapping):
            for k, _ in iter_entries(n):
                self.used.add(f"{prefix}.{k}")

    def section_reasons(self, section: str) -> list[str]:
        """Unavailable reasons recorded directly at the top of a section (e.g. ``utility.audit``)."""
        node = self.node(section)
        out = []
        if isinstance(node, Mapping):
            for key, value in node.items():
                if _is_entry(value) and value.get("status") == "unavailable":
                    self.used.add(f"{section}.{key}")
                    out.append(f"{_label(key)}: {value.get('reason')}")
        return out

    def leftovers(self, section: str) -> list[tuple[str, Mapping[str, Any]]]:
        node = self.node(section)
        if not isinstance(node, Mapping):
            return []
        return [(k, e) for k, e in iter_entries(node) if f"{section}.{k}" not in self.used]


# --------------------------------------------------------------------------- the builder

@dataclass
class Figure:
    id: str
    title: str
    caption: str
    data_uri: str
    files: list[str]
    gloss: str | None = None


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    notes: list[str] = field(default_factory=list)
    blocks: list[dict[str, Any]] = field(default_factory=list)
    gloss: str | None = None

    def table(self, t: Table) -> None:
        if len(t):
            self.blocks.append({"type": "table", "table": t})

    def figure(self, f: Figure | None) -> None:
        if f is not None:
            self.blocks.append({"type": "figure", "figure": f})

    def text(self, heading: str, paragraphs: Sequence[str], gloss: str | None = None) -> None:
        self.blocks.append({"type": "text", "heading": heading, "paragraphs": list(paragraphs), "gloss": gloss})


def _budget_plot(dp: Mapping[str, Any]):
    """The figure behind "Privacy budget spent over training" (None when the section lacks the figures)."""

    def val(e: Any) -> float | None:
        return float(e["value"]) if _is_metric(e) else None

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


class _Builder:
    def __init__(self, inp: RunInputs, include_real_images: bool):
        self.inp = inp
        self.include_real_images = include_real_images
        self.res = Results(inp.results)
        self.tables: list[Table] = []
        self.figures: list[Figure] = []
        self.fig_dir = inp.run_dir / "figures"
        self.table_dir = inp.run_dir / "tables"

    # ---------------------------------------------------------------- helpers
    def _table(self, *args, **kwargs) -> Table:
        t = Table(*args, **kwargs)
        self.tables.append(t)
        return t

    def _figure(self, fid: str, title: str, caption: str, build: Callable[[], Any], *, gloss: str | None = None,
                notes: list[str] | None = None) -> Figure | None:
        try:
            fig = build()
            if fig is None:
                return None
            png = plots.save_figure(fig, self.fig_dir, fid)
        except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the report
            log.warning("report: figure %s failed: %s", fid, exc, exc_info=True)
            if notes is not None:
                notes.append(f"figure '{title}' could not be drawn: {type(exc).__name__}: {exc}")
            return None
        f = Figure(fid, title, caption, _data_uri(plots.compact_png(png)), [f"figures/{fid}.png", f"figures/{fid}.svg"], gloss)
        self.figures.append(f)
        return f

    def _missing_results_note(self, section: Section) -> bool:
        if self.inp.results is None:
            section.notes.append(f"results.json is {self.inp.errors.get('results.json', 'missing')}: "
                                 "no figures for this section.")
            return True
        return False

    def _leftover_table(self, section: Section, name: str) -> None:
        rest = self.res.leftovers(name)
        if not rest:
            return
        t = self._table(f"{name}_other", f"Other {name} figures", ["value"], row_header="results key",
                        caption="Entries of results.json not shown in the tables above.")
        for key, entry in rest:
            t.add(f"{name}.{key}", [entry], gloss=gloss_for(key))
        section.table(t)

    def _config_switch(self, axis: str) -> bool | None:
        audit = (self.inp.config or {}).get("audit")
        if isinstance(audit, Mapping) and isinstance(audit.get(axis), bool):
            return audit[axis]
        return None

    # ---------------------------------------------------------------- verdict
    def verdict(self) -> list[dict[str, Any]]:
        """The four verdict tiles (privacy, fidelity, anatomy, utility) with headline and level."""
        r = self.res
        tiles: list[dict[str, Any]] = []

        thresholds = self.tile_policy()[1]

        def level(value: float | None, key: str) -> str:
            return _tile_level(value, thresholds.get(key))

        def value_of(e: Mapping | None) -> float | None:
            return float(e["value"]) if _is_metric(e) else None

        def reason_of(*nodes: Any) -> str:
            for n in nodes:
                if _is_entry(n) and n.get("status") == "unavailable":
                    return str(n.get("reason"))
            return ""

        # privacy
        bb = r.node("privacy", "summary", "best_black_box_auc")
        wb = r.node("privacy", "summary", "best_white_box_auc")
        aucs = [(value_of(bb), "black-box", bb), (value_of(wb), "white-box", wb)]
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
                subs.append(f"best {okind} AUC: " + (fmt_value(ov) if ov is not None else f"n/a ({reason_of(oe) or 'absent'})"))
            lv = level(v, "privacy_auc")
        else:
            head, lv = "n/a", "na"
            subs.append(reason_of(bb, r.node("privacy", "audit")) or self._absent_reason("privacy"))
        copy = r.node("privacy", "memorisation", "pixel_correlation", "copy_rate")
        if _is_metric(copy):
            hold = r.node("privacy", "memorisation", "pixel_correlation", "holdout_copy_rate")
            extra = f" (holdout {fmt_value(hold['value'], hold.get('unit'))} %)" if _is_metric(hold) else ""
            subs.append(f"copy rate {fmt_value(copy['value'], copy.get('unit'))} %{extra}, pixel correlation")
        tiles.append({"axis": "privacy", "title": "Privacy", "headline": head, "sub": subs, "level": lv,
                      "gloss": "auc", "metric": "best MIA AUC"})

        # fidelity
        ratio = r.node("fidelity", "judge", "fid_ratio_to_floor")
        subs = []
        if _is_metric(ratio):
            head = f"{fmt_value(ratio['value'])}\u00d7"
            lv = level(float(ratio["value"]), "fidelity_fid_ratio")
            syn = r.node("fidelity", "judge", "synthetic_vs_test", "fid")
            flo = r.node("fidelity", "judge", "real_floor", "fid")
            if _is_metric(syn) and _is_metric(flo):
                subs.append(f"FID {fmt_value(syn['value'])} vs real floor {fmt_value(flo['value'])} (judge features)")
        else:
            head, lv = "n/a", "na"
            subs.append(reason_of(ratio, r.node("fidelity", "judge"), r.node("fidelity", "audit"))
                        or self._absent_reason("fidelity"))
        tiles.append({"axis": "fidelity", "title": "Fidelity", "headline": head, "sub": subs, "level": lv,
                      "gloss": "fid_ratio", "metric": "FID / real floor"})

        # anatomy
        plaus = r.node("anatomy", "plausibility", "synthetic", "plausible_rate")
        dice = r.node("anatomy", "judge_agreement", "dice", "mean")
        ceil = r.node("anatomy", "judge_agreement_real_test", "dice", "mean")
        subs, levels = [], []
        if _is_metric(plaus):
            head = f"{fmt_value(plaus['value'], 'fraction')} %"
            levels.append(level(float(plaus["value"]), "anatomy_plausible"))
            real = r.node("anatomy", "plausibility", "real_test", "plausible_rate")
            subs.append("plausible synthetic images" + (f" (real test {fmt_value(real['value'], 'fraction')} %)" if _is_metric(real) else ""))
        else:
            head = None
        if _is_metric(dice):
            if _is_metric(ceil) and ceil["value"] > 0:
                frac = float(dice["value"]) / float(ceil["value"])
                levels.append(level(frac, "anatomy_dice_ratio"))
                subs.append(f"judge Dice {fmt_value(dice['value'])} vs real ceiling {fmt_value(ceil['value'])} "
                            f"({fmt_value(frac, 'fraction')} % of it)")
            else:
                subs.append(f"judge Dice {fmt_value(dice['value'])} (no real ceiling: "
                            f"{reason_of(ceil, r.node('anatomy', 'judge_agreement_real_test')) or 'not in results'})")
            if head is None:
                head = fmt_value(dice["value"])
        if head is None:
            head = "n/a"
            subs.append(reason_of(plaus, r.node("anatomy", "plausibility"), dice, r.node("anatomy", "judge_agreement"),
                                  r.node("anatomy", "audit")) or self._absent_reason("anatomy"))
        lv = max(levels, key=_LEVEL_ORDER.get) if levels else "na"
        if not levels and head != "n/a":
            subs.append("not rated: the tile colour needs the plausible-image rate or the real ceiling")
        tiles.append({"axis": "anatomy", "title": "Anatomy", "headline": head, "sub": subs, "level": lv,
                      "gloss": "plausible_rate", "metric": "plausible-image rate" if _is_metric(plaus) else "judge Dice"})

        # utility

        util = r.node("utility")
        metrics = [k for k, e in iter_entries(util)] if isinstance(util, Mapping) else []
        metrics = [k for k in metrics if _is_metric(r.node("utility", *k.split(".")))]
        if metrics:
            head, subs = "see section", [f"{len(metrics)} utility figures; no tile threshold defined yet"]
        else:
            reasons = [str(e.get("reason")) for _, e in iter_entries(util)] if isinstance(util, Mapping) else []
            head, subs = "not available yet", [reasons[0] if reasons else "the utility audit is not built yet"]
        tiles.append({"axis": "utility", "title": "Utility", "headline": head, "sub": subs, "level": "na",
                      "gloss": "utility", "metric": "segmentation on real scans"})
        for t in tiles:
            t["level_word"] = _LEVEL_WORDS[t["level"]]
        return tiles

    def _absent_reason(self, axis: str) -> str:
        if self.inp.results is None:
            return f"results.json {self.inp.errors.get('results.json', 'missing')}"
        if self._config_switch(axis) is False:
            return f"switched off (audit.{axis} = false)"
        return "not in results.json"

    @functools.cached_property
    def _policy(self) -> Policy:
        """The policy of the run's ``signoff.json`` when it still loads, else the shipped default."""
        try:
            recorded = (_read_json(self.inp.run_dir / "signoff.json").get("policy") or {}).get("path")
            return load_policy(recorded) if recorded else load_policy()
        except Exception:  # noqa: BLE001 - no sign-off yet, or its policy file moved: the default
            return load_policy()

    def tile_policy(self) -> tuple[str, dict[str, dict[str, Any]]]:
        """``(policy name, tile thresholds)`` of :attr:`_policy`."""
        return self._policy.name, tile_thresholds(self._policy)

    def signoff(self) -> dict[str, str] | None:
        path = self.inp.run_dir / "signoff.json"
        if not path.is_file():
            return None
        try:
            doc = _read_json(path)
        except Exception as exc:  # noqa: BLE001
            return {"verdict": "unreadable", "detail": str(exc)}
        if not isinstance(doc, Mapping):
            return None
        verdict = doc.get("overall") or doc.get("verdict")
        if isinstance(verdict, Mapping):
            verdict = verdict.get("verdict") or verdict.get("overall")
        return {"verdict": str(verdict) if verdict is not None else "unknown", "detail": "signoff.json"}

    # ---------------------------------------------------------------- inputs
    def inputs(self) -> Section:
        """Which input files the report found, and why each missing one is missing."""
        sec = Section("inputs", "Inputs and missing parts",
                      intro="Files of the run directory the report reads. A missing file leaves the parts it feeds "
                            "out of the report; the reason comes from the configuration or from results.json.")
        t = self._table("inputs", "Input files", ["status", "feeds", "why missing"], row_header="file")
        for name, (feeds, axis) in INPUT_FILES.items():
            err = self.inp.errors.get(name)
            if err is None:
                t.add(name, ["present", feeds, ""])
                continue
            why = ""
            if err == "missing":
                if axis and self._config_switch(axis) is False:
                    why = f"audit.{axis} = false in config.json"
                elif axis and self.inp.results is not None:
                    reasons = self.res.section_reasons(axis)
                    why = "; ".join(reasons) or "not written by this run (stage not run, failed or not built yet; see run.log)"
                else:
                    why = "not written by this run (see run.log)"
            t.add(name, [err, feeds, why])
        n_png = len(self.inp.clinical_pngs)
        t.add("figures/clinical_*.png", ["present" if n_png else "missing", "Bland-Altman figures of the clinical indices",
                                         "" if n_png else self._clinical_reason()])
        sec.table(t)
        if self.inp.results is not None:
            r = Results(self.inp.results)
            reasons = [(s, rr) for s in ("privacy", "fidelity", "anatomy", "utility", "dp") for rr in r.section_reasons(s)]
            if reasons:
                s2 = self._table("inputs_sections", "Audits recorded as unavailable", ["reason"], row_header="section")
                for s, rr in reasons:
                    s2.add(s, [rr])
                sec.table(s2)
        missing = [n for n, e in self.inp.errors.items()]
        sec.notes.extend(f"{n}: {self.inp.errors[n]}" for n in missing if self.inp.errors[n] != "missing")
        return sec

    def _clinical_reason(self) -> str:
        c = self.res.node("anatomy", "clinical")
        if _is_entry(c) and c.get("status") == "unavailable":
            return str(c.get("reason"))
        return "not written by this run"

    # ---------------------------------------------------------------- privacy
    def privacy(self) -> Section:
        """Privacy: set-up (members / non-members / attacker data and their splits), ROC curves, attack
        table (AUC, balanced accuracy, TPR@1 % / 0.1 % / lowest supported FPR with CIs), memorisation (copy rate, DCR ratio, distances) with the distance histogram and the
        synthetic images closest to the training set, and DP (claimed epsilon vs empirical LB)."""
        sec = Section("privacy", "Privacy", gloss="attack",
                      intro="Can an attacker tell that a patient was in the training set, are there near-copies of "
                            "training images, and does a differential-privacy claim hold?")
        if self._missing_results_note(sec):
            return sec
        r = self.res
        sec.notes.extend(r.section_reasons("privacy"))
        curves = self.inp.curves or {}
        if self.inp.curves is None and r.node("privacy", "attacks") is not None:
            sec.notes.append(f"privacy_curves.json is {self.inp.errors.get('privacy_curves.json', 'missing')}: "
                             "no ROC curves, distance histograms or attack descriptions.")

        # set-up and summary
        setup = r.node("privacy", "setup")
        summary = r.node("privacy", "summary")
        if isinstance(setup, Mapping) or isinstance(summary, Mapping):
            t = self._table("privacy_summary", "Attack set-up and summary", ["value"], row_header="figure",
                            row_gloss="setup")
            for key in ("best_black_box_auc", "best_white_box_auc"):
                e = r.entry("privacy", "summary", key)
                if e is not None:
                    t.add(_LABELS.get(key, _label(key)), [e], gloss="auc", sub=str(e.get("notes") or ""))
            if isinstance(setup, Mapping):
                for key in setup:
                    e = r.entry("privacy", "setup", key)
                    if e is not None:  # the notes name the splits each role comes from
                        t.add(_label(key), [e], gloss="setup", sub=str(e.get("notes") or ""))
            sec.table(t)

        # ROC curves and attack table
        attacks = r.node("privacy", "attacks")
        info = curves.get("attacks") if isinstance(curves.get("attacks"), Mapping) else {}
        kinds = {a: str(v.get("kind", "")) for a, v in info.items() if isinstance(v, Mapping)}
        if isinstance(attacks, Mapping):
            t = self._table("privacy_attacks", "Membership-inference attacks",
                            [("kind", "attack"), ("level", "attack_level"), ("AUC", "auc"),
                             ("balanced accuracy", "balanced_accuracy"), ("TPR @ 1 % FPR", "tpr_at_fpr"),
                             ("TPR @ 0.1 % FPR", "tpr_at_fpr"), ("TPR @ lowest FPR", "tpr_at_fpr"),
                             ("lowest FPR", "tpr_at_fpr"), ("members / non-members", "setup")],
                            row_header="attack", row_gloss="attack",
                            caption="95 % CIs: subject-level stratified bootstrap (members and non-members resampled "
                                    "separately). The highest AUC per level is marked.")
            best: dict[str, float] = {}
            for a, node in attacks.items():
                if isinstance(node, Mapping) and not _is_entry(node):
                    for lv, sub in node.items():
                        auc = sub.get("auc") if isinstance(sub, Mapping) else None
                        if _is_metric(auc):
                            best[lv] = max(best.get(lv, -1.0), float(auc["value"]))
            aucs: dict[str, dict[str, float | None]] = {}
            for a, node in attacks.items():
                kind = kinds.get(a, "")
                if _is_entry(node):
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
                    aucs.setdefault(a, {})[lv] = float(auc["value"]) if _is_metric(auc) else None
                    nm, nn = get("n_members"), get("n_nonmembers")
                    counts = (f"{fmt_value(nm['value'], nm.get('unit'))} / {fmt_value(nn['value'], nn.get('unit'))}"
                              if _is_metric(nm) and _is_metric(nn) else "")
                    hi = _is_metric(auc) and float(auc["value"]) == best.get(lv)
                    low = get("tpr_at_lowest_fpr")
                    low_fpr = (low.get("params") or {}).get("fpr") if _is_metric(low) else None
                    t.add(a, [kind, _label(lv), auc, get("balanced_accuracy"), get("tpr_at_fpr_1%"),
                              get("tpr_at_fpr_0.1%"), low, "" if low_fpr is None else f"{100 * low_fpr:.3g} %",
                              counts], gloss="attack",
                          highlight=[False, False, hi, False, False, False, False, False, False])
                    r.mark("privacy", "attacks", a, lv)
            roc = curves.get("roc") if isinstance(curves.get("roc"), Mapping) else None
            if roc:
                sec.figure(self._figure(
                    "privacy_roc", "ROC curves per attack",
                    "Linear panels per level; the log-log panel shows the low-FPR regime at image level. "
                    "Dotted: chance. Dashed curves: white-box attacks.",
                    lambda: plots.roc_figure(roc, aucs=aucs, kinds=kinds), gloss="roc", notes=sec.notes))
            sec.table(t)
            desc = [f"{a} ({v.get('kind', '?')}): {v.get('description', '')}" for a, v in info.items() if isinstance(v, Mapping)]
            if desc:
                sec.text("Attacks", desc, gloss="attack")

        # memorisation
        mem = r.node("privacy", "memorisation")
        mem_curves = curves.get("memorisation") if isinstance(curves.get("memorisation"), Mapping) else {}
        if isinstance(mem, Mapping) and not _is_entry(mem):
            spaces = [s for s in mem if isinstance(mem[s], Mapping)]
            order = ["copy_rate", "holdout_copy_rate", "copy_threshold", "dcr_ratio", "nn_distance_to_train_median",
                     "holdout_nn_distance_to_train_median"]
            keys = order + sorted({k for s in spaces if not _is_entry(mem[s]) for k in mem[s]} - set(order))
            t = self._table("privacy_memorisation", "Memorisation (nearest neighbours)",
                            [(_label(s), "nn_distance") for s in spaces], row_header="figure",
                            caption="Distances: " + "; ".join(
                                f"{_label(s)} = {mem_curves.get(s, {}).get('distance', '?')}" for s in spaces))
            for k in keys:
                cells = []
                for s in spaces:
                    cells.append(mem[s] if _is_entry(mem[s]) else r.entry("privacy", "memorisation", s, k))
                if all(c is None for c in cells):
                    continue
                t.add(_label(k), cells, gloss=gloss_for(k))
            for s in spaces:
                r.mark("privacy", "memorisation", s)
            sec.table(t)
            self._distance_histograms(sec, mem_curves)
            self._nearest_synthetic(sec, mem_curves)

        # DP
        dpv = r.node("privacy", "dp_verification")
        dp = r.node("dp")
        t = self._table("privacy_dp", "Differential privacy: claimed vs empirical epsilon", ["value"], row_header="figure",
                        caption="If the empirical lower bound exceeds the claimed epsilon, the DP claim is violated.")
        if _is_entry(dpv):
            t.add("DP verification", [r.entry("privacy", "dp_verification")], gloss="epsilon_lb")
        elif isinstance(dpv, Mapping):
            first = [k for k in ("claimed_epsilon", "epsilon_lb", "epsilon_lb_image_level", "violation") if k in dpv]
            for k in first + [k for k in dpv if k not in first]:
                e = r.entry("privacy", "dp_verification", k)
                if e is not None:
                    t.add(_LABELS.get(k, _label(k)), [e], gloss=gloss_for(k), sub=str(e.get("notes") or ""))
            claimed, lb = dpv.get("claimed_epsilon"), dpv.get("epsilon_lb")
            if _is_metric(claimed) and _is_metric(lb):
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
            sec.figure(self._figure("dp_budget", "Privacy budget spent over training", (
                "Epsilon of the steps taken so far, all phases composed by the RDP accountant (recomputed from the "
                "dp section: noise multiplier, sampling rate and steps of each phase). A phase touching private "
                "data outside this curve would void the claim."), lambda: _budget_plot(dp), gloss="dp_accounting",
                notes=sec.notes))
        self._leftover_table(sec, "privacy")
        return sec

    def _distance_histograms(self, sec: Section, mem_curves: Mapping[str, Any]) -> None:
        panels = []
        for space in sorted(mem_curves, key=lambda k: (k != "pixel_correlation", k)):
            node = mem_curves[space]
            h = node.get("histogram") if isinstance(node, Mapping) else None
            if not isinstance(h, Mapping) or "bin_edges" not in h:
                continue
            keys = sorted((k for k in h if k.endswith("_to_train") and isinstance(h[k], list)),
                          key=lambda k: (not k.startswith("synthetic"), k))
            series = {k.replace("_", " "): h[k] for k in keys}
            panels.append({"title": _label(space), "xlabel": str(node.get("distance", "distance")),
                           "bin_edges": h["bin_edges"], "series": series, "threshold": h.get("copy_threshold")})
        caption = ("Synthetic-to-train vs holdout-to-train nearest distances (fraction of each set per bin); "
                   "the dotted line is the copy threshold.")
        if not panels and self.inp.privacy_csv is not None:  # fall back on the per-sample table
            df = self.inp.privacy_csv
            for col in [c for c in df.columns if c.startswith("nn_distance_")]:
                vals = df[col].to_numpy(float)
                member = df["member"].astype(str).str.lower().isin(["true", "1"]).to_numpy() if "member" in df else None
                ok = np.isfinite(vals)
                if member is None or ok.sum() < 2:
                    continue
                edges = np.histogram_bin_edges(vals[ok], bins=20)
                panels.append({"title": _label(col[len("nn_distance_"):]), "xlabel": "distance to the nearest synthetic image",
                               "bin_edges": edges, "threshold": None,
                               "series": {"train (members)": np.histogram(vals[ok & member], edges)[0],
                                          "holdout (non-members)": np.histogram(vals[ok & ~member], edges)[0]}})
            caption = ("From privacy_per_sample.csv: distance of each real image to its nearest synthetic image, "
                       "members vs non-members.")
        if panels:
            sec.figure(self._figure("privacy_nn_distance", "Nearest-neighbour distance histogram", caption,
                                    lambda: plots.distance_histogram_figure(panels), gloss="nn_distance", notes=sec.notes))

    def _nearest_synthetic(self, sec: Section, mem_curves: Mapping[str, Any]) -> None:
        """The synthetic images closest to a training image (synthetic side of the NN pairs)."""

        samples = self.inp.samples
        spaces = sorted(mem_curves, key=lambda k: (k != "pixel_correlation", k))
        for space in spaces:
            node = mem_curves[space]
            pairs = node.get("top_pairs") if isinstance(node, Mapping) else None
            if not pairs:
                continue
            thr = (node.get("histogram") or {}).get("copy_threshold")
            seen: list[dict[str, Any]] = []
            for p in sorted((p for p in pairs if isinstance(p, Mapping)), key=lambda p: float(p.get("distance", math.inf))):
                if p.get("synthetic_index") not in {q.get("synthetic_index") for q in seen}:
                    seen.append(p)
                if len(seen) >= N_NEAREST:
                    break
            t = self._table(f"privacy_nearest_{space}", f"Synthetic images closest to the training set ({_label(space)})",
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
                    imgs = [_frame(samples.images[i]) for i in idx]
                    titles = [f"#{i}  d={_num(float(p['distance']))}" for i, p in zip(idx, seen)]
                    sec.figure(self._figure(
                        f"privacy_nearest_{space}", f"Closest synthetic images ({_label(space)})",
                        "The synthetic images with the smallest distance to any training image (synthetic side only).",
                        lambda: plots.image_grid_figure(imgs, titles=titles, ncols=min(4, len(imgs)), panel_inches=1.8),
                        gloss="copy_rate", notes=sec.notes))
            sec.table(t)
            break  # the first distance (pixel correlation) is enough for the report

    # ---------------------------------------------------------------- fidelity
    def fidelity(self) -> Section:
        """Fidelity: distribution metrics beside the real floor, in the named feature space; the FID /
        floor ratio; paired metrics (SDEdit, autoencoder reconstructions)."""

        sec = Section("fidelity", "Fidelity", gloss="real_floor",
                      intro="Do the images look like real cardiac MR? Every distribution metric is shown beside the "
                            "real floor: the same metric between two sets of real subjects.")
        if self._missing_results_note(sec):
            return sec
        r = self.res
        sec.notes.extend(r.section_reasons("fidelity"))
        fid_node = r.node("fidelity")
        order = ["fid", "kid", "kid_std", "precision", "recall", "density", "coverage"]
        better = {"fid": "lower", "kid": "lower", "kid_std": "", "precision": "higher", "recall": "higher",
                  "density": "about 1", "coverage": "higher"}
        for group, node in (fid_node or {}).items():
            if not isinstance(node, Mapping) or _is_entry(node):
                continue
            syn, floor = node.get("synthetic_vs_test"), node.get("real_floor")
            if syn is None and floor is None:
                continue
            space = _feature_space(syn) or _feature_space(floor) or group
            sec.text(f"Feature space: {space}", [
                f"Metrics computed in the {space} features (results group fidelity.{group})."], gloss="feature_space")
            keys = order + sorted(set((syn or {}) if not _is_entry(syn) else {}) - set(order))
            t = self._table(f"fidelity_{group}", f"Distribution metrics ({group} features)",
                            [("better", None), ("synthetic vs test", None), ("real floor (holdout vs test)", "real_floor"),
                             ("synthetic \u00f7 floor", "real_floor")], row_header="metric",
                            caption="Synthetic vs real test images, beside the same metric between real holdout and "
                                    "test subjects at the same n.")
            prdc: dict[str, list] = {"synthetic vs test": [], "real floor": []}
            prdc_keys = []
            for k in keys:
                se = syn if _is_entry(syn) else r.entry("fidelity", group, "synthetic_vs_test", k)
                fe = floor if _is_entry(floor) else r.entry("fidelity", group, "real_floor", k)
                if se is None and fe is None:
                    continue
                ratio: Any = ""
                if _is_metric(se) and _is_metric(fe) and float(fe["value"]) > 0 and k != "kid_std":
                    ratio = float(se["value"]) / float(fe["value"])
                t.add(k.upper() if k in ("fid", "kid") else _label(k), [better.get(k, ""), se, fe, ratio], gloss=gloss_for(k))
                if k in ("precision", "recall", "density", "coverage"):
                    prdc_keys.append(k)
                    for lab, e in (("synthetic vs test", se), ("real floor", fe)):
                        prdc[lab].append((float(e["value"]), e.get("ci_low"), e.get("ci_high")) if _is_metric(e) else None)
            ratio_e = r.entry("fidelity", group, "fid_ratio_to_floor")
            if ratio_e is not None:
                t.add("FID / real floor", ["lower", ratio_e, "", ""], gloss="fid_ratio")
            r.mark("fidelity", group, "synthetic_vs_test")
            r.mark("fidelity", group, "real_floor")
            if _is_entry(syn):
                r.used.add(f"fidelity.{group}.synthetic_vs_test")
            if _is_entry(floor):
                r.used.add(f"fidelity.{group}.real_floor")
            sec.table(t)
            if prdc_keys and any(v is not None for vals in prdc.values() for v in vals):
                sec.figure(self._figure(
                    f"fidelity_prdc_{group}", "Precision / recall / density / coverage vs the real floor",
                    "Bars: estimate; whiskers: 95 % CI.",
                    lambda: plots.bar_ci_figure([_label(k) for k in prdc_keys], prdc, ylabel="value",
                                                title=f"synthetic vs real floor ({group} features)"),
                    gloss="precision", notes=sec.notes))

        paired = r.node("fidelity", "paired")
        if isinstance(paired, Mapping):
            names = list(paired)
            metric_keys: list[str] = []
            for n in names:
                if isinstance(paired[n], Mapping) and not _is_entry(paired[n]):
                    metric_keys += [k for k in paired[n] if k not in metric_keys]
            t = self._table("fidelity_paired", "Paired metrics", [(k.upper().replace("_", "-"), gloss_for(k)) for k in metric_keys]
                            or ["value"], row_header="pair", row_gloss="paired",
                            caption="Each output against its own reference image.")
            for n in names:
                node = paired[n]
                if _is_entry(node):
                    r.entry("fidelity", "paired", n)
                    t.add(_label(n), [node] * max(1, len(metric_keys)), gloss="paired")
                elif isinstance(node, Mapping):
                    t.add(_label(n), [r.entry("fidelity", "paired", n, k) for k in metric_keys], gloss="paired")
                    r.mark("fidelity", "paired", n)
            sec.table(t)
        self._leftover_table(sec, "fidelity")
        return sec

    # ---------------------------------------------------------------- anatomy
    def anatomy(self) -> Section:
        """Anatomy: judge Dice / HD95 per structure beside the real ceiling (with a bar chart),
        plausibility criteria pass rates synthetic vs real, SDEdit Dice, clinical indices with the
        Bland-Altman figures."""

        sec = Section("anatomy", "Anatomy", gloss="dice",
                      intro="Is the heart where the conditioning mask put it, and is it anatomically plausible? "
                            "Measured with the independent judge segmentation network.")
        if self._missing_results_note(sec):
            return sec
        r = self.res
        sec.notes.extend(r.section_reasons("anatomy"))
        syn, real = r.node("anatomy", "judge_agreement"), r.node("anatomy", "judge_agreement_real_test")
        if syn is not None or real is not None:
            t = self._table("anatomy_agreement", "Judge agreement per structure",
                            [("synthetic (judge vs conditioning mask)", None),
                             ("real ceiling (judge vs ground truth)", "ceiling"), ("synthetic \u00f7 ceiling", "ceiling")],
                            row_header="metric", caption="Mean over images; 95 % CI: subject bootstrap.")
            if real is None:
                sec.notes.append("no real ceiling in results.json (anatomy.judge_agreement_real_test): the judge's "
                                 "accuracy on real images is not shown")
            bars: dict[str, list] = {"synthetic": [], "real ceiling": []}
            structures: list[str] = []
            for m in ("dice", "hd95_mm"):
                subs = []
                for node in (syn, real):
                    if isinstance(node, Mapping) and isinstance(node.get(m), Mapping) and not _is_entry(node.get(m)):
                        subs += [s for s in node[m] if s not in subs]
                order = [s for s in ("RV", "MYO", "LV", "mean") if s in subs] + [s for s in subs if s not in ("RV", "MYO", "LV", "mean")]
                for s in order:
                    cells = []
                    for name, node in (("judge_agreement", syn), ("judge_agreement_real_test", real)):
                        if _is_entry(node):
                            r.entry("anatomy", name)
                            cells.append(node)
                        elif isinstance(node, Mapping) and _is_entry(node.get(m)):
                            cells.append(r.entry("anatomy", name, m))
                        else:
                            cells.append(r.entry("anatomy", name, m, s))
                    ratio: Any = ""
                    if m == "dice" and _is_metric(cells[0]) and _is_metric(cells[1]) and cells[1]["value"] > 0:
                        ratio = float(cells[0]["value"]) / float(cells[1]["value"])
                    t.add(f"{'Dice' if m == 'dice' else 'HD95'} {s}", cells + [ratio], gloss=gloss_for(m),
                          sub=str((cells[0] or {}).get("notes") or ""))
                    if m == "dice":
                        structures.append(s)
                        for lab, e in zip(bars, cells):
                            bars[lab].append((float(e["value"]), e.get("ci_low"), e.get("ci_high")) if _is_metric(e) else None)
            for node_name, node in (("judge_agreement", syn), ("judge_agreement_real_test", real)):
                if _is_entry(node):
                    r.entry("anatomy", node_name)
            sec.table(t)
            if structures and any(v is not None for vals in bars.values() for v in vals):
                sec.figure(self._figure("anatomy_dice", "Judge Dice per structure vs the real ceiling",
                                        "Bars: mean Dice; whiskers: 95 % CI.",
                                        lambda: plots.bar_ci_figure(
                                            structures, bars, ylabel="Dice", ylim=(0, 1.05),
                                            title="judge Dice" + (": synthetic vs real ceiling" if any(bars["real ceiling"]) else "")),
                                        gloss="dice", notes=sec.notes))

        # plausibility
        pl = r.node("anatomy", "plausibility")
        if isinstance(pl, Mapping) and not _is_entry(pl):  # a top-level unavailable entry is in the notes
            sets = [s for s in ("synthetic", "real_test") if s in pl] + [s for s in pl if s not in ("synthetic", "real_test")]
            t = self._table("anatomy_plausibility", "Anatomical plausibility: pass rates",
                            [(_label(s).replace("real test", "real test images"), "plausibility") for s in sets],
                            row_header="criterion", row_gloss="plausibility",
                            caption="Share of images passing each criterion among those where it applies (n). "
                                    "95 % CI: subject-level cluster bootstrap.")
            t.add("plausible image (all criteria)", [pl[s] if _is_entry(pl[s]) else r.entry("anatomy", "plausibility", s, "plausible_rate")
                                                     for s in sets], gloss="plausible_rate")
            crits: list[str] = []
            for s in sets:
                c = pl[s].get("criteria") if isinstance(pl[s], Mapping) and not _is_entry(pl[s]) else None
                if isinstance(c, Mapping):
                    crits += [k for k in c if k not in crits]
            for k in crits:
                cells = [pl[s] if _is_entry(pl[s]) else r.entry("anatomy", "plausibility", s, "criteria", k) for s in sets]
                desc = next((str(e.get("method", "")).split(":")[0] for e in cells if _is_metric(e)), "")
                t.add(_label(k), cells, gloss="plausibility", sub=desc)
            for s in sets:
                r.mark("anatomy", "plausibility", s)
            sec.table(t)

        # SDEdit structure preservation
        sd = r.node("anatomy", "sdedit")
        if isinstance(sd, Mapping) and not _is_entry(sd):
            structs: list[str] = []
            for node in sd.values():
                d = node.get("dice") if isinstance(node, Mapping) else None
                if isinstance(d, Mapping) and not _is_entry(d):
                    structs += [s for s in d if s not in structs]
            structs = [s for s in ("RV", "MYO", "LV", "mean") if s in structs] + [
                s for s in structs if s not in ("RV", "MYO", "LV", "mean")]
            t = self._table("anatomy_sdedit", "SDEdit: judge Dice of restyled images vs the reference mask",
                            [(f"Dice {s}", "dice") for s in structs] or ["Dice"], row_header="strength", row_gloss="sdedit")
            for strength, node in sd.items():
                d = node.get("dice") if isinstance(node, Mapping) else node
                if _is_entry(d):
                    t.add(_label(strength), [d] * max(1, len(structs)), gloss="sdedit")
                elif isinstance(d, Mapping):
                    t.add(_label(strength), [r.entry("anatomy", "sdedit", strength, "dice", s) for s in structs], gloss="sdedit")
                r.mark("anatomy", "sdedit", strength)
            sec.table(t)

        # clinical indices (cine sets: also measured on the generator's own masks)
        for key, title in (("clinical", "Clinical indices: judge-measured vs requested"),
                           ("clinical_generator_masks", "Clinical indices: measured on the generator's own masks "
                                                        "(its segmentation decoder) vs requested")):
            cl = r.node("anatomy", key)
            if not isinstance(cl, Mapping) or _is_entry(cl):
                continue
            cols = ["pearson_r", "mae", "bland_altman_bias", "loa_low", "loa_high"]
            t = self._table(f"anatomy_{key}", title,
                            [("Pearson r", "pearson_r"), ("MAE", "mae"), ("bias", "bland_altman"),
                             ("lower LoA", "bland_altman"), ("upper LoA", "bland_altman")],
                            row_header="index", row_gloss="clinical")
            for idx, node in cl.items():
                if _is_entry(node):
                    t.add(_label(idx), [node] * len(cols), gloss="clinical")
                elif isinstance(node, Mapping):
                    t.add(_label(idx), [r.entry("anatomy", key, idx, c) for c in cols], gloss="clinical")
                r.mark("anatomy", key, idx)
            sec.table(t)
        for png in self.inp.clinical_pngs:
            try:
                data = png.read_bytes()
            except OSError as exc:
                sec.notes.append(f"figures/{png.name}: unreadable: {exc}")
                continue
            if not data.startswith(b"\x89PNG\r\n\x1a\n"):
                sec.notes.append(f"figures/{png.name}: not a PNG file, left out")
                continue
            own = png.stem.startswith("clinical_generator_masks_")
            name = png.stem[len("clinical_generator_masks_" if own else "clinical_"):].replace("_", " ")
            by = "measured on the generator's own masks" if own else "judge-measured"
            f = Figure(png.stem, f"Clinical index {name}" + (" (generator's own masks)" if own else ""),
                       f"Left: {by} vs requested with the identity line; right: Bland-Altman plot "
                       "(written by the anatomy stage).", _data_uri(plots.compact_png(data)), [f"figures/{png.name}"],
                       "bland_altman")
            sec.figure(f)
        self._leftover_table(sec, "anatomy")
        return sec

    # ---------------------------------------------------------------- utility
    def utility(self) -> Section:
        """Utility: the figures of the utility audit when present (bars with CIs per setting), else
        the unavailable reason."""

        sec = Section("utility", "Utility", gloss="utility",
                      intro="Does a segmentation network trained on the synthetic images work on real scans, also "
                            "from an unseen vendor?")
        if self._missing_results_note(sec):
            return sec
        r = self.res
        reasons = r.section_reasons("utility")
        util = r.node("utility")
        entries = list(iter_entries(util)) if isinstance(util, Mapping) else []
        if not entries and not reasons:
            reasons = ["the utility audit is not available yet (no utility figures in results.json)"]
        sec.notes.extend(reasons)
        if entries:
            t = self._table("utility", "Utility figures", ["value"], row_header="results key")
            for k, e in entries:
                if f"utility.{k}" in r.used:
                    continue
                r.used.add(f"utility.{k}")
                t.add(k, [e], gloss=gloss_for(k))

            bars = dice_bars(util)  # absolute Dice per setting / vendor / structure (not the differences)
            sec.table(t)
            if bars:
                sec.figure(self._figure("utility_dice", "Utility: Dice per setting", "Bars: estimate; whiskers: 95 % CI.",
                                        lambda: plots.bar_ci_figure([b[0] for b in bars], {"Dice": [b[1] for b in bars]},
                                                                    ylabel="Dice", ylim=(0, 1.05), title="utility"),
                                        gloss="utility", notes=sec.notes))
        return sec

    # ---------------------------------------------------------------- samples
    def samples(self) -> Section:
        """Samples: up to 16 synthetic images (spread over the set, preferring those the judge
        segmented) with conditioning-mask and judge outlines, and a caption table."""

        sec = Section("samples", "Synthetic samples", gloss="samples",
                      intro="Synthetic images only. Orange solid outline: the conditioning mask; sky-blue dashed "
                            "outline: the judge network's segmentation.")
        s = self.inp.samples
        if s is None:
            sec.notes.append(f"samples.npz is {self.inp.errors.get('samples.npz', 'missing')}: no sample grid.")
            return sec
        n = len(s)
        judge_map: dict[int, np.ndarray] = {}
        j = self.inp.judge
        if j is not None and "sample_index" in j and "labels" in j:
            si, lab = np.asarray(j["sample_index"]).ravel(), np.asarray(j["labels"])
            if lab.ndim >= 3 and lab.shape[0] == si.shape[0]:
                judge_map = {int(i): lab[k] for k, i in enumerate(si) if 0 <= int(i) < n}
            else:
                sec.notes.append("judge_samples.npz: labels and sample_index do not match; judge outlines left out")
        elif j is None:
            sec.notes.append(f"judge_samples.npz is {self.inp.errors.get('judge_samples.npz', 'missing')}: "
                             "no judge outlines (conditioning-mask outlines only).")
        pool = np.array(sorted(judge_map)) if judge_map else np.arange(n)
        pick = pool[np.unique(np.linspace(0, len(pool) - 1, min(N_GRID, len(pool))).round().astype(int))]
        dice = {}
        df = self.inp.anatomy_csv
        if df is not None and "sample_index" in df:
            cols = [c for c in ("dice_RV", "dice_MYO", "dice_LV") if c in df]
            if cols:
                vals = df[cols].to_numpy(float, copy=True)  # written below; a no-copy view is read-only
                vals[~np.isfinite(vals)] = np.nan
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no Dice for that image
                    means = np.nanmean(vals, axis=1)
                dice = {int(i): float(m) for i, m in zip(df["sample_index"], means) if np.isfinite(m)}
        images, cond, judge, titles = [], [], [], []
        shape2d = _frame(s.images[0]).shape
        for i in pick:
            i = int(i)
            images.append(_frame(s.images[i]))
            cond.append(_frame(s.masks[i]) if s.masks is not None else None)
            jl = judge_map.get(i)
            jl = _frame(jl) if jl is not None else None
            judge.append(jl if jl is not None and jl.shape == shape2d else None)
            titles.append(f"#{i}" + (f"  Dice {dice[i]:.2f}" if i in dice else ""))
        if judge_map and all(x is None for x in judge):
            sec.notes.append("judge labels have a different shape from the images; judge outlines left out")
        if s.masks is None:
            sec.notes.append("the sample set has no conditioning masks (unconditional generator): no mask outlines")
        if s.is_cine:
            sec.notes.append("cine sample set: the first frame of each item is shown")
        sec.figure(self._figure("samples_grid", f"{len(images)} of {n} synthetic images",
                                "Numbers: sample index and, where measured, the judge's mean Dice over RV/MYO/LV.",
                                lambda: plots.image_grid_figure(images, titles=titles, conditioning=cond, judge=judge,
                                                                suptitle=""),
                                gloss="samples", notes=sec.notes))
        t = self._table("samples", "Shown samples", ["conditioning subject", "vendor", "group", "judge Dice (mean)"],
                        row_header="sample")
        for i in pick:
            i = int(i)
            t.add(f"#{i}", [_str_at(s.subject_ids, i), _str_at(s.vendor, i), _str_at(s.group, i),
                            dice.get(i, "")])
        sec.table(t)
        return sec

    # ---------------------------------------------------------------- provenance
    def provenance(self) -> Section:
        """Provenance: run identity, hashes, git commit, seed, environment and packages, the full
        configuration and the stage timings."""
        sec = Section("provenance", "Provenance",
                      intro="What produced these figures: the run, its inputs' hashes, the code version, the "
                            "environment, the resolved configuration and how long each stage took.")
        doc = self.inp.results or {}
        run = doc.get("run") if isinstance(doc.get("run"), Mapping) else {}
        prov = doc.get("provenance") if isinstance(doc.get("provenance"), Mapping) else {}
        env = self.inp.env or {}
        git = env.get("git") if isinstance(env.get("git"), Mapping) else {}
        t = self._table("provenance_run", "Run", ["value"], row_header="field")
        for k in ("id", "generator", "preset", "created_utc", "finished_utc"):
            if k in run:
                t.add(_label(k), [str(run[k])])
        t.add("schema", [str(doc.get("schema", "n/a"))])
        commit = prov.get("git_commit") or git.get("commit")
        t.add("git commit", [f"{commit}{' (uncommitted changes)' if git.get('dirty') else ''}" if commit else "n/a"])
        t.add("seed", [str(prov.get("seed", (self.inp.config or {}).get("seed", "n/a")))])
        t.add("config sha256", [str(prov.get("config_sha256", "n/a"))])
        t.add("data hash", [str(prov.get("data_hash") or env.get("data_hash") or "n/a")])
        for name in ("results.json", "samples.npz"):
            digest = _sha256(self.inp.run_dir / name)
            t.add(f"{name} sha256", [digest or "n/a (missing)"])
        for k, v in prov.items():
            if k not in ("config_sha256", "data_hash", "git_commit", "seed", "timing_s"):
                t.add(_label(k), [_plain(v)])
        sec.table(t)

        if env:
            te = self._table("provenance_env", "Environment", ["value"], row_header="field")
            for k, v in env.items():
                if k in ("packages", "git"):
                    continue
                te.add(_label(k), [_plain(v)])
            sec.table(te)
            pk = env.get("packages")
            if isinstance(pk, Mapping):
                tp = self._table("provenance_packages", "Package versions", ["version"], row_header="package")
                for k, v in pk.items():
                    tp.add(str(k), [str(v)])
                sec.table(tp)
        else:
            sec.notes.append(f"env.json is {self.inp.errors.get('env.json', 'missing')}: no versions.")

        timings = self._timings(prov)
        if timings:
            tt = self._table("provenance_timings", "Stage timings", ["seconds", "finished (UTC)", "details"], row_header="stage")
            for stage, (secs, fin, det) in timings.items():
                tt.add(stage, [secs, fin, det])
            sec.table(tt)
        if self.inp.config:
            tc = self._table("provenance_config", "Configuration (config.json)", ["value"], row_header="key")
            for k, v in _flatten(self.inp.config):
                tc.add(k, [_plain(v)])
            sec.table(tc)
        else:
            sec.notes.append(f"config.json is {self.inp.errors.get('config.json', 'missing')}: no configuration table.")
        if self.inp.state is None:
            sec.notes.append(f"state.json is {self.inp.errors.get('state.json', 'missing')}: timings from results.json only.")
        return sec

    def _timings(self, prov: Mapping[str, Any]) -> dict[str, tuple[Any, str, str]]:
        out: dict[str, tuple[Any, str, str]] = {}
        stages = (self.inp.state or {}).get("stages")
        if isinstance(stages, Mapping):
            for stage, info in stages.items():
                if not isinstance(info, Mapping):
                    continue
                secs = info.get("seconds")
                det = ", ".join(f"{_label(k)} {_plain(v)}" for k, v in info.items() if k not in ("seconds", "finished_utc"))
                out[str(stage)] = (float(secs) if isinstance(secs, (int, float)) else "n/a",
                                   str(info.get("finished_utc", "")), det)
        ts = prov.get("timing_s")
        if isinstance(ts, Mapping):
            for stage, secs in ts.items():
                if str(stage) not in out:
                    out[str(stage)] = (float(secs) if isinstance(secs, (int, float)) else "n/a", "", "from results.json")
        return out

    # ---------------------------------------------------------------- all
    def build(self) -> dict[str, Any]:
        sections = []
        for builder in (self.inputs, self.privacy, self.fidelity, self.anatomy, self.utility, self.samples, self.provenance):
            try:
                sections.append(builder())
            except Exception as exc:  # noqa: BLE001 - a report with one broken section beats no report
                name = builder.__name__
                log.exception("report: section %s failed", name)
                sec = Section(name, name.capitalize())
                sec.notes.append(f"this section could not be rendered: {type(exc).__name__}: {exc}")
                sections.append(sec)
        try:
            tiles = self.verdict()
        except Exception as exc:  # noqa: BLE001
            log.exception("report: verdict card failed")
            tiles = [{"axis": a, "title": a.capitalize(), "headline": "n/a", "sub": [f"error: {exc}"], "level": "na",
                      "level_word": _LEVEL_WORDS["na"], "gloss": "verdict", "metric": ""}
                     for a in ("privacy", "fidelity", "anatomy", "utility")]
        doc = self.inp.results or {}
        run = doc.get("run") if isinstance(doc.get("run"), Mapping) else {}
        if not run and self.inp.config:
            run = {"generator": self.inp.config.get("generator"), "preset": self.inp.config.get("preset")}
        return {
            "run": {k: ("" if v is None else str(v)) for k, v in run.items()},
            "run_dir_name": self.inp.run_dir.name,
            "results_error": self.inp.errors.get("results.json"),
            "tiles": tiles,
            "signoff": self.signoff(),
            "sections": sections,
            "include_real_images": self.include_real_images,
            "glossary": GLOSSARY,
            "thresholds": self.tile_policy()[1],
            "tile_policy": self.tile_policy()[0],
            "generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "version": _version(),
            "n_figures": len(self.figures),
        }

    def write_tables(self) -> None:
        for t in self.tables:
            if len(t):
                atomic_write_text(self.table_dir / f"{t.id}.csv", t.csv_text())


# --------------------------------------------------------------------------- small helpers

def _frame(a: np.ndarray) -> np.ndarray:
    """A 2D view of one item: cine items ``(T, H, W)`` give their first frame."""
    a = np.asarray(a)
    while a.ndim > 2:
        a = a[0]
    return a


def _str_at(arr: Any, i: int) -> str:
    if arr is None:
        return ""
    try:
        return str(arr[i])
    except (IndexError, TypeError):
        return ""


def _plain(v: Any) -> str:
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(v)


def _flatten(node: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in node.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


_SPACE_RE = re.compile(r"\bin (.+?) features\b")


def _feature_space(node: Any) -> str | None:
    """The feature space named in a method string, e.g. ``judge (myopari 0.1.6 FC-DenseNet, ...)``."""
    if not isinstance(node, Mapping):
        return None
    for e in node.values():
        if _is_metric(e):
            m = _SPACE_RE.search(str(e.get("method", "")))
            if m:
                return m.group(1)
    return None


def _version() -> str:
    try:
        return version("cmr-audit")
    except Exception:  # noqa: BLE001
        return "unknown"


def _environment():
    import jinja2  # lazy: jinja2 only when HTML is rendered

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# --------------------------------------------------------------------------- API

def render_report(run_dir: str | Path, *, include_real_images: bool = False) -> tuple[str, dict[str, Any]]:
    """Build the report of ``run_dir``: writes figures and tables, returns ``(html, context)``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run directory")
    inp = load_inputs(run_dir)
    builder = _Builder(inp, include_real_images)
    ctx = builder.build()
    builder.write_tables()
    html = _environment().get_template(TEMPLATE).render(**ctx)
    return html, ctx


def write_report(run_dir: Path, *, include_real_images: bool = False) -> Path:
    """Write ``run_dir/report.html`` (atomically) with its figures (``figures/*.png|svg``) and
    tables (``tables/*.csv``); return the report's path.

    Never fails on missing or unreadable inputs: the report names them and the reason. Raises
    :class:`~audit.core.errors.UserError` only when ``run_dir`` is not a directory.
    """
    run_dir = Path(run_dir)
    html, ctx = render_report(run_dir, include_real_images=include_real_images)
    out = atomic_write_text(run_dir / REPORT_NAME, html)
    log.info("wrote %s (%.0f KiB, %d figures%s)", out, len(html.encode("utf-8")) / 1024, ctx["n_figures"],
             ", real images allowed" if include_real_images else "")
    return out
