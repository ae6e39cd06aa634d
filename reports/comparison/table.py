"""The comparison table: one row per run with the headline figures (:data:`COLUMNS`), the best
value per column marked, and its long-format CSV."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from reports.comparison.columns import COLUMNS
from reports.comparison.ranking import best_marks
from reports.comparison.runs import RunData
from reports.table import Table


class CompareTable(Table):
    """The run report's table (cells, numbered n/a footnotes, long CSV) plus the comparison's own
    short cell annotation (``tag``: which attack, space or vendor a max / min came from) and a
    ``best`` flag, as two more CSV columns."""

    def cell(self, row_label, col_label, x, *, unit_override=None, highlight=False):
        c = super().cell(row_label, col_label, x, unit_override=unit_override, highlight=highlight)
        c["tag"] = str(x.get("tag") or "") if isinstance(x, Mapping) else ""
        self._csv[-1] += [c["tag"], "yes" if highlight else ""]
        return c

    CSV_COLUMNS = (*Table.CSV_COLUMNS, "detail", "best")


def comparison_table(runs: Sequence[RunData]) -> tuple[CompareTable, list[dict[str, Any]]]:
    marks = best_marks(runs)
    text_cols = [("generator", None), ("verdict", "ranking")]
    t = CompareTable("compare", "Headline figures per run",
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
