"""The Gaussian release of a bounded per-unit mean (latent scales, the cine motion scale)."""

import numpy as np
import pytest

from generators.dp.accountant import Ledger
from generators.dp.plan import DPPlan
from generators.dp.release import release_mean

BOUND = 2.0


def _plan(sigma: float, unit: str = "subject") -> DPPlan:
    return DPPlan(unit=unit, n_units=10, slices_per_unit=2, delta=1e-5, max_grad_norm=1.0, accountant="rdp",
                  mode="hooks", noise_multiplier=sigma, target_epsilon=None,
                  phases=[{"name": "scale", "sample_rate": 1.0, "steps": 1, "releases": 1}])


def _release(values, units, sigma=1.0, seed=0, unit="subject", reduce="rms", ledger=None):
    return release_mean(np.asarray(values, np.float64), np.asarray(units), plan=_plan(sigma, unit),
                        ledger=ledger if ledger is not None else Ledger(1e-5), phase="scale", bound=BOUND, seed=seed,
                        salt=1, reduce=reduce)


def test_noise_free_release_is_the_mean_of_per_unit_rms():
    units = np.repeat(np.arange(4), 3)
    ms = np.array([1, 1, 1, 4, 4, 4, 0.25, 0.25, 0.25, 100, 100, 100], np.float64)  # RMS 1, 2, 0.5, 10 -> clipped 2
    assert _release(ms, units, sigma=0.0) == pytest.approx((1 + 2 + 0.5 + 2) / 4)
    assert _release(ms, units, sigma=0.0, reduce="mean") == pytest.approx((1 + 2 + 0.25 + 2) / 4)


def test_noise_has_std_sigma_times_bound_over_units():
    units = np.repeat(np.arange(10), 2)
    ms = np.ones(20)
    draws = np.array([_release(ms, units, sigma=1.5, seed=s) for s in range(400)])
    assert draws.mean() == pytest.approx(1.0, abs=4 * 1.5 * BOUND / 10 / np.sqrt(400))
    assert draws.std() == pytest.approx(1.5 * BOUND / 10, rel=0.12)


def test_one_subject_moves_the_release_by_at_most_bound_over_units():
    """Replacing one subject's rows by an outlier (same seed, same noise) shifts the release by
    <= B / U: the sensitivity the accountant assumes."""
    units = np.repeat(np.arange(8), 3)
    ms = np.full(24, 0.5)
    outlier = ms.copy()
    outlier[units == 3] = 1e6
    shift = _release(outlier, units, seed=3) - _release(ms, units, seed=3)
    assert 0 < shift <= BOUND / 8 + 1e-12


def test_spends_one_full_batch_step_and_slice_level_counts_rows():
    led = Ledger(1e-5)
    _release(np.ones(6), np.zeros(6), sigma=2.0, ledger=led)
    assert [(p.name, p.noise_multiplier, p.sample_rate, p.steps) for p in led.phases] == [("scale", 2.0, 1.0, 1)]
    # slice level: six units of one row each, not one subject of six rows
    ms = np.array([0, 0, 0, 4, 4, 4], np.float64)
    assert _release(ms, np.zeros(6), sigma=0.0, unit="slice") == pytest.approx(1.0)
    assert _release(ms, np.zeros(6), sigma=0.0) == pytest.approx(np.sqrt(2.0))
