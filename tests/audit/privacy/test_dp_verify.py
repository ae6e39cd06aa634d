"""Empirical epsilon lower bounds on score distributions with a known answer."""

import numpy as np
import pytest

from audit.privacy import dp_verify


def randomized_response(eps: float, n: int, seed: int = 0):
    """Members answer 1 with probability e^eps/(1+e^eps), non-members with 1/(1+e^eps): exactly eps-DP."""
    rng = np.random.default_rng(seed)
    p = np.exp(eps) / (1 + np.exp(eps))
    members = (rng.random(n) < p).astype(float)
    nonmembers = (rng.random(n) < 1 - p).astype(float)
    return np.r_[members, nonmembers], np.r_[np.ones(n, bool), np.zeros(n, bool)]


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0])
def test_bound_approaches_the_true_epsilon_from_below(eps):
    s, y = randomized_response(eps, 50_000)
    b = dp_verify.empirical_epsilon(s, y)
    assert eps - 0.1 < b.epsilon_lb <= eps


def test_symmetric_form_finds_the_tnr_fnr_side():
    # member P(1) = 0.9, non-member P(1) = 0.6: log(0.9/0.6) = 0.405, log(0.4/0.1) = 1.386 = true eps
    rng = np.random.default_rng(1)
    n = 50_000
    s = np.r_[(rng.random(n) < 0.9), (rng.random(n) < 0.6)].astype(float)
    y = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    b = dp_verify.empirical_epsilon(s, y)
    assert b.form == "tnr/fnr" and np.log(4) - 0.1 < b.epsilon_lb <= np.log(4)


def test_no_signal_gives_zero_and_delta_lowers_the_bound():
    rng = np.random.default_rng(2)
    s, y = rng.normal(size=4000), np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    assert dp_verify.empirical_epsilon(s, y).epsilon_lb == pytest.approx(0.0, abs=0.05)
    s, y = randomized_response(1.0, 20_000)
    assert dp_verify.empirical_epsilon(s, y, delta=0.1).epsilon_lb < dp_verify.empirical_epsilon(s, y).epsilon_lb


def test_small_samples_give_loose_bounds():
    s, y = randomized_response(3.0, 20)  # perfect-ish separation but only 20 trials per class
    assert dp_verify.empirical_epsilon(s, y).epsilon_lb < 3.0


def test_clopper_pearson_edges():
    lo, hi = dp_verify.clopper_pearson(np.array([0, 10]), 10, 0.05)
    assert lo[0] == 0 and hi[1] == 1 and 0 < hi[0] < 0.3 and 0.7 < lo[1] < 1


def test_compare_with_claim_flags_violation():
    s, y = randomized_response(2.0, 20_000)
    b = dp_verify.empirical_epsilon(s, y)
    assert dp_verify.compare_with_claim(b, 1.0)["violation"]["value"] == 1.0
    assert dp_verify.compare_with_claim(b, 8.0)["violation"]["value"] == 0.0
    assert dp_verify.compare_with_claim(b, None)["violation"]["status"] == "unavailable"
