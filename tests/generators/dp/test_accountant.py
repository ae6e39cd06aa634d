"""The ledger's epsilon against Google's independent dp-accounting library (RDP and PLD)."""

import logging
import math

import pytest

from generators.dp import accountant as acct
from generators.dp.accountant import Ledger, Phase

dp_event = pytest.importorskip("dp_accounting.dp_event")
from dp_accounting.pld import pld_privacy_accountant  # noqa: E402
from dp_accounting.rdp import rdp_privacy_accountant  # noqa: E402

# meaningful claims (epsilon <= 20). Above that dp-accounting drops fractional orders near 1
# whose series do not converge, so its RDP is looser there; RDP >= PLD still holds (last test).
DELTA = 1e-5
GRID = [(q, s, n) for q in (0.01, 0.05, 0.25, 0.67) for s in (0.8, 1.0, 2.0, 4.0) for n in (100, 1000)
        if acct.epsilon_rdp([Phase("x", s, q, n)], DELTA) <= 20]
assert len(GRID) >= 18


def _event(phases):
    return dp_event.ComposedDpEvent([
        dp_event.SelfComposedDpEvent(dp_event.PoissonSampledDpEvent(p.sample_rate, dp_event.GaussianDpEvent(p.noise_multiplier)), p.steps)
        for p in phases])


def _dpa_rdp(phases, delta=DELTA):
    from opacus.accountants import RDPAccountant

    r = rdp_privacy_accountant.RdpAccountant(orders=RDPAccountant.DEFAULT_ALPHAS)
    r.compose(_event(phases))
    return r.get_epsilon(delta)


def _dpa_pld(phases, delta=DELTA):
    p = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    p.compose(_event(phases))
    return p.get_epsilon(delta)


@pytest.fixture(autouse=True)
def _quiet_absl():
    logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.mark.parametrize("q,sigma,steps", GRID)
def test_rdp_matches_dp_accounting_within_1_percent(q, sigma, steps):
    phases = [Phase("train", sigma, q, steps)]
    assert acct.epsilon_rdp(phases, DELTA) == pytest.approx(_dpa_rdp(phases), rel=0.01)


@pytest.mark.parametrize("q,sigma,steps", [(0.01, 1.0, 1000), (0.05, 1.0, 1000), (0.25, 2.0, 100), (0.67, 4.0, 100), (1.0, 5.0, 1)])
def test_prv_matches_dp_accounting_pld(q, sigma, steps):
    phases = [Phase("train", sigma, q, steps)]
    assert acct.epsilon_prv(phases, DELTA) == pytest.approx(_dpa_pld(phases), rel=0.02)


def test_composition_of_phases_is_one_accountant():
    """Autoencoder + latent scale + denoiser, as ldm/flow spend them: composed, not summed."""
    phases = [Phase("autoencoder", 1.5, 0.05, 600), Phase("latent_scale", 1.5, 1.0, 1), Phase("train", 1.5, 0.1, 1200)]
    ours = acct.epsilon_rdp(phases, DELTA)
    assert ours == pytest.approx(_dpa_rdp(phases), rel=0.01)
    assert acct.epsilon_prv(phases, DELTA) == pytest.approx(_dpa_pld(phases), rel=0.02)
    singles = sum(acct.epsilon_rdp([p], DELTA) for p in phases)
    assert max(acct.epsilon_rdp([p], DELTA) for p in phases) < ours < singles


@pytest.mark.parametrize("q,sigma,steps", [(0.25, 0.8, 1000), (0.67, 1.0, 1000), (0.05, 0.6, 3000)])
def test_rdp_upper_bounds_pld_even_for_large_epsilon(q, sigma, steps):
    phases = [Phase("train", sigma, q, steps)]
    assert acct.epsilon_rdp(phases, DELTA) >= _dpa_pld(phases) * 0.999


@pytest.mark.parametrize("target", [1.0, 4.0, 8.0])
def test_calibration_hits_the_target(target):
    plan = [("autoencoder", 0.05, 600, 1.0), ("latent_scale", 1.0, 1, 1.0), ("train", 0.1, 1200, 1.0)]
    sigma = acct.calibrate(target, DELTA, plan)
    eps = acct.epsilon([Phase(n, sigma, q, s) for n, q, s, _ in plan], DELTA, "rdp")
    assert 0.99 * target <= eps <= target
    # and the independent library agrees the target is met
    assert _dpa_rdp([Phase(n, sigma, q, s) for n, q, s, _ in plan]) <= target * 1.01


def test_impossible_budget_is_refused():
    from audit.core.errors import UserError

    with pytest.raises(UserError, match="impossible.*noise multiplier would exceed"):
        acct.calibrate(0.01, 1e-5, [("train", 1.0, 100000, 1.0)])


def test_ledger_roundtrip_and_spend():
    led = Ledger(1e-5)
    for _ in range(3):
        led.spend("autoencoder", 1.2, 0.1)
    led.spend("train", 1.2, 0.2, steps=5)
    back = Ledger.from_dict(led.to_dict())
    assert back.steps("autoencoder") == 3 and back.steps("train") == 5
    assert back.epsilon() == led.epsilon() > 0
    with pytest.raises(RuntimeError, match="changed mid-phase"):
        back.spend("train", 1.3, 0.2)
    assert Ledger(1e-5).epsilon() == 0.0
    assert math.isinf(acct.epsilon_rdp([Phase("x", 0.0, 0.1, 10)], 1e-5))
