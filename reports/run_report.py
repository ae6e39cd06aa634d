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

Verdict-tile colours (:func:`~reports.thresholds.tile_thresholds`; good / borderline / concern, grey when unavailable)
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

Real patient images are never read by the report. With ``include_real_images=True`` the report
carries a banner saying that it may contain patient data; rendering the real side of
nearest-neighbour pairs is not implemented yet (the report says so).

This module assembles the report; each idea lives in its own module: the inputs read from the run
directory (:mod:`reports.run_inputs`), the placed-entries view of ``results.json``
(:mod:`reports.results_view`), the table model (:mod:`reports.table`), value formatting and labels
(:mod:`reports.formatting`), the tile thresholds (:mod:`reports.thresholds`), one module per section
(:mod:`reports.sections`, opened by :meth:`reports.sections.base.ReportContext.open_section`) and the
Jinja2 environment (:mod:`reports.html`).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from audit.core.atomic import atomic_write_text
from audit.core.errors import UserError
from reports.glossary import GLOSSARY
from reports.html import environment, package_version
from reports.policy import Policy
from reports.run_inputs import RunInputs, load_inputs, read_json
from reports.sections.anatomy import anatomy_section
from reports.sections.base import ReportContext, Section
from reports.sections.fidelity import fidelity_section
from reports.sections.inputs import inputs_section
from reports.sections.privacy import privacy_section
from reports.sections.provenance import provenance_section
from reports.sections.samples import samples_section
from reports.sections.utility import utility_section
from reports.sections.verdict import verdict_tiles
from reports.thresholds import LEVEL_WORDS, TILE_CRITERIA, run_policy, tile_thresholds

log = logging.getLogger(__name__)

__all__ = ["REPORT_NAME", "SECTION_IDS", "TILE_CRITERIA", "GLOSSARY", "tile_thresholds", "write_report", "render_report",
           "load_inputs"]

REPORT_NAME = "report.html"
SECTION_IDS = ("verdict", "inputs", "privacy", "fidelity", "anatomy", "utility", "samples", "provenance", "glossary")
TEMPLATE = "run_report.html.j2"

#: the sections after the verdict card, in report order: (id, builder)
SECTION_BUILDERS: tuple[tuple[str, Callable[[ReportContext], Section]], ...] = (
    ("inputs", inputs_section), ("privacy", privacy_section), ("fidelity", fidelity_section),
    ("anatomy", anatomy_section), ("utility", utility_section), ("samples", samples_section),
    ("provenance", provenance_section),
)


class _Builder(ReportContext):
    """One report: the sections, the verdict card and the template context."""

    @functools.cached_property
    def _policy(self) -> Policy:
        """The policy of the run's ``signoff.json`` when it still loads, else the shipped default."""
        return run_policy(self.inp.run_dir)

    def tile_policy(self) -> tuple[str, dict[str, dict[str, Any]]]:
        """``(policy name, tile thresholds)`` of :attr:`_policy`."""
        return self._policy.name, tile_thresholds(self._policy)

    def verdict(self) -> list[dict[str, Any]]:
        """The four verdict tiles (privacy, fidelity, anatomy, utility) with headline and level."""
        return verdict_tiles(self, self.tile_policy()[1])

    def signoff(self) -> dict[str, str] | None:
        path = self.inp.run_dir / "signoff.json"
        if not path.is_file():
            return None
        try:
            doc = read_json(path)
        except Exception as exc:  # noqa: BLE001
            return {"verdict": "unreadable", "detail": str(exc)}
        if not isinstance(doc, Mapping):
            return None
        verdict = doc.get("overall") or doc.get("verdict")
        if isinstance(verdict, Mapping):
            verdict = verdict.get("verdict") or verdict.get("overall")
        return {"verdict": str(verdict) if verdict is not None else "unknown", "detail": "signoff.json"}

    def sections(self) -> list[Section]:
        """Every section after the verdict card; a section that raises becomes one with the error as its note."""
        sections = []
        for name, builder in SECTION_BUILDERS:
            try:
                sections.append(builder(self))
            except Exception as exc:  # noqa: BLE001 - a report with one broken section beats no report
                log.exception("report: section %s failed", name)
                sec = Section(name, name.capitalize())
                sec.notes.append(f"this section could not be rendered: {type(exc).__name__}: {exc}")
                sections.append(sec)
        return sections

    def tiles(self) -> list[dict[str, Any]]:
        """The verdict tiles; grey tiles naming the error when they cannot be built."""
        try:
            return self.verdict()
        except Exception as exc:  # noqa: BLE001
            log.exception("report: verdict card failed")
            return [{"axis": a, "title": a.capitalize(), "headline": "n/a", "sub": [f"error: {exc}"], "level": "na",
                     "level_word": LEVEL_WORDS["na"], "gloss": "verdict", "metric": ""}
                    for a in ("privacy", "fidelity", "anatomy", "utility")]

    def build(self) -> dict[str, Any]:
        """The template context of the report."""
        sections = self.sections()
        tiles = self.tiles()
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
            "version": package_version(),
            "n_figures": len(self.figures),
        }

    def write_tables(self) -> None:
        for t in self.tables:
            if len(t):
                atomic_write_text(self.table_dir / f"{t.id}.csv", t.csv_text())


# --------------------------------------------------------------------------- API

def render_report(run_dir: str | Path, *, include_real_images: bool = False) -> tuple[str, dict[str, Any]]:
    """Build the report of ``run_dir``: writes figures and tables, returns ``(html, context)``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run directory")
    inp: RunInputs = load_inputs(run_dir)
    builder = _Builder(inp, include_real_images)
    ctx = builder.build()
    builder.write_tables()
    html = environment().get_template(TEMPLATE).render(**ctx)
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
