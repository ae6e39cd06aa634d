"""The privacy ledger: all Gaussian mechanisms of a run, composed by one accountant.

A DP run may apply several mechanisms to the same private data: DP-SGD on an autoencoder,
a noisy latent statistic, DP-SGD on a denoiser. Each is a *phase* ``(noise multiplier sigma,
sampling rate q, steps)`` of a Poisson-subsampled Gaussian mechanism (Abadi et al. 2016;
Mironov et al. 2019 for its Renyi DP). Composition is additive in RDP (Mironov 2017), so one
accountant over all phases gives the end-to-end epsilon -- never a sum of per-phase epsilons,
which would overstate it, nor the last phase's, which would understate it.

Two accountants are reported, both from Opacus:

* ``rdp``: Renyi DP over Opacus' default orders, converted to (epsilon, delta) with the
  tighter conversion of Balle et al. 2020 (Opacus' ``get_privacy_spent``). Used to calibrate.
* ``prv``: the privacy-random-variable accountant (Gopi, Lee & Wutschitz 2021), numerically
  near-exact; usually a little smaller than RDP.

The test-suite recomputes both with Google's independent ``dp-accounting`` library (RDP and
PLD) over a grid of (q, sigma, steps).

Calibration (:func:`calibrate`) finds the smallest common sigma that keeps the composed epsilon
at or below the target. Opacus' ``get_noise_multiplier`` solves the single-phase case only, so
the multi-phase root search is written here; it calls Opacus' accountant for every evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from audit.core.errors import UserError

#: a noise multiplier above this makes the run pure noise: refuse instead of training
MAX_NOISE_MULTIPLIER = 100.0


@dataclass
class Phase:
    """``steps`` applications of a Poisson-subsampled Gaussian mechanism."""

    name: str
    noise_multiplier: float
    sample_rate: float
    steps: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps": int(self.steps)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Phase":
        return cls(str(d["name"]), float(d["noise_multiplier"]), float(d["sample_rate"]), int(d["steps"]))


def _history(phases: Iterable[Phase]) -> list[tuple[float, float, int]]:
    return [(p.noise_multiplier, p.sample_rate, int(p.steps)) for p in phases if p.steps > 0]


def epsilon_rdp(phases: Iterable[Phase], delta: float) -> float:
    """Composed epsilon at ``delta`` by Opacus' RDP accountant (``inf`` when a phase has sigma 0)."""
    from opacus.accountants import RDPAccountant  # lazy: opacus only for DP training

    hist = _history(phases)
    if not hist:
        return 0.0
    if any(s <= 0 for s, q, _ in hist if q > 0):
        return math.inf
    acc = RDPAccountant()
    acc.history = hist
    return float(acc.get_epsilon(delta))


def epsilon_prv(phases: Iterable[Phase], delta: float, eps_error: float = 0.01) -> float:
    """Composed epsilon at ``delta`` by Opacus' PRV accountant (Gopi et al. 2021)."""
    from opacus.accountants import PRVAccountant  # lazy: opacus only for DP training

    hist = _history(phases)
    if not hist:
        return 0.0
    acc = PRVAccountant()
    acc.history = hist
    with np.errstate(divide="ignore", invalid="ignore"):  # q = 1 phases: log(1 - q) = -inf is handled
        return float(acc.get_epsilon(delta, eps_error=eps_error))


def epsilon(phases: Iterable[Phase], delta: float, accountant: str) -> float:
    if accountant == "rdp":
        return epsilon_rdp(phases, delta)
    if accountant == "prv":
        return epsilon_prv(phases, delta)
    raise UserError(f"dp.accountant must be rdp or prv, got {accountant!r}")


