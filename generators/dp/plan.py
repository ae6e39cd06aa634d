"""From the user's DP settings to a validated, calibrated plan -- before any training.

Privacy unit. A patient contributes many slices (ED and ES x 8-12 slices, more with
``data.frames=all``). DP-SGD over slices protects one *slice*; the patient would only be
covered by group privacy, with an epsilon many times the claim. The default unit is therefore
the **subject** ("user-level" DP-SGD, McMahan et al. 2018): each step Poisson-samples
subjects with rate ``q``, takes ``slices_per_unit`` of each sampled subject's slices, averages
their per-slice gradients into one per-subject gradient, and clips *that* to ``max_grad_norm``.
``dp.unit = "slice"`` gives classic example-level DP-SGD (Abadi et al. 2016) and says so.

Sampling rate: a step expects ``train.batch_size`` rows, i.e. ``batch_size / slices_per_unit``
units, so ``q = batch_size / (slices_per_unit * N_units)`` (capped at 1).

Several noisy releases per step. A step that updates ``k`` networks with their own noisy
gradients of the same Poisson batch (the mask-conditioned GAN: the generator reads the private
masks, so it needs DP as much as the discriminator) is, given the batch, an adaptive
composition of ``k`` Gaussian mechanisms with sensitivity ``C`` and noise ``sigma C`` -- a
Gaussian mechanism with noise multiplier ``sigma / sqrt(k)`` (Dong, Roth & Su 2022, Gaussian
DP composition). The ledger records that effective multiplier; each optimiser adds
``sigma_eff * sqrt(k)``.

Delta: default ``1 / (10 N)``; a delta >= ``1 / N`` is refused (it permits releasing one
record in the clear).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.core.errors import UserError
from generators.dp import accountant as acct

log = logging.getLogger(__name__)


@dataclass
class PhaseSpec:
    """One planned mechanism: ``steps`` steps expecting ``rows`` rows each (or a fixed ``sample_rate``)."""

    name: str
    steps: int
    rows: int = 0
    releases: int = 1
    sample_rate: float | None = None
    n_units: int | None = None  # units this phase samples from (default: all units of the split)
    #: rows drawn per sampled unit (default: the plan's ``slices_per_unit``); 1 for a phase whose
    #: rows are whole subjects (the cine static LDM trains on one stack per subject)
    rows_per_unit: int | None = None


@dataclass
class DPPlan:
    unit: str
    n_units: int
    slices_per_unit: int
    delta: float
    max_grad_norm: float
    accountant: str
    mode: str
    noise_multiplier: float  #: effective sigma of every phase (what the ledger records)
    target_epsilon: float | None
    phases: list[dict[str, Any]] = field(default_factory=list)  # name, sample_rate, steps, releases

    # ------------------------------------------------------------------ per phase
    def phase(self, name: str) -> dict[str, Any]:
        for p in self.phases:
            if p["name"] == name:
                return p
        raise KeyError(f"DP plan has no phase {name!r} (phases: {[p['name'] for p in self.phases]})")

    def rows_per_unit(self, name: str) -> int:
        """Rows each sampled unit contributes to a step of phase ``name``."""
        return int(self.phase(name).get("rows_per_unit", self.slices_per_unit))

    def optimizer_noise(self, name: str) -> float:
        """Noise multiplier each optimiser of phase ``name`` adds (``sigma_eff * sqrt(releases)``)."""
        return self.noise_multiplier * math.sqrt(self.phase(name)["releases"])

    def planned(self) -> list[acct.Phase]:
        return [acct.Phase(p["name"], self.noise_multiplier, p["sample_rate"], p["steps"]) for p in self.phases]

    def epsilon(self, accountant: str | None = None) -> float:
        return acct.epsilon(self.planned(), self.delta, accountant or self.accountant)

    def ledger(self) -> acct.Ledger:
        return acct.Ledger(self.delta, self.accountant)

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "n_units": self.n_units, "slices_per_unit": self.slices_per_unit, "delta": self.delta,
                "max_grad_norm": self.max_grad_norm, "accountant": self.accountant, "mode": self.mode,
                "noise_multiplier": self.noise_multiplier, "target_epsilon": self.target_epsilon,
                "phases": [dict(p) for p in self.phases]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DPPlan":
        return cls(**{**d, "phases": [dict(p) for p in d["phases"]]})


def n_units(subject_ids: np.ndarray, unit: str) -> int:
    return int(len(np.unique(subject_ids))) if unit == "subject" else int(len(subject_ids))


def make_plan(dp_cfg: Any, subject_ids: np.ndarray, phases: list[PhaseSpec]) -> DPPlan:
    """Validate the settings against the data and calibrate the noise. Raises :class:`UserError`
    (one line, before any training) for every request that cannot give a meaningful guarantee.

    ``dp_cfg`` is the run's :class:`audit.pipeline.config.DPConfig` with DP enabled; the checks that need
    no data (unit, mode, accountant, clipping norm, epsilon vs noise multiplier) are made when
    the config is resolved (``audit.pipeline.config``), the ones that need the train split here."""
    unit, mode, accountant = str(dp_cfg.unit), str(dp_cfg.grad_sample_mode), str(dp_cfg.accountant)
    eps, sigma = float(dp_cfg.epsilon), float(dp_cfg.noise_multiplier)
    m = int(dp_cfg.slices_per_unit) if unit == "subject" else 1
    n = n_units(np.asarray(subject_ids), unit)
    if n < 2:
        raise UserError(f"DP training needs at least 2 {unit}s in the train split, got {n}")
    delta = float(dp_cfg.delta) or 1.0 / (10 * n)
    if not 0 < delta < 1:
        raise UserError(f"dp.delta must be in (0, 1), got {delta:g}")
    if delta >= 1.0 / n:
        raise UserError(f"dp.delta {delta:g} must be below 1/N = {1.0 / n:.3g} (N = {n} {unit}s in the train split); "
                        "a larger delta allows publishing one record in the clear")
    resolved = []
    for p in phases:
        units = p.n_units or n
        m_p = int(p.rows_per_unit) if p.rows_per_unit and unit == "subject" else m
        if p.sample_rate is not None:
            q = float(p.sample_rate)
        else:
            q = p.rows / (m_p * units)
            if q > 1:
                log.warning("DP phase %s: batch of %d rows exceeds %d %ss x %d slices; sampling rate capped at 1",
                            p.name, p.rows, units, unit, m_p)
                q = 1.0
        if not 0 < q <= 1:
            raise UserError(f"DP phase {p.name}: sampling rate {q:g} must be in (0, 1]")
        r = {"name": p.name, "sample_rate": q, "steps": int(p.steps), "releases": int(p.releases)}
        if m_p != m:
            r["rows_per_unit"] = m_p
        resolved.append(r)
    if sigma <= 0:
        plan_spec = [(r["name"], r["sample_rate"], r["steps"], 1.0) for r in resolved]
        sigma = acct.calibrate(eps, delta, plan_spec, accountant)
    elif sigma > acct.MAX_NOISE_MULTIPLIER:
        raise UserError(f"dp.noise_multiplier {sigma:g} exceeds the sane bound {acct.MAX_NOISE_MULTIPLIER:g}")
    plan = DPPlan(unit=unit, n_units=n, slices_per_unit=m, delta=delta, max_grad_norm=float(dp_cfg.max_grad_norm),
                  accountant=accountant, mode=mode, noise_multiplier=float(sigma), target_epsilon=eps if eps > 0 else None,
                  phases=resolved)
    log.info("DP plan: %s-level, N=%d, delta=%.3g, sigma_eff=%.3f, C=%g, phases %s -> epsilon %.3f (%s)", unit, n, delta,
             sigma, plan.max_grad_norm, [(r["name"], round(r["sample_rate"], 4), r["steps"]) for r in resolved],
             plan.epsilon(), accountant)
    return plan
