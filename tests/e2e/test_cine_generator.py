"""End-to-end ``audit run --generator cine`` at the smoke preset: trained on whole stacks, sampled
from reference subjects' clinical priors, every audit on the cine set, then the CI sign-off."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.cli.main import main
from audit.core.results import load_results
from generators.sampleset import SampleSet

pytestmark = [pytest.mark.slow, pytest.mark.judge]


def test_cine_smoke_run_is_audited_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cine"
    assert main(["--quiet", "run", "--generator", "cine", "--preset", "smoke", "--out", str(out)]) == 0
    s = SampleSet.load(out / "samples.npz")
    cfg = json.loads((out / "config.json").read_text())
    splits = json.loads((out / "splits.json").read_text())
    assert s.is_cine and s.images.shape[1] == cfg["generator_options"].get("frames", 4)
    assert s.spacing.shape == (3,) and s.slice_index is not None and np.isfinite(s.ef).all()
    assert {i.split("~")[0] for i in s.subject_ids} <= set(splits["splits"]["reference"])
    assert len(set(s.subject_ids)) == cfg["sample"]["n_samples"]
    state = json.loads((out / "state.json").read_text())
    assert state["stages"]["fit"]["train_subjects"] == len(splits["splits"]["train"])
    r = load_results(out / "results.json")
    ef = r["anatomy"]["clinical"]["lv_ef_pct"]
    assert "judge" in ef["mae"]["method"] and ef["mae"]["value"] >= 0
    assert "value" in r["anatomy"]["clinical_generator_masks"]["lv_ef_pct"]["mae"]
    assert "fid" in r["fidelity"]["fvd_judge"]["synthetic_vs_test"]
    assert 0 <= r["fidelity"]["fvd_judge"]["temporal_smoothness"]["synthetic"]["value"] <= 1
    assert "cine" in r["privacy"]["setup"]["synthetic_images"]["method"]
    assert r["privacy"]["setup"]["synthetic_images"]["value"] == s.images.shape[0] * s.images.shape[1]
    assert (out / "report.html").is_file() and (out / "clinical_per_subject.csv").is_file()
    code = main(["--quiet", "signoff", str(out), "--policy", "ci"])
    verdict = json.loads((out / "signoff.json").read_text())["verdict"]
    assert verdict in ("PASS", "WARN", "FAIL") and code in (0, 1, 2), verdict  # complete: every criterion decidable