def calibrate(target_epsilon: float, delta: float, plan: list[tuple[str, float, int, float]], accountant: str = "rdp",
              *, tol: float = 1e-3) -> float:
    """Smallest base sigma with composed epsilon <= ``target_epsilon`` (within ``tol``, relative).

    ``plan``: ``(name, sample_rate, steps, factor)`` per phase; the phase's noise multiplier is
    ``factor * sigma`` (factor < 1 for a step that releases several noisy gradients of one
    batch, see :mod:`generators.dp.plan`). Epsilon falls monotonically as sigma grows, so the
    root of ``g(sigma) = log eps(sigma) - log target`` is bracketed (doubling / halving from
    sigma = 1) and then found by false position with the Illinois modification (Dowell &
    Jarratt 1971): ``log eps`` is nearly linear in sigma over a bracket, so it needs a handful of
    accountant evaluations where bisection needs a dozen -- each one costs about a second for a
    multi-phase plan (Opacus' RDP at fractional orders). The returned sigma always satisfies the
    target (it is the bracket's upper end).
    """
    if target_epsilon <= 0:
        raise UserError(f"dp.epsilon must be > 0, got {target_epsilon}")
    log_target = math.log(target_epsilon)

    def g(sigma: float) -> float:
        eps = epsilon([Phase(n, f * sigma, q, s) for n, q, s, f in plan], delta, accountant)
        return math.inf if eps == math.inf else math.log(max(eps, 1e-300)) - log_target

    hi, g_hi = 1.0, g(1.0)
    lo, g_lo = hi, g_hi
    while g_hi > 0:
        lo, g_lo = hi, g_hi
        hi *= 2
        if hi > MAX_NOISE_MULTIPLIER:
            need = ", ".join(f"{n}: q={q:.3g} x {s} steps" for n, q, s, _ in plan)
            raise UserError(
                f"epsilon {target_epsilon:g} at delta {delta:.3g} is impossible for this plan ({need}): the noise "
                f"multiplier would exceed {MAX_NOISE_MULTIPLIER:g}; train fewer steps, use a smaller batch or a larger epsilon")
        g_hi = g(hi)
    while g_lo <= 0:  # sigma = 1 already meets the target: bracket from below
        hi, g_hi = lo, g_lo
        lo /= 2
        if lo < 1e-3:
            return hi
        g_lo = g(lo)
    # g(lo) > 0 >= g(hi); Illinois false position on [lo, hi]
    f_lo, f_hi, side = min(g_lo, 50.0), g_hi, 0
    while hi - lo > tol * hi and g_hi < -tol:
        mid = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        mid = min(max(mid, lo + 0.01 * (hi - lo)), hi - 0.01 * (hi - lo))
        g_mid = g(mid)
        if g_mid > 0:
            lo, f_lo = mid, min(g_mid, 50.0)
            if side < 0:
                f_hi *= 0.5
            side = -1
        else:
            hi, g_hi, f_hi = mid, g_mid, g_mid
            if side > 0:
                f_lo *= 0.5
            side = 1
    return hi


@dataclass
class Ledger:
    """What a run has spent so far: planned phases and the steps actually taken in each."""

    delta: float
    accountant: str = "rdp"
    phases: list[Phase] = field(default_factory=list)

    def spend(self, name: str, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` more applications of phase ``name`` (appends a phase when new)."""
        for p in self.phases:
            if p.name == name:
                if (p.noise_multiplier, p.sample_rate) != (noise_multiplier, sample_rate):
                    raise RuntimeError(f"DP phase {name}: noise/sampling changed mid-phase "
                                       f"({p.noise_multiplier}, {p.sample_rate}) -> ({noise_multiplier}, {sample_rate})")
                p.steps += steps
                return
        self.phases.append(Phase(name, noise_multiplier, sample_rate, steps))

    def steps(self, name: str) -> int:
        return sum(p.steps for p in self.phases if p.name == name)

    def epsilon(self, accountant: str | None = None) -> float:
        return epsilon(self.phases, self.delta, accountant or self.accountant)

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "accountant": self.accountant, "phases": [p.to_dict() for p in self.phases]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Ledger":
        return cls(float(d["delta"]), str(d.get("accountant", "rdp")), [Phase.from_dict(p) for p in d.get("phases", [])])
