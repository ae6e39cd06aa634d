"""DP training of every family at smoke scale: epsilon as planned, the ledger in the checkpoint
and through resume, refusals before training."""

import hashlib
import json

import numpy as np
import pytest

from audit.pipeline.config import resolve_config
from audit.core.errors import UserError
from generators.base import FitContext
from generators.dp.sgd import DPGuaranteeError
from generators.registry import discover

FAMILIES = ["gan", "vae", "ddpm", "ldm", "flow"]


def _cfg(name, **over):
    entry = discover()[name]
    overrides = {"train.steps": 6, "train.checkpoint_every": 3, "train.batch_size": 8, "dp.epsilon": 8.0}
    overrides.update(over)
    return resolve_config(preset="smoke", generator=name, generator_preset=entry.presets.get("smoke", {}), overrides=overrides), entry.cls


@pytest.mark.parametrize("name", FAMILIES)
def test_dp_fit_reports_target_epsilon_and_saves_it(name, rings, tmp_path):
    cfg, cls = _cfg(name)
    g = cls()
    g.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "ckpt"))
    s = g.dp_summary
    assert s is not None and s["complete"]
    assert 0.98 * 8.0 <= s["epsilon_rdp"] <= 8.0
    assert s["epsilon_prv"] <= s["epsilon_rdp"]
    plan = s["plan"]
    assert plan["unit"] == "subject" and plan["n_units"] == 6 and plan["delta"] == pytest.approx(1 / 60)
    names = [p["name"] for p in plan["phases"]]
    assert names == (["autoencoder", "latent_scale", "train"] if name in ("ldm", "flow") else ["train"])
    assert {p["name"]: p["steps"] for p in s["ledger"]["phases"]} == {p["name"]: p["steps"] for p in plan["phases"]}
    if name == "gan":
        assert plan["phases"][-1]["releases"] == 2 and g.options["spectral_norm"] is False
    # the claim travels with the saved generator: config.json holds plan and spent ledger
    g.save(tmp_path / "gen")
    stored = json.loads(next((tmp_path / "gen").glob("step-*/config.json")).read_text())
    assert stored["model_config"]["dp"]["noise_multiplier"] == plan["noise_multiplier"]
    assert stored["extra"]["dp"]["epsilon_rdp"] == s["epsilon_rdp"]
    back = cls.load(tmp_path / "gen")
    assert back.dp_summary["epsilon_rdp"] == s["epsilon_rdp"]
    assert back.sample(conditions={"masks": rings.masks[:2]}, seed=0).images.shape == (2, 32, 32)


@pytest.mark.parametrize("name", ["gan", "ldm"])
def test_dp_resume_restores_the_accountant(name, rings, tmp_path):
    cfg, cls = _cfg(name)
    a = cls()
    a.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "a"))

    b = cls()
    original = b.train_step

    def interrupted(batch, step, rng):
        if step == 4:
            raise KeyboardInterrupt
        return original(batch, step, rng)

    b.train_step = interrupted
    with pytest.raises(KeyboardInterrupt):
        b.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "b"))
    c = cls()
    c.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "b", resume=True))
    assert c.dp_summary["ledger"] == a.dp_summary["ledger"]
    assert c.dp_summary["epsilon_rdp"] == a.dp_summary["epsilon_rdp"]
    cond = {"masks": rings.masks[:3]}
    np.testing.assert_array_equal(a.sample(conditions=cond, seed=1).images, c.sample(conditions=cond, seed=1).images)


def test_resume_without_accountant_state_is_refused(rings, tmp_path):
    cfg, cls = _cfg("vae", **{"train.steps": 3})
    cls().fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "c"))
    state = next((tmp_path / "c").glob("step-*/state.json"))
    doc = json.loads(state.read_text())
    del doc["dp_ledger"]
    state.write_text(json.dumps(doc))
    # a checkpoint *written* without the ledger (not one corrupted after the fact): its digest matches
    config = state.parent / "config.json"
    meta = json.loads(config.read_text())
    meta["sha256"]["state.json"] = hashlib.sha256(state.read_bytes()).hexdigest()
    config.write_text(json.dumps(meta))
    with pytest.raises(DPGuaranteeError, match="no DP accountant state"):
        cls().fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "c", resume=True))


def test_resume_of_dp_checkpoint_without_dp_is_refused(rings, tmp_path):
    cfg, cls = _cfg("vae", **{"train.steps": 3})
    cls().fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "d"))
    plain, _ = _cfg("vae", **{"train.steps": 3, "dp.epsilon": 0.0})
    with pytest.raises(UserError, match="incompatible|with DP"):
        cls().fit(rings, plain, FitContext(checkpoint_root=tmp_path / "d", resume=True))


@pytest.mark.parametrize("over,match", [
    ({"dp.delta": 0.2}, r"must be below 1/N = 0.167 \(N = 6 subjects"),
    ({"dp.epsilon": 0.001, "train.steps": 2000}, "impossible"),
    ({"dp.epsilon": 0.0, "dp.noise_multiplier": 500.0}, "sane bound"),
    ({"dp.unit": "patient"}, "dp.unit"),
])
def test_bad_dp_requests_fail_before_training(over, match, rings, tmp_path):
    cfg, cls = _cfg("ddpm", **over) if "dp.unit" not in over else (None, None)
    if cfg is None:
        with pytest.raises(UserError, match=match):
            _cfg("ddpm", **over)
        return
    g = cls()
    with pytest.raises(UserError, match=match):
        g.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "x", losses_path=tmp_path / "losses.csv"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "losses.csv").exists()


def test_slice_level_unit_counts_slices(rings):
    cfg, cls = _cfg("ddpm", **{"dp.unit": "slice"})
    g = cls()
    g.fit(rings, cfg)
    assert g.dp_summary["plan"]["unit"] == "slice" and g.dp_summary["plan"]["n_units"] == 24


def test_fixed_noise_multiplier_reports_its_epsilon(rings):
    cfg, cls = _cfg("vae", **{"dp.epsilon": 0.0, "dp.noise_multiplier": 1.5})
    g = cls()
    g.fit(rings, cfg)
    assert g.dp_summary["plan"]["noise_multiplier"] == 1.5 and g.dp_summary["plan"]["target_epsilon"] is None
    assert g.dp_summary["epsilon_rdp"] > 0


def test_dp_latent_family_switches_the_adversarial_autoencoder_off_and_says_so(rings, tmp_path):
    ae = {"channels": [8, 8], "norm_groups": 4, "steps": 4, "batch_size": 8, "adv_weight": 0.1, "fm_weight": 1.0}
    cfg, cls = _cfg("ldm", **{"generator_options.ae": ae, "train.steps": 3})
    g = cls()
    g.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "ckpt"))
    assert any(a.startswith("ae.adv_weight=0") for a in g.dp_summary["adjusted_options"])
    assert g.options["ae"]["adv_weight"] == 0.0 and g.options["ae"]["fm_weight"] == 0.0
    assert g.ae.options["adv_weight"] == 0.0  # the network that trained is the pixel-loss one
