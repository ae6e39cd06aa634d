"""privacy_section on small synthetic cohorts: planted leaks, bad input, white-box dispatch, artefacts."""

import json

import numpy as np
import pandas as pd
import pytest

from audit.core.errors import UserError
from audit.privacy import privacy_section, write_artifacts
from audit.privacy.section import subject_scores
from audit.core.results import iter_entries, new_results, validate_results
from generators.sampleset import SampleSet

BLACK_BOX = ("gan_leaks_dcr", "gan_leaks_dcr_pca", "domias", "monte_carlo")


@pytest.fixture(scope="module")
def copycat_result(cohort, make):
    samples = make.copies(cohort["train"], 5 * len(cohort["train"]), seed=0)
    return privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], samples, n_boot=200)


@pytest.fixture(scope="module")
def holdout_result(cohort, make):
    samples = make.replay(cohort["reference"], 5 * len(cohort["reference"]), seed=0)
    return privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], samples, n_boot=200)


def test_copycat_leak_is_caught(copycat_result):
    section, table, extras = copycat_result
    best = max(section["attacks"][a]["image"]["auc"]["value"] for a in BLACK_BOX)
    assert best >= 0.99
    assert section["summary"]["best_black_box_auc"]["value"] == best
    for space in ("pixel_correlation", "pca"):
        assert section["memorisation"][space]["copy_rate"]["value"] >= 0.9
        assert section["memorisation"][space]["dcr_ratio"]["value"] > 0.9
    assert section["dp_verification"]["epsilon_lb"]["value"] > 0
    assert table["copy_flag_pixel_correlation"][table["member"]].mean() > 0.9


def test_holdout_generator_shows_no_leak(holdout_result):
    section, _, _ = holdout_result
    for a in BLACK_BOX:
        for level in ("image", "subject_mean", "subject_max"):
            auc = section["attacks"][a][level]["auc"]
            assert auc["ci_low"] <= 0.5 <= auc["ci_high"], (a, level, auc)
        assert 0.4 <= section["attacks"][a]["image"]["auc"]["value"] <= 0.6, a
    for space in ("pixel_correlation", "pca"):
        assert section["memorisation"][space]["copy_rate"]["value"] <= 0.02
        dcr = section["memorisation"][space]["dcr_ratio"]
        assert dcr["ci_low"] <= 0.5 <= dcr["ci_high"], (space, dcr)
    assert section["attacks"]["loss_threshold"]["status"] == "unavailable"


def test_section_is_schema_valid_with_units_and_n(copycat_result):
    section, _, _ = copycat_result
    doc = new_results(run_id="t", generator="copycat", preset="smoke", created_utc="2026-01-01T00:00:00Z")
    doc["privacy"] = section
    doc["provenance"] = {"config_sha256": "0" * 64, "data_hash": "x", "seed": 0}
    validate_results(doc)
    for key, e in iter_entries(section):
        if "value" in e:
            assert e["unit"] and e["method"], key
            if not key.startswith("dp_verification.claimed"):
                assert e["n"] is not None, key


def test_risk_table_and_artifacts(copycat_result, cohort, tmp_path):
    _, table, extras = copycat_result
    n = len(cohort["train"]) + len(cohort["holdout"])
    assert len(table) == n and table["row_id"].is_unique
    for col in ("split", "member", "subject_id", "gan_leaks_dcr_score", "gan_leaks_dcr_rank", "domias_rank",
                "nn_distance_pixel_correlation", "copy_flag_pixel_correlation"):
        assert col in table.columns, col
    assert sorted(table["gan_leaks_dcr_rank"]) [0] == 1
    paths = write_artifacts(tmp_path, table, extras)
    back = pd.read_csv(paths["table"])
    assert len(back) == n
    curves = json.loads(paths["curves"].read_text())
    roc = curves["roc"]["gan_leaks_dcr"]["image"]
    assert roc["fpr"][0] == 0 and roc["tpr"][-1] == 1
    top = curves["memorisation"]["pixel_correlation"]["top_pairs"]
    assert len(top) == 20 and top[0]["distance"] <= top[-1]["distance"]
    assert "histogram" in curves["memorisation"]["pca"]


