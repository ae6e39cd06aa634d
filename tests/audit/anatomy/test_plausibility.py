"""Anatomical plausibility criteria (after Painchaud et al.) on constructed masks.

Every criterion is shown to pass on a clean constructed heart and to fail on the one defect
it exists for; applicability, physical units, bad input and the results entries are checked
too. Phantom and noise checks use the ground-truth phantom masks (no judge), one short
test runs the judge (marked ``judge``).
"""

import math

import numpy as np
import pandas as pd
import pytest

from audit.anatomy.plausibility import (
    CRITERIA,
    DEFAULT_THRESHOLDS,
    MEASUREMENTS,
    Thresholds,
    check_image,
    evaluate,
    measure,
    summarise,
)
from audit.core.errors import UserError
from audit.core.results import new_results, validate_results

SP = (1.5, 1.5)
BG, RV, MYO, LV = 0, 1, 2, 3
YY, XX = np.mgrid[:128, :128]


def disc(cy, cx, r):
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r ** 2


def ellipse(cy, cx, a, b):
    return ((YY - cy) / a) ** 2 + ((XX - cx) / b) ** 2 <= 1


def heart(*, rv=True, r_lv=14, wall=6, cy=64, cx=70):
    """LV disc in a MYO ring, RV crescent against the septum (left), like a mid slice."""
    m = np.zeros((128, 128), np.uint8)
    epi = disc(cy, cx, r_lv + wall)
    if rv:
        m[disc(cy, cx - 14, r_lv + wall + 4) & ~epi & (XX < cx)] = RV
    m[epi] = MYO
    m[disc(cy, cx, r_lv)] = LV
    return m


def fails(mask, spacing=SP, thresholds=DEFAULT_THRESHOLDS):
    r = check_image(mask, spacing, thresholds)
    return sorted(k for k in CRITERIA if r[k] == 0.0), r


def test_clean_heart_passes_every_criterion():
    bad, r = fails(heart())
    assert bad == [] and r["plausible"] == 1.0
    assert all(r[k] == 1.0 for k in CRITERIA), r  # every criterion applies to a mid slice
    assert set(r) == set(CRITERIA) | {"plausible"}


def test_apical_slice_without_rv_rv_criteria_not_applicable():
    bad, r = fails(heart(rv=False, r_lv=5, wall=7))
    assert bad == [] and r["plausible"] == 1.0
    for k in ("rv_no_holes", "rv_myo_no_gaps", "rv_connected", "lv_rv_apart", "rv_attached", "rv_proportionate"):
        assert math.isnan(r[k]), k
    # apex cap: myocardium only, no LV cavity
    cap = np.zeros((128, 128), np.uint8)
    cap[disc(64, 64, 7)] = MYO
    bad, r = fails(cap)
    assert bad == [] and r["plausible"] == 1.0 and math.isnan(r["lv_no_holes"]) and math.isnan(r["myo_thickness_even"])


def test_empty_mask_is_not_plausible_and_nothing_else_applies():
    bad, r = fails(np.zeros((64, 64), np.uint8))
    assert bad == ["heart_present"] and r["plausible"] == 0.0
    assert all(math.isnan(r[k]) for k in CRITERIA if k != "heart_present")
    speck = np.zeros((64, 64), np.uint8)
    speck[30:33, 30:33] = MYO  # 9 pixels = 20 mm^2 < 50 mm^2
    assert fails(speck)[0] == ["heart_present"]


def test_scattered_specks_are_no_heart():
    m = np.zeros((128, 128), np.uint8)
    m[10:100:9, 10:100:9] = MYO  # 100 single pixels, 225 mm^2 in all, no piece of 50 mm^2
    assert "heart_present" in fails(m)[0]


def test_hole_in_lv():
    m = heart()
    m[60:66, 67:73] = BG  # 36 px = 81 mm^2 inside the LV
    assert fails(m)[0] == ["lv_no_holes"]
    m = heart()
    m[62:66, 68:72] = MYO  # a papillary-like island labelled MYO inside the LV
    bad, _ = fails(m)
    assert "lv_no_holes" in bad and "myo_connected" in bad


