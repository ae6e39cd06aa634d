"""Releasing one bounded statistic of the private data with the Gaussian mechanism.

Some numbers a generator needs besides its weights are statistics of the private training
set: the latent scale of an autoencoder (``1 / RMS`` of the training latents, Rombach et al.
2022) or the scale of the cine motion residuals. Computed in the clear they leak; here each is
released as the mean over privacy units of a per-unit value ``v_u`` clipped to ``[0, B]``:

    release = (sum_u clip(v_u, 0, B) + N(0, (sigma_r B)^2)) / U

Adding or removing one unit changes the sum by at most ``B`` (L2 sensitivity ``B``), so this
is one Gaussian mechanism with noise multiplier ``sigma_r`` applied once to the full data set
(sampling rate 1, one step; Dwork & Roth 2014, Thm. A.1; Mironov 2017 for its RDP). The number
of units ``U`` is treated as public, as Opacus does when it averages noisy gradient sums over
the expected batch size. The caller's plan holds the phase (``sample_rate = 1``, ``steps = 1``)
so its cost is calibrated together with the training phases, and :func:`release_mean` spends it
in the same ledger.

Written here (not taken from a library) because Opacus and dp-accounting provide accountants
and gradient noise, not a bounded-mean release over user-level units.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from generators.seeding import step_seed

log = logging.getLogger(__name__)


def release_mean(per_row: torch.Tensor | np.ndarray, unit_of_row: np.ndarray, *, plan: Any, ledger: Any, phase: str,
                 bound: float, seed: int, salt: int, reduce: str = "rms") -> float:
    """DP mean over privacy units of a per-unit value in ``[0, bound]``.

    ``per_row``: one non-negative number per row (e.g. a row's mean squared latent);
    ``unit_of_row``: the privacy unit (subject) of each row; ``reduce``: how a unit's rows
    become its value -- ``"rms"`` (square root of the unit's mean of ``per_row``) or ``"mean"``.
    With ``plan.unit == "slice"`` every row is its own unit. The noise std is
    ``plan.optimizer_noise(phase) * bound`` on the sum; the phase is spent in ``ledger``.
    """
    values = torch.as_tensor(per_row).detach().double().cpu().reshape(-1)
    units = np.asarray(unit_of_row) if plan.unit == "subject" else np.arange(len(values))
    if len(units) != len(values):
        raise ValueError(f"release_mean: {len(values)} values but {len(units)} unit labels")
    codes, inverse = np.unique(units, return_inverse=True)
    inv = torch.from_numpy(inverse.reshape(-1))
    per_unit = torch.zeros(len(codes), dtype=torch.float64).index_add_(0, inv, values)
    per_unit = per_unit / torch.from_numpy(np.bincount(inverse.reshape(-1))).double()
    if reduce == "rms":
        per_unit = per_unit.clamp_min(0).sqrt()
    elif reduce != "mean":
        raise ValueError(f"release_mean: reduce must be rms or mean, got {reduce!r}")
    per_unit = per_unit.clamp(0.0, float(bound))
    sigma = plan.optimizer_noise(phase)
    gen = torch.Generator().manual_seed(step_seed(seed, salt))
    noisy = (per_unit.sum() + torch.randn((), generator=gen, dtype=torch.float64) * sigma * bound) / len(codes)
    ledger.spend(phase, plan.noise_multiplier, 1.0)
    log.info("DP release %s: mean over %d units %.4f (clip %.3g, noise std %.3g on the mean)", phase, len(codes),
             float(noisy), bound, sigma * bound / len(codes))
    return float(noisy)


def inverse_rms(x: torch.Tensor, unit_of_row: np.ndarray, *, plan: Any, ledger: Any, phase: str, bound: float,
                seed: int, salt: int) -> float:
    """``1 / RMS`` of ``x`` (rows = first axis) for scaling latents to unit variance, the RMS
    released by :func:`release_mean` (per-unit RMS clipped to ``bound``) and kept in
    ``[0.05 bound, bound]`` so a noise-dominated release cannot blow the scale up."""
    ms = x.detach().float().pow(2).mean(dim=tuple(range(1, x.dim())))
    rms = release_mean(ms, unit_of_row, plan=plan, ledger=ledger, phase=phase, bound=bound, seed=seed, salt=salt)
    return 1.0 / min(max(rms, 0.05 * bound), bound)
