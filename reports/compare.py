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

This module reads the runs given and writes the comparison; the parts live in
:mod:`reports.comparison`: the runs (``runs``), the table columns (``columns``), ranking, best
marks and the Pareto front (``ranking``), the figures (``figures``) and the table (``table``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from audit.core.atomic import atomic_write_text
from audit.core.errors import UserError
from reports.comparison.columns import COLUMNS, Column
from reports.comparison.figures import comparison_figures, epsilon_figure, tradeoff_figure
from reports.comparison.ranking import RANKING_RULE, best_marks, pareto_front, rank_runs
from reports.comparison.runs import RunData, families, labels, load_run
from reports.comparison.table import comparison_table
from reports.formatting import fmt_value
from reports.glossary import GLOSSARY
from reports.html import environment, package_version
from reports.policy import Policy, load_policy
from reports.signoff import EXIT_CODES, FAIL, INCOMPLETE, NA, PASS, WARN, evaluate_policy

log = logging.getLogger(__name__)

__all__ = ["SECTION_IDS", "COLUMNS", "Column", "RunData", "load_run", "load_runs", "rank_runs", "pareto_front",
           "tradeoff_figure", "epsilon_figure", "best_marks", "render_compare", "write_compare", "CompareResult"]

SECTION_IDS = ("table", "tradeoffs", "ranking", "criteria", "runs", "columns", "glossary")
TEMPLATE = "compare.html.j2"


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
    family_of = families({r.generator for r in runs})
    for run, label in zip(runs, labels(dirs)):
        run.label = label
        run.family = family_of.get(run.generator, "")
        run.verdict, run.criteria = evaluate_policy(policy, run.doc)
        run.cells = {c.id: c.extract(run) for c in COLUMNS}
    return runs


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
    figures = comparison_figures(runs, policy, fig_dir)
    table, groups = comparison_table(runs)
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
        "version": package_version(),
    }
    html = environment().get_template(TEMPLATE).render(**ctx)
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
