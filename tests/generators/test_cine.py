"""The ``cine`` cascade (issue 8): shapes, seeding, priors validation, save/load/resume, conditioning direction.

Training data are synthetic beating hearts (:func:`beating_subjects`): an LV disc in a myocardial
ring with an RV crescent whose radius follows a cardiac cycle with the subject's own EF; only ED and
ES are annotated, as in ACDC, so the VAE's semi-supervised path is exercised.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from audit.core.errors import UserError
from cohorts.types import Subject
from generators.base import FitContext
from generators.cine import CineGenerator, cycle_frames
from generators.data import StackSet

SIZE, FRAMES, SPACING = 32, 10, (3.0, 3.0, 8.0)


def _frame(size, r_lv, rng, z_shrink):
    yy, xx = np.mgrid[:size, :size]
    cy = cx = size / 2
    r = np.hypot(yy - cy, xx - cx)
    r_lv = r_lv * z_shrink
    wall = 2.2
    mask = np.zeros((size, size), np.uint8)
    rv = (np.hypot(yy - cy, xx - (cx - r_lv - wall - 1)) < r_lv * 1.1) & (r > r_lv + wall)
    mask[rv] = 1
    mask[(r >= r_lv) & (r < r_lv + wall)] = 2
    mask[r < r_lv] = 3
    img = 0.15 + 0.03 * rng.standard_normal((size, size))
    img[mask == 3], img[mask == 1], img[mask == 2] = 0.85, 0.75, 0.35
    return np.clip(img, 0, 1).astype(np.float32), mask


def beating_subjects(n=12, seed=0, slices=(4, 5)):
    """Subjects whose LV radius at ED is 4.5-6.5 px and whose EF spans ~15-75 % (low EF = DCM)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ef_target = 15 + 60 * (i % 6) / 5
        r_ed = rng.uniform(4.5, 6.5)
        r_es = r_ed * np.sqrt(1 - ef_target / 100)  # area ~ volume per slice
        z = int(slices[i % len(slices)])
        phase = (1 - np.cos(2 * np.pi * np.arange(FRAMES) / FRAMES)) / 2  # 0 at ED, 1 at mid-cycle
        image = np.empty((FRAMES, z, SIZE, SIZE), np.float32)
        mask = np.zeros((FRAMES, z, SIZE, SIZE), np.uint8)
        for t in range(FRAMES):
            radius = r_ed + (r_es - r_ed) * phase[t]
            for k in range(z):
                image[t, k], mask[t, k] = _frame(SIZE, radius, rng, 1 - 0.5 * k / z)
        labelled = np.zeros(FRAMES, bool)
        labelled[[0, FRAMES // 2]] = True
        mask[~labelled] = 0
        out.append(Subject(subject_id=f"s{i:02d}", vendor="A", centre="X", group="DCM" if ef_target < 40 else "NOR",
                           spacing=SPACING, ed=0, es=FRAMES // 2, image=image, mask=mask, labelled=labelled,
                           source="synthetic"))
    return out


def _config(**opts):
    base = {"frames": 6, "ae": {"channels": [8, 16], "norm_groups": 4, "steps": 60, "batch_size": 16},
            "vae_steps": 40, "vae_batch_size": 16, "channels": [32, 32], "norm_groups": 8,
            "static_steps": 60, "motion_steps": 60, "static_batch_size": 8, "motion_batch_size": 16}
    base.update(opts)
    return SimpleNamespace(
        seed=0, device="cpu", generator_options=base, dp=SimpleNamespace(enabled=False),
        train=SimpleNamespace(num_threads=0, amp=False, ema_decay=0.99, ema_warmup_steps=10, checkpoint_every=20))


def _conditions(subjects):
    rows = [(s.subject_id, s.group, *[s.ejection_fraction()[k] for k in ("ef", "edv", "esv")], s.n_slices,
             s.spacing[2]) for s in subjects]
    cols = list(zip(*rows))
    return {k: np.asarray(v) for k, v in zip(("subject_ids", "group", "ef", "edv", "esv", "n_slices", "slice_spacing"), cols)}


@pytest.fixture(scope="module")
def fitted(module_tmp):
    import os

    cache = module_tmp("cache")
    old = os.environ.get("CMR_AUDIT_CACHE")
    os.environ["CMR_AUDIT_CACHE"] = str(cache)
    root = module_tmp("ckpt")
    try:
        g = CineGenerator()
        subjects = beating_subjects()
        g.fit(StackSet(subjects), _config(), FitContext(checkpoint_root=root, losses_path=root / "losses.csv"))
        yield g, subjects, root
    finally:
        if old is None:
            os.environ.pop("CMR_AUDIT_CACHE", None)
        else:
            os.environ["CMR_AUDIT_CACHE"] = old


def test_cycle_frames_start_at_ed_and_wrap():
    assert cycle_frames(20, 0, 5).tolist() == [0, 5, 10, 14, 19]
    assert cycle_frames(10, 7, 4).tolist() == [7, 0, 3, 6]


@pytest.mark.parametrize("sampler", ["heun", "euler"])
def test_flow_solvers_are_refused_by_the_ddim_cine_sampler(sampler):
    with pytest.raises(UserError, match="samples with DDIM"):
        CineGenerator().sample(2, sampler=sampler)


def test_loss_curves_of_every_phase_in_one_csv(fitted):
    import pandas as pd

    _, _, root = fitted
    curves = pd.read_csv(root / "losses.csv")
    steps = curves.groupby("phase")["step"].max().to_dict()
    assert steps == {"vae": 40, "static": 60, "motion": 60}
    assert curves["loss"].notna().all() and np.isfinite(curves["loss"]).all()


def test_sample_shapes_and_contract(fitted):
    g, subjects, _ = fitted
    cond = _conditions(subjects[:3])
    s = g.sample(conditions=cond, seed=1, steps=3, guidance=5.0)
    rows = int(cond["n_slices"].sum())
    assert s.is_cine and s.images.shape == (rows, 6, SIZE, SIZE) and s.masks.shape == s.images.shape
    assert s.images.dtype == np.float32 and s.masks.dtype == np.uint8 and set(np.unique(s.masks)) <= {0, 1, 2, 3}
    assert s.spacing.tolist() == [3.0, 3.0, 8.0]
    assert sorted(set(s.subject_ids)) == sorted(cond["subject_ids"])
    for sid, n in zip(cond["subject_ids"], cond["n_slices"]):
        assert sorted(s.slice_index[s.subject_ids == sid].tolist()) == list(range(int(n)))
        assert np.allclose(s.ef[s.subject_ids == sid], cond["ef"][cond["subject_ids"] == sid])


def test_sampling_is_seeded(fitted):
    g, subjects, _ = fitted
    cond = _conditions(subjects[:2])
    a, b = (g.sample(conditions=cond, seed=3, steps=3) for _ in range(2))
    c = g.sample(conditions=cond, seed=4, steps=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, c.images)


def test_repeated_conditions_get_distinct_ids(fitted):
    g, subjects, _ = fitted
    cond = {k: np.concatenate([v, v]) for k, v in _conditions(subjects[:1]).items()}
    s = g.sample(conditions=cond, seed=0, steps=2)
    assert set(s.subject_ids) == {"s00", "s00~1"}


def test_unconditional_sampling_uses_training_priors(fitted):
    g, _, _ = fitted
    s = g.sample(3, seed=0, steps=2)
    assert len(set(s.subject_ids)) == 3 and np.isfinite(s.ef).all()


@pytest.mark.parametrize("change, message", [
    ({"ef": [120.0]}, "EF must be in [0, 100]"),
    ({"esv": [500.0]}, "exceeds EDV"),
    ({"edv": [-5.0]}, "EDV must be > 0"),
    ({"ef": [10.0]}, "disagrees with EDV/ESV"),
    ({"n_slices": [30]}, "number of slices must be in [4, 5]"),
    ({"group": ["XYZ"]}, "unknown (trained on DCM, NOR)"),
    ({"slice_spacing": [40.0]}, "slice spacing 40 mm is outside"),
    ({"frames": [12]}, "trained for 6 frames per cycle (the only valid frame count); asked for [12]"),
])
def test_impossible_priors_are_refused_with_the_valid_range(fitted, change, message):
    g, subjects, _ = fitted
    cond = _conditions(subjects[3:4])
    cond.update({k: np.asarray(v) for k, v in change.items()})
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        g.sample(conditions=cond, seed=0, steps=2)


def test_save_load_round_trip_and_resume(fitted, tmp_path):
    g, subjects, root = fitted
    g.save(tmp_path / "g")
    h = CineGenerator.load(tmp_path / "g")
    cond = _conditions(subjects[:2])
    a, b = g.sample(conditions=cond, seed=5, steps=3), h.sample(conditions=cond, seed=5, steps=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    # a resumed fit restores every phase from its checkpoints (nothing left to train): same weights
    r = CineGenerator()
    r.fit(StackSet(subjects), _config(), FitContext(checkpoint_root=root, resume=True))
    for k, net in g.nets.items():
        for (n1, p1), (_, p2) in zip(net.state_dict().items(), r.nets[k].state_dict().items()):
            assert np.array_equal(p1.numpy(), p2.numpy()), (k, n1)


def test_fit_refuses_slice_level_dp_slices_and_unannotated_data():
    from audit.pipeline.config import DPConfig

    g = CineGenerator()
    cfg = _config()
    cfg.dp = DPConfig(epsilon=8.0, unit="slice")
    with pytest.raises(UserError, match="only subject-level DP"):
        g.fit(StackSet(beating_subjects(2)), cfg)
    with pytest.raises(UserError, match="whole subjects"):
        g.fit(object(), _config())
    bare = beating_subjects(2)
    for s in bare:
        s.labelled[:] = False
    with pytest.raises(UserError, match="annotated ED and ES"):
        g.fit(StackSet(bare), _config())
    with pytest.raises(UserError, match="unknown option"):
        g.fit(StackSet(beating_subjects(2)), _config(bogus=1))


DP_PHASES = ["autoencoder", "latent_scale", "vae", "vae_latent_scale", "motion_scale", "static", "motion"]


def _dp_config(**over):
    from audit.pipeline.config import DPConfig

    cfg = _config(ae={"channels": [8, 8], "norm_groups": 4, "steps": 4, "batch_size": 8}, vae_steps=4,
                  channels=[16, 16], static_steps=6, motion_steps=6, **over)
    cfg.dp = DPConfig(epsilon=8.0)
    cfg.train.checkpoint_every = 3
    return cfg


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))


def test_dp_fit_accounts_every_phase_in_one_ledger(own_cache, tmp_path):
    """Issue 8 req. 4 / issue 7 req. 1-3: all private mechanisms of the cascade in one calibrated ledger."""
    from generators.dp.accountant import Ledger, epsilon_rdp

    subjects = beating_subjects()
    g = CineGenerator()
    g.fit(StackSet(subjects), _dp_config(), FitContext(checkpoint_root=tmp_path / "ckpt"))
    s = g.dp_summary
    assert s is not None and s["complete"] and s["family"] == "cine"
    plan = s["plan"]
    assert [p["name"] for p in plan["phases"]] == DP_PHASES
    assert plan["unit"] == "subject" and plan["n_units"] == 12 and plan["delta"] == pytest.approx(1 / 120)
    assert {p["name"]: p["steps"] for p in s["ledger"]["phases"]} == {p["name"]: p["steps"] for p in plan["phases"]}
    rates = {p["name"]: p["sample_rate"] for p in plan["phases"]}
    # static: one stack per sampled subject (8 of 12 expected); motion: 2 slice cines per sampled subject
    assert rates["static"] == pytest.approx(8 / 12) and rates["motion"] == pytest.approx(16 / (2 * 12))
    assert rates["motion_scale"] == rates["latent_scale"] == rates["vae_latent_scale"] == 1.0
    assert 0.98 * 8.0 <= s["epsilon_rdp"] <= 8.0
    assert epsilon_rdp(Ledger.from_dict(s["ledger"]).phases, plan["delta"]) == pytest.approx(s["epsilon_rdp"])
    assert any("one ledger" in n for n in s["notes"]) and any("slice counts (4-5)" in n for n in s["notes"])
    # no per-subject clinical values of the training patients in the model
    assert g.train_priors == {}
    with pytest.raises(UserError, match="trained with DP and keeps no training priors"):
        g.sample(2, seed=0, steps=2)
    g.save(tmp_path / "gen")
    import json

    stored = json.loads(next((tmp_path / "gen").glob("step-*/config.json")).read_text())
    assert stored["model_config"]["train_priors"] == {}
    assert stored["model_config"]["dp"]["noise_multiplier"] == plan["noise_multiplier"]
    back = CineGenerator.load(tmp_path / "gen")
    assert back.dp_summary["epsilon_rdp"] == s["epsilon_rdp"]
    out = back.sample(conditions=_conditions(subjects[:2]), seed=0, steps=2)
    assert out.images.shape[1:] == (6, SIZE, SIZE) and np.isfinite(out.images).all()


def test_dp_resume_continues_the_ledger(own_cache, tmp_path):
    """An interrupted DP fit resumes with the accountant state of its checkpoint: the same ledger
    and the same weights as an uninterrupted fit (no step spent twice or lost)."""
    from generators import checkpoint as ckpt

    subjects = beating_subjects()
    a = CineGenerator()
    a.fit(StackSet(subjects), _dp_config(), FitContext(checkpoint_root=tmp_path / "ckpt"))
    motion = tmp_path / "ckpt" / "motion"
    first = sorted(p.name for p in motion.glob("step-*"))[0]
    (motion / "latest").write_text(first)  # as if the run died after the first motion checkpoint
    assert ckpt.load(motion).step == 3
    b = CineGenerator()
    b.fit(StackSet(subjects), _dp_config(), FitContext(checkpoint_root=tmp_path / "ckpt", resume=True))
    assert b.dp_summary["ledger"] == a.dp_summary["ledger"]
    for k, net in a.nets.items():
        for (n1, p1), (_, p2) in zip(net.state_dict().items(), b.nets[k].state_dict().items()):
            assert np.array_equal(p1.numpy(), p2.numpy()), (k, n1)


def _lv_ef(masks, subject_ids, slice_index, spacing):
    from audit.anatomy.clinical import cine_indices_table

    table = cine_indices_table(masks, subject_ids, slice_index, spacing)
    return table.set_index("subject_id")["lv_ef_pct_measured"]


@pytest.mark.slow
def test_higher_requested_ef_gives_higher_measured_ef(tmp_path, monkeypatch):
    """Conditioning works in the requested direction: the same anatomy asked for a low and a high EF."""
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
    subjects = beating_subjects(18, seed=1)
    g = CineGenerator()
    g.fit(StackSet(subjects), _config(**{"ae": {"channels": [8, 16], "norm_groups": 4, "steps": 300, "batch_size": 16},
                                         "vae_steps": 200, "static_steps": 500, "motion_steps": 600}))
    base = _conditions(subjects[:1])
    low, high = dict(base), dict(base)
    for cond, ef in ((low, 20.0), (high, 70.0)):
        edv = 150.0
        cond.update(ef=np.full(8, ef), edv=np.full(8, edv), esv=np.full(8, edv * (1 - ef / 100)),
                    group=np.full(8, "DCM" if ef < 40 else "NOR"), n_slices=np.full(8, 4),
                    slice_spacing=np.full(8, 8.0), subject_ids=np.array([f"q{i}" for i in range(8)]))
    measured = {}
    for name, cond in (("low", low), ("high", high)):
        s = g.sample(conditions=cond, seed=0, steps=10, guidance=3.0)
        measured[name] = float(_lv_ef(s.masks, s.subject_ids, s.slice_index, s.spacing).mean())
    assert measured["high"] > measured["low"] + 10, measured


def test_smooth_cycle_keeps_ed_and_slow_motion_and_removes_flicker():
    import torch

    from generators.cine import smooth_cycle

    T = 16
    t = torch.arange(1, T, dtype=torch.float32)
    slow = (1 - torch.cos(2 * np.pi * t / T)).view(1, -1, 1)  # one beat per cycle, 0 at ED
    flicker = 0.2 * torch.tensor([(-1.0) ** k for k in range(1, T)]).view(1, -1, 1)
    out = smooth_cycle(slow + flicker, sigma=1.0)
    assert out.shape == slow.shape
    assert torch.allclose(smooth_cycle(slow, 0.0), slow)  # sigma 0 = off
    # linear filter: what is left of the flicker no longer alternates (its frame-to-frame jumps were 0.4) ...
    left = (out - smooth_cycle(slow, 1.0))[0, :, 0].numpy()
    assert np.abs(np.diff(left)).max() < 0.05  # 8x smaller next to ED (where the pattern breaks), ~70x elsewhere
    # ... while the one-beat motion keeps ~93 % of its amplitude (exp(-0.5 (2 pi sigma / T)^2))
    assert float((smooth_cycle(slow, 1.0) - slow).abs().max()) < 2 * (1 - np.exp(-0.5 * (2 * np.pi / T) ** 2)) + 1e-4
