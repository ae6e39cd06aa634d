"""Training the two latent diffusion models of the ``cine`` cascade (:mod:`generators.cine`).

:func:`cascade_data` turns the VAE latents of the training cines into the rows of both LDMs: one
ED stack per subject for the static LDM (slices as channels, zero-padded to ``slices_max``, with
a validity mask) and one slice cine per (subject, slice) for the motion LDM (residuals of frames
1..T-1 from the ED latent, that static latent and the slice's relative position).
:class:`CascadeData` draws their batches, dropping the priors with probability ``p_uncond``
(classifier-free guidance). :func:`train_ldm_phase` trains one LDM on them: AdamW, EMA,
gradient clipping or DP-SGD, checkpoints and resume through :class:`generators.training.Trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from audit.core.tables import read_csv, write_csv
from generators.cine_ldm import PRIOR_SCALES, ldm_loss, prior_vector
from generators.diffusion import T_TRAIN
from generators.dp.sgd import PrivateTraining
from generators.training import EMA, Trainer, TrainSpec, sampled_step

__all__ = ["CascadeData", "cascade_data", "PhaseSettings", "ddpm_scheduler", "train_ldm_phase", "merge_losses"]


@dataclass
class CascadeData:
    """The training rows of both LDMs (CPU tensors) and how to draw their batches."""

    g_idx: torch.Tensor  # group index per subject
    values: torch.Tensor  # continuous priors per subject, in PRIOR_SCALES order
    x_static: torch.Tensor  # (subjects, slices_max * c, h, w) ED stacks, zero-padded
    valid: torch.Tensor  # (subjects, slices_max * c) True on real slices
    resid: torch.Tensor  # (rows, (T-1) * c, h, w) motion residuals of a slice cine
    cond: torch.Tensor  # (rows, c, h, w) the slice's static latent
    pos: torch.Tensor  # (rows,) relative slice position in its stack
    row_subject: torch.Tensor  # (rows,) subject index of each slice cine
    n_groups: int
    p_uncond: float
    device: torch.device
    motion_scale: float = 1.0

    def _keep(self, m: int, rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(rng.random(m) >= float(self.p_uncond))

    def static_batch(self, idx: torch.Tensor, rng: np.random.Generator):
        """``(x0, extra, prior, weight)`` of the static LDM for subjects ``idx``."""
        prior = prior_vector(self.g_idx[idx], self.values[idx], self._keep(len(idx), rng), self.n_groups)
        weight = self.valid[idx].float().view(len(idx), -1, 1, 1)
        return self.x_static[idx].to(self.device), None, prior.to(self.device), weight.to(self.device)

    def motion_batch(self, idx: torch.Tensor, rng: np.random.Generator):
        """``(x0, extra, prior, weight)`` of the motion LDM for slice cines ``idx`` (residuals scaled)."""
        s = self.row_subject[idx]
        prior = prior_vector(self.g_idx[s], self.values[s], self._keep(len(idx), rng), self.n_groups)
        prior = torch.cat([prior, self.pos[idx].view(-1, 1)], 1)
        return ((self.resid[idx] * self.motion_scale).to(self.device), self.cond[idx].to(self.device),
                prior.to(self.device), None)


def cascade_data(lat: list[torch.Tensor], pri: Mapping[str, np.ndarray], groups: tuple[str, ...],
                 latent_shape: tuple[int, int, int], *, p_uncond: float, device: torch.device) -> CascadeData:
    """Rows of both LDMs from per-subject ``(T, Z, c, h, w)`` latents and their priors."""
    c, h, w = latent_shape
    zmax = max(int(z.shape[1]) for z in lat)
    g_idx = torch.tensor([groups.index(g) for g in pri["group"]])
    values = torch.from_numpy(np.stack([pri[k] for k in PRIOR_SCALES], 1).astype(np.float32))
    # static data: the ED stack, slices as channels, zero-padded to slices_max
    x_static = torch.zeros(len(lat), zmax * c, h, w)
    valid = torch.zeros(len(lat), zmax * c, dtype=torch.bool)
    for i, z in enumerate(lat):
        x_static[i, : z.shape[1] * c] = z[0].reshape(-1, h, w)
        valid[i, : z.shape[1] * c] = True
    # motion data: per (subject, slice) the residuals of frames 1..T-1 and the static latent
    rows = [(i, k) for i, z in enumerate(lat) for k in range(z.shape[1])]
    resid = torch.stack([(lat[i][1:, k] - lat[i][0, k]).reshape(-1, h, w) for i, k in rows])
    cond = torch.stack([lat[i][0, k] for i, k in rows])
    pos = torch.tensor([k / max(1, lat[i].shape[1] - 1) for i, k in rows], dtype=torch.float32)
    row_subject = torch.tensor([i for i, _ in rows])
    return CascadeData(g_idx=g_idx, values=values, x_static=x_static, valid=valid, resid=resid, cond=cond, pos=pos,
                       row_subject=row_subject, n_groups=len(groups), p_uncond=p_uncond, device=device)


@dataclass
class PhaseSettings:
    """What both LDM phases of one fit share."""

    options: Mapping[str, Any]
    meta: dict[str, Any]  # stored in the checkpoints' model config
    seed: int
    amp: bool
    train: Any  # the run's ``train`` config (EMA, checkpoint interval)
    root: Path | None  # checkpoint root of the cascade; the phase writes under root / name
    resume: bool
    dp: tuple[Any, Any] | None = None  # (plan, ledger) under DP
    #: brings an older checkpoint's model config to today's form on resume (:class:`~generators.training.TrainSpec`)
    upgrade: Callable[[dict], dict] | None = None


def ddpm_scheduler(options: Mapping[str, Any]) -> Any:
    """The training noise schedule of both LDMs."""
    from monai.networks.schedulers import DDPMScheduler  # lazy: MONAI (and torch) only when this network is built

    return DDPMScheduler(num_train_timesteps=T_TRAIN, schedule=options["schedule"], prediction_type=options["prediction"])


class _PhaseStep:
    """One optimisation step of an LDM: a batch of rows (uniform, or DP-SGD's Poisson batch),
    the diffusion loss, clipping (without DP; DP-SGD clips per unit) and the optimiser step."""

    def __init__(self, net: nn.Module, opt: Any, private: PrivateTraining | None, scheduler: Any,
                 batches: Callable, n: int, batch: int, prediction: str, amp: bool):
        self.net, self.opt, self.private, self.scheduler = net, opt, private, scheduler
        self.batches, self.n, self.batch, self.prediction, self.amp = batches, n, batch, prediction, amp

    def train_on(self, idx: torch.Tensor, rng: np.random.Generator) -> dict[str, float]:
        self.net.train()
        x0, extra, prior, weight = self.batches(idx, rng)
        loss = ldm_loss(self.net, self.scheduler, x0, extra, prior, weight, prediction=self.prediction,
                        per_sample=self.private is not None, amp=self.amp)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.private is None:  # DP-SGD clips per subject instead
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        return {"loss": loss.item()}

    def __call__(self, t: int, rng: np.random.Generator) -> dict[str, float]:
        return sampled_step(self.private, t, rng, self.n, self.batch, partial(self.train_on, rng=rng))


def train_ldm_phase(name: str, net: nn.Module, scheduler: Any, batches: Callable, unit_of_row: np.ndarray,
                    batch: int, steps: int, s: PhaseSettings) -> int:
    """Train LDM ``name`` for ``steps`` steps on the rows ``batches`` draws (privacy unit of each
    row: ``unit_of_row``), resuming from its checkpoints if asked; leaves the EMA weights in
    ``net`` (eval mode) and returns the number of steps done."""
    o, tcfg, root = s.options, s.train, s.root
    opt = torch.optim.AdamW(net.parameters(), lr=float(o["lr"]), weight_decay=0.0)
    ema = EMA(net, tcfg.ema_decay, min(int(tcfg.ema_warmup_steps), steps // 4))
    private = None
    if s.dp is not None:
        private = PrivateTraining(s.dp[0], s.dp[1], name, unit_of_row, s.seed)
        opt = private.wrap({name: net}, {name: opt}, f"cine {name} LDM")[name]
    step = _PhaseStep(net, opt, private, scheduler, batches, len(unit_of_row), batch, o["prediction"], s.amp)
    spec = TrainSpec(f"cine-{name}", {"options": o, "meta": s.meta}, int(steps), s.seed,
                     None if root is None else Path(root) / name, tcfg.checkpoint_every if root else 0,
                     None if root is None else Path(root) / name / "losses.csv", desc=f"train cine {name} LDM",
                     upgrade=s.upgrade)
    trainer = Trainer(spec, {name: net}, {name: opt}, {name: ema}, dp=private)
    try:
        trainer.fit(step, resume=s.resume)
    finally:
        if private is not None:
            private.close()
    ema.copy_to(net)
    net.eval()
    return trainer.step


def merge_losses(parts: Mapping[str, Path], out: Path) -> None:
    """One loss-curve CSV for the cascade (a ``phase`` column) from the phases' own CSVs."""

    frames = [read_csv(path).assign(phase=name) for name, path in parts.items() if path.is_file()]
    if frames:
        table = pd.concat(frames, ignore_index=True)
        write_csv(out, table[["phase", *[c for c in table.columns if c != "phase"]]])
