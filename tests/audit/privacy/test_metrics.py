"""Shared evaluation code: AUC against scikit-learn, the TPR@FPR convention, bootstrap CIs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from audit.privacy import metrics


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60))
def test_auc_matches_sklearn_with_ties(pairs):
    scores = np.array([p[0] for p in pairs], float)
    labels = np.array([p[1] for p in pairs])
    if labels.all() or not labels.any():
        return
    assert metrics.auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_matches_sklearn_continuous():
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.4
    scores = rng.normal(size=500) + labels
    assert metrics.auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_tpr_at_fpr_uses_largest_fpr_not_above_target():
    # 100 non-members with scores 0..99, members at 98.5 and 50.5 and -1
    neg = np.arange(100.0)
    pos = np.array([98.5, 50.5, -1.0])
    s = np.r_[pos, neg]
    y = np.r_[np.ones(3, bool), np.zeros(100, bool)]
    # FPR 0.5 %: only the empty decision (threshold above 99) has FPR <= target -> TPR 0;
    # FPR 1 %: one non-member (99) may pass -> lowest admissible threshold 98.5 -> TPR 1/3
    assert metrics.tpr_at_fpr(s, y, 0.005) == 0.0
    assert metrics.tpr_at_fpr(s, y, 0.01) == pytest.approx(1 / 3)
    assert metrics.tpr_at_fpr(s, y, 0.5) == pytest.approx(2 / 3)


def test_balanced_accuracy_perfect_and_chance():
    y = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    assert metrics.balanced_accuracy(np.r_[np.ones(10), np.zeros(10)], y)[0] == 1.0
    assert metrics.balanced_accuracy(np.zeros(20), y)[0] == 0.5


def test_bootstrap_weights_resample_subjects_within_class():
    subjects = np.array(["a", "a", "b", "c", "c", "c"])
    labels = np.array([1, 1, 1, 0, 0, 0], bool)
    w = metrics.subject_bootstrap_weights(subjects, labels, 200, seed=0)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 3] == w[:, 5])  # a subject's images travel together
    assert np.all(w[:, :3].sum(axis=1) >= 2) and np.all(w[:, 3:].sum(axis=1) == 3)  # class sizes kept (in subjects)


def test_weighted_auc_equals_auc_of_repeated_data():
    rng = np.random.default_rng(1)
    s, y = rng.normal(size=40), rng.random(40) < 0.5
    w = rng.integers(0, 3, size=(5, 40)).astype(float)
    got = metrics._weighted_auc(s, y, w)
    for b in range(5):
        rep = np.repeat(np.arange(40), w[b].astype(int))
        if y[rep].all() or not y[rep].any():
            continue
        assert got[b] == pytest.approx(roc_auc_score(y[rep], s[rep]))


def test_evaluate_reports_unavailable_low_fpr_and_ci():
    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(60).astype(str), 3)
    labels = np.repeat(np.arange(60) < 30, 3)
    scores = rng.normal(size=180) + 2 * labels
    ev = metrics.evaluate(scores, labels, subjects, n_boot=200, seed=0)
    out = metrics.entries(ev, "images")
    assert out["auc"]["ci_low"] < out["auc"]["value"] < out["auc"]["ci_high"]
    assert out["tpr_at_fpr_1%"]["status"] == "unavailable" and "90 non-member" in out["tpr_at_fpr_1%"]["reason"]
    assert out["tpr_at_fpr_0.1%"]["status"] == "unavailable"
    assert out["n_members"]["value"] == 90 and out["auc"]["unit"] == "1"
    assert ev.roc["fpr"][0] == 0 and ev.roc["tpr"][-1] == 1


def test_evaluate_low_fpr_available_with_enough_nonmembers():
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    scores = rng.normal(size=300) + 3 * labels
    out = metrics.entries(metrics.evaluate(scores, labels, np.arange(300).astype(str), n_boot=100), "images")
    e = out["tpr_at_fpr_1%"]
    assert e["unit"] == "fraction" and 0 <= e["ci_low"] <= e["value"] <= e["ci_high"] <= 1
    assert "largest FPR <= 0.01" in e["method"]
