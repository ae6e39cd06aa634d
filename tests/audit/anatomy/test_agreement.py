"""Reference tests for the judge-agreement metric: closed-form Dice and HD95 in mm."""

import numpy as np
import pytest

from audit.anatomy.agreement import per_image, summarise


def _squares(shift):
    ref = np.zeros((1, 40, 40), np.uint8)
    ref[0, 10:20, 10:20] = 3  # LV 10x10
    pred = np.zeros_like(ref)
    pred[0, 10 + shift:20 + shift, 10:20] = 3
    return pred, ref


@pytest.mark.parametrize("shift", [0, 2, 5])
def test_dice_and_hd95_closed_form(shift):
    pred, ref = _squares(shift)
    t = per_image(pred, ref, spacing=(1.5, 2.0))
    # overlap (10 - shift) x 10 of two 100-pixel squares
    assert t["dice_LV"][0] == pytest.approx(2 * (10 - shift) * 10 / 200)
    # every boundary point moves by `shift` rows along axis 0 (1.5 mm per row)
    assert t["hd95_LV"][0] == pytest.approx(1.5 * shift, abs=1e-6)
    # RV and MYO absent from the reference: undefined, not 0
    assert np.isnan(t["dice_RV"][0]) and np.isnan(t["hd95_MYO"][0])


def test_missing_prediction_gives_dice_0_and_undefined_hd95():
    _, ref = _squares(0)
    t = per_image(np.zeros_like(ref), ref, spacing=(1.0, 1.0))
    assert t["dice_LV"][0] == 0.0 and np.isnan(t["hd95_LV"][0])


def test_summary_entries_have_units_cis_and_counts():
    preds, refs, subjects = [], [], []
    for i, s in enumerate([0, 1, 2, 3, 0, 1]):
        p, r = _squares(s)
        preds.append(p)
        refs.append(r)
        subjects.append(f"s{i // 2}")
    t = per_image(np.concatenate(preds), np.concatenate(refs), (1.0, 1.0))
    out = summarise(t, np.array(subjects), n_boot=200)
    lv = out["dice"]["LV"]
    assert lv["unit"] == "1" and lv["n"] == 6 and lv["ci_low"] <= lv["value"] <= lv["ci_high"]
    assert out["hd95_mm"]["LV"]["unit"] == "mm"
    assert out["dice"]["RV"]["status"] == "unavailable"


def test_cropping_to_the_heart_does_not_change_dice_or_hd95():
    """per_image crops batches to the labelled bounding box for speed; results equal MONAI on
    the full images (structures near and away from the image border, empty structures)."""
    import warnings

    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    ref = np.zeros((6, 48, 48), np.uint8)
    pred = np.zeros_like(ref)
    for i in range(6):
        cy, cx = rng.integers(8, 40, 2)
        for lab, r in ((2, 7), (3, 4)):
            ref[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = lab
        pred[i] = np.roll(ref[i], (rng.integers(-2, 3), rng.integers(-2, 3)), axis=(0, 1))
        if i % 2:
            ref[i][(yy - cy) ** 2 + (xx - (cx + 10)) ** 2 <= 9] = 1
    pred[0, :2, :] = 1  # a structure on the image border
    table = per_image(pred, ref, (1.5, 2.0))
    oh = lambda a: torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), 4).permute(0, 3, 1, 2).float()  # noqa: E731
    dice = compute_dice(oh(pred), oh(ref), include_background=False, ignore_empty=True).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(oh(pred), oh(ref), include_background=False, percentile=95, spacing=[1.5, 2.0]).numpy()
    for j, name in enumerate(("RV", "MYO", "LV")):
        np.testing.assert_allclose(table[f"dice_{name}"].to_numpy(), dice[:, j], equal_nan=True)
        ok = np.isfinite(table[f"hd95_{name}"].to_numpy())
        np.testing.assert_allclose(table[f"hd95_{name}"].to_numpy()[ok], hd[ok, j], rtol=1e-6)
