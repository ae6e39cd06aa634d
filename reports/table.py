"""The report table: cells built from results entries, numbered unavailable reasons, method notes
and the long-format CSV behind every table (run report and comparison)."""

from __future__ import annotations

from typing import Any, Sequence

from audit.core import tables
from reports.formatting import fmt_value, is_entry, is_metric, unit_suffix
from reports.glossary import GLOSSARY


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
        if is_entry(x) and x.get("status") == "unavailable":
            reason = str(x.get("reason") or "no reason given")
            self._csv.append([row_label, col_label, "", "", "", "", "", "unavailable", reason, "", ""])
            return {"kind": "na", "text": "n/a", "note": self._note(reason)}
        if is_metric(x):
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
            return {"kind": "metric", "text": fmt_value(x["value"], unit), "unit": unit_suffix(unit), "ci": ci,
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
