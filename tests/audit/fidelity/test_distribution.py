"""Reference tests for audit.fidelity.distribution (FID, KID, PRDC, compare)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.linalg
import torch

from audit.core.errors import UserError
from audit.fidelity import distribution as D
from audit.fidelity import frechet as F
from audit.fidelity import kid as K
from audit.fidelity import prdc as P
from audit.fidelity.distribution import compare, covariance, fid, frechet_distance, kid, prdc
from audit.core.results import new_results, validate_results


pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save:UserWarning")


class _Identity(torch.nn.Module):
    """Feature extractor for torchmetrics that passes the features through."""

    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Independent FID: scipy.linalg.sqrtm of the (non-symmetric) product S1 S2."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(np.real(covmean)))


def _blobs(rng, n, d, centre, scale=1.0):
    return centre + scale * rng.standard_normal((n, d))


# --------------------------------------------------------------------------- FID


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    d = 48
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    a = rng.standard_normal((400, d)) @ mix
    b = (rng.standard_normal((300, d)) * 1.3 + 0.2) @ mix
    ours = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    ref = _scipy_fid(a, b)
    assert ref > 0
    assert abs(ours - ref) / ref <= 1e-3


def test_frechet_distance_singular_covariance_uses_eigh_path():
    """S1 of rank 19 < d (Cholesky fails): eigh fallback; reference from sqrtm of the PD S2."""
    rng = np.random.default_rng(1)
    d = 32
    x1 = rng.standard_normal((20, d))
    s1 = np.cov(x1, rowvar=False)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(s1)
    s2 = np.cov(rng.standard_normal((500, d)), rowvar=False) + 0.1 * np.eye(d)
    r2 = scipy.linalg.sqrtm(s2).real
    ref_trace = np.sqrt(np.clip(np.linalg.eigvalsh(r2 @ s1 @ r2), 0, None)).sum()
    mu = np.zeros(d)
    ref = np.trace(s1) + np.trace(s2) - 2 * ref_trace
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_closed_form_diagonal_gaussians():
    rng = np.random.default_rng(2)
    d = 20
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    va, vb = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    assert frechet_distance(mu1, np.diag(va), mu2, np.diag(vb)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, np.diag(va), mu1, np.diag(va)) == pytest.approx(0.0, abs=1e-9)


def test_fid_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(3)
    d = 24
    a = _blobs(rng, 200, d, 0.0)
    b = _blobs(rng, 150, d, 0.3, 1.2)
    metric = FrechetInceptionDistance(feature=_Identity(d))
    metric.update(torch.from_numpy(b), real=True)
    metric.update(torch.from_numpy(a), real=False)
    ref = float(metric.compute())
    ours, est = fid(a, b)
    assert est == "sample"
    assert ours == pytest.approx(ref, rel=1e-6)


def test_fid_auto_uses_ledoit_wolf_when_n_le_d(caplog):
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(4)
    d = 288
    same1, same2 = rng.standard_normal((100, d)), rng.standard_normal((100, d))
    shifted = rng.standard_normal((100, d)) + 0.5
    with caplog.at_level(logging.WARNING, logger="audit.fidelity.frechet"):
        v_same, est = fid(same1, same2)
    assert est == "ledoit_wolf"
    assert "n <= d" in caplog.text
    v_shift, _ = fid(same1, shifted)
    assert v_shift > 10 * v_same
    np.testing.assert_allclose(covariance(same1, "ledoit_wolf"), LedoitWolf().fit(same1).covariance_)
    np.testing.assert_allclose(covariance(same1, "sample"), np.cov(same1, rowvar=False))


def test_fid_bad_input():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((10, 4))
    with pytest.raises(UserError, match="at least 2"):
        fid(a[:1], a)
    with pytest.raises(UserError, match="dimension mismatch"):
        fid(a, rng.standard_normal((10, 5)))
    bad = a.copy()
    bad[3, 1] = np.nan
    with pytest.raises(UserError, match="NaN or Inf"):
        fid(bad, a)
    with pytest.raises(UserError, match="2-D"):
        fid(a[0], a)
    with pytest.raises(UserError, match="unknown covariance estimator"):
        fid(a, a, estimator="oas")


def test_weighted_fid_terms_equal_repeated_rows():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((30, 5))
    c = rng.integers(0, 4, 30)
    rows = np.repeat(np.arange(30), c)
    for est in ("sample", "ledoit_wolf"):
        mu, cov = F._weighted_fid_terms(x, c, est)
        np.testing.assert_allclose(mu, x[rows].mean(0), atol=1e-12)
        np.testing.assert_allclose(cov, covariance(x[rows], est), atol=1e-12)


# --------------------------------------------------------------------------- KID


def test_kid_matches_torchmetrics_full_set():
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(7)
    d, n = 16, 120
    a, b = _blobs(rng, n, d, 0.0), _blobs(rng, n, d, 0.4)
    metric = KernelInceptionDistance(feature=_Identity(d), subsets=1, subset_size=n)
    metric.update(torch.from_numpy(b), real=True)
    metric.update(torch.from_numpy(a), real=False)
    ref_mean, ref_std = (float(v) for v in metric.compute())
    mean, std = kid(a, b, subsets=1, subset_size=n)
    assert mean == pytest.approx(ref_mean, rel=1e-9)
    assert std == pytest.approx(ref_std, abs=1e-12)


def test_kid_subsets_agree_with_torchmetrics_within_tolerance():
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(8)
    d = 16
    a, b = _blobs(rng, 300, d, 0.0), _blobs(rng, 300, d, 0.5)
    torch.manual_seed(0)
    metric = KernelInceptionDistance(feature=_Identity(d), subsets=200, subset_size=100)
    metric.update(torch.from_numpy(b), real=True)
    metric.update(torch.from_numpy(a), real=False)
    ref_mean, ref_std = (float(v) for v in metric.compute())
    mean, std = kid(a, b, subsets=200, subset_size=100)
    # two independent means of 200 subset draws: agree within a few standard errors
    assert abs(mean - ref_mean) < 4 * np.hypot(std, ref_std) / np.sqrt(200)
    assert std == pytest.approx(ref_std, rel=0.25)


def test_kid_cached_and_streamed_paths_agree(monkeypatch):
    rng = np.random.default_rng(9)
    a, b = _blobs(rng, 80, 10, 0.0), _blobs(rng, 60, 10, 0.2)
    cached = kid(a, b, subsets=7, subset_size=1000, seed=3)  # subset size capped at 60
    monkeypatch.setattr(K, "_KERNEL_CACHE_LIMIT", 0)
    streamed = kid(a, b, subsets=7, subset_size=1000, seed=3)
    np.testing.assert_allclose(cached, streamed, rtol=1e-10, atol=1e-14)


def test_kid_same_distribution_near_zero_shifted_positive():
    rng = np.random.default_rng(10)
    a, b = _blobs(rng, 400, 8, 0.0), _blobs(rng, 400, 8, 0.0)
    same, _ = kid(a, b, subsets=20, subset_size=200)
    far, _ = kid(a, _blobs(rng, 400, 8, 1.0), subsets=20, subset_size=200)
    assert abs(same) < 0.01 * far


def test_weighted_mmd2_reduces_to_u_statistic():
    rng = np.random.default_rng(11)
    a, b = _blobs(rng, 40, 6, 0.0), _blobs(rng, 30, 6, 0.3)
    g = 1 / 6
    kaa, kbb, kab = K._poly_kernel(a, a, 3, g, 1.0), K._poly_kernel(b, b, 3, g, 1.0), K._poly_kernel(a, b, 3, g, 1.0)
    sub_a, sub_b = np.arange(40) // 4, np.arange(30) // 3
    ones_a, ones_b = np.ones((1, 10)), np.ones((1, 10))
    got = K._weighted_mmd2(ones_a, sub_a, ones_b, sub_b, kaa, kbb, kab)[0]
    assert got == pytest.approx(K._mmd2_unbiased(kaa, kbb, kab), rel=1e-12)


def test_weighted_mmd2_matches_explicit_pair_weights():
    """Replicate formula vs an explicit loop over pairs with the documented weights."""
    rng = np.random.default_rng(12)
    a, b = _blobs(rng, 12, 3, 0.0), _blobs(rng, 9, 3, 0.5)
    sub_a, sub_b = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4]), np.arange(9) // 3
    cs_a, cs_b = np.array([[2, 0, 1, 1, 1]]), np.array([[0, 3, 0]])
    g = 1 / 3
    kaa, kbb, kab = K._poly_kernel(a, a, 3, g, 1.0), K._poly_kernel(b, b, 3, g, 1.0), K._poly_kernel(a, b, 3, g, 1.0)

    def within(k, sub, cs):
        num = den = 0.0
        for i in range(len(k)):
            for j in range(len(k)):
                if i == j:
                    continue
                w = cs[sub[i]] if sub[i] == sub[j] else cs[sub[i]] * cs[sub[j]]
                num += w * k[i, j]
                den += w
        return num / den

    ca, cb = cs_a[0][sub_a], cs_b[0][sub_b]
    cross = sum(ca[i] * cb[j] * kab[i, j] for i in range(12) for j in range(9)) / (ca.sum() * cb.sum())
    expected = within(kaa, sub_a, cs_a[0]) + within(kbb, sub_b, cs_b[0]) - 2 * cross
    got = K._weighted_mmd2(cs_a.astype(float), sub_a, cs_b.astype(float), sub_b, kaa, kbb, kab)[0]
    assert got == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- PRDC


def _brute_prdc(real, fake, k):
    """Naeem et al. (2020) written out with loops."""
    def radius(x, i):
        dists = sorted(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)
        return dists[k - 1]

    rr = [radius(real, i) for i in range(len(real))]
    rf = [radius(fake, j) for j in range(len(fake))]
    dist = np.array([[np.linalg.norm(r - f) for f in fake] for r in real])
    precision = np.mean([any(dist[i, j] < rr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(dist[i, j] < rf[j] for j in range(len(fake))) for i in range(len(real))])
    density = np.mean([sum(dist[i, j] < rr[i] for i in range(len(real))) for j in range(len(fake))]) / k
    coverage = np.mean([min(dist[i]) < rr[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_matches_brute_force():
    rng = np.random.default_rng(13)
    real = _blobs(rng, 45, 4, 0.0)
    fake = _blobs(rng, 38, 4, 0.4, 1.3)
    for k in (1, 3, 5):
        got, ref = prdc(real, fake, k=k), _brute_prdc(real, fake, k)
        for key in ref:
            assert got[key] == pytest.approx(ref[key], abs=1e-12), (k, key)


def test_prdc_identical_sets():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((200, 16))
    got = prdc(x, x.copy(), k=5)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    assert got["density"] == pytest.approx(1.0, abs=1e-12)  # each open ball holds itself + k-1 neighbours


def test_prdc_far_apart_sets():
    rng = np.random.default_rng(15)
    got = prdc(_blobs(rng, 100, 8, 0.0), _blobs(rng, 100, 8, 100.0), k=5)
    assert got == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_mode_dropping():
    rng = np.random.default_rng(16)
    d = 8
    centres = np.eye(d)[:4] * 50
    real = np.concatenate([_blobs(rng, 100, d, c) for c in centres])
    fake = np.concatenate([_blobs(rng, 200, d, c) for c in centres[:2]])  # half the modes
    got = prdc(real, fake, k=5)
    assert got["precision"] > 0.9
    assert got["recall"] == pytest.approx(0.5, abs=0.05)
    assert got["coverage"] == pytest.approx(0.5, abs=0.05)


def test_prdc_needs_k_plus_one_points():
    rng = np.random.default_rng(17)
    with pytest.raises(UserError, match="k\\+1"):
        prdc(rng.standard_normal((5, 3)), rng.standard_normal((10, 3)), k=5)


def _brute_radius(dist, subjects, c, i, k):
    """k-NN radius of image i in a replicate: expand the multiset of neighbours explicitly
    (images of i's own subject are never neighbours: subject-aware radii)."""
    pool = []
    for j in range(len(c)):
        if subjects[j] == subjects[i] or c[j] == 0:
            continue
        pool += [dist[i, j]] * int(c[j])
    pool.sort()
    return pool[k - 1]


def test_bootstrap_radii_match_explicit_multiset():
    rng = np.random.default_rng(18)
    x = rng.standard_normal((60, 5))
    subjects = np.repeat(np.arange(20), 3)
    dist = P._pairwise_distances(x, x)
    for keep in (4, 128):  # 4 forces the exact fallback for many rows
        nn = P._Neighbours(dist, subjects, n_keep=keep)
        for seed in range(5):
            cs = np.random.default_rng(seed).multinomial(20, np.full(20, 0.05))
            c = cs[subjects]
            r = nn.radii(c, 3)
            for i in range(60):
                if c[i] == 0:
                    assert np.isnan(r[i])
                else:
                    assert r[i] == pytest.approx(_brute_radius(dist, subjects, c, i, 3))
    ones = np.ones(60, np.int64)
    np.testing.assert_allclose(P._Neighbours(dist, np.arange(60)).radii(ones, 3), P._knn_radius(dist, 3))


def test_sparse_prdc_equals_dense():
    rng = np.random.default_rng(19)
    real, fake = _blobs(rng, 120, 6, 0.0), _blobs(rng, 100, 6, 0.3)
    sub_r, sub_f = np.arange(120) // 4, np.arange(100) // 5
    d_rr, d_ff, d_rf = (P._pairwise_distances(u, v) for u, v in ((real, real), (fake, fake), (real, fake)))
    nn_r, nn_f = P._Neighbours(d_rr, sub_r), P._Neighbours(d_ff, sub_f)
    for keep in (3, 256):  # 3 forces the dense fallback
        cross = P._CrossNeighbours(d_rf, keep=keep)
        for seed in range(5):
            g = np.random.default_rng(seed)
            cr, cf = g.multinomial(30, np.full(30, 1 / 30))[sub_r], g.multinomial(20, np.full(20, 0.05))[sub_f]
            r_r, r_f = nn_r.radii(cr, 5), nn_f.radii(cf, 5)
            np.testing.assert_allclose(cross.prdc(r_r, r_f, cr, cf, 5), P._prdc_weighted(d_rf, r_r, r_f, cr, cf, 5),
                                       atol=1e-12)


def test_weighted_prdc_equals_repeated_points():
    """With one image per subject, multiplicities = literally repeated points whose copies are
    not each other's neighbours (checked against the brute force on the expanded sets)."""
    rng = np.random.default_rng(20)
    real, fake = _blobs(rng, 30, 3, 0.0), _blobs(rng, 25, 3, 0.2)
    cr, cf = rng.integers(0, 3, 30), rng.integers(0, 3, 25)
    cr[0] = cf[0] = 1
    d_rr, d_ff, d_rf = (P._pairwise_distances(u, v) for u, v in ((real, real), (fake, fake), (real, fake)))
    r_r = P._Neighbours(d_rr, np.arange(30)).radii(cr, 2)
    r_f = P._Neighbours(d_ff, np.arange(25)).radii(cf, 2)
    got = P._prdc_weighted(d_rf, r_r, r_f, cr, cf, 2)
    # expand: radius of each copy from the other originals' copies
    rows_r, rows_f = np.repeat(np.arange(30), cr), np.repeat(np.arange(25), cf)
    rr = np.array([r_r[i] for i in rows_r])
    rf = np.array([r_f[j] for j in rows_f])
    dist = d_rf[np.ix_(rows_r, rows_f)]
    inball = (dist < rr[:, None]).sum(0)
    expected = ((inball > 0).mean(), (dist < rf[None, :]).any(1).mean(), inball.mean() / 2,
                (dist < rr[:, None]).any(1).mean())
    np.testing.assert_allclose(got, expected, atol=1e-12)


# --------------------------------------------------------------------------- compare


def _sets(seed=21, n=120, d=12, per=4, shift=0.3):
    rng = np.random.default_rng(seed)
    def one(s):
        subj = rng.standard_normal((n // per, d)) * 0.5
        return np.repeat(subj, per, 0) + rng.standard_normal((n, d)) + s, np.repeat(np.arange(n // per), per)
    (a, ca), (b, cb) = one(shift), one(0.0)
    return a.astype(np.float32), ca, b.astype(np.float32), cb


def test_compare_entries_validate_and_are_reproducible():
    a, ca, b, cb = _sets()
    out = compare(a, ca, b, cb, n_boot=60, seed=1, feature_label="judge")
    assert set(out) == {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage"}
    doc = new_results(run_id="x", generator="g", preset="p", created_utc="2026-01-01T00:00:00Z")
    doc["provenance"] = {"config_sha256": "0" * 64, "data_hash": "x", "seed": 0}
    doc["fidelity"]["x"] = out
    validate_results(doc)
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        e = out[name]
        assert e["ci_low"] <= e["value"] <= e["ci_high"], name
        assert "judge features" in e["method"] and e["n"] == len(a)
    assert "unbiased sample covariance" in out["fid"]["method"]
    assert out["fid"]["value"] == pytest.approx(fid(a, b)[0], rel=1e-9)
    assert out["kid"]["value"] == pytest.approx(kid(a, b, subset_size=1000)[0], rel=1e-9)
    for key, v in prdc(b, a, real_clusters=cb, fake_clusters=ca).items():
        assert out[key]["value"] == pytest.approx(v, abs=1e-12)
    assert compare(a, ca, b, cb, n_boot=60, seed=1, feature_label="judge") == out
    assert compare(a, ca, b, cb, n_boot=60, seed=2, feature_label="judge") != out


def test_compare_labels_space_and_estimator_when_n_le_d():
    rng = np.random.default_rng(22)
    d = 40
    a, b = rng.standard_normal((30, d)), rng.standard_normal((36, d)) + 0.2
    out = compare(a, np.arange(30) // 3, b, np.arange(36) // 3, n_boot=30, feature_label="autoencoder latent")
    assert "Ledoit-Wolf covariance, n <= d" in out["fid"]["method"]
    assert all("autoencoder latent features" in e["method"] for e in out.values() if "method" in e)
    assert all("judge" not in e["method"] for e in out.values() if "method" in e)


def test_compare_fallbacks():
    a, ca, b, cb = _sets(n=40)
    one_subject = compare(a, np.zeros(len(a)), b, cb, n_boot=30)
    assert one_subject["fid"]["ci_low"] is None and "at least 2 subjects" in one_subject["fid"]["notes"]
    no_boot = compare(a, ca, b, cb, n_boot=0)
    assert no_boot["precision"]["ci_high"] is None
    small = compare(a[:4], ca[:4], b, cb, n_boot=30, k=5)
    assert small["precision"] == {"status": "unavailable", "reason": small["precision"]["reason"]}
    assert "k+1 = 6" in small["precision"]["reason"]
    assert "value" in small["fid"]


def test_compare_bad_input():
    a, ca, b, cb = _sets(n=40)
    with pytest.raises(UserError, match="dimension mismatch"):
        compare(a, ca, b[:, :5], cb)
    bad = a.copy()
    bad[0, 0] = np.inf
    with pytest.raises(UserError, match="NaN or Inf"):
        compare(bad, ca, b, cb)
    with pytest.raises(UserError, match="one subject id per image"):
        compare(a, ca[:-1], b, cb)
    with pytest.raises(UserError, match="at least 2 images"):
        compare(a[:1], ca[:1], b, cb)
    with pytest.raises(UserError, match="k must be"):
        compare(a, ca, b, cb, k=0)


def test_recentred_interval():
    reps = np.arange(100, 200, dtype=float)  # all above the estimate
    lo, hi, shift = D.recentred_interval(reps, 50.0)
    assert lo <= 50.0 <= hi and shift == pytest.approx(99.5)
    assert D.recentred_interval(reps[:10], 50.0) is None
    lo, hi, _ = D.recentred_interval(np.linspace(0.9, 1.0, 50), 0.99, bounds=(0.0, 1.0))
    assert hi <= 1.0


def test_subject_aware_radii_see_through_near_duplicate_slices():
    """Planted effect: every subject contributes 12 near-duplicate images (neighbouring slices).
    Plain Naeem radii shrink to within-subject distances, so two independent real sets of the
    same distribution look disjoint; subject-aware radii recover precision/recall near 1."""
    rng = np.random.default_rng(7)

    def subjects(n_subj, seed):
        g = np.random.default_rng(seed)
        centres = g.standard_normal((n_subj, 4))
        x = np.repeat(centres, 12, axis=0) + 0.02 * g.standard_normal((n_subj * 12, 4))
        return x, np.repeat(np.arange(n_subj), 12)

    a, ca = subjects(60, 1)
    b, cb = subjects(60, 2)
    plain = prdc(b, a)
    aware = prdc(b, a, real_clusters=cb, fake_clusters=ca)
    assert plain["precision"] < 0.2 and plain["recall"] < 0.2
    assert aware["precision"] > 0.5 and aware["recall"] > 0.5
    # with one image per subject both definitions agree
    x, y = rng.standard_normal((50, 4)), rng.standard_normal((40, 4))
    assert prdc(x, y) == prdc(x, y, real_clusters=np.arange(50), fake_clusters=np.arange(40))
    out = compare(a, ca, b, cb, n_boot=20)
    assert out["precision"]["value"] == pytest.approx(aware["precision"]) and "other subjects" in out["precision"]["method"]
