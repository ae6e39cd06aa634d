"""Spreadsheet-safe CSV tables: every report and run-directory CSV is written through here.

Why: the text in our tables is partly user-controlled (a sample set's subject ids, vendor and group
names; generator names in a comparison), and people open these files in Excel or LibreOffice Calc.
Both evaluate a cell whose text starts with ``=``, ``+``, ``-``, ``@``, TAB (0x09) or CR (0x0D) as a
formula ("CSV injection" / formula injection, CWE-1236): ``=HYPERLINK(...)`` can leak the sheet,
DDE payloads can start programs. The OWASP guidance
(https://owasp.org/www-community/attacks/CSV_Injection) is to prefix such a cell with a single
quote, which makes the spreadsheet treat it as text, and to enclose the field in double quotes.
:func:`safe_cell` does the first; :func:`csv_text` writes with ``csv.QUOTE_NONNUMERIC`` (every text
field, header included, in double quotes; numbers bare), which does the second.

What is never changed:

* numbers: only ``str`` values are looked at, so a float ``-0.5``, ``-inf`` or NaN stays a number
  (pandas formats its own numeric columns; only text columns are passed through :func:`safe_cell`);
* text that is a plain decimal number (``"-0.5"``, ``"+3"``, ``"1e-3"``): a spreadsheet reads it
  as that number, not as a formula, so guarding it would only turn a number into text.

The guard is lossless, so our own readers get the original text back (:func:`read_csv`,
:func:`unguard_cell`): a string is guarded when its first character after any leading single
quotes is dangerous, so text that already starts with ``'=`` gets one more quote (``''=``) and
reading strips exactly one. Guarding only ``=...`` and leaving ``'=...`` alone would make a guard
and genuine text indistinguishable on the way back.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from audit.core.atomic import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMULA_PREFIXES", "safe_cell", "unguard_cell", "safe_frame", "unguard_frame", "csv_text",
           "write_csv", "read_csv"]

#: First characters that make Excel / LibreOffice read a cell as a formula (OWASP CSV Injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _needs_guard(text: str) -> bool:
    body = text.lstrip("'")
    return bool(body) and body.startswith(FORMULA_PREFIXES) and _NUMBER.fullmatch(body) is None


def safe_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula; any
    other value (numbers, NaN, None, booleans, ordinary text) is returned unchanged."""
    if isinstance(value, str) and _needs_guard(value):
        return "'" + value
    return value


def unguard_cell(value: Any) -> Any:
    """Inverse of :func:`safe_cell`: ``unguard_cell(safe_cell(v)) == v`` for every ``v``."""
    if isinstance(value, str) and value.startswith("'") and _needs_guard(value[1:]):
        return value[1:]
    return value


def _is_frame(obj: Any) -> bool:
    # a DataFrame can exist only once pandas is imported: tables of plain rows (the report's) never import it
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def _is_text(series: pd.Series) -> bool:
    import pandas as pd  # lazy: pandas only when a table is built

    dtype = series.dtype
    return dtype == object or pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)


def _map_text(df: pd.DataFrame, fn) -> pd.DataFrame:
    out = df.copy()
    out.columns = [fn(c) for c in out.columns]
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if _is_text(col):
            out.isetitem(i, col.map(fn))
    return out


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names went through :func:`safe_cell`
    (numeric and boolean columns are not touched)."""
    return _map_text(df, safe_cell)


def unguard_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with the guards of :func:`safe_frame` removed from text cells and names."""
    return _map_text(df, unguard_cell)


def csv_text(table: pd.DataFrame | Iterable[Sequence[Any] | Mapping[str, Any]],
             columns: Sequence[str] | None = None) -> str:
    """The spreadsheet-safe CSV text of ``table``: a DataFrame (written without its index), or rows
    (sequences, or mappings keyed by ``columns``; a missing key is an empty cell) under the header
    ``columns``. Text fields are guarded (:func:`safe_cell`) and double-quoted; numbers are bare."""
    if _is_frame(table):
        return safe_frame(table).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    if columns is not None:
        w.writerow([safe_cell(c) for c in columns])
    for row in table:
        if isinstance(row, Mapping):
            if columns is None:
                raise ValueError("csv_text: rows given as mappings need the columns")
            row = [row.get(c, "") for c in columns]
        w.writerow([safe_cell(v) for v in row])
    return buf.getvalue()


def write_csv(path: str | os.PathLike, table: pd.DataFrame | Iterable[Sequence[Any] | Mapping[str, Any]],
              columns: Sequence[str] | None = None) -> Path:
    """Write :func:`csv_text` of ``table`` to ``path`` atomically (:func:`audit.core.atomic.atomic_write_text`)."""
    return atomic_write_text(path, csv_text(table, columns))


def read_csv(path: str | os.PathLike, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` of a table written by :func:`write_csv`, with the guards removed, so
    text reads back exactly as it was before it was written."""
    import pandas as pd  # lazy: pandas only when a table is built

    return unguard_frame(pd.read_csv(path, **kwargs))
