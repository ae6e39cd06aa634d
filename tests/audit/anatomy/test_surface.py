"""Reference tests for the one-pass Dice / HD95 / ASSD of :mod:`audit.anatomy.surface` against
MONAI 1.6, and the same table from worker processes as from the serial path.

* Dice: bit for bit equal to ``compute_dice`` (the same float32 arithmetic).
* HD95 / ASSD: equal to 1e-6 (relative or absolute) to MONAI's surface distances
  (``get_edge_surface_distance(symmetric=True, spacing=...)``, what ``compute_hausdorff_distance``
  and ``compute_average_surface_distance`` call) reduced in float64 -- the 95th percentile (linear)
  of each direction, the larger one; the mean of both concatenated -- and NaN exactly where
  ``compute_hausdorff_distance(percentile=95)`` / ``compute_average_surface_distance(symmetric=True)``
  are not finite. Against those two functions' own outputs the agreement is to 1e-6 for ASSD and
  to 1e-4 mm for HD95: MONAI takes the percentile with ``torch.quantile`` in float32, whose
  interpolation weight is off by ~1e-7 x the number of boundary pixels (1.9e-5 mm seen here), so
  the float64 reduction of MONAI's distances is the 1e-6 reference.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from audit.anatomy import agreement
from audit.anatomy.surface import LABELS, score_chunk
from audit.utility import metrics as M


def _one_hot(a: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), 4).permute(0, 3, 1, 2).float()


def _monai(pred, ref, spacing):
    from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

    p, r = _one_hot(pred), _one_hot(ref)
    with warnings.catch_warnings():  # empty structures warn; their values are checked below
        warnings.simplefilter("ignore")
        dice = compute_dice(p, r, include_background=False, ignore_empty=True).numpy()
        hd = compute_hausdorff_distance(p, r, include_background=False, percentile=95, spacing=list(spacing)).numpy()
        asd = compute_average_surface_distance(p, r, include_background=False, symmetric=True,
                                               spacing=list(spacing)).numpy()
    return dice, hd, asd


def _monai_distances_float64(pred, ref, spacing):
    """HD95 and ASSD from MONAI's own surface distances, reduced in float64 (NaN: none)."""
    from monai.metrics.utils import get_edge_surface_distance

    hd = np.full((len(pred), len(LABELS)), np.nan)
    asd = np.full_like(hd, np.nan)
    for i in range(len(pred)):
        for j, k in enumerate(LABELS):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, (d_pg, d_gp), _ = get_edge_surface_distance(torch.from_numpy(pred[i] == k), torch.from_numpy(ref[i] == k),
                                                               spacing=list(spacing), symmetric=True)
            a, b = d_pg.double().numpy(), d_gp.double().numpy()
            if len(a) and len(b) and np.isfinite(a).all() and np.isfinite(b).all():
                hd[i, j] = max(np.percentile(a, 95), np.percentile(b, 95))
                asd[i, j] = np.concatenate([a, b]).mean()
    return hd, asd


