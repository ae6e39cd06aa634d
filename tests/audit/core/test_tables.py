"""Spreadsheet-safe CSV tables (audit.core.tables): formula-like text guarded, numbers never touched."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pandas as pd
import pytest

from audit.core.tables import FORMULA_PREFIXES, csv_text, read_csv, safe_cell, safe_frame, unguard_cell, write_csv


@pytest.mark.parametrize("text", ["=1+1", "+1+1", "-1+cmd|' /C calc'!A0", "@SUM(A1:A2)", "\t=1+1", "\r=1+1",
                                  "=", "-", "-x", "+inf", "-nan"])
def test_each_formula_prefix_is_guarded(text):
    assert text.startswith(FORMULA_PREFIXES)
    assert safe_cell(text) == "'" + text
    assert unguard_cell(safe_cell(text)) == text


@pytest.mark.parametrize("value", [-0.5, -1, 0, 2.5, -math.inf, np.float64(-0.5), np.int64(-3), np.float32(-1.5),
                                   True, False, None, b"=raw bytes"])
def test_non_strings_are_untouched(value):
    assert safe_cell(value) is value
    assert unguard_cell(value) is value


def test_nan_is_untouched():
    assert math.isnan(safe_cell(math.nan)) and safe_cell(np.nan) is np.nan


@pytest.mark.parametrize("text", ["-0.5", "+3", "-12", "1e-3", "-1E+05", ".5", "-.5"])
def test_text_that_is_a_plain_number_is_left_alone(text):
    # a spreadsheet reads it as that number, not as a formula; guarding would turn a number into text
    assert safe_cell(text) == text


@pytest.mark.parametrize("text", ["patient001", "", "a=b", "A", "NOR", "x-1", " =1", "'", "'hello", "'-0.5"])
def test_ordinary_text_is_left_alone(text):
    assert safe_cell(text) == text
    assert unguard_cell(text) == text


def test_already_quoted_formula_gets_one_more_quote_and_reads_back_exactly():
    # guarding only "=..." would make "'=1" (user text) and a guard indistinguishable on the way back
    assert safe_cell("'=1") == "''=1"
    assert safe_cell("''@x") == "'''@x"
    for text in ["'=1", "''=1", "'''@x", "=1", "'\t=1", "'", "''", "'hello", "-0.5", "'-0.5", "'-x"]:
        assert unguard_cell(safe_cell(text)) == text, text


def test_safe_frame_guards_text_columns_and_names_only():
    df = pd.DataFrame({"subject_id": ["=1+1", "patient001", None], "score": [-0.5, np.nan, -2.0],
                       "rank": [-1, 2, 3], "member": [True, False, True], "mixed": [-0.5, "@x", np.nan],
                       "=name": ["+a", "b", "c"]})
    out = safe_frame(df)
    assert list(out.columns) == ["subject_id", "score", "rank", "member", "mixed", "'=name"]
    assert out["subject_id"].tolist()[:2] == ["'=1+1", "patient001"] and pd.isna(out["subject_id"].iloc[2])
    pd.testing.assert_series_equal(out["score"], df["score"])
    pd.testing.assert_series_equal(out["rank"], df["rank"])
    pd.testing.assert_series_equal(out["member"], df["member"])
    assert out["mixed"].iloc[0] == -0.5 and out["mixed"].iloc[1] == "'@x" and pd.isna(out["mixed"].iloc[2])
    assert out["'=name"].tolist() == ["'+a", "b", "c"]
    assert df["subject_id"].iloc[0] == "=1+1" and "=name" in df  # the input is not modified


def test_frame_csv_quotes_text_and_keeps_numbers_bare():
    df = pd.DataFrame({"subject_id": ["=HYPERLINK(\"http://x\",\"y\")", "\r=1"], "d": [-0.5, np.nan]})
    text = csv_text(df)
    lines = text.splitlines()
    assert lines[0] == '"subject_id","d"'
    assert lines[1] == '"\'=HYPERLINK(""http://x"",""y"")",-0.5'  # guarded, quoted; the negative number bare
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[2][0] == "'\r=1" and rows[2][1] == ""  # CR kept inside the quoted field; NaN is empty


def test_row_csv_with_sequences_and_mappings():
    text = csv_text([["-x", -1, None, 2.5], ["@y", np.float64(-0.25), "ok", True]], ["row", "v", "w", "z"])
    assert text.splitlines() == ['"row","v","w","z"', '"\'-x",-1,"",2.5', '"\'@y",-0.25,"ok",True']
    text = csv_text([{"step": 1, "loss": -0.5}, {"step": 2}], ["loss", "step"])
    assert text.splitlines() == ['"loss","step"', "-0.5,1", '"",2']
    with pytest.raises(ValueError, match="need the columns"):
        csv_text([{"step": 1}])


def test_write_and_read_back_the_original_text(tmp_path):
    df = pd.DataFrame({"subject_id": ["=1+1", "+A", "-B", "@C", "\tD", "'=E", "plain"],
                       "vendor": ["=v"] * 7, "dist": [-0.5, 0.0, 1.5, -2.0, np.nan, 3.0, -1e-3]})
    path = write_csv(tmp_path / "t.csv", df)
    assert path == tmp_path / "t.csv" and not list(tmp_path.glob(".*.tmp"))
    back = read_csv(path)
    assert back["subject_id"].tolist() == df["subject_id"].tolist()
    assert back["vendor"].tolist() == df["vendor"].tolist()
    assert back["dist"].dtype == np.float64
    np.testing.assert_array_equal(back["dist"].to_numpy(), df["dist"].to_numpy())
    raw = pd.read_csv(path)  # what a plain reader (or a spreadsheet) sees: only guarded text
    assert not any(str(v).startswith(FORMULA_PREFIXES) for v in raw["subject_id"].tolist() + raw["vendor"].tolist())
