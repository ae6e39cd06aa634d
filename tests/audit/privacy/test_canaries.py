"""Canary plans for one-run DP auditing: drawn from the seed alone, before training; the coin
decides training (a canary subject's slices all together), canaries never count as members; bad
requests, and games that could never contradict the claim, are one line before training."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from audit.core.errors import UserError
from audit.pipeline import config as C
from audit.pipeline.stagekit import canary_plan
from audit.privacy import privacy_section
from audit.privacy.canaries import MIN_CANARIES, CanaryPlan, CanarySet, check_game, check_request, plan_canaries
from audit.privacy import one_run
from audit.privacy.one_run import default_guess_grid, game_ceiling


def _ids(n=200, per=10):
    return np.array([f"s{i // per:03d}" for i in range(n)])


# --------------------------------------------------------------------------- subject canaries (the default)


def test_subject_plan_moves_every_slice_of_a_canary_subject_together(tmp_path):
    ids = _ids(400, per=10)  # 40 subjects of 10 slices
    a, b = plan_canaries(ids, 16, seed=3), plan_canaries(ids, 16, seed=3)
    assert a.unit == "subject" and a.k == 16 and len(set(a.subject_ids.tolist())) == 16
    assert np.array_equal(a.owner, b.owner) and np.array_equal(a.included, b.included)  # the seed alone decides
    assert not np.array_equal(plan_canaries(ids, 16, seed=4).subject_ids, a.subject_ids)
    assert 3 <= a.included.sum() <= 13  # a fair coin per subject
    trained = set(ids[a.training_indices()].tolist())
    out = set(a.subject_ids[~a.included].tolist())
    assert trained.isdisjoint(out)  # no slice of a left-out canary subject is trained on ...
    assert set(a.training_indices().tolist()) == {i for i, s in enumerate(ids) if s not in out}  # ... the rest all are
    assert set(ids[a.member_indices()].tolist()) == set(ids.tolist()) - set(a.subject_ids.tolist())  # no canary a member
    assert a.indices.size == 16 * 10 and all((a.owner[ids == s] == i).all() for i, s in enumerate(a.subject_ids))
    # round trip, and only for the same training slices
    a.save(tmp_path / "canaries.json")
    doc = json.loads((tmp_path / "canaries.json").read_text())
    assert doc["format"] == "cmr-audit/canaries/v2" and doc["unit"] == "subject" and len(doc["slices"]) == 16
    back = CanaryPlan.load(tmp_path / "canaries.json", ids)
    assert back.unit == "subject" and back.version == 2
    assert np.array_equal(back.owner, a.owner) and np.array_equal(back.included, a.included)
    assert np.array_equal(back.subject_ids, a.subject_ids)
    with pytest.raises(UserError, match="does not match"):
        CanaryPlan.load(tmp_path / "canaries.json", ids[:-1])
    with pytest.raises(UserError, match="does not match"):  # a canary subject would keep a slice outside its canary
        CanaryPlan.load(tmp_path / "canaries.json", np.r_[ids[:-1], a.subject_ids[:1]])


def test_subject_canaries_score_the_mean_of_their_slices():
    owner = np.array([0, 0, 1, 1, 1, 2])
    cs = CanarySet(images=None, owner=owner, included=np.array([True, False, True]),
                   subject_ids=np.array(["a", "b", "c"]), unit="subject")
    assert cs.canary_scores([1.0, 3.0, 0.0, 3.0, 6.0, -2.0]).tolist() == [2.0, 3.0, -2.0]
    with pytest.raises(ValueError, match="6 slice scores"):
        cs.canary_scores([1.0, 2.0])


def test_at_most_half_the_training_subjects_and_a_subject_guarantee():
    with pytest.raises(UserError, match="the train split has 20 subjects, so at most 10 can be canary subjects"):
        plan_canaries(_ids(200, per=10), 11, seed=0)
    plan_canaries(_ids(200, per=10), 10, seed=0)
    with pytest.raises(UserError, match="dp.unit is 'slice'"):
        check_request(20, dp_enabled=True, unit="subject", dp_unit="slice")
    check_request(20, dp_enabled=True, unit="image", dp_unit="slice")  # an image's coin is one slice


# --------------------------------------------------------------------------- image canaries and the v1 plan file


def test_image_plan_is_a_function_of_the_seed_and_splits_the_train_slices_honestly(tmp_path):
    ids = _ids()
    a, b = plan_canaries(ids, 40, seed=3, unit="image"), plan_canaries(ids, 40, seed=3, unit="image")
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.included, b.included)
    assert not np.array_equal(a.indices, plan_canaries(ids, 40, seed=4, unit="image").indices)
    assert a.k == 40 and a.indices.size == 40
    assert 10 <= a.included.sum() <= 30
    train, members = set(a.training_indices().tolist()), set(a.member_indices().tolist())
    assert train == set(range(200)) - set(a.indices[~a.included[a.owner[a.indices]]].tolist())
    assert members == set(range(200)) - set(a.indices.tolist())
    assert list(a.subject_ids) == list(ids[a.indices])
    a.save(tmp_path / "canaries.json")
    back = CanaryPlan.load(tmp_path / "canaries.json", ids)
    assert back.unit == "image" and np.array_equal(back.owner, a.owner) and np.array_equal(back.included, a.included)
    with pytest.raises(UserError, match="does not match"):
        CanaryPlan.load(tmp_path / "canaries.json", ids[:-1])
    with pytest.raises(UserError, match="at most 100 can be canaries"):
        plan_canaries(ids, 101, seed=0, unit="image")


def test_a_v1_plan_file_loads_as_image_canaries_and_an_unknown_format_is_refused(tmp_path):
    ids = _ids()
    new = plan_canaries(ids, 20, seed=1, unit="image")
    v1 = {"format": "cmr-audit/canaries/v1", "seed": 1, "n_train_slices": 200, "indices": new.indices.tolist(),
          "included": new.included.tolist(), "subject_ids": ids[new.indices].tolist()}  # what cmr-audit wrote before
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    old = CanaryPlan.load(tmp_path / "v1.json", ids)
    assert old.version == 1 and old.unit == "image"  # the same canaries the image plan draws from that seed
    assert np.array_equal(old.owner, new.owner) and np.array_equal(old.included, new.included)
    assert np.array_equal(old.training_indices(), new.training_indices())
    (tmp_path / "v9.json").write_text(json.dumps({**v1, "format": "cmr-audit/canaries/v9"}))
    with pytest.raises(UserError, match="unknown canary plan format 'cmr-audit/canaries/v9'"):
        CanaryPlan.load(tmp_path / "v9.json", ids)
    (tmp_path / "bad.json").write_text(json.dumps({**v1, "indices": "x"}))
    with pytest.raises(UserError, match="unreadable canary plan"):
        CanaryPlan.load(tmp_path / "bad.json", ids)


# --------------------------------------------------------------------------- bad requests, the game's ceiling


def test_bad_requests_are_refused_with_one_line():
    check_request(0, dp_enabled=False)  # off: nothing to check
    with pytest.raises(UserError, match="--dp-epsilon or --dp-noise-multiplier"):
        check_request(20, dp_enabled=False)
    with pytest.raises(UserError, match=f">= {MIN_CANARIES}"):
        check_request(MIN_CANARIES - 1, dp_enabled=True)
    with pytest.raises(UserError, match="whole cine stacks"):
        check_request(20, dp_enabled=True, generator_data="subjects")
    with pytest.raises(UserError, match="dp.audit_canary_unit must be one of subject, image"):
        check_request(20, dp_enabled=True, unit="slice")


def test_a_game_that_cannot_reach_the_claim_is_refused_and_an_unknown_claim_warned(caplog):
    ceiling = game_ceiling(32, delta=1 / 500)
    assert 1.5 < ceiling < 2.0 and default_guess_grid(32) == (12, 16)
    assert check_game(32, delta=1 / 500, claimed_epsilon=1.0) == pytest.approx(ceiling)
    with pytest.raises(UserError) as err:
        check_game(32, delta=1 / 500, claimed_epsilon=8.0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--dp-audit-canaries 32: 32 canary subjects at delta 0.002 can prove at most")
    assert f"{ceiling:.2f}" in msg and "below the claimed 8" in msg and "plant more canaries" in msg
    with caplog.at_level(logging.WARNING):
        assert check_game(32, delta=1 / 500, claimed_epsilon=None) == pytest.approx(ceiling)
    assert "not known before training" in caplog.text
    # with an explicit delta the request is checked before any data is read
    with pytest.raises(UserError, match="can prove at most"):
        check_request(20, dp_enabled=True, claimed_epsilon=8.0, delta=1e-5)
    check_request(20, dp_enabled=True, claimed_epsilon=1.0, delta=1e-5)


def _ctx(tmp_path, **dp):
    cfg = C.resolve_config(preset="smoke", overrides={f"dp.{k}": v for k, v in dp.items()})
    return SimpleNamespace(cfg=cfg, run_dir=SimpleNamespace(path=tmp_path))


def test_the_fit_stage_draws_checks_and_writes_the_plan_before_training(tmp_path, make):
    """``canary_plan`` is the first thing ``fit`` does (``stages.train_data``): with the default
    delta = 1/(10 N), N the subjects actually trained on, a claim above the ceiling stops there
    and no plan is written; a claim below it writes the plan, read back on resume."""
    train = make.population(40, per_subject=3, size=8, seed=1)
    ctx = _ctx(tmp_path, epsilon=8.0, audit_canaries=16)
    with pytest.raises(UserError, match="16 canary subjects at delta .* below the claimed 8"):
        canary_plan(ctx, train)
    assert not (tmp_path / "canaries.json").exists()
    ctx = _ctx(tmp_path, epsilon=1.0, audit_canaries=16)
    plan = canary_plan(ctx, train)
    assert plan.unit == "subject" and (tmp_path / "canaries.json").is_file()
    again = canary_plan(ctx, train)  # resume / the privacy stage: read back, not redrawn
    assert np.array_equal(again.owner, plan.owner) and np.array_equal(again.included, plan.included)
    with pytest.raises(UserError, match="holds 16 canaries but dp.audit_canaries is 20"):
        canary_plan(_ctx(tmp_path, epsilon=1.0, audit_canaries=20), train)
    with pytest.raises(UserError, match="holds subject canaries but dp.audit_canary_unit is image"):
        canary_plan(_ctx(tmp_path, epsilon=1.0, audit_canaries=16, audit_canary_unit="image"), train)


def test_a_v1_plan_of_an_older_run_keeps_its_image_canaries(tmp_path, make, caplog):
    train = make.population(40, per_subject=3, size=8, seed=1)
    old = plan_canaries(train.subject_ids, 20, seed=0, unit="image")
    (tmp_path / "canaries.json").write_text(json.dumps({
        "format": "cmr-audit/canaries/v1", "seed": 0, "n_train_slices": len(train), "indices": old.indices.tolist(),
        "included": old.included.tolist(), "subject_ids": train.subject_ids[old.indices].tolist()}))
    with caplog.at_level(logging.WARNING):
        plan = canary_plan(_ctx(tmp_path, epsilon=8.0, audit_canaries=20), train)  # the config's default: subject
    assert plan.unit == "image" and np.array_equal(plan.owner, old.owner) and "v1 canary plan" in caplog.text


@pytest.mark.parametrize("flags, message", [
    (["--dp-audit-canaries", "20"], "give --dp-epsilon or --dp-noise-multiplier too"),
    (["--dp-epsilon", "8", "--dp-audit-canaries", "5"], "must be >= 10"),
    (["--dp-epsilon", "8", "--dp-audit-canaries", "-3"], "dp.audit_canaries must be >= 0"),
    (["--dp-epsilon", "8", "--dp-delta", "1e-5", "--dp-audit-canaries", "20"], "20 canary subjects at delta 1e-05 can prove at most epsilon 1.82"),
    (["--dp-epsilon", "1", "--dp-audit-canaries", "20", "--set", "dp.unit=slice"], "dp.unit is 'slice'"),
    (["--dp-epsilon", "1", "--dp-audit-canaries", "20", "--set", "dp.audit_canary_unit=slices"],
     "dp.audit_canary_unit must be subject or image"),
])
def test_cli_refuses_bad_canary_requests_before_any_stage(tmp_path, capsys, flags, message):
    from audit.cli.main import main

    out = tmp_path / "run"
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (out / "state.json").exists() or '"cohort"' not in (out / "state.json").read_text()


# --------------------------------------------------------------------------- scoring in the privacy audit


class _Memoriser:
    """A generator whose white-box score is minus the distance to its nearest training image."""

    name = "memoriser"

    def __init__(self, train):
        self.pool = train.images.reshape(len(train), -1).astype(np.float64)

    def score(self, images, masks=None, **_):
        x = np.asarray(images, np.float64).reshape(len(images), -1)
        return -np.sqrt(((x[:, None] - self.pool[None]) ** 2).sum(-1)).min(1)


def test_privacy_audit_scores_subject_canaries_by_their_mean_slice_score(cohort, make):
    """DP off and a memorising generator: the mean slice scores separate the canary subjects'
    coins perfectly, so every guess is right but those the coins' imbalance forces (k per side is
    fixed in advance); the canary subjects are not members."""
    train = cohort["train"]  # 40 subjects x 5 slices
    plan = plan_canaries(train.subject_ids, 16, seed=0)
    gen = _Memoriser(train.subset(plan.training_indices()))
    members = train.subset(plan.member_indices())
    section, _, extras = privacy_section(members, cohort["holdout"], cohort["reference"], make.copies(members, 200),
                                         gen, n_boot=20, canaries=plan.canary_set(train))
    entry = section["dp_verification"]["one_run_epsilon_lb"]
    assert entry["n"] == 16 and "16 canary subjects" in entry["method"] and "mean over its slices" in entry["method"]
    # grid (8,): every canary guessed, 8 per side; perfect scores get all right but the coins' imbalance
    n_in = int(plan.included.sum())
    assert entry["params"]["guesses"] == 16 and entry["params"]["correct"] == 16 - abs(n_in - 8), (n_in, entry)
    assert entry["value"] == pytest.approx(one_run.epsilon_lower_bound(16, 16, 16 - abs(n_in - 8)), abs=1e-4)
    assert entry["value"] > 0.5 and entry["params"]["ceiling"] == pytest.approx(game_ceiling(16), abs=1e-4)
    assert "claim_above_ceiling" not in entry["params"]  # no claim made
    one = extras["one_run"]
    assert one["unit"] == "subject" and one["n_slices"] == [5] * 16 and one["subject_ids"] == plan.subject_ids.tolist()
    expected = plan.canary_set(train).canary_scores(gen.score(train.images[plan.indices]))
    assert np.allclose(one["scores"], expected, atol=1e-5)
    assert section["setup"]["member_subjects"]["value"] == 24
