"""DP-SGD at training time: Poisson sampling of privacy units, per-unit clipping, noise, guards.

Per-sample gradients come from Opacus' :class:`~opacus.GradSampleModule` (``hooks`` mode by
default: for the convolution / group-norm / linear layers of these models it computes each
row's weight gradient with one einsum per layer, the same FLOPs as the batch gradient; the cost
of a DP step against a non-private one: BENCHMARKS.md "Differential privacy"). Opacus'
ghost clipping only avoids materialising gradients for Linear and Embedding layers -- these
models are convolutional -- so it would add a second backward pass without saving the einsum.

:class:`UnitDPOptimizer` is Opacus' :class:`~opacus.optimizers.DPOptimizer` with one extra
stage before Opacus clips: the per-row gradients are averaged per privacy unit (see
:mod:`generators.dp.plan`), so clipping, noise (``N(0, (sigma C)^2)`` on the sum) and the
division by the expected number of units are Opacus' own code.

Sampling: each step draws its units with Opacus' :class:`UniformWithReplacementSampler` (the
sampler inside ``DPDataLoader``), seeded by ``(seed, step)`` so a resumed run continues exactly.
Noise comes from torch's seeded PRNG, not a cryptographic one (Opacus ``secure_mode`` needs
torchcsprng); the report says so.

Guards (each a :class:`DPGuaranteeError`): a loader that is not Poisson, a network whose
trainable parameters changed after it was made private, a resume without the ledger.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Iterable

import numpy as np
import torch

from audit.core.errors import UserError
from generators import distributed
from generators.dp.accountant import Ledger
from generators.dp.plan import DPPlan
from generators.seeding import step_seed

log = logging.getLogger(__name__)


class DPGuaranteeError(UserError):
    """Training would no longer have the DP guarantee it claims."""


def require_poisson(loader: Any) -> None:
    """Refuse a data loader whose batches are not Poisson-sampled (the accountant assumes they are)."""
    from opacus.data_loader import DPDataLoader  # lazy: opacus only for DP training
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler  # lazy: opacus only for DP training

    sampler = getattr(loader, "batch_sampler", None)
    if isinstance(loader, (DPDataLoader, PoissonUnits)) or isinstance(sampler, UniformWithReplacementSampler):
        return
    raise DPGuaranteeError(f"DP training needs Poisson sampling (Opacus DPDataLoader); got {type(loader).__name__} with "
                           f"{type(sampler).__name__}: fixed-size shuffled batches void the accountant's sampling assumption")


def validate_module(module: torch.nn.Module, who: str) -> None:
    """Opacus' ModuleValidator (BatchNorm, unsupported layers): one clear message before training."""
    from opacus.validators import ModuleValidator  # lazy: opacus only for DP training

    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        listed = "; ".join(sorted({str(e).splitlines()[0] for e in errors}))
        raise UserError(f"{who} cannot be trained with DP-SGD: {listed} (use GroupNorm instead of BatchNorm, "
                        "or opacus.validators.ModuleValidator.fix)")


class PoissonUnits:
    """Per-step Poisson sample of privacy units, and ``m`` rows (slices) of each sampled unit."""

    def __init__(self, unit_of_row: np.ndarray, sample_rate: float, rows_per_unit: int, seed: int):
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler  # lazy: opacus only for DP training

        codes, self.unit_index = np.unique(np.asarray(unit_of_row), return_inverse=True)
        self.n_units = len(codes)
        self.rows_of = [np.flatnonzero(self.unit_index == u) for u in range(self.n_units)]
        self.sample_rate = float(sample_rate)
        self.m = int(rows_per_unit)
        self.seed = int(seed)
        self.sampler = UniformWithReplacementSampler(num_samples=self.n_units, sample_rate=self.sample_rate, steps=1)

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices and, per row, its unit's position in the batch (0..U-1)."""
        self.sampler.generator = torch.Generator().manual_seed(step_seed(self.seed, 10_000_019 + step))
        units = next(iter(self.sampler))
        rng = np.random.default_rng([self.seed, step, 7])
        rows, owner = [], []
        for k, u in enumerate(units):
            pool = self.rows_of[u]
            pick = pool if self.m == 1 and len(pool) == 1 else rng.choice(pool, self.m, replace=len(pool) < self.m)
            rows.append(pick)
            owner.append(np.full(len(pick), k))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows).astype(np.int64), np.concatenate(owner).astype(np.int64)


