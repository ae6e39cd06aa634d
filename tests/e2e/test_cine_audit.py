"""A cine sample set ``(N,T,H,W)`` through ``audit run --samples``: per-frame anatomy and image
fidelity, ``fvd_judge`` against real test cines beside the holdout floor, temporal smoothness."""

from __future__ import annotations

import numpy as np
import pytest

from audit.cli.main import main
from audit.core.results import load_results
from generators.sampleset import SampleSet

pytestmark = [pytest.mark.slow, pytest.mark.judge]

FRAMES = 8


def _real_cines(subjects, shuffle: bool, seed: int = 0) -> SampleSet:
    rng = np.random.default_rng(seed)
    imgs, masks, ids = [], [], []
    for s in subjects:
        z = s.n_slices // 2
        cycle = np.round(np.linspace(0, s.n_frames - 1, FRAMES)).astype(int)  # a whole cycle in FRAMES frames
        frames = cycle if not shuffle else rng.permutation(cycle)
        imgs.append(s.image[frames, z])
        masks.append(np.stack([s.mask[s.ed, z]] * FRAMES))  # only ED/ES are annotated: a stand-in mask
        ids.append(s.subject_id)
    return SampleSet(images=np.clip(np.stack(imgs), 0, 1).astype(np.float32), masks=np.stack(masks).astype(np.uint8),
                     spacing=np.asarray(subjects[0].spacing[:2], np.float32), subject_ids=np.array(ids))


def test_cine_sample_set_is_audited(tmp_path, monkeypatch):
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig

    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    prepared = load_prepared(root, PreprocessConfig(target_spacing=3.0, size=64), progress=False)
    subjects = [prepared[i] for i in prepared.ids[:3]]
    docs = {}
    for name, shuffle in (("ordered", False), ("shuffled", True)):
        path = tmp_path / f"{name}.npz"
        _real_cines(subjects, shuffle).save(path)
        out = tmp_path / name
        assert main(["--quiet", "run", "--generator", "external", "--samples", str(path), "--preset", "smoke",
                     "--out", str(out), "--set", "audit.max_images=16", "--set", "audit.privacy=false",
                     "--set", "audit.utility=false"]) == 0
        docs[name] = load_results(out / "results.json")
    fvd = docs["ordered"]["fidelity"]["fvd_judge"]
    assert fvd["synthetic_vs_test"]["fid"]["value"] >= 0 and "fvd_judge" in fvd["synthetic_vs_test"]["fid"]["method"]
    assert "value" in fvd["real_floor"]["fid"]
    smooth = {k: d["fidelity"]["fvd_judge"]["temporal_smoothness"]["synthetic"]["value"] for k, d in docs.items()}
    assert smooth["ordered"] > smooth["shuffled"], smooth
    assert fvd["temporal_smoothness"]["real_test"]["value"] > 0.8
    anat = docs["ordered"]["anatomy"]
    assert anat["plausibility"]["synthetic"]["plausible_rate"]["n"] == 16  # frames
    assert anat["clinical"]["status"] == "unavailable"
    assert "fid" in docs["ordered"]["fidelity"]["judge"]["synthetic_vs_test"]
