"""Realism gate (issue 4): the ACDC-trained judge segments phantom ED/ES frames with mean
Dice >= 0.85 for RV, MYO and LV, for every vendor style.

A small, fixed version of ``benchmarks/phantom_realism.py``: 2 subjects per vendor (groups
varying), the basal-mid, mid and apical-mid slices of ED and ES (48 slices, ~30 s in fp32 on
2 free cores). Dice convention in :mod:`cohorts.phantom.realism`.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from cohorts.phantom import GROUPS, VENDORS, generate_subject
from cohorts.phantom.realism import GATE, STRUCTURES, subject_dice, summarise

pytestmark = [pytest.mark.slow, pytest.mark.judge]


@pytest.fixture(scope="module")
def judge():
    from cohorts.judge import Judge, JudgeUnavailable

    try:
        return Judge("fp32", progress=False)
    except JudgeUnavailable as exc:  # no network and no cached copy
        if os.environ.get("CI"):
            raise  # CI reaches PyPI: an unavailable judge there is a failure, not a skip
        pytest.skip(str(exc))


def test_judge_dice_gate_every_vendor(judge):
    rows = []
    for vi, v in enumerate(VENDORS):
        for k in range(2):
            group = GROUPS[(2 * vi + k) % len(GROUPS)]
            s = generate_subject(f"gate{v}{k}", 31_000 + 10 * vi + k, v, group)
            d = subject_dice(s, judge, "mid3")
            d.update(vendor=v, group=group)
            rows.append(d)
    summary = summarise(rows, VENDORS)
    table = {v: {s: round(summary[v][s]["mean"], 3) for s in STRUCTURES} for v in VENDORS}
    for v in VENDORS:
        for s in STRUCTURES:
            assert summary[v][s]["mean"] >= GATE, f"vendor {v} {s}: {table}"
    assert summary["gate_passed"]
    assert all(np.isfinite(r[s]) for r in rows for s in STRUCTURES)
