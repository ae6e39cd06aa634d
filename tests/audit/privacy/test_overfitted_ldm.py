"""Planted effect on a real generator (issue 9): an ldm trained on 8 subjects until it memorises
them is caught by the loss-threshold attack (AUC >= 0.8), and the PIA attack runs beside it.

The members are 8 subjects of the smooth-pattern population (conftest), 5 slices each, 32x32;
non-members and attacker data are independent draws of the same population. The ldm at the
smoke preset trains 1,000 steps with a high learning rate and no condition dropout -- far past the
point where its denoising loss on members falls below the loss on non-members.
"""

import numpy as np
import pytest

from audit.pipeline.config import resolve_config
from audit.privacy import privacy_section
from generators.registry import discover

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def overfitted(make):
    train = make.population(8, seed=11, prefix="m")
    holdout = make.population(8, seed=12, prefix="n")
    reference = make.population(8, seed=13, prefix="r")
    entry = discover()["ldm"]
    cfg = resolve_config(preset="smoke", generator="ldm", generator_preset=entry.presets["smoke"], overrides={
        "train.steps": 1000, "train.batch_size": 8, "train.checkpoint_every": 0, "train.ema_warmup_steps": 10_000,
        "generator_options.lr": 2e-3, "generator_options.p_uncond": 0.0,
        "generator_options.ae": {"channels": [8, 8], "norm_groups": 4, "steps": 150, "batch_size": 8}})
    g = entry.cls()
    g.fit(train, cfg)
    samples = g.sample(conditions={"masks": np.resize(reference.masks, (40, 32, 32))}, seed=0)
    return train, holdout, reference, g, samples


def test_training_loss_is_far_below_holdout_loss(overfitted):
    train, holdout, _, g, _ = overfitted
    ratios = {}
    for t in (100, 300, 600):
        member = -g.score(train.images, train.masks, timestep=t, repeats=4).mean()
        nonmember = -g.score(holdout.images, holdout.masks, timestep=t, repeats=4).mean()
        ratios[t] = member / nonmember
    assert all(r < 1 for r in ratios.values()) and min(ratios.values()) < 0.5, ratios


def test_loss_threshold_catches_the_memorising_ldm(overfitted):
    train, holdout, reference, g, samples = overfitted
    section, table, extras = privacy_section(train, holdout, reference, samples, g, n_boot=200, seed=0)
    lt = section["attacks"]["loss_threshold"]["image"]["auc"]
    assert lt["value"] >= 0.8, extras["attacks"]["loss_threshold"]
    assert lt["ci_low"] > 0.5
    pia = section["attacks"]["pia"]["image"]["auc"]
    assert 0 <= pia["value"] <= 1 and pia["n"] == len(train) + len(holdout)
    assert "pia_rank" in table.columns and extras["attacks"]["pia"]["timestep"] in (20, 100, 300, 600)
    assert section["summary"]["best_white_box_auc"]["value"] >= 0.8
