import numpy as np
import pytest
from scipy import stats

from audit.core.stats import cluster_bootstrap


def test_matches_scipy_percentile_bootstrap_without_clusters():
    x = np.random.default_rng(0).normal(3.0, 1.0, 300)
    lo, hi = cluster_bootstrap(x, n_boot=4000, seed=1)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=2).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.03) and hi == pytest.approx(ref.high, abs=0.03)
    # and the normal-theory interval
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.03)


def test_clusters_widen_the_interval_for_correlated_images():
    rng = np.random.default_rng(0)
    subject_effect = np.repeat(rng.normal(0, 1, 20), 10)  # 20 subjects x 10 identical-ish slices
    x = subject_effect + rng.normal(0, 0.05, 200)
    ids = np.repeat(np.arange(20), 10)
    naive = np.diff(cluster_bootstrap(x, seed=0))[0]
    clustered = np.diff(cluster_bootstrap(x, ids, seed=0))[0]
    assert clustered > 2.5 * naive  # ~sqrt(10) wider


def test_custom_statistic_equals_default_for_mean_and_nans_are_ignored():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 7.0])
    ids = np.array([0, 0, 1, 1, 2, 2])
    a = cluster_bootstrap(x, ids, seed=3)
    b = cluster_bootstrap(x, ids, statistic=np.mean, seed=3)
    assert a == pytest.approx(b)
    assert np.isnan(cluster_bootstrap(np.array([1.0, np.nan]), np.array([0, 1]))[0])