def test_hole_in_rv():
    m = heart()
    ys, xs = np.nonzero(m == RV)
    cy, cx = int(np.median(ys)), int(np.min(xs)) + 4
    m[cy - 3:cy + 3, cx - 2:cx + 3] = BG  # 30 px = 67 mm^2 in the thick middle of the crescent
    assert fails(m)[0] == ["rv_no_holes"]


def test_hole_in_myocardium_vs_gap_between_lv_and_myocardium():
    m = heart(wall=10)
    m[62:66, 86:90] = BG  # inside the lateral wall (LV border at x=84, epicardium at x=94)
    bad, r = fails(m)
    assert bad == ["myo_no_holes"]
    m = heart()
    m[disc(64, 70, 14) & ~disc(64, 70, 11)] = BG  # annulus between LV and MYO
    bad, _ = fails(m)
    assert "lv_myo_no_gaps" in bad and "myo_no_holes" not in bad and "lv_no_holes" not in bad


def test_gap_between_rv_and_myocardium():
    m = heart()
    pocket = disc(64, 70, 25) & ~disc(64, 70, 20) & (XX < 60) & (abs(YY - 64) < 6)
    m[pocket] = BG  # background enclosed by the RV outside and the MYO inside
    bad, r = fails(m)
    assert "rv_myo_no_gaps" in bad and "rv_no_holes" not in bad


def test_myocardium_split_in_two():
    m = heart(rv=False)
    m[(m == MYO) & (abs(YY - 64) <= 2)] = BG  # cut the ring at both sides
    bad, _ = fails(m)
    assert "myo_connected" in bad


def test_fragments_beyond_tolerance():
    m = heart()
    m[disc(110, 110, 4)] = LV  # detached LV piece, 49 px = 110 mm^2
    assert "lv_connected" in fails(m)[0]
    m = heart()
    m[disc(15, 30, 4)] = RV
    assert "rv_connected" in fails(m)[0]
    m = heart()
    m[110, 110] = RV  # one stray pixel (2.25 mm^2) is tolerated: resampling leaves such specks
    assert fails(m)[0] == []


def test_lv_touching_background_apical_vs_basal():
    # apical slice (no RV): any contact violates, as in Painchaud et al.
    m = heart(rv=False)
    m[(m == MYO) & (XX > 80) & (abs(YY - 64) < 3)] = LV  # LV breaks through the lateral wall
    assert "lv_enclosed" in fails(m)[0]
    # basal slice with RV and a C-shaped myocardium open over ~25 % of the LV border: passes
    m = heart()
    opening = (m == MYO) & (YY < 64 - 10) & (XX > 64)
    m[opening] = BG
    bad, r = fails(m)
    assert bad == [] and r["lv_enclosed"] == 1.0, bad
    # LV without myocardium at all: fails
    m = np.zeros((128, 128), np.uint8)
    m[disc(64, 64, 12)] = LV
    assert "lv_enclosed" in fails(m)[0]


def test_lv_touching_rv():
    m = heart()
    m[(m == MYO) & (XX < 70)] = RV  # septum replaced by RV: LV borders the RV
    bad, _ = fails(m)
    assert "lv_rv_apart" in bad


def test_rv_far_from_myocardium_and_rv_only():
    m = heart(rv=False, cx=80)
    m[ellipse(64, 22, 18, 8)] = RV  # 28 px = 42 mm of background in between
    assert "rv_attached" in fails(m)[0]
    m = np.zeros((128, 128), np.uint8)
    m[ellipse(64, 50, 20, 8)] = RV
    bad, r = fails(m)
    assert {"rv_attached", "rv_proportionate"} <= set(bad) and r["plausible"] == 0.0


def test_rv_much_larger_than_lv_and_myocardium():
    m = np.zeros((128, 128), np.uint8)
    m[ellipse(64, 50, 40, 30)] = RV
    m[disc(64, 84, 6)] = MYO
    m[disc(64, 84, 3)] = LV
    assert "rv_proportionate" in fails(m)[0]


def test_concave_lv():
    m = heart(rv=False, r_lv=16, wall=6)
    m[disc(64, 70, 16) & disc(64, 82, 9)] = MYO  # a deep bite out of the LV, filled by MYO
    bad, r = fails(m)
    assert "lv_convex" in bad


