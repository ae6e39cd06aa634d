"""fvd_judge and temporal smoothness: planted effects (temporal shuffling, flicker)."""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.errors import UserError
from audit.fidelity.cine import frame_to_frame_dice, fvd_judge, smoothness_entry, video_embedding


def _videos(n, t=20, f=16, seed=0):
    """Smooth periodic trajectories in feature space, one phase/amplitude per video."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, f))
    amp = rng.uniform(0.5, 1.5, (n, 1, f))
    base = rng.normal(0, 0.3, (n, 1, f))
    time = np.linspace(0, 2 * np.pi, t, endpoint=False)[None, :, None]
    return (base + amp * np.sin(time + phase)).astype(np.float32)


def test_embedding_terms():
    v = _videos(3, t=5, f=4)
    e = video_embedding(v)
    assert e.shape == (3, 12)
    np.testing.assert_allclose(e[:, :4], v.mean(1), rtol=1e-6)
    np.testing.assert_allclose(e[:, 4:8], v.std(1), rtol=1e-5)
    np.testing.assert_allclose(e[:, 8:], np.abs(np.diff(v, axis=1)).mean(1), rtol=1e-5)


def test_shuffled_frames_change_only_the_temporal_term_and_raise_fvd():
    real_a, real_b = _videos(60, seed=1), _videos(60, seed=2)
    rng = np.random.default_rng(3)
    shuffled = np.stack([v[rng.permutation(v.shape[0])] for v in real_a])
    ea, es = video_embedding(real_a), video_embedding(shuffled)
    np.testing.assert_allclose(ea[:, :32], es[:, :32], rtol=1e-5, atol=1e-6)  # same mean and std per video
    ids = np.arange(60).astype(str)
    same = fvd_judge(real_a, ids, real_b, ids, n_boot=20)["fid"]["value"]
    shuf = fvd_judge(shuffled, ids, real_b, ids, n_boot=20)["fid"]["value"]
    assert shuf > 5 * same
    assert "fvd_judge" in fvd_judge(real_a, ids, real_b, ids, n_boot=20)["fid"]["method"]


def _disc_video(t=12, size=32, jump=False, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((t, size, size), np.uint8)
    for i in range(t):
        r = 8 + 2 * np.sin(2 * np.pi * i / t)
        cx = 16 + (rng.integers(-8, 9) if jump else 0)
        out[i][(yy - 16) ** 2 + (xx - cx) ** 2 <= (r + 3) ** 2] = 2
        out[i][(yy - 16) ** 2 + (xx - cx) ** 2 <= r ** 2] = 3
    return out


def test_frame_to_frame_dice_is_high_for_smooth_motion_and_low_for_jumps():
    smooth = np.stack([_disc_video(seed=s) for s in range(3)])
    jumpy = np.stack([_disc_video(jump=True, seed=s) for s in range(3)])
    d_smooth, d_jump = frame_to_frame_dice(smooth), frame_to_frame_dice(jumpy)
    assert d_smooth.min() > 0.85 and d_jump.max() < d_smooth.min()
    static = np.repeat(smooth[:, :1], 5, axis=1)
    np.testing.assert_allclose(frame_to_frame_dice(static), 1.0)
    entry = smoothness_entry(smooth, ["a", "b", "c"], n_boot=50, what="test")
    assert entry["unit"] == "1" and entry["n"] == 3
    assert smoothness_entry(np.zeros((2, 3, 8, 8), np.uint8), ["a", "b"], what="empty")["status"] == "unavailable"


def test_bad_cine_input():
    with pytest.raises(UserError, match="frames"):
        video_embedding(np.zeros((2, 1, 4)))
    with pytest.raises(UserError, match="shape"):
        video_embedding(np.zeros((2, 4)))
    with pytest.raises(UserError, match="NaN"):
        video_embedding(np.full((2, 3, 4), np.nan))
    with pytest.raises(UserError, match="frames>=2"):
        frame_to_frame_dice(np.zeros((2, 1, 8, 8), np.uint8))


@pytest.mark.judge
@pytest.mark.slow
def test_real_phantom_cine_is_smooth_and_shuffling_is_seen(tmp_path):
    """Mid-ventricular phantom cine (4 subjects x 20 frames) through the real judge."""
    from cohorts import source
    from cohorts.cache import load_prepared
    from cohorts.judge import Judge
    from cohorts.judge.memo import JudgeMemo
    from cohorts.preprocess import PreprocessConfig

    root = source.resolve("phantom", phantom_subjects=10, phantom_seed=0)
    p = load_prepared(root, PreprocessConfig(target_spacing=1.5, size=128), progress=False)
    subjects = [p[i] for i in p.ids[:4]]
    t_min = min(s.n_frames for s in subjects)  # phantom subjects differ in frame count
    videos = np.stack([s.image[:t_min, s.n_slices // 2] for s in subjects])  # (4, T, H, W)
    memo = JudgeMemo(Judge(precision="fp32"), root=tmp_path)
    n, t = videos.shape[:2]
    labels, feats = memo(videos.reshape(-1, *videos.shape[2:]), (1.5, 1.5))
    labels, feats = labels.reshape(n, t, *labels.shape[1:]), feats.reshape(n, t, -1)
    ids = [s.subject_id for s in subjects]
    smooth = frame_to_frame_dice(labels)
    assert smooth.min() > 0.8, smooth
    rng = np.random.default_rng(0)
    perm = [rng.permutation(t) for _ in range(n)]
    shuffled = np.stack([labels[i, perm[i]] for i in range(n)])
    assert frame_to_frame_dice(shuffled).mean() < smooth.mean()
    e, es = video_embedding(feats), video_embedding(np.stack([feats[i, perm[i]] for i in range(n)]))
    d = feats.shape[-1]
    assert np.all(es[:, 2 * d:].mean(1) > e[:, 2 * d:].mean(1))  # shuffled cine changes more per frame
