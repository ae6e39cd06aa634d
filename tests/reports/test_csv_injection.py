"""Spreadsheet formula injection through a sample set's text (subject ids, vendor, group).

A hostile or careless sample set can carry ``=...`` / ``+...`` / ``-...`` / ``@...`` strings; every
CSV we write (run-dir tables, the report's tables/*.csv, the comparison table) must reach a
spreadsheet with such cells guarded by a leading ``'`` (OWASP "CSV Injection"), numbers untouched,
and our own readers must still see the original text. The run directory comes from the run-report
fixture (``build_run_dir``); the CSVs are written by the stages' own writers, the report by
``write_report`` with the figures stubbed out.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest

import cmr_audit_test_run_report as rr  # noqa: E402  build_run_dir: every file an audit run writes
from audit.pipeline.anatomy_stage import write_clinical
from audit.privacy.section import write_artifacts
from audit.core.tables import FORMULA_PREFIXES, write_csv
from generators.sampleset import SampleSet
from reports import run_report
from reports.comparison.table import CompareTable

SUBJECTS = ["=cmd|' /C calc'!A0", "+SUM(1;2)", "-2+3", "@SUM(A1)"]
VENDOR, GROUP = "=HYPERLINK(\"http://evil.example\";\"click\")", "\t=1+1"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf|nan")


def formula_cells(path) -> list[str]:
    """Cells of a CSV that a spreadsheet would evaluate as formulas (numbers excepted)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [c for row in csv.reader(fh) for c in row if c.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(c)]


@pytest.fixture
def hostile_run(tmp_path, monkeypatch):
    monkeypatch.setattr(run_report._Builder, "_figure", lambda self, *a, **k: None)  # text and tables only
    run = rr.build_run_dir(tmp_path)
    n = rr.N
    subjects = np.array([SUBJECTS[i % len(SUBJECTS)] for i in range(n)])
    s = SampleSet.load(run / "samples.npz")
    SampleSet(images=s.images, spacing=s.spacing, masks=s.masks, subject_ids=subjects,
              vendor=np.array([VENDOR] * n), group=np.array([GROUP] * n)).save(run / "samples.npz")
    privacy = pd.DataFrame({"row_id": [f"r{i}" for i in range(n)], "split": ["train", "holdout"] * (n // 2),
                            "member": [True, False] * (n // 2), "subject_id": subjects,
                            "nn_distance_pca": np.linspace(-1.0, 1.0, n)})
    write_artifacts(run, privacy, json.loads((run / "privacy_curves.json").read_text()))
    write_csv(run / "anatomy_per_sample.csv", pd.DataFrame({"sample_index": np.arange(n), "subject_id": subjects,
                                                            "dice_RV": 0.8, "dice_MYO": -0.5, "dice_LV": np.nan}))
    write_clinical(run, pd.DataFrame({"subject_id": SUBJECTS, "lv_ef_pct_measured": [55.0, -1.0, 50.0, 60.0],
                                      "lv_ef_pct_requested": [57.0, 52.0, 49.0, 61.0]}),
                   "clinical_per_subject.csv", "clinical_", ())
    return run


def test_sample_set_text_is_neutralised_in_every_csv(hostile_run):
    run = hostile_run
    html = run_report.write_report(run).read_text("utf-8")
    assert "could not be rendered" not in html
    written = [run / "privacy_per_sample.csv", run / "anatomy_per_sample.csv", run / "clinical_per_subject.csv",
               *sorted((run / "tables").glob("*.csv"))]
    assert (run / "tables" / "samples.csv") in written
    for path in written:
        assert formula_cells(path) == [], path.name

    raw = (run / "privacy_per_sample.csv").read_text("utf-8")
    assert "\"'=cmd|' /C calc'!A0\"" in raw and "\"'+SUM(1;2)\"" in raw and "\"'-2+3\"" in raw and "\"'@SUM(A1)\"" in raw
    assert re.search(r"(^|,)-1\.0(,|$)", raw, re.M)  # the negative distance stays a bare number
    assert "\"'-0.5\"" not in (run / "anatomy_per_sample.csv").read_text("utf-8")
    with (run / "tables" / "samples.csv").open(newline="", encoding="utf-8") as fh:
        cells = {r["value"] for r in csv.DictReader(fh)}
    assert {"'" + s for s in SUBJECTS} <= cells and "'" + VENDOR in cells and "'" + GROUP in cells


def test_our_readers_get_the_original_text_back(hostile_run):
    inp = run_report.load_inputs(hostile_run)
    assert not {k: v for k, v in inp.errors.items() if k.endswith(".csv")}
    assert inp.privacy_csv["subject_id"].tolist() == [SUBJECTS[i % 4] for i in range(rr.N)]
    assert inp.privacy_csv["nn_distance_pca"].tolist() == pytest.approx(np.linspace(-1.0, 1.0, rr.N).tolist())
    assert inp.anatomy_csv["subject_id"].tolist()[:4] == SUBJECTS and (inp.anatomy_csv["dice_MYO"] == -0.5).all()
    assert inp.clinical_csv["subject_id"].tolist() == SUBJECTS
    assert inp.clinical_csv["lv_ef_pct_measured"].tolist() == [55.0, -1.0, 50.0, 60.0]


def test_comparison_table_is_neutralised():
    t = CompareTable("compare", "Headline figures per run", ["generator", "FID ratio"], row_header="run")
    t.add("=run|x", ["@generator", -0.5], highlight=[False, True])
    rows = list(csv.reader(t.csv_text().splitlines()))
    assert rows[0] == ["row", "column", "value", "unit", "ci_low", "ci_high", "n", "status", "reason", "method",
                       "notes", "detail", "best"]
    assert rows[1][:3] == ["'=run|x", "generator", "'@generator"]
    assert rows[2][2] == "-0.5" and rows[2][-1] == "yes"
    assert "\n-0.5," not in t.csv_text() and ",-0.5," in t.csv_text()  # the number is written bare
