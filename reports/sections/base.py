"""What every run-report section builder shares: the :class:`Section` and :class:`Figure` records
the template renders, and :class:`ReportContext`, which holds the run's inputs and the tables and
figures written so far, and opens every section the same way (:meth:`ReportContext.open_section`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from reports import plots
from reports.formatting import data_uri, gloss_for
from reports.results_view import Results
from reports.run_inputs import RunInputs
from reports.table import Table

log = logging.getLogger(__name__)


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


class ReportContext:
    """The inputs of one report and what its sections have produced (tables for ``tables/*.csv``,
    figures for ``figures/``); every section builder takes one."""

    def __init__(self, inp: RunInputs, include_real_images: bool):
        self.inp = inp
        self.include_real_images = include_real_images
        self.res = Results(inp.results)
        self.tables: list[Table] = []
        self.figures: list[Figure] = []
        self.fig_dir = inp.run_dir / "figures"
        self.table_dir = inp.run_dir / "tables"

    def open_section(self, sid: str, title: str, *, intro: str = "", gloss: str | None = None,
                     needs_results: bool = False, with_reasons: bool = False) -> tuple[Section, bool]:
        """A new section (its id is the HTML anchor, ``title`` the heading, ``intro`` the lead
        paragraph, ``gloss`` the glossary link) and whether its builder should go on.

        ``needs_results``: without a usable ``results.json`` the section gets a note saying so and
        the builder stops (``False``). ``with_reasons``: the unavailable reasons recorded at the
        top of the results section of the same id become the section's first notes."""
        sec = Section(sid, title, intro=intro, gloss=gloss)
        if needs_results and self.inp.results is None:
            sec.notes.append(f"results.json is {self.inp.errors.get('results.json', 'missing')}: "
                             "no figures for this section.")
            return sec, False
        if with_reasons:
            sec.notes.extend(self.res.section_reasons(sid))
        return sec, True

    def table(self, *args, **kwargs) -> Table:
        """A new :class:`~reports.table.Table`, registered for ``tables/<id>.csv``."""
        t = Table(*args, **kwargs)
        self.tables.append(t)
        return t

    def _figure(self, fid: str, title: str, caption: str, build: Callable[[], Any], *, gloss: str | None = None,
                notes: list[str] | None = None) -> Figure | None:
        """Draw a figure, write it to ``figures/`` and return it inlined; a failure becomes a note
        in ``notes`` (tests stub this hook to skip drawing)."""
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
        f = Figure(fid, title, caption, data_uri(plots.compact_png(png)), [f"figures/{fid}.png", f"figures/{fid}.svg"], gloss)
        self.figures.append(f)
        return f

    def leftover_table(self, section: Section, name: str) -> None:
        """The "other figures" table: entries of results section ``name`` no table placed."""
        rest = self.res.leftovers(name)
        if not rest:
            return
        t = self.table(f"{name}_other", f"Other {name} figures", ["value"], row_header="results key",
                       caption="Entries of results.json not shown in the tables above.")
        for key, entry in rest:
            t.add(f"{name}.{key}", [entry], gloss=gloss_for(key))
        section.table(t)

    def config_switch(self, axis: str) -> bool | None:
        """``audit.<axis>`` of config.json when it is a boolean, else None."""
        audit = (self.inp.config or {}).get("audit")
        if isinstance(audit, Mapping) and isinstance(audit.get(axis), bool):
            return audit[axis]
        return None

    def absent_reason(self, axis: str) -> str:
        """Why the figures of an audit axis are not in the report at all."""
        if self.inp.results is None:
            return f"results.json {self.inp.errors.get('results.json', 'missing')}"
        if self.config_switch(axis) is False:
            return f"switched off (audit.{axis} = false)"
        return "not in results.json"
