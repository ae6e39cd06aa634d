"""``audit compare``: one self-contained HTML report that sets several runs side by side.

:func:`write_compare` reads each run directory (``results.json`` through
:func:`audit.core.results.load_results`, so another schema version is a clear error; ``config.json``
and ``state.json`` when present), applies the release policy to each run in memory with
:func:`reports.signoff.evaluate_policy` (no ``signoff.*`` file is written), and writes:

* ``OUT.html``: one file, inline CSS, figures as base64 PNG data URIs, a Content-Security-Policy
  that forbids scripts and network requests, readable without JavaScript; every string is
  HTML-escaped (Jinja2 autoescape). Section ids: :data:`SECTION_IDS`.
* ``OUT.csv``: the comparison table in long format (one row per run and column: value, unit, CI,
  n, status, unavailable reason, method, notes, and ``best`` = ``yes`` for the marked cells).
* ``OUT_figures/``: the two trade-off scatters as PNG and SVG.

The table (:data:`COLUMNS`) has one row per run and the headline figures with their 95 % CIs.
A figure that is unavailable or absent is shown as "n/a" with the reason in a numbered footnote
under the table (no tooltips, no JavaScript). The best value in each column that has a direction
is marked (star and shading); ties are all marked. Runs of the *reference* family (``copycat``,
``holdout``, ``noise``, ``cartoon``: calibration runs, e.g. ``holdout`` is real images and wins
every fidelity column by construction) are shown and ranked but do not compete for the marks
unless the comparison holds only reference runs. Directions:

* lower is better: membership-inference AUC (values below 0.5 count as 0.5: below chance is no
  leak, see the run report's glossary), TPR at 1 % FPR, copy rate, empirical epsilon lower bound,
  FID, FID / real floor, EF MAE, train time;
* higher is better: precision, recall, plausible-image rate, judge Dice, EF Pearson r, utility
  (worst-vendor Dice difference of real+synthetic vs real);
* no mark (context, not a property of the generator): the real floor, the real ceiling, the
  claimed epsilon.

Ranking (:func:`rank_runs`, :data:`RANKING_RULE`): by the policy verdict PASS < WARN < INCOMPLETE
< FAIL (the sign-off's own order of severity); then by the worst verdict among the *privacy*
criteria (privacy first: between two blocked runs, the one that leaks patients ranks lower than
the one that is merely unrealistic); then by the number of criteria contributing FAIL, then
INCOMPLETE, then WARN (fewer first: closer to release); then by the best black-box MIA AUC (lower
first, values below 0.5 count as 0.5); then by FID / real floor (lower first), unavailable
figures last; finally by the run label, so the order is deterministic.

Scatters: privacy vs fidelity (x: FID / real floor, y: best black-box MIA AUC) and privacy vs
utility (x: worst-vendor utility Dice difference, y: the same AUC), with 95 % CI whiskers, the
policy thresholds as lines, and the Pareto front (runs no other run beats on both axes; AUC
below 0.5 counts as 0.5). The black-box AUC is used because every generator has it (white-box
attacks exist only for some families), so the points are comparable.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from audit.core.atomic import atomic_write_text
from audit.core.errors import UserError
from audit.core.results import load_results, unavailable
from reports import plots
from reports.glossary import GLOSSARY
from reports.plots import _MARKERS, OKABE_ITO, PALETTE, new_figure, style
from reports.policy import Criterion, Policy, format_path, load_policy
from reports.formatting import data_uri as _data_uri
from reports.formatting import fmt_value
from reports.formatting import is_metric as _is_metric
from reports.html import environment as _environment
from reports.html import package_version as _version
from reports.sections.base import Figure
from reports.table import Table
from reports.signoff import EXIT_CODES, FAIL, INCOMPLETE, NA, PASS, RANK, WARN, _resolve, evaluate_policy

log = logging.getLogger(__name__)

__all__ = ["SECTION_IDS", "COLUMNS", "Column", "RunData", "load_run", "load_runs", "rank_runs", "pareto_front",
           "tradeoff_figure", "render_compare", "write_compare", "CompareResult"]

SECTION_IDS = ("table", "tradeoffs", "ranking", "criteria", "runs", "columns", "glossary")
TEMPLATE = "compare.html.j2"
REFERENCE_FAMILY = "reference"
CHANCE_AUC = 0.5
RANKING_RULE = (
    "Order: the policy verdict (PASS, WARN, INCOMPLETE, FAIL); then the worst verdict among the privacy criteria "
    "(privacy first: of two blocked runs, the one that leaks patients ranks lower than the one that is merely "
    "unrealistic); then fewer criteria contributing FAIL, then INCOMPLETE, then WARN; then lower best black-box MIA "
    "AUC (below 0.5 counts as 0.5); then lower FID / real floor (unavailable figures last); finally the run label.")


# --------------------------------------------------------------------------- columns

@dataclass(frozen=True)
class Column:
    """One column of the comparison table: where its figure comes from and which way is better."""

    id: str
    label: str
    group: str
    better: str | None  # "lower" | "higher" | None (no mark)
    source: str  # for the column notes
    extract: Callable[["RunData"], Mapping[str, Any]]
    gloss: str | None = None
    chance_floor: float | None = None  # values below count as this when comparing (AUC)

    def key(self, value: float) -> float:
        """Comparison key: smaller = better."""
        if self.chance_floor is not None:
            value = max(value, self.chance_floor)
        return value if self.better == "lower" else -value


def _entry(run: "RunData", *path: str) -> dict[str, Any]:
    """The results entry at ``path``: the metric, or an unavailable entry with the reason (also
    when the figure or a section above it is absent from results.json)."""
    (m,) = _resolve(run.doc, tuple(path))
    if m.kind == "metric":
        return dict(m.entry)
    return unavailable(m.reason or f"{format_path(path)} is unavailable")


def _extreme(run: "RunData", path: tuple[str, ...], *, take: str, what: str) -> dict[str, Any]:
    """The largest (``take="max"``) or smallest figure over a ``"*"`` path, noting which match it is
    and how many matches were unavailable. Branches recorded as unavailable as a whole (an attack
    the generator cannot support) are skipped."""
    matches = _resolve(run.doc, path, skip_branches=True)
    star = path.index("*")
    metrics = [m for m in matches if m.kind == "metric"]
    missing = [m for m in matches if m.kind in ("unavailable", "absent")]
    if not metrics:
        if missing:
            first = missing[0]
            why = first.reason if first.kind == "absent" else f"{format_path(first.path)}: {first.reason}"
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return unavailable(f"{why}{more}")
        skipped = [m for m in matches if m.kind == "skipped"]
        if skipped:
            return unavailable(f"{format_path(skipped[0].path)}: {skipped[0].reason}")
        return unavailable(f"no figure in results.json matches {format_path(path)}")
    pick = (max if take == "max" else min)(metrics, key=lambda m: float(m.entry["value"]))
    out = dict(pick.entry)
    note = f"{what} '{pick.path[star]}'"
    if missing:
        note += f"; {len(missing)} of {len(metrics) + len(missing)} unavailable"
    out["tag"] = note
    return out


def _tagged(e: dict[str, Any]) -> dict[str, Any]:
    """The privacy summary names the attack behind a best AUC in its notes: show that in the cell."""
    if _is_metric(e) and e.get("notes"):
        e["tag"] = str(e["notes"])
    return e


def _fid_ratio(run: "RunData") -> dict[str, Any]:
    """FID / real floor from results.json, with a CI (the FID's CI divided by the floor's point
    estimate, as the sign-off does) when the results carry none."""
    e = _entry(run, "fidelity", "judge", "fid_ratio_to_floor")
    fid = _entry(run, "fidelity", "judge", "synthetic_vs_test", "fid")
    floor = _entry(run, "fidelity", "judge", "real_floor", "fid")
    if not _is_metric(e):
        if _is_metric(fid) and _is_metric(floor) and float(floor["value"]) > 0:
            e = {"value": float(fid["value"]) / float(floor["value"]), "unit": "1",
                 "method": "FID(synthetic, test) / FID(holdout, test), computed by audit compare"}
        else:
            return e
    if e.get("ci_low") is None and _is_metric(fid) and _is_metric(floor) and float(floor["value"]) > 0:
        lo, hi = fid.get("ci_low"), fid.get("ci_high")
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            e["ci_low"], e["ci_high"] = lo / float(floor["value"]), hi / float(floor["value"])
            e["method"] = (str(e.get("method") or "FID / real floor") +
                           "; CI: the FID's CI / the floor's point estimate (floor uncertainty not propagated)")
    return e


def _epsilon_lb(run: "RunData") -> dict[str, Any]:
    e = _entry(run, "privacy", "dp_verification", "epsilon_lb")
    claimed = _entry(run, "privacy", "dp_verification", "claimed_epsilon")
    if _is_metric(e) and _is_metric(claimed) and float(e["value"]) > float(claimed["value"]):
        e["tag"] = "exceeds the claimed \u03b5: the DP claim is violated"
    return e


def _train_time(run: "RunData") -> dict[str, Any]:
    if run.state is None:
        return unavailable(f"state.json is {run.state_error}")
    stages = run.state.get("stages")
    fit = stages.get("fit") if isinstance(stages, Mapping) else None
    secs = fit.get("seconds") if isinstance(fit, Mapping) else None
    if not isinstance(secs, (int, float)) or not math.isfinite(secs):
        return unavailable("state.json records no finished fit stage")
    return {"value": float(secs), "unit": "s", "method": "wall-clock seconds of the fit stage (state.json)"}


#: the comparison table's figure columns, in display order
COLUMNS: tuple[Column, ...] = (
    Column("mia_auc_bb", "best black-box MIA AUC", "privacy", "lower", "privacy.summary.best_black_box_auc",
           lambda r: _tagged(_entry(r, "privacy", "summary", "best_black_box_auc")), "auc", CHANCE_AUC),
    Column("mia_auc_wb", "best white-box MIA AUC", "privacy", "lower", "privacy.summary.best_white_box_auc",
           lambda r: _tagged(_entry(r, "privacy", "summary", "best_white_box_auc")), "auc", CHANCE_AUC),
    Column("tpr_1", "TPR @ 1 % FPR (%)", "privacy", "lower", "max over privacy.attacks.*.image[\"tpr_at_fpr_1%\"]",
           lambda r: _extreme(r, ("privacy", "attacks", "*", "image", "tpr_at_fpr_1%"), take="max", what="attack"),
           "tpr_at_fpr"),
    Column("copy_rate", "copy rate (%)", "privacy", "lower", "max over privacy.memorisation.*.copy_rate",
           lambda r: _extreme(r, ("privacy", "memorisation", "*", "copy_rate"), take="max", what="space"), "copy_rate"),
    Column("eps_lb", "empirical \u03b5 lower bound", "privacy", "lower", "privacy.dp_verification.epsilon_lb",
           _epsilon_lb, "epsilon_lb"),
    Column("eps_claimed", "claimed \u03b5", "privacy", None, "privacy.dp_verification.claimed_epsilon",
           lambda r: _entry(r, "privacy", "dp_verification", "claimed_epsilon"), "claimed_epsilon"),
    Column("fid", "FID (judge features)", "fidelity", "lower", "fidelity.judge.synthetic_vs_test.fid",
           lambda r: _entry(r, "fidelity", "judge", "synthetic_vs_test", "fid"), "fid"),
    Column("fid_floor", "FID real floor", "fidelity", None, "fidelity.judge.real_floor.fid",
           lambda r: _entry(r, "fidelity", "judge", "real_floor", "fid"), "real_floor"),
    Column("fid_ratio", "FID / floor", "fidelity", "lower", "fidelity.judge.fid_ratio_to_floor", _fid_ratio, "fid_ratio"),
    Column("precision", "precision", "fidelity", "higher", "fidelity.judge.synthetic_vs_test.precision",
           lambda r: _entry(r, "fidelity", "judge", "synthetic_vs_test", "precision"), "precision"),
    Column("recall", "recall", "fidelity", "higher", "fidelity.judge.synthetic_vs_test.recall",
           lambda r: _entry(r, "fidelity", "judge", "synthetic_vs_test", "recall"), "recall"),
    Column("plausible", "plausible images", "anatomy", "higher", "anatomy.plausibility.synthetic.plausible_rate",
           lambda r: _entry(r, "anatomy", "plausibility", "synthetic", "plausible_rate"), "plausible_rate"),
    Column("dice", "judge Dice (mean)", "anatomy", "higher", "anatomy.judge_agreement.dice.mean",
           lambda r: _entry(r, "anatomy", "judge_agreement", "dice", "mean"), "dice"),
    Column("dice_ceiling", "real ceiling", "anatomy", None, "anatomy.judge_agreement_real_test.dice.mean",
           lambda r: _entry(r, "anatomy", "judge_agreement_real_test", "dice", "mean"), "ceiling"),
    Column("ef_r", "LV EF Pearson r", "anatomy", "higher", "anatomy.clinical.lv_ef_pct.pearson_r",
           lambda r: _entry(r, "anatomy", "clinical", "lv_ef_pct", "pearson_r"), "pearson_r"),
    Column("ef_mae", "LV EF MAE (%)", "anatomy", "lower", "anatomy.clinical.lv_ef_pct.mae",
           lambda r: _entry(r, "anatomy", "clinical", "lv_ef_pct", "mae"), "mae"),
    Column("utility", "utility: worst-vendor \u0394Dice", "utility", "higher",
           "min over utility.vs_real[\"real+synthetic\"].*.dice_diff",
           lambda r: _extreme(r, ("utility", "vs_real", "real+synthetic", "*", "dice_diff"), take="min", what="vendor"),
           "utility"),
    Column("train_s", "train time (s)", "cost", "lower", "state.json stages.fit.seconds", _train_time, "train_time"),
)
_COL = {c.id: c for c in COLUMNS}

#: glossary entries of this report that the run report does not have
_EXTRA_GLOSSARY: dict[str, tuple[str, str]] = {
    "best": ("Best per column",
             "The best value of a column is marked with a star and shading (ties are all marked); the direction of "
             "each column is listed under 'Columns'. Reference runs (copycat, holdout, noise, cartoon) calibrate the "
             "audit and do not compete for the marks unless only reference runs are compared. Columns without a "
             "direction (real floor, real ceiling, claimed epsilon) are context and never marked."),
    "pareto": ("Pareto front",
               "The runs that no other run beats on both axes at once (better or equal on both, strictly better on "
               "one). Moving along the front trades privacy for fidelity (or utility); a run off the front is beaten "
               "on both. AUC values below 0.5 count as 0.5 (chance)."),
    "ranking": ("Ranking with the policy applied",
                "Each run is evaluated against the release policy in memory (as audit signoff would, without "
                "writing signoff files). " + RANKING_RULE),
    "train_time": ("Train time", "Wall-clock seconds of the fit stage from state.json; depends on the machine and "
                                 "the preset, so compare it only between runs of the same machine and preset."),
}


# --------------------------------------------------------------------------- runs

@dataclass
class RunData:
    """One run directory, read and evaluated."""

    dir: Path
    doc: dict[str, Any]
    config: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    state_error: str = "missing"
    label: str = ""
    family: str = ""
    verdict: str = INCOMPLETE
    criteria: list[dict[str, Any]] = field(default_factory=list)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def run(self) -> Mapping[str, Any]:
        r = self.doc.get("run")
        return r if isinstance(r, Mapping) else {}

    @property
    def generator(self) -> str:
        return str(self.run.get("generator") or (self.config or {}).get("generator") or "?")

    @property
    def preset(self) -> str:
        return str(self.run.get("preset") or (self.config or {}).get("preset") or "?")

    @property
    def status(self) -> str:
        s = (self.state or {}).get("status")
        return str(s) if s is not None else "unknown (no state.json)"

    @property
    def is_reference(self) -> bool:
        return self.family == REFERENCE_FAMILY

    def value(self, column: str) -> float | None:
        e = self.cells.get(column)
        return float(e["value"]) if _is_metric(e) and math.isfinite(e["value"]) else None

    def privacy_verdict(self) -> str:
        """The worst contribution among the privacy criteria (N/A when none applies)."""
        contributions = [c["contributes"] for c in self.criteria if c.get("axis") == "privacy"]
        return max(contributions, key=RANK.__getitem__, default=NA)

    def counts(self) -> dict[str, int]:
        """Criteria per contribution to the overall verdict (an advisory FAIL counts as WARN)."""
        out = {v: 0 for v in (FAIL, INCOMPLETE, WARN, PASS, NA)}
        for c in self.criteria:
            out[c["contributes"]] = out.get(c["contributes"], 0) + 1
        return out


def _read_json_object(path: Path) -> tuple[dict[str, Any] | None, str]:
    if not path.is_file():
        return None, "missing"
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({exc})"
    if not isinstance(doc, dict):
        return None, "unreadable (not a JSON object)"
    return doc, ""


def load_run(run_dir: str | Path) -> RunData:
    """Read one run directory; :class:`UserError` with a one-line reason when it is not one."""

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory (give run directories written by 'audit run')")
    if not (run_dir / "results.json").is_file():
        if not any((run_dir / n).is_file() for n in ("config.json", "state.json")):
            raise UserError(f"{run_dir}: not a run directory (no results.json, config.json or state.json)")
        raise UserError(f"{run_dir}: results.json is missing (the audits did not finish; "
                        "'audit run --resume --out RUN_DIR' continues the run)")
    doc = load_results(run_dir / "results.json")
    config, _ = _read_json_object(run_dir / "config.json")
    state, state_error = _read_json_object(run_dir / "state.json")
    return RunData(dir=run_dir, doc=doc, config=config, state=state, state_error=state_error or "missing")


def _families(names: set[str]) -> dict[str, str]:
    """Generator name -> family from the registered entry points (only the names asked for are
    loaded); unknown or broken plugins give ""."""

    eps = {ep.name: ep for ep in metadata.entry_points(group="cmr_audit.generators") if ep.name in names}
    out = {}
    for name in names:
        try:
            out[name] = str(getattr(eps[name].load(), "family", "")) if name in eps else ""
        except Exception as exc:  # noqa: BLE001 - a broken plugin only loses the family tag
            log.debug("cannot load generator %r for its family: %s", name, exc)
            out[name] = ""
    return out


def _labels(dirs: Sequence[Path]) -> list[str]:
    """Short unique labels: the directory name, else parent/name, else name (k)."""
    names = [d.name or str(d) for d in dirs]
    if len(set(names)) == len(names):
        return names
    longer = [f"{d.parent.name}/{d.name}" if d.parent.name else d.name for d in dirs]
    out = []
    for i, lab in enumerate(longer):
        out.append(lab if longer.count(lab) == 1 else f"{lab} ({longer[:i].count(lab) + 1})")
    return out


def load_runs(run_dirs: Sequence[str | Path], policy: Policy) -> list[RunData]:
    """Read, validate and evaluate every run; raise :class:`UserError` (one line) on bad input."""
    if not run_dirs:
        raise UserError("give at least one run directory to compare")
    dirs = [Path(d) for d in run_dirs]
    seen: dict[Path, Path] = {}
    for d in dirs:
        key = d.resolve()
        if key in seen:
            raise UserError(f"{d}: run directory given twice (as {seen[key]} and {d})")
        seen[key] = d
    runs = [load_run(d) for d in dirs]
    families = _families({r.generator for r in runs})
    for run, label in zip(runs, _labels(dirs)):
        run.label = label
        run.family = families.get(run.generator, "")
        run.verdict, run.criteria = evaluate_policy(policy, run.doc)
        run.cells = {c.id: c.extract(run) for c in COLUMNS}
    return runs


# --------------------------------------------------------------------------- ranking and marks

def _rank_key(run: RunData) -> tuple:
    counts = run.counts()

    def figure(col: str) -> tuple[int, float]:
        v = run.value(col)
        return (1, 0.0) if v is None else (0, _COL[col].key(v))

    return (RANK[run.verdict], RANK[run.privacy_verdict()], counts[FAIL], counts[INCOMPLETE], counts[WARN],
            figure("mia_auc_bb"), figure("fid_ratio"), run.label)


def rank_runs(runs: Sequence[RunData]) -> list[RunData]:
    """Runs in ranking order (:data:`RANKING_RULE`: verdict, privacy verdict, criterion counts, AUC, FID
    ratio, label)."""
    return sorted(runs, key=_rank_key)


def best_marks(runs: Sequence[RunData]) -> dict[str, set[int]]:
    """Column id -> indices (into ``runs``) of the best value; ties all marked. Reference runs do not
    compete unless every run is one."""
    competing = [i for i, r in enumerate(runs) if not r.is_reference] or list(range(len(runs)))
    out: dict[str, set[int]] = {}
    for col in COLUMNS:
        if col.better is None:
            continue
        keyed = [(col.key(v), i) for i in competing if (v := runs[i].value(col.id)) is not None]
        if not keyed:
            continue
        best = min(k for k, _ in keyed)
        out[col.id] = {i for k, i in keyed if math.isclose(k, best, rel_tol=1e-12, abs_tol=1e-15)}
    return out


def pareto_front(points: Sequence[tuple[float, float]], *, x_better: str = "lower",
                 y_better: str = "lower") -> list[int]:
    """Indices of the non-dominated points: no other point is at least as good on both axes and
    strictly better on one. Duplicated points are all on the front."""
    sx = 1.0 if x_better == "lower" else -1.0
    sy = 1.0 if y_better == "lower" else -1.0
    keyed = [(sx * x, sy * y) for x, y in points]
    front = []
    for i, (xi, yi) in enumerate(keyed):
        dominated = any(xj <= xi and yj <= yi and (xj < xi or yj < yi) for j, (xj, yj) in enumerate(keyed) if j != i)
        if not dominated:
            front.append(i)
    return front


# --------------------------------------------------------------------------- figures

def _policy_threshold(policy: Policy, test: Callable[[Criterion], bool]) -> Criterion | None:
    return next((c for c in policy.criteria if test(c)), None)


def _ci(e: Mapping[str, Any] | None) -> tuple[float, float] | None:
    if not _is_metric(e):
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
            why = "; ".join(f"{_COL[c].label}: {r.cells[c].get('reason', 'unavailable')}"
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


def _figures(runs: Sequence[RunData], policy: Policy, fig_dir: Path) -> list[_Figure]:
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
            note = (f"{_COL[xcol].label.split(':')[0]} is not available for any run"
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
        out.append(_Figure(fid_id, title, caption, _data_uri(plots.compact_png(png)),
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
    return _Figure(fid_id, title, caption, _data_uri(plots.compact_png(png)),
                   [f"{fig_dir.name}/{fid_id}.png", f"{fig_dir.name}/{fid_id}.svg"], "claimed_epsilon")


# --------------------------------------------------------------------------- the table

class _CompareTable(Table):
    """The run report's table (cells, numbered n/a footnotes, long CSV) plus the comparison's own
    short cell annotation (``tag``: which attack, space or vendor a max / min came from) and a
    ``best`` flag, as two more CSV columns."""

    def cell(self, row_label, col_label, x, *, unit_override=None, highlight=False):
        c = super().cell(row_label, col_label, x, unit_override=unit_override, highlight=highlight)
        c["tag"] = str(x.get("tag") or "") if isinstance(x, Mapping) else ""
        self._csv[-1] += [c["tag"], "yes" if highlight else ""]
        return c

    CSV_COLUMNS = (*Table.CSV_COLUMNS, "detail", "best")


def _table(runs: Sequence[RunData]) -> tuple[_CompareTable, list[dict[str, Any]]]:
    marks = best_marks(runs)
    text_cols = [("generator", None), ("verdict", "ranking")]
    t = _CompareTable("compare", "Headline figures per run",
                      [c for c in text_cols] + [(c.label, c.gloss) for c in COLUMNS], row_header="run",
                      caption="95 % CIs in brackets. \u2605 marks the best value of a column (reference runs compete only "
                              "when every run is one; direction per column under 'Columns').")
    for col, meta in zip(t.columns, [{"id": n, "group": "run", "better": None} for n, _ in text_cols]
                         + [{"id": c.id, "group": c.group, "better": c.better} for c in COLUMNS]):
        col.update(meta)
    for i, r in enumerate(runs):
        cells = [r.generator, r.verdict] + [r.cells[c.id] for c in COLUMNS]
        hl = [False] * len(text_cols) + [i in marks.get(c.id, set()) for c in COLUMNS]
        t.add(r.label, cells, highlight=hl, sub="reference run" if r.is_reference else "")
    groups: list[dict[str, Any]] = []
    for col in t.columns:
        if groups and groups[-1]["name"] == col["group"]:
            groups[-1]["span"] += 1
        else:
            groups.append({"name": col["group"], "span": 1})
    return t, groups


# --------------------------------------------------------------------------- context and output

def _notes(runs: Sequence[RunData]) -> list[str]:
    notes = []
    for r in runs:
        if r.state is None:
            notes.append(f"{r.label}: state.json is {r.state_error}: whether the run finished is unknown")
        elif r.status != "finished":
            notes.append(f"{r.label}: state.json says the run is '{r.status}', not finished: its figures may be "
                         "incomplete or change")
    for what, get in (("data", lambda r: (r.doc.get("provenance") or {}).get("data_hash")), ("preset", lambda r: r.preset)):
        values = {get(r) for r in runs} - {None, "?"}
        if len(values) > 1:
            notes.append(f"the runs differ in {what} ({'data hash' if what == 'data' else 'preset'} "
                         f"{', '.join(sorted(str(v)[:12] for v in values))}): their figures are not directly comparable")
    return notes


def _ranking(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    rows = []
    for pos, r in enumerate(rank_runs(runs), 1):
        counts = r.counts()
        blocking = [{"id": c["id"], "verdict": c["verdict"], "reason": c["reason"]} for c in r.criteria
                    if c["verdict"] not in (PASS, NA)]
        rows.append({"rank": pos, "label": r.label, "generator": r.generator, "reference": r.is_reference,
                     "verdict": r.verdict, "privacy_verdict": r.privacy_verdict(), "counts": counts,
                     "issues": blocking, "exit_code": EXIT_CODES[r.verdict],
                     "auc": fmt_value(r.value("mia_auc_bb")), "fid_ratio": fmt_value(r.value("fid_ratio"))})
    return rows


def _criteria_matrix(runs: Sequence[RunData], policy: Policy) -> list[dict[str, Any]]:
    rows = []
    for k, c in enumerate(policy.criteria):
        cells = []
        for r in runs:
            res = r.criteria[k]
            obs = res.get("observed") or {}
            shown = obs.get("compared", obs.get("value"))
            cells.append({"verdict": res["verdict"], "value": fmt_value(shown) if shown is not None else ""})
        rows.append({"id": c.id, "title": c.title, "op": c.op, "threshold": c.threshold,
                     "relative": c.reference is not None, "severity": c.severity, "cells": cells})
    return rows


def _glossary() -> dict[str, tuple[str, str]]:
    keys = [c.gloss for c in COLUMNS if c.gloss in GLOSSARY] + ["metric_entry", "unavailable", "real_floor"]
    out = {k: GLOSSARY[k] for k in dict.fromkeys(keys)}
    out.update(_EXTRA_GLOSSARY)
    return out


def render_compare(run_dirs: Sequence[str | Path], *, out: str | Path = "compare.html",
                   policy_path: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """Read and evaluate the runs, draw the figures into ``OUT_figures/``; return ``(html, context)``."""
    out = Path(out)
    policy = load_policy(policy_path)
    runs = load_runs(run_dirs, policy)
    fig_dir = out.parent / f"{out.stem}_figures"
    figures = _figures(runs, policy, fig_dir)
    table, groups = _table(runs)
    ctx = {
        "runs": runs,
        "table": table,
        "groups": groups,
        "figures": figures,
        "ranking": _ranking(runs),
        "criteria": _criteria_matrix(runs, policy),
        "columns": COLUMNS,
        "policy": policy,
        "ranking_rule": RANKING_RULE,
        "notes": _notes(runs),
        "glossary": _glossary(),
        "verdict_order": (PASS, WARN, INCOMPLETE, FAIL, NA),
        "csv_name": out.with_suffix(".csv").name,
        "fig_dir_name": fig_dir.name,
        "generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "version": _version(),
    }
    html = _environment().get_template(TEMPLATE).render(**ctx)
    return html, ctx


@dataclass(frozen=True)
class CompareResult:
    html_path: Path
    csv_path: Path
    figures_dir: Path
    ranking: list[dict[str, Any]]


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: give an .html file name (the CSV and the figures folder are named after it)")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory, not an .html file name")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"--out {out}: {out.parent} is not a directory")


def write_compare(run_dirs: Sequence[str | Path], out: str | Path = "compare.html", *,
                  policy_path: str | Path | None = None) -> CompareResult:
    """Write ``out`` (HTML), ``out`` with ``.csv`` (the table) and ``<out stem>_figures/`` (PNG + SVG).

    Every input is read, validated and evaluated before anything is written; bad input raises a
    one-line :class:`~audit.core.errors.UserError`. Files are written atomically.
    """
    out = Path(out)
    _check_out(out)
    try:
        html, ctx = render_compare(run_dirs, out=out, policy_path=policy_path)
        csv_path = atomic_write_text(out.with_suffix(".csv"), ctx["table"].csv_text())
        html_path = atomic_write_text(out, html)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    log.info("wrote %s (%.0f KiB, %d runs)", html_path, len(html.encode("utf-8")) / 1024, len(ctx["runs"]))
    return CompareResult(html_path, csv_path, out.parent / ctx["fig_dir_name"], ctx["ranking"])