def _make_unit_optimizer():
    from opacus.optimizers import DPOptimizer  # lazy: opacus only for DP training

    class UnitDPOptimizer(DPOptimizer):
        """Opacus DPOptimizer that first averages per-row gradients per privacy unit."""

        owner: torch.Tensor | None = None
        n_units_in_batch: int = 0
        guard: "ParameterGuard | None" = None

        def pre_step(self, closure=None):
            if self.guard is not None:
                self.guard.check()
            if self.owner is not None:
                _aggregate_per_unit(self.params, self.owner, self.n_units_in_batch)
            return super().pre_step(closure)

    return UnitDPOptimizer


def _aggregate_per_unit(params: Iterable[torch.nn.Parameter], owner: torch.Tensor, n_units: int) -> None:
    for p in params:
        gs = getattr(p, "grad_sample", None)
        if gs is None:
            continue  # Opacus raises its own clear error for a parameter without per-sample gradient
        if isinstance(gs, list):
            gs = torch.cat(gs)
        if gs.shape[0] != owner.shape[0]:
            raise DPGuaranteeError(f"per-sample gradient has {gs.shape[0]} rows but the batch has {owner.shape[0]}: "
                                   "a forward pass outside the private batch reached a private network")
        own = owner.to(gs.device)
        counts = torch.bincount(own, minlength=n_units).clamp_min(1)
        out = torch.zeros((n_units, *gs.shape[1:]), dtype=gs.dtype, device=gs.device)
        out.index_add_(0, own, gs)
        p.grad_sample = out / counts.view(-1, *([1] * (gs.dim() - 1))).to(gs.dtype)