def test_elongated_lv_and_outline():
    m = np.zeros((128, 128), np.uint8)
    m[ellipse(64, 64, 30, 12)] = MYO
    m[ellipse(64, 64, 24, 6)] = LV  # axis ratio 0.25
    bad, r = fails(m)
    assert "lv_circular" in bad and "myo_circular" in bad
    m = np.zeros((128, 128), np.uint8)
    m[ellipse(64, 64, 30, 8)] = MYO  # a long myocardium bar: no LV, still not a heart
    assert "myo_circular" in fails(m)[0]


def test_concave_myocardium_outline():
    m = np.zeros((128, 128), np.uint8)
    m[disc(64, 70, 22) & ~disc(64, 94, 17)] = MYO  # kidney-shaped epicardium, wall kept
    m[disc(64, 64, 10)] = LV
    assert fails(m)[0] == ["myo_convex"]


def test_extreme_wall_thickness_ratio():
    m = np.zeros((128, 128), np.uint8)
    m[disc(64, 64, 26)] = MYO
    m[disc(64, 76, 12)] = LV  # wall 2 px laterally, 26 px septally: p90/p10 thickness ~11
    bad, r = fails(m)
    assert "myo_thickness_even" in bad
    # hypertrophied septum 2.5x the lateral wall is anatomy, not an error
    m = np.zeros((128, 128), np.uint8)
    m[disc(64, 64, 24)] = MYO
    m[disc(64, 69, 13)] = LV  # ~6 px lateral vs ~16 px septal
    assert fails(m)[0] == []


def test_limits_are_physical_units():
    m = heart()
    m[63:67, 69:74] = BG  # a 20-pixel hole in the LV
    assert check_image(m, (1.0, 1.0))["lv_no_holes"] == 1.0  # 20 mm^2 <= 25 mm^2
    assert check_image(m, (1.5, 1.5))["lv_no_holes"] == 0.0  # 45 mm^2
    strict = Thresholds(max_hole_area_mm2=0.0)
    assert check_image(m, (1.0, 1.0), strict)["lv_no_holes"] == 0.0


def test_evaluate_table_and_measurements():
    masks = np.stack([heart(), heart(rv=False), np.zeros((128, 128), np.uint8)])
    t = evaluate(masks, SP)
    assert list(t.columns) == [*CRITERIA, "plausible"] and len(t) == 3
    assert t["plausible"].tolist() == [1.0, 1.0, 0.0]
    assert np.isnan(t.loc[1, "rv_attached"]) and t.loc[2, "heart_present"] == 0.0
    m = measure(masks, SP)
    assert list(m.columns) == list(MEASUREMENTS)
    assert m.loc[0, "rv_myo_distance_mm"] == pytest.approx(1.5)
    assert m.loc[0, "lv_area_mm2"] == pytest.approx((heart() == LV).sum() * 2.25)
    # one 2D mask is one row, the same as check_image
    one = evaluate(heart(), SP).iloc[0].to_dict()
    assert one == check_image(heart(), SP)
    # no images: an empty table with the columns
    assert list(evaluate(np.zeros((0, 8, 8), np.uint8), SP).columns) == [*CRITERIA, "plausible"]


def test_random_label_noise_is_not_plausible():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 4, (40, 96, 96)).astype(np.uint8)
    fields = np.stack([ndi.gaussian_filter(rng.standard_normal((96, 96)), 4) for _ in range(40)])
    blobs = np.stack([np.digitize(f, np.quantile(f, [0.6, 0.75, 0.9])) for f in fields]).astype(np.uint8)
    for noise in (uniform, np.array([0, 3, 1, 2], np.uint8)[blobs]):
        assert evaluate(noise, SP)["plausible"].mean() <= 0.10


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 2, 8, 8), np.uint8), "2D or 3D"),
    (np.zeros(8, np.uint8), "2D or 3D"),
    (np.zeros((8, 8), np.float32), "integer dtype"),
    (np.full((8, 8), 4, np.uint8), "0..3"),
    (np.full((8, 8), -1, np.int16), "0..3"),
    (np.zeros((3, 0, 8), np.uint8), "empty image shape"),
])
def test_bad_masks_raise_user_error(bad, match):
    with pytest.raises(UserError, match=match):
        evaluate(bad, SP)