def _cases(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random blobs (overlapping discs, a ring, speckle), shifted / eroded / speckled predictions,
    and the edge cases: empty prediction, empty ground truth, both empty, a structure on the
    image border, single pixels, a structure split into far-apart pieces."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ref = np.zeros((n, size, size), np.uint8)
    pred = np.zeros_like(ref)
    for i in range(n):
        for lab in LABELS:
            for _ in range(int(rng.integers(1, 3))):
                cy, cx = rng.uniform(0, size, 2)
                r = rng.uniform(1, size / 5)
                ref[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = lab
        pred[i] = np.roll(ref[i], tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        speckle = rng.random((size, size)) < 0.01
        pred[i][speckle] = rng.integers(0, 4, int(speckle.sum()))
    ref[0], pred[0] = 0, 0  # both empty
    pred[1][pred[1] == 3] = 0  # LV missed: empty prediction
    ref[2][ref[2] == 2] = 0  # MYO absent from the ground truth, present in the prediction
    pred[2][size // 2, size // 2] = 2
    ref[3, :, :2] = 1  # on the image border
    pred[3, :1, :] = 1
    ref[4] = 0
    ref[4, 5, 7] = 3  # single pixels
    pred[4] = 0
    pred[4, 9, 2] = 3
    pred[5][(pred[5] == 1)] = 0
    pred[5, 1:3, 1:3] = 1  # a far-away fragment
    pred[5, -3:-1, -3:-1] = 1
    return pred, ref


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.5, 2.0), (0.7, 3.1)])
def test_one_pass_equals_monai_dice_hd95_and_assd(spacing):
    pred, ref = _cases(24, 40, seed=int(spacing[1] * 10))
    dice, hd, asd = _monai(pred, ref, spacing)
    hd64, asd64 = _monai_distances_float64(pred, ref, spacing)
    got = score_chunk(pred, ref, spacing, True, True)
    np.testing.assert_array_equal(got["dice"], dice)  # same float32 arithmetic: bit for bit
    for name, ours, full, f64, atol in (("hd95", got["hd95"], hd, hd64, 1e-4), ("assd", got["assd"], asd, asd64, 1e-6)):
        finite = np.isfinite(full)
        # NaN exactly where MONAI has no finite value (a structure absent from either mask)
        np.testing.assert_array_equal(np.isnan(ours), ~finite, err_msg=name)
        np.testing.assert_array_equal(np.isnan(f64), ~finite, err_msg=name)
        np.testing.assert_allclose(ours[finite], f64[finite], rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(ours[finite], full[finite], rtol=1e-6, atol=atol, err_msg=name)
    # the edge cases above are really there
    assert np.isnan(got["hd95"][0]).all() and np.isnan(got["assd"][1, 2]) and np.isnan(got["assd"][2, 1])
    assert got["dice"][1, 2] == 0 and np.isnan(got["dice"][2, 1])


def test_utility_table_equals_monai_and_flags_empty_predictions():
    spacing = (1.5, 2.0)
    pred, ref = _cases(12, 48, seed=5)
    dice, hd, asd = _monai(pred, ref, spacing)
    t = M.per_image(pred, ref, spacing)
    for j, name in enumerate(M.NAMES):
        np.testing.assert_array_equal(t[f"dice_{name}"].to_numpy(), dice[:, j])
        for col, ref_values in ((f"hd95_{name}", hd[:, j]), (f"assd_{name}", asd[:, j])):
            v = t[col].to_numpy()
            finite = np.isfinite(ref_values)
            np.testing.assert_array_equal(np.isnan(v), ~finite)
            np.testing.assert_allclose(v[finite], ref_values[finite], rtol=1e-6, atol=1e-4)  # float32 quantile, see above
        k = j + 1
        np.testing.assert_array_equal(t[f"empty_pred_{name}"].to_numpy(),
                                      ~(pred == k).any(axis=(1, 2)) & (ref == k).any(axis=(1, 2)))
    assert t["empty_pred_LV"][1] and not t["empty_pred_MYO"][2]
    assert list(t.columns[:6]) == ["dice_RV", "hd95_RV", "dice_MYO", "hd95_MYO", "dice_LV", "hd95_LV"]


def test_worker_processes_give_the_serial_table():
    pred, ref = _cases(40, 32, seed=7)
    serial = M.per_image(pred, ref, (1.5, 1.5), workers=1)
    parallel = M.per_image(pred, ref, (1.5, 1.5), batch=6, workers=2)  # 2 spawned processes, several chunks
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)
    pd.testing.assert_frame_equal(agreement.per_image(pred, ref, (1.5, 1.5), batch=6, workers=2),
                                  agreement.per_image(pred, ref, (1.5, 1.5), workers=1), check_exact=True)


def test_few_images_stay_in_this_process(monkeypatch):
    seen = []
    real = agreement.ordered_map
    monkeypatch.setattr(agreement, "ordered_map", lambda fn, items, workers=None: seen.append(workers) or real(fn, items, workers))
    monkeypatch.setattr(agreement, "default_workers", lambda n, per_worker=4: max(1, min(16, n // per_worker)))  # a 16-core host
    pred, ref = _cases(agreement.MIN_IMAGES_PER_WORKER - 1, 16, seed=1)
    agreement.per_image(pred, ref, (1.0, 1.0))
    assert seen == [1]
    # chunks cover every image once, in order, and no chunk exceeds the batch
    for n, workers, batch in ((0, 1, 256), (1000, 1, 256), (4000, 16, 256), (37, 3, 8)):
        spans = agreement._chunks(n, workers, batch)
        assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(n))
        assert all(0 < hi - lo <= batch for lo, hi in spans)


def test_dice_only_skips_the_distances():
    pred, ref = _cases(6, 24, seed=2)
    t = agreement.per_image(pred, ref, (1.0, 1.0), distances=False)
    assert list(t.columns) == ["dice_RV", "dice_MYO", "dice_LV"]
    with pytest.raises(ValueError, match="labels 0..3"):
        agreement.per_image(pred + 4, ref, (1.0, 1.0))
