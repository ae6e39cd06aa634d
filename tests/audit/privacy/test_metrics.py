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
    low = out["tpr_at_lowest_fpr"]  # 10 of the 90 non-member images flagged: always estimable here
    assert low["params"]["fpr"] == pytest.approx(10 / 90) and low["ci_low"] <= low["value"] <= low["ci_high"]
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


# --------------------------------------------------------------------------- TPR at the lowest supported FPR (issue 26)


def test_lowest_fpr_hand_computed():
    # 20 non-members scored 0..19, members at 18.5, 17.5, 9.5, 5: FPR_min = 10/20 = 0.5; the lowest
    # threshold flagging at most 10 non-members is 9.5 (non-members 10..19), which flags 3 of 4 members
    neg = np.arange(20.0)
    pos = np.array([18.5, 17.5, 9.5, 5.0])
    s, y = np.r_[pos, neg], np.r_[np.ones(4, bool), np.zeros(20, bool)]
    ev = metrics.evaluate(s, y, np.arange(24).astype(str), n_boot=50)
    assert ev.lowest_fpr == 0.5 and ev.tpr_lowest == 0.75 and ev.lowest_fpr_achieved == 0.5
    e = metrics.entries(ev, "images")["tpr_at_lowest_fpr"]
    assert e["value"] == 0.75 and e["params"] == {"fpr": 0.5} and e["unit"] == "fraction"
    assert "FPR 0.5 (50 %) = 10/20 non-member images" in e["notes"] and "10/20" in e["method"]
    assert e["ci_low"] <= 0.75 <= e["ci_high"]


def test_lowest_fpr_with_ties_states_the_achieved_fpr():
    # 12 non-members: 8 at score 0 and 4 tied at 5 -> FPR_min = 10/12; including the tie at 0
    # would flag all 12, so the admissible point is FPR 4/12 (the notes say so), TPR = members >= 5
    s = np.r_[np.array([6.0, 5.0, 0.0]), np.zeros(8), np.full(4, 5.0)]
    y = np.r_[np.ones(3, bool), np.zeros(12, bool)]
    ev = metrics.evaluate(s, y, np.arange(15).astype(str), n_boot=20)
    assert ev.lowest_fpr == pytest.approx(10 / 12) and ev.lowest_fpr_achieved == pytest.approx(4 / 12)
    assert ev.tpr_lowest == pytest.approx(2 / 3)
    assert "achieved FPR 0.3333 (tied scores" in metrics.entries(ev, "images")["tpr_at_lowest_fpr"]["notes"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=12, max_size=80))
def test_lowest_fpr_matches_sklearn_roc_curve(pairs):
    from sklearn.metrics import roc_curve

    s = np.array([p[0] for p in pairs], float)
    y = np.array([p[1] for p in pairs])
    n_neg = int((~y).sum())
    if not y.any() or n_neg < metrics.MIN_FLAGGED_NONMEMBERS:
        return
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    target = 10 / n_neg
    ev = metrics.evaluate(s, y, np.arange(len(s)).astype(str), n_boot=2)
    assert ev.lowest_fpr == pytest.approx(target)
    assert ev.tpr_lowest == pytest.approx(tpr[fpr <= target + 1e-12].max(), abs=1e-12)
    assert ev.lowest_fpr_achieved == pytest.approx(fpr[fpr <= target + 1e-12].max(), abs=1e-12)


def test_lowest_fpr_continuous_against_sklearn_and_closed_form():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(5)
    y = np.r_[np.ones(400, bool), np.zeros(600, bool)]
    s = rng.normal(size=1000) + 1.5 * y
    ev = metrics.evaluate(s, y, np.arange(1000).astype(str), n_boot=100)
    # no ties: every score above the 11th highest non-member score may be flagged (10 non-members),
    # so TPR = share of members scoring above it
    t11 = np.sort(s[~y])[-11]
    assert ev.lowest_fpr == pytest.approx(10 / 600) and ev.lowest_fpr_achieved == pytest.approx(10 / 600)
    assert ev.tpr_lowest == pytest.approx((s[y] > t11).mean())
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    assert ev.tpr_lowest == pytest.approx(tpr[fpr <= 10 / 600 + 1e-12].max())
    lo, hi = ev.tpr_lowest_ci
    assert lo <= ev.tpr_lowest <= hi and hi > lo


def test_lowest_fpr_unavailable_below_ten_nonmembers_and_params_on_fixed_targets():
    s = np.r_[np.arange(20.0), np.arange(9.0)]
    y = np.r_[np.ones(20, bool), np.zeros(9, bool)]
    out = metrics.entries(metrics.evaluate(s, y, np.arange(29).astype(str), n_boot=10), "subjects")
    assert out["tpr_at_lowest_fpr"]["status"] == "unavailable"
    assert "only 9 non-member subjects" in out["tpr_at_lowest_fpr"]["reason"] and "at least 10" in out["tpr_at_lowest_fpr"]["reason"]
    y = np.r_[np.zeros(150, bool), np.ones(50, bool)]
    out = metrics.entries(metrics.evaluate(np.arange(200.0), y, np.arange(200).astype(str), n_boot=10), "images",
                          nonmember_splits="holdout+test")
    assert out["tpr_at_fpr_1%"]["params"] == {"fpr": 0.01} and "tpr_at_fpr_0.1%" in out
    assert out["tpr_at_lowest_fpr"]["params"]["fpr"] == pytest.approx(10 / 150)
    assert "(holdout+test splits)" in out["n_nonmembers"]["method"]
