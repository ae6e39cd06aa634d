"""Reference tests for audit.fidelity.paired (PSNR, SSIM, MS-SSIM)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from audit.core.errors import UserError
from audit.fidelity.paired import MS_SSIM_WEIGHTS, ms_ssim_scales, paired_metrics, summarise_paired
from audit.core.results import new_results, validate_results


def _images(n, size, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    ref = gaussian_filter(rng.random((n, size, size)), (0, 2, 2))
    lo, hi = ref.min(axis=(1, 2), keepdims=True), ref.max(axis=(1, 2), keepdims=True)
    ref = (ref - lo) / (hi - lo)
    pred = np.clip(ref + rng.normal(0, noise, ref.shape) + 0.02, 0, 1)
    return pred, ref


def _ssim_terms(x, y, data_range):
    """SSIM and contrast-structure means, written out (Wang et al. 2004; valid windows only)."""
    filt = lambda im: gaussian_filter(im, 1.5, truncate=3.5)[5:-5, 5:-5]  # 11-px window, crop its border
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    cs = (2 * cxy + c2) / (vx + vy + c2)
    return float(np.mean((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs)), float(np.mean(cs))


def _ms_ssim_reference(x, y, weights, data_range=1.0):
    """MS-SSIM (Wang et al. 2003) with 2x2 average pooling, written out in NumPy."""
    vals = []
    for s in range(len(weights)):
        ssim, cs = _ssim_terms(x, y, data_range)
        vals.append(max(cs, 0.0) if s < len(weights) - 1 else max(ssim, 0.0))
        h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return float(np.prod(np.asarray(vals) ** np.asarray(weights)))


def test_psnr_and_ssim_match_skimage():
    pred, ref = _images(5, 64)
    table = paired_metrics(pred, ref, data_range=1.0)
    assert list(table.columns) == ["psnr", "ssim", "ms_ssim"]
    for i in range(5):
        assert table["psnr"][i] == pytest.approx(peak_signal_noise_ratio(ref[i], pred[i], data_range=1.0), abs=1e-3)
        ssim = structural_similarity(ref[i], pred[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=1.0)
        assert table["ssim"][i] == pytest.approx(ssim, abs=1e-3)
        assert table["ssim"][i] == pytest.approx(_ssim_terms(pred[i], ref[i], 1.0)[0], abs=1e-4)


def test_data_range_is_used():
    pred, ref = _images(2, 48, seed=1)
    scaled = paired_metrics(pred * 255, ref * 255, data_range=255.0)
    unit = paired_metrics(pred, ref, data_range=1.0)
    np.testing.assert_allclose(scaled["psnr"], unit["psnr"], atol=1e-3)
    np.testing.assert_allclose(scaled["ssim"], unit["ssim"], atol=1e-4)
    for i in range(2):
        assert scaled["psnr"][i] == pytest.approx(peak_signal_noise_ratio(ref[i] * 255, pred[i] * 255, data_range=255),
                                                  abs=1e-3)


@pytest.mark.parametrize("size, scales", [(96, 3), (128, 3), (176, 5), (192, 5)])
def test_ms_ssim_matches_reference_and_scale_choice(size, scales):
    pred, ref = _images(2, size, seed=2, noise=0.1)
    table = paired_metrics(pred, ref)
    weights = ms_ssim_scales(size, size)
    assert len(weights) == scales and sum(weights) == pytest.approx(1.0)
    if scales == 5:
        np.testing.assert_allclose(weights, MS_SSIM_WEIGHTS, atol=1e-3)
    for i in range(2):
        assert table["ms_ssim"][i] == pytest.approx(_ms_ssim_reference(pred[i], ref[i], weights), abs=1e-3)
    method = table.attrs["method"]["ms_ssim"]
    assert (f"first {scales} of the 5 scales" in method) if scales == 3 else ("standard 5 scales" in method)


def test_identical_images():
    _, ref = _images(4, 96, seed=3)
    table = paired_metrics(ref, ref.copy())
    assert np.isposinf(table["psnr"]).all()
    np.testing.assert_allclose(table["ssim"], 1.0, atol=1e-6)
    np.testing.assert_allclose(table["ms_ssim"], 1.0, atol=1e-6)
    summary = summarise_paired(table, np.array([0, 0, 1, 1]), n_boot=100)
    assert summary["psnr"]["status"] == "unavailable" and "+inf" in summary["psnr"]["reason"]
    assert summary["ssim"]["value"] == pytest.approx(1.0, abs=1e-6)


def test_some_identical_images_are_left_out_of_the_psnr_mean():
    pred, ref = _images(6, 64, seed=4)
    pred[0] = ref[0]
    table = paired_metrics(pred, ref)
    summary = summarise_paired(table, np.repeat(np.arange(3), 2), n_boot=200)
    finite = table["psnr"].to_numpy()[1:]
    assert summary["psnr"]["value"] == pytest.approx(finite.mean())
    assert summary["psnr"]["n"] == 5 and "lower bound" in summary["psnr"]["notes"]


def test_too_small_for_ms_ssim_is_unavailable_not_zero():
    pred, ref = _images(3, 40, seed=5)
    assert ms_ssim_scales(40, 40) is None
    table = paired_metrics(pred, ref)
    assert table["ms_ssim"].isna().all()
    summary = summarise_paired(table, np.arange(3), n_boot=100, what="tiny crops")
    assert summary["ms_ssim"]["status"] == "unavailable" and "too small" in summary["ms_ssim"]["reason"]
    assert "value" in summary["ssim"]


def test_summary_entries_validate_with_cluster_ci():
    pred, ref = _images(12, 64, seed=6)
    table = paired_metrics(pred, ref)
    subjects = np.repeat(["s1", "s2", "s3", "s4"], 3)
    summary = summarise_paired(table, subjects, n_boot=300, seed=1, what="autoencoder reconstruction")
    for col, unit in (("psnr", "dB"), ("ssim", "1"), ("ms_ssim", "1")):
        e = summary[col]
        assert e["unit"] == unit and e["n"] == 12
        assert e["value"] == pytest.approx(table[col].mean())
        assert e["ci_low"] <= e["value"] <= e["ci_high"]
        assert "autoencoder reconstruction" in e["method"]
    assert summarise_paired(table, subjects, n_boot=300, seed=1, what="autoencoder reconstruction") == summary
    doc = new_results(run_id="x", generator="g", preset="p", created_utc="2026-01-01T00:00:00Z")
    doc["provenance"] = {"config_sha256": "0" * 64, "data_hash": "x", "seed": 0}
    doc["fidelity"]["x"] = summary
    validate_results(doc)
    one = summarise_paired(table, np.zeros(12), n_boot=300)
    assert one["ssim"]["ci_low"] is None and "2 subjects" in one["ssim"]["notes"]


def test_bad_input():
    pred, ref = _images(2, 32)
    with pytest.raises(UserError, match="same shape"):
        paired_metrics(pred, ref[:, :30])
    with pytest.raises(UserError, match=r"\(N, H, W\)"):
        paired_metrics(pred[0], ref[0])
    bad = pred.copy()
    bad[1, 3, 3] = np.nan
    with pytest.raises(UserError, match="NaN or Inf"):
        paired_metrics(bad, ref)
    with pytest.raises(UserError, match="data_range"):
        paired_metrics(pred, ref, data_range=0)
    table = paired_metrics(pred, ref)
    with pytest.raises(UserError, match="one subject id per row"):
        summarise_paired(table, np.arange(3))
