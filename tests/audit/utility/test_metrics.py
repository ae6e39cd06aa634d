"""The per-stack (ACDC challenge) Dice of the utility audit: pooled over a frame's slices, then
averaged over the frames, checked against MONAI's 3D Dice and a closed-form case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from audit.utility import metrics as M


def _stack(rng, n, size=24):
    """``n`` random label slices with blobs of every structure, some slices without the RV."""
    ref = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        c = rng.integers(8, 16, size=2)
        yy, xx = np.mgrid[:size, :size]
        r = np.hypot(yy - c[0], xx - c[1])
        ref[i][r < 6] = 2
        ref[i][r < 4] = 3
        if i % 3:
            ref[i][(r >= 6) & (r < 8) & (xx < c[1])] = 1
    return ref


def _table(pred, ref, subject, seed, frame):
    t = M.per_image(pred, ref, spacing=(1.5, 1.5), workers=1)
    t.insert(0, "frame", frame)
    t.insert(0, "vendor", "A")
    t.insert(0, "subject_id", subject)
    t.insert(0, "seed", seed)
    return t


def test_volume_dice_equals_monai_3d_dice_per_frame_averaged_over_frames():
    from monai.metrics import compute_dice

    rng = np.random.default_rng(0)
    parts, expected = [], []
    for frame in (0, 7):  # an ED and an ES stack of one subject
        ref = _stack(rng, 6)
        pred = ref.copy()
        flip = rng.random(pred.shape) < 0.08  # label noise: every structure loses and gains pixels
        pred[flip] = rng.integers(0, 4, size=int(flip.sum()))
        pred[2] = 0  # a slice the net misses completely: 0 per slice, little in the pooled figure
        parts.append(_table(pred, ref, "s0", 0, np.full(len(ref), frame)))
        onehot = lambda a: torch.nn.functional.one_hot(torch.from_numpy(a.astype(np.int64)), 4)  # noqa: E731
        p, g = (onehot(a).permute(3, 1, 2, 0)[None].double() for a in (pred, ref))  # (1, C, H, W, slices)
        expected.append(compute_dice(p, g, include_background=False).numpy()[0])  # RV, MYO, LV
    vol = M.volume_dice(pd.concat(parts, ignore_index=True))
    assert len(vol) == 1 and vol.loc[0, "subject_id"] == "s0"
    want = np.mean(expected, axis=0)
    got = vol.loc[0, [f"dice_volume_{n}" for n in M.NAMES]].to_numpy(float)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert vol.loc[0, "dice_volume_mean"] == pytest.approx(np.mean(np.mean(expected, axis=1)))
    slice_mean = pd.concat(parts)["dice_mean"].mean()
    assert vol.loc[0, "dice_volume_mean"] > slice_mean  # the missed slice weighs less when pooled


def test_volume_dice_closed_form_and_absent_structures():
    ref = np.zeros((2, 8, 8), np.uint8)
    ref[0, :2, :2] = 3  # LV: 4 px in slice 0, 4 px in slice 1
    ref[1, :2, :2] = 3
    pred = np.zeros_like(ref)
    pred[0, :2, :2] = 3  # slice 0 exact, slice 1 missed -> pooled 2*4 / (4 + 8) = 2/3
    t = _table(pred, ref, "s1", 0, np.array([0, 0]))
    vol = M.volume_dice(t)
    assert vol.loc[0, "dice_volume_LV"] == pytest.approx(2 / 3)
    assert np.isnan(vol.loc[0, "dice_volume_RV"]) and np.isnan(vol.loc[0, "dice_volume_MYO"])  # absent: undefined
    assert vol.loc[0, "dice_volume_mean"] == pytest.approx(2 / 3)  # the mean skips undefined structures
    assert t["dice_LV"].tolist() == [1.0, 0.0]  # per slice: 1 and 0


def test_absolute_entries_carry_the_volume_dice_only_with_frames():
    rng = np.random.default_rng(1)
    parts = []
    for s, subject in enumerate(("a", "b", "c")):
        ref = _stack(rng, 4)
        pred = np.roll(ref, s, axis=2)
        for seed in (0, 1):
            parts.append(_table(pred, ref, subject, seed, np.zeros(len(ref), int)))
    table = pd.concat(parts, ignore_index=True)
    out = M.absolute_entries(table, ["a", "b", "c"], [0, 1], n_boot=200, seed=0, what="test nets")
    vol = M.volume_dice(table)
    e = out["dice_volume"]["mean"]
    assert e["value"] == pytest.approx(vol.groupby("subject_id")["dice_volume_mean"].mean().mean())
    assert e["n"] == 3 and e["ci_low"] <= e["value"] <= e["ci_high"] and "ACDC challenge" in e["method"]
    assert "dice_volume" not in M.absolute_entries(table.drop(columns="frame"), ["a", "b", "c"], [0, 1], n_boot=50,
                                                   seed=0, what="test nets")