@pytest.mark.parametrize("spacing", [(1.5,), (0.0, 1.5), (-1.0, 1.0), (float("nan"), 1.0), "x", None, (1, 2, 3)])
def test_bad_spacing_raises_user_error(spacing):
    with pytest.raises(UserError, match="spacing"):
        check_image(heart(), spacing)


def test_check_image_wants_one_2d_mask_and_thresholds_are_checked():
    with pytest.raises(UserError, match="2D"):
        check_image(np.zeros((2, 8, 8), np.uint8), SP)
    with pytest.raises(UserError, match="max_hole_area_mm2"):
        Thresholds(max_hole_area_mm2=-1.0)
    with pytest.raises(UserError, match="thickness_percentiles"):
        Thresholds(thickness_percentiles=(90.0, 10.0))
    assert Thresholds().as_dict()["thickness_percentiles"] == [10.0, 90.0]


def _validate(section):
    doc = new_results(run_id="x", generator="g", preset="p", created_utc="2026-01-01T00:00:00Z")
    doc["provenance"] = {"config_sha256": "0" * 64, "data_hash": "abc", "seed": 0}  # required by the schema
    doc["anatomy"]["plausibility"] = section
    validate_results(doc)


def test_summary_entries_validate_with_cis_counts_and_unavailable():
    masks = np.stack([heart(rv=False), heart(rv=False), np.zeros((128, 128), np.uint8), heart(rv=False, r_lv=10)] * 2)
    subjects = np.array(["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3"])
    t = evaluate(masks, SP)
    out = summarise(t, subjects, n_boot=200, source="judge segmentation of synthetic images")
    _validate(out)
    pr = out["plausible_rate"]
    assert pr["value"] == pytest.approx(6 / 8) and pr["unit"] == "1" and pr["n"] == 8
    assert pr["ci_low"] <= pr["value"] <= pr["ci_high"]
    assert "heart_present (2 images)" in pr["notes"] and "synthetic images" in pr["method"]
    assert out["criteria"]["lv_no_holes"]["n"] == 6  # the empty images are not applicable
    assert out["criteria"]["rv_attached"]["status"] == "unavailable"  # no image has an RV
    assert set(out["criteria"]) == set(CRITERIA)
    # one subject: no CI, still a valid entry
    one = summarise(t.iloc[:2], subjects[:2], n_boot=50)
    assert one["plausible_rate"]["ci_low"] is None and one["plausible_rate"]["value"] == 1.0
    _validate(one)
    # no images at all: everything unavailable, nothing recorded as 0
    none = summarise(t.iloc[:0], subjects[:0])
    assert none["plausible_rate"]["status"] == "unavailable"
    _validate(none)
    with pytest.raises(UserError, match="subject ids"):
        summarise(t, subjects[:3])
    with pytest.raises(UserError, match="lacks column"):
        summarise(pd.DataFrame({"plausible": [1.0]}), np.array(["a"]))


@pytest.mark.slow
def test_phantom_ground_truth_is_plausible():
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.preprocess import PreprocessConfig
    from cohorts.preprocess import slices

    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    p = load_prepared(root, PreprocessConfig(target_spacing=1.5, size=128), progress=False)
    _, masks, index = slices(p, list(p.ids), frames="ed_es")
    masks = masks[index["labelled"].to_numpy(bool)]
    t = evaluate(masks, (1.5, 1.5))
    assert len(t) > 100
    assert t["plausible"].mean() >= 0.95
    # the same anatomy with its labels swapped (LV <-> RV) is not
    swapped = np.array([0, 3, 2, 1], np.uint8)[masks]
    assert evaluate(swapped, (1.5, 1.5))["plausible"].mean() <= 0.10


@pytest.mark.judge
def test_judge_segmentation_of_phantom_images_is_plausible():
    from cohorts.judge import Judge, phantom_slices

    s = phantom_slices(n_subjects=1, seed=90210)[0]
    idx = np.linspace(0, len(s.images) - 1, 6).round().astype(int)
    judge = Judge("fp32", progress=False)
    sp = tuple(s.spacing[0])
    assert evaluate(judge.segment(s.images[idx], sp), sp)["plausible"].mean() >= 0.8
    noise = np.random.default_rng(0).random((4, 128, 128)).astype(np.float32)
    assert evaluate(judge.segment(noise, (1.5, 1.5)), (1.5, 1.5))["plausible"].sum() == 0