class ParameterGuard:
    """Fails when the trainable parameters of a private network change after wrapping."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, who: str):
        self.module, self.who = module, who
        self.signature = self._signature()
        self.opt_ids = {id(p) for g in optimizer.param_groups for p in g["params"]}

    def _signature(self):
        return [(n, id(p), tuple(p.shape)) for n, p in self.module.named_parameters() if p.requires_grad]

    def check(self) -> None:
        sig = self._signature()
        if sig != self.signature:
            raise DPGuaranteeError(f"{self.who}: trainable parameters changed after the network was made private "
                                   "(parameters added, removed or replaced); per-sample gradients no longer cover it")
        if not {i for _, i, _ in sig} <= self.opt_ids:
            raise DPGuaranteeError(f"{self.who}: a trainable parameter is not in the private optimiser")


class PrivateTraining:
    """One training phase under DP: private optimisers, Poisson units, ledger bookkeeping."""

    def __init__(self, plan: DPPlan, ledger: Ledger, phase: str, unit_of_row: np.ndarray, seed: int):
        if distributed.current() is not None:  # see generators.distributed: noise and units are per process
            raise UserError("DP-SGD under torchrun (several processes) is not supported yet: run DP training "
                            "in one process")
        p = plan.phase(phase)
        self.plan, self.ledger, self.phase = plan, ledger, phase
        if plan.unit == "slice":
            unit_of_row = np.arange(len(unit_of_row))
        self.units = PoissonUnits(unit_of_row, p["sample_rate"], plan.rows_per_unit(phase), seed)
        require_poisson(self.units)
        self.noise = plan.optimizer_noise(phase)
        self.optimizers: dict[str, Any] = {}
        self.gsms: list[Any] = []
        self.expected_units = p["sample_rate"] * self.units.n_units

    def wrap(self, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             who: str) -> dict[str, torch.optim.Optimizer]:
        """Make every optimiser private: per-sample hooks on its network, Opacus DP optimiser around it."""
        from opacus import GradSampleModule  # lazy: opacus only for DP training

        UnitDPOptimizer = _make_unit_optimizer()
        # Opacus' backward hooks on a first layer whose input needs no gradient: harmless, and per step
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")
        out: dict[str, torch.optim.Optimizer] = {}
        for name, opt in optimizers.items():
            module = modules[name]
            validate_module(module, f"{who} ({name})")
            try:
                gsm = GradSampleModule(module, batch_first=True, loss_reduction="mean",
                                       force_functorch=self.plan.mode == "functorch")
            except NotImplementedError as exc:  # Opacus' strict check: e.g. buffers in a trainable layer
                detail = exc.args[0][0] if exc.args and isinstance(exc.args[0], list) and exc.args[0] else exc
                raise UserError(f"{who} ({name}) cannot be trained with DP-SGD: {str(detail).strip()}") from None
            self.gsms.append(gsm)
            dpo = UnitDPOptimizer(opt, noise_multiplier=self.noise, max_grad_norm=self.plan.max_grad_norm,
                                  expected_batch_size=max(1e-9, self.expected_units), loss_reduction="mean")
            dpo.guard = ParameterGuard(module, opt, f"{who} ({name})")
            out[name] = dpo
        self.optimizers = out
        log.info("DP-SGD (%s, %s-level): %d optimiser(s), noise multiplier %.3f each, C=%g, q=%.4f over %d units", self.plan.mode,
                 self.plan.unit, len(out), self.noise, self.plan.max_grad_norm, self.units.sample_rate, self.units.n_units)
        return out

    def gsm_of(self, module: torch.nn.Module):
        """The GradSampleModule wrapping ``module`` (None if it is not private)."""
        for gsm in self.gsms:
            if gsm._module is module:
                return gsm
        return None

    def run_step(self, step: int, train_on_rows: Callable[[np.ndarray], dict[str, float]]) -> dict[str, float]:
        """One private step: draw the Poisson batch, train on its rows (an empty batch still
        releases noise), and spend it in the ledger. Returns the losses (``{}`` when empty)."""
        rows = self.batch(step)
        if len(rows) == 0:
            self.noise_only_step()
            losses: dict[str, float] = {}
        else:
            losses = train_on_rows(rows)
        self.spend()
        return losses

    def batch(self, step: int) -> np.ndarray:
        """Rows of this step's Poisson batch; tells every private optimiser who owns which row."""
        rows, owner = self.units.batch(step)
        n_u = int(owner.max()) + 1 if len(owner) else 0
        for opt in self.optimizers.values():
            opt.owner = torch.from_numpy(owner)
            opt.n_units_in_batch = n_u
        return rows

    def noise_only_step(self) -> None:
        """An empty Poisson batch still releases noise (and costs privacy): step with zero gradients."""
        for opt in self.optimizers.values():
            opt.owner = None
            opt.zero_grad(set_to_none=True)
            for p in opt.params:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            opt.step()
            opt.zero_grad(set_to_none=True)

    def restore(self, ledger: dict, step: int, path: Any) -> None:
        """Take the checkpoint's ledger (privacy already spent) after checking it matches this plan."""
        restored = Ledger.from_dict(ledger)
        if restored.steps(self.phase) != step:
            raise DPGuaranteeError(f"{path}: the DP ledger records {restored.steps(self.phase)} steps of phase "
                                   f"{self.phase} but the checkpoint is at step {step}; the accountant state is inconsistent")
        for ph in restored.phases:
            if ph.name == self.phase and (ph.noise_multiplier, ph.sample_rate) != (self.plan.noise_multiplier, self.units.sample_rate):
                raise DPGuaranteeError(f"{path}: the checkpoint was trained with other DP noise/sampling "
                                       f"({ph.noise_multiplier:g}, {ph.sample_rate:g}); resume with the same --dp-* options")
        self.ledger.phases = restored.phases
        self.ledger.delta, self.ledger.accountant = restored.delta, restored.accountant

    def spend(self) -> None:
        self.ledger.spend(self.phase, self.plan.noise_multiplier, self.units.sample_rate)

    def close(self) -> None:
        for gsm in self.gsms:
            gsm.to_standard_module()  # removes Opacus' hooks and per-sample attributes
        self.gsms = []