def test_subject_aggregation():
    s, y, ids = subject_scores(np.array([1.0, 3.0, 0.0, 2.0]), np.array([1, 1, 0, 0], bool),
                               np.array(["a", "a", "b", "b"]), "mean")
    assert ids.tolist() == ["a", "b"] and s.tolist() == [2.0, 1.0] and y.tolist() == [True, False]
    s, _, _ = subject_scores(np.array([1.0, 3.0, 0.0, 2.0]), np.array([1, 1, 0, 0], bool),
                             np.array(["a", "a", "b", "b"]), "max")
    assert s.tolist() == [3.0, 2.0]


# --------------------------------------------------------------------------- bad input


def _samples(cohort):
    idx = np.random.default_rng(0).choice(len(cohort["reference"]), 50, replace=False)
    r = cohort["reference"]
    return SampleSet(images=r.images[idx].copy(), spacing=r.spacing, subject_ids=r.subject_ids[idx])


def test_refuses_overlapping_members_and_nonmembers(cohort):
    with pytest.raises(UserError, match="both members"):
        privacy_section(cohort["train"], cohort["train"], cohort["reference"], _samples(cohort))


def test_refuses_tiny_sets_and_states_the_minimum(cohort):
    tiny = cohort["holdout"].subset(np.arange(5))
    with pytest.raises(UserError, match="minimum is 2 subjects and 10 images"):
        privacy_section(cohort["train"], tiny, cohort["reference"], _samples(cohort))
    few = SampleSet(images=cohort["reference"].images[:3], spacing=cohort["reference"].spacing)
    with pytest.raises(UserError, match="minimum is 10"):
        privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], few)


def test_refuses_nan_and_mismatched_samples(cohort, make):
    s = _samples(cohort)
    s.images[0, 0, 0] = np.nan  # corrupted after validation
    with pytest.raises(UserError, match="NaN"):
        privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], s)
    big = make.population(4, size=48, seed=9)
    with pytest.raises(UserError, match="48x48"):
        privacy_section(cohort["train"], cohort["holdout"], cohort["reference"],
                        SampleSet(images=big.images, spacing=big.spacing))
    s = _samples(cohort)
    s.spacing = np.array([3.0, 3.0], np.float32)
    with pytest.raises(UserError, match="spacing"):
        privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], s)
    s.spacing = np.array([3.0, 3.0, 8.0], np.float32)  # a (3,) spacing: the in-plane part is compared
    with pytest.raises(UserError, match=r"sample spacing \[3.0, 3.0\] mm differs"):
        privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], s)


def test_in_plane_part_of_a_3d_spacing_is_what_must_match(cohort):
    from audit.privacy.section import validate_inputs

    s = _samples(cohort)
    s.spacing = np.array([*cohort["train"].spacing, 8.0], np.float32)
    validate_inputs(cohort["train"], cohort["holdout"], cohort["reference"], s)  # no error


def test_max_images_caps_members_and_nonmembers(cohort):
    section, table, _ = privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], _samples(cohort),
                                        n_boot=50, max_images=30)
    assert section["setup"]["member_images"]["value"] == 30 and len(table) == 60


# --------------------------------------------------------------------------- white-box dispatch


class MemorisingDiffusion:
    """A stand-in diffusion model whose loss is the distance to the nearest training image (plus noise
    that shrinks at the informative timestep 100): a planted white-box leak."""

    name, family, objective = "fake_ddpm", "diffusion", "eps"

    def __init__(self, train):
        self.train = train.images.reshape(len(train), -1)
        self.calls = []

    def score(self, images, masks=None, *, seed=0, timestep=100, repeats=1, vendor=None, group=None):
        self.calls.append((timestep, len(images)))
        x = images.reshape(len(images), -1)
        d = np.sqrt(((x[:, None] - self.train[None]) ** 2).sum(-1)).min(1)
        noise = np.random.default_rng(seed + timestep).normal(0, 0.05 if timestep == 100 else 5.0, len(images))
        return -(d + noise)


class NoScore:
    name = "plugin"


class MaskHungryGan:
    name, family = "gan", "gan"

    def score(self, images, masks=None, **kw):
        raise UserError("the gan discriminator score needs each image's mask")


