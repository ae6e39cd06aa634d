"""One-run DP auditing (Steinke, Nasr, Jagielski 2023): the p-value against closed forms and a
brute-force sum, the bound's coverage under eps-randomised response, and a real DP-SGD run
(Opacus) whose bound never exceeds its claim while a non-private run's is large."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from audit.privacy.one_run import audit_canaries, default_guess_grid, epsilon_lower_bound, game_ceiling, p_value


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("r", [10, 50, 200])
def test_all_guesses_right_gives_the_closed_form_bound(r):
    """delta = 0 and v = r: the p-value is q^r, so the 95 % bound solves q^r = 0.05."""
    eps = epsilon_lower_bound(r, r, r, confidence=0.95)
    assert eps == pytest.approx(_logit(0.05 ** (1 / r)), abs=1e-5)
    assert p_value(r, r, r, 1.3) == pytest.approx((1 / (1 + math.exp(-1.3))) ** r)


def test_p_value_with_delta_matches_a_brute_force_sum():
    m, r, v, eps, delta = 300, 60, 41, 0.7, 1e-4
    q = math.exp(eps) / (1 + math.exp(eps))
    beta = sum(stats.binom.pmf(j, r, q) for j in range(v, r + 1))
    alpha = max(sum(stats.binom.pmf(j, r, q) for j in range(v - i, v)) / i for i in range(1, v + 1))
    assert p_value(m, r, v, eps, delta) == pytest.approx(beta + 2 * m * delta * alpha, rel=1e-9)
    assert p_value(m, r, v, eps, delta) > p_value(m, r, v, eps, 0.0)


def test_the_bound_is_zero_without_evidence_and_grows_with_it():
    assert epsilon_lower_bound(100, 100, 50) == 0.0  # chance accuracy rejects nothing
    assert epsilon_lower_bound(100, 0, 0) == 0.0
    bounds = [epsilon_lower_bound(1000, 1000, v) for v in (600, 700, 800, 900)]
    assert bounds[0] > 0 and all(b < c for b, c in zip(bounds, bounds[1:]))
    # delta only ever weakens the bound
    assert epsilon_lower_bound(1000, 1000, 800, delta=1e-5) <= bounds[2]


def test_coverage_under_randomised_response():
    """An eps-DP mechanism at its worst (randomised response: each guess right with probability
    e^eps / (1 + e^eps)) exceeds its eps with the bound in at most ~5 % of runs."""
    rng = np.random.default_rng(0)
    eps_true, m, runs = 1.0, 500, 400
    q = 1 / (1 + math.exp(-eps_true))
    hits = sum(epsilon_lower_bound(m, m, int(rng.binomial(m, q))) > eps_true for _ in range(runs))
    assert hits / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    # and the bound is informative: its median is not far below the truth
    med = np.median([epsilon_lower_bound(m, m, int(rng.binomial(m, q))) for _ in range(101)])
    assert 0.6 < med < eps_true


def test_audit_canaries_uses_a_fixed_grid_and_separated_scores():
    m = 200
    inc = np.arange(m) % 2 == 0
    perfect = audit_canaries(np.where(inc, 1.0, 0.0) + np.linspace(0, 1e-3, m), inc)
    assert perfect.v == perfect.r and perfect.epsilon_lb > 2.0 and perfect.grid == default_guess_grid(m)
    # Bonferroni: the same evidence tested on a grid of 3 gives a smaller bound than on one k
    alone = epsilon_lower_bound(m, perfect.r, perfect.v, confidence=0.95)
    assert perfect.epsilon_lb < alone
    noise = audit_canaries(np.random.default_rng(1).normal(size=m), inc)
    assert noise.epsilon_lb < 0.5
    with pytest.raises(ValueError, match="NaN"):
        audit_canaries([0.1, float("nan")], [True, False])
    with pytest.raises(ValueError, match="2k <= m"):
        audit_canaries([0.1, 0.2], [True, False], grid=(2,))


# --------------------------------------------------------------------------- a real DP-SGD run


def _train_with_canaries(included: np.ndarray, *, epsilon: float | None, seed: int) -> np.ndarray:
    """A small MLP regresses y = 0 on ordinary points; each canary is a far-out point with its own
    random target +-1 (only the included ones are trained on), so nothing but memorising a canary
    reveals its inclusion. Returns each canary's score: minus its loss."""
    import torch
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = len(included)
    base = rng.normal(size=(256, 8)).astype(np.float32)
    canaries = (rng.normal(size=(m, 8)) * 4).astype(np.float32)
    target = rng.choice([-1.0, 1.0], size=m).astype(np.float32)
    x = np.concatenate([base, canaries[included]])
    y = np.concatenate([np.zeros(len(base)), target[included]]).astype(np.float32)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    loader = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
    net = torch.nn.Sequential(torch.nn.Linear(8, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
    epochs = 30 if epsilon is not None else 150
    opt = torch.optim.SGD(net.parameters(), lr=0.5) if epsilon is not None else torch.optim.Adam(net.parameters(), 3e-3)
    if epsilon is not None:
        net, opt, loader = PrivacyEngine(accountant="rdp").make_private_with_epsilon(
            module=net, optimizer=opt, data_loader=loader, target_epsilon=epsilon, target_delta=1e-5,
            epochs=epochs, max_grad_norm=1.0)
    for _ in range(epochs):
        for xb, yb in loader:
            if len(xb) == 0:
                continue
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(xb).squeeze(-1), yb).backward()
            opt.step()
    with torch.no_grad():
        pred = net(torch.from_numpy(canaries)).squeeze(-1).numpy()
    return -((pred - target) ** 2)


@pytest.mark.slow
def test_dp_sgd_bound_never_exceeds_its_claim_while_a_non_private_run_is_caught():
    m, claimed = 200, 1.0
    bounds = []
    for seed in range(3):
        included = np.random.default_rng(100 + seed).random(m) < 0.5
        scores = _train_with_canaries(included, epsilon=claimed, seed=seed)
        bounds.append(audit_canaries(scores, included, delta=1e-5).epsilon_lb)
    assert max(bounds) <= claimed, bounds
    included = np.random.default_rng(7).random(m) < 0.5
    leak = audit_canaries(_train_with_canaries(included, epsilon=None, seed=7), included, delta=1e-5)
    # without DP the same audit proves far more leakage than the claim would allow (with 200
    # canaries no observation can prove more than about eps 3.9 at this grid and confidence)
    assert leak.epsilon_lb > 2 * claimed and leak.epsilon_lb > max(bounds) + 1.0, (leak, bounds)


def test_ceiling_is_the_bound_of_a_perfect_game_and_falls_with_delta():
    """The ceiling is what every-guess-right would prove; a large delta against 1/m caps it (the
    2 m delta term), so a claim above the ceiling can never be contradicted by the game."""
    m = 200
    included = np.arange(m) % 2 == 0
    perfect = audit_canaries(included.astype(float), included, delta=0.0)
    assert perfect.v == perfect.r and perfect.epsilon_lb == pytest.approx(perfect.ceiling)
    noisy = audit_canaries(np.random.default_rng(0).random(m), included, delta=0.0)
    assert noisy.ceiling == pytest.approx(perfect.ceiling) and noisy.epsilon_lb <= noisy.ceiling
    strict = 1 - 0.05 / len(default_guess_grid(m))
    assert perfect.ceiling == pytest.approx(max(epsilon_lower_bound(m, 2 * k, 2 * k, confidence=strict)
                                                for k in default_guess_grid(m)))
    # the benchmark's setting: 200 canaries at delta = 1/(10 x 64 subjects): at most ~1.8, whatever leaks
    capped = audit_canaries(included.astype(float), included, delta=1 / 640)
    assert 0 < capped.ceiling < 2.0 < perfect.ceiling
    assert capped.ceiling == pytest.approx(game_ceiling(m, delta=1 / 640))  # known before any training


def test_few_canaries_are_guessed_all_at_once_or_nearly():
    """Below 64 canaries the grid keeps only guess counts that can prove something (>= 24 guesses,
    and always all canaries): fewer tests, a smaller Bonferroni split, a higher ceiling."""
    assert default_guess_grid(10) == (5,) and default_guess_grid(16) == (8,) and default_guess_grid(30) == (15,)
    assert default_guess_grid(32) == (12, 16) and default_guess_grid(40) == (15, 20) and default_guess_grid(63) == (24, 31)
    assert default_guess_grid(64) == (8, 16, 32) and default_guess_grid(200) == (25, 50, 100)  # as before
    for m in range(10, 200):
        grid = default_guess_grid(m)
        assert grid == tuple(sorted(set(grid))) and all(1 <= k and 2 * k <= m for k in grid)
    # the old three-point grid at 32 subject canaries and delta 1/500 could never prove more than ~1.5
    assert game_ceiling(32, delta=1 / 500, grid=(4, 8, 16)) < 1.55 < 1.75 < game_ceiling(32, delta=1 / 500)


def test_bound_never_exceeds_the_claim_over_repeated_small_subject_games():
    """The property the sign-off relies on, at the subject-canary scale (16-32 canaries, delta =
    1/(10 N)): an eps-DP run at its worst (each coin guessed right with probability
    e^eps / (1 + e^eps), i.e. eps-randomised response on the canaries' scores) proves more than
    eps in at most ~5 % of games; here never more than the claim plus the Monte-Carlo slack."""
    rng = np.random.default_rng(5)
    for m, eps in ((16, 0.5), (32, 1.0), (32, 1.5)):
        q = 1 / (1 + math.exp(-eps))
        runs, over = 300, 0
        for _ in range(runs):
            inc = rng.random(m) < 0.5
            # scores that rank included canaries first with randomised-response accuracy q per canary
            right = rng.random(m) < q
            guess_in = np.where(right, inc, ~inc)
            scores = guess_in + rng.uniform(0, 0.5, m)
            over += audit_canaries(scores, inc, delta=1 / (10 * (64 - m // 2))).epsilon_lb > eps
        assert over / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs), (m, eps, over)