def test_loss_threshold_sweeps_timesteps_on_attacker_data_and_finds_the_leak(cohort, make):
    train = cohort["train"]
    gen = MemorisingDiffusion(train)
    samples = make.copies(train, 3 * len(train))
    section, table, extras = privacy_section(train, cohort["holdout"], cohort["reference"], samples, gen, n_boot=50)
    info = extras["attacks"]["loss_threshold"]
    assert info["timestep"] == 100 and set(info["sweep_auc_synthetic_vs_reference"]) == {"20", "100", "300", "600"}
    # the sweep only saw synthetic and reference images, never members or non-members
    sweep_calls = gen.calls[:8]
    assert all(n <= 32 for _, n in sweep_calls)
    assert section["attacks"]["loss_threshold"]["image"]["auc"]["value"] >= 0.9
    assert section["attacks"]["loss_threshold"]["cost"]["unit"] == "images/s"
    assert "loss_threshold_rank" in table.columns
    assert section["summary"]["best_white_box_auc"]["value"] >= 0.9


def test_generator_without_score_or_failing_score_is_unavailable(cohort):
    s = _samples(cohort)
    section, _, _ = privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], s, NoScore(), n_boot=20)
    assert section["attacks"]["loss_threshold"]["status"] == "unavailable"
    assert "score() not implemented" in section["attacks"]["loss_threshold"]["reason"]
    section, _, _ = privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], s, MaskHungryGan(), n_boot=20)
    assert section["attacks"]["logan"]["status"] == "unavailable" and "mask" in section["attacks"]["logan"]["reason"]
    assert section["summary"]["best_white_box_auc"]["status"] == "unavailable"


def test_claimed_epsilon_is_checked(cohort, make):
    train = cohort["train"]
    section, _, _ = privacy_section(train, cohort["holdout"], cohort["reference"], make.copies(train, 400), n_boot=20,
                                    claimed_epsilon=0.01)
    dp = section["dp_verification"]
    assert dp["claimed_epsilon"]["value"] == 0.01
    assert dp["violation"]["value"] == (1.0 if dp["epsilon_lb"]["value"] > 0.01 else 0.0)


# --------------------------------------------------------------------------- pooled non-members (issue 26)


def test_pooled_nonmembers_holdout_and_test_feed_every_figure(cohort, make):
    from audit.privacy.design import membership_design
    from generators.data import SliceSet

    h, u = cohort["holdout"], cohort["unseen"]
    pooled = SliceSet(*(np.concatenate([getattr(h, k), getattr(u, k)]) for k in
                        ("images", "masks", "labelled", "subject_ids", "vendor", "group")), h.spacing)
    ids = lambda s: sorted(set(s.subject_ids.tolist()))  # noqa: E731
    design = membership_design({"train": ids(cohort["train"]), "holdout": ids(h), "reference": ids(cohort["reference"]),
                                "test": ids(u)})
    assert set(design.nonmembers) == set(ids(h)) | set(ids(u))
    section, table, _ = privacy_section(cohort["train"], pooled, cohort["reference"], make.replay(cohort["reference"], 100),
                                        n_boot=30, design=design)
    setup = section["setup"]
    assert setup["nonmember_subjects"]["value"] == 80 and setup["nonmember_images"]["value"] == 400
    assert setup["nonmember_subjects"]["notes"].startswith("splits holdout (40 subjects), test (40 subjects)")
    assert setup["nonmember_images"]["notes"] == "holdout: 200 images; test: 200 images"
    assert setup["member_subjects"]["notes"].startswith("split train (40 subjects)")
    assert table.groupby("split").size().to_dict() == {"holdout": 200, "test": 200, "train": 200}
    assert not table.loc[table["split"] != "train", "member"].any()
    img = section["attacks"]["domias"]["image"]
    assert img["n_nonmembers"]["value"] == 400 and "(holdout+test splits)" in img["n_nonmembers"]["method"]
    assert img["tpr_at_fpr_1%"]["params"] == {"fpr": 0.01} and img["tpr_at_fpr_0.1%"]["status"] == "unavailable"
    assert img["tpr_at_lowest_fpr"]["params"]["fpr"] == pytest.approx(10 / 400)
    subj = section["attacks"]["domias"]["subject_mean"]["tpr_at_lowest_fpr"]
    assert subj["params"]["fpr"] == pytest.approx(10 / 80)
    # the DP lower bound reads the same, larger non-member pool (subject level: 80 non-members)
    assert "40 members / 80 non-members" in section["dp_verification"]["epsilon_lb"]["notes"]


def test_refuses_nonmembers_that_conditioned_the_samples(cohort, make):
    with pytest.raises(UserError, match="non-member subjects conditioned the samples"):
        privacy_section(cohort["train"], cohort["holdout"], cohort["reference"], make.replay(cohort["holdout"], 50))
