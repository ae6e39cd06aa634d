"""The shared training loop: per-step seeding, EMA with warm-up, checkpoints, exact resume.

Determinism: before step ``t`` the loop seeds torch with ``(seed, t)`` and hands the step a
NumPy generator seeded with ``(seed, t)``. Batches, noise and timesteps are therefore a
function of the step number alone, so a run resumed from a checkpoint (weights, EMA,
optimiser state) continues exactly as the uninterrupted run would have.

EMA: the shadow weights copy the model during the first ``warmup`` steps, then decay with
``min(decay, (1 + k) / (10 + k))`` (k = steps since warm-up). A fixed 0.999 from step 0 on a
short CPU schedule averages in the random initialisation into the weights, and the samples
come out as "texture soup".
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from audit.core.logs import progress_disabled
from audit.core.tables import write_csv
from generators import checkpoint as ckpt
from generators import distributed
from generators.dp.sgd import DPGuaranteeError
from generators.seeding import step_seed

log = logging.getLogger(__name__)


def sampled_step(private: Any, t: int, rng: np.random.Generator, n: int, batch: int,
                 train_on: Callable[[torch.Tensor], dict[str, float]]) -> dict[str, float]:
    """One step of a single-process phase on its rows: the Poisson batch of ``private`` (a
    :class:`generators.dp.sgd.PrivateTraining`, which also spends the step) or, without DP,
    ``min(batch, n)`` of the ``n`` rows drawn uniformly without replacement from ``rng``."""
    if private is not None:
        return private.run_step(t, lambda rows: train_on(torch.as_tensor(rows)))
    return train_on(torch.as_tensor(rng.choice(n, min(batch, n), replace=False)))


class EMA:
    """Exponential moving average of a module's floating-point state (weights and buffers)."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.999, warmup: int = 0):
        self.decay = float(decay)
        self.warmup = int(warmup)
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}

    def rate(self, step: int) -> float:
        if step < self.warmup:
            return 0.0
        k = step - self.warmup
        return min(self.decay, (1.0 + k) / (10.0 + k))

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = self.rate(step)
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        state = module.state_dict()
        state.update({k: v.clone() for k, v in self.shadow.items()})
        module.load_state_dict(state)


@dataclass
class TrainSpec:
    generator: str
    model_config: dict
    steps: int
    seed: int
    checkpoint_root: Path | None = None
    checkpoint_every: int = 0
    losses_path: Path | None = None
    desc: str = "training"
    #: brings the model config of a checkpoint written by an older version to today's form before
    #: resume compares it with ``model_config`` (e.g. :meth:`generators.base.Generator.upgrade_model_config`)
    upgrade: Callable[[dict], dict] | None = None
    #: checkpoints kept on disk (the newest ones); 0 keeps every one (training-length curves)
    keep_checkpoints: int = 2


@dataclass
class Trainer:
    """Runs ``step_fn`` for ``spec.steps`` steps over named modules/optimisers/EMAs."""

    spec: TrainSpec
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    emas: dict[str, EMA] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0  # number of finished steps
    #: DP bookkeeping (:class:`generators.dp.sgd.PrivateTraining`): its ledger travels with every
    #: checkpoint and must come back on resume
    dp: Any = None

    # ------------------------------------------------------------------ state
    def weights(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, module in self.modules.items():
            out.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
        for name, ema in self.emas.items():
            out.update({f"ema.{name}.{k}": v for k, v in ema.shadow.items()})
        return out

    def save(self) -> Path | None:
        """Checkpoint + loss curve (rank 0 only under torchrun: every rank holds the same state)."""
        if self.spec.checkpoint_root is None or not distributed.is_main():
            return None
        tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
        scalars: dict = {"step": self.step}
        if self.dp is not None:
            scalars["dp_ledger"] = self.dp.ledger.to_dict()
        for name, opt in self.optimizers.items():
            t, s = ckpt.optimizer_to_flat(opt, f"optim.{name}")
            tensors.update(t)
            scalars.update(s)
        path = ckpt.save(
            self.spec.checkpoint_root,
            generator=self.spec.generator,
            model_config=self.spec.model_config,
            step=self.step,
            weights=self.weights(),
            state_tensors=tensors,
            state=scalars,
            keep=self.spec.keep_checkpoints,
        )
        self._write_losses()
        return path

    def restore(self) -> bool:
        """Load the latest checkpoint if there is one; returns whether it did."""
        root = self.spec.checkpoint_root
        if root is None or ckpt.latest(root) is None:
            return False
        c = ckpt.load(root, generator=self.spec.generator, model_config=self.spec.model_config,
                      upgrade=self.spec.upgrade)
        self.load_weights(c.weights)
        for name, opt in self.optimizers.items():
            ckpt.optimizer_from_flat(opt, f"optim.{name}", c.state_tensors, c.state)
        self.step = int(c.state.get("step", c.step))
        self._restore_dp(c.state.get("dp_ledger"), c.path)
        self._read_losses()
        log.info("resumed %s from %s (step %d)", self.spec.generator, c.path, self.step)
        return True

    def _restore_dp(self, ledger: dict | None, path: Path) -> None:
        if self.dp is None:
            if ledger:
                raise DPGuaranteeError(f"{path}: this checkpoint was trained with DP; resuming it without DP would mix "
                                       "private and non-private training -- resume with the same --dp-* options")
            return
        if not ledger:
            raise DPGuaranteeError(f"{path}: no DP accountant state in this checkpoint; resuming would lose the privacy "
                                   "spent so far -- start a new run")
        self.dp.restore(ledger, self.step, path)

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        for name, module in self.modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        for name, ema in self.emas.items():
            prefix = f"ema.{name}."
            for k in ema.shadow:
                if prefix + k in weights:
                    ema.shadow[k] = weights[prefix + k].to(ema.shadow[k].device, copy=True)

    def _write_losses(self) -> None:
        if self.spec.losses_path is None or not self.history:
            return
        keys = sorted({k for row in self.history for k in row})
        write_csv(self.spec.losses_path, self.history, columns=keys)

    def _read_losses(self) -> None:
        p = self.spec.losses_path
        if p is None or not p.is_file():
            self.history = []
            return
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
        self.history = [r for r in rows if r.get("step", 0) <= self.step]

    # ------------------------------------------------------------------ loop
    def fit(self, step_fn: Callable[[int, np.random.Generator], dict[str, float]], *, resume: bool = False,
            stop_after: int | None = None) -> list[dict[str, float]]:
        """Run the remaining steps. ``stop_after`` ends early (used to simulate an interruption)."""
        if resume:
            self.restore()
        for m in self.modules.values():
            m.train()
        total = self.spec.steps
        group = distributed.current()
        rank = group.rank if group is not None else 0
        bar = tqdm(total=total, initial=self.step, desc=self.spec.desc, disable=progress_disabled() or rank > 0,
                   dynamic_ncols=True, leave=False)
        t0 = time.perf_counter()
        try:
            while self.step < total:
                t = self.step
                torch.manual_seed(step_seed(self.spec.seed, t) + rank)  # ranks draw independent noise
                rng = np.random.default_rng([int(self.spec.seed), t])
                losses = step_fn(t, rng)
                for name, ema in self.emas.items():
                    ema.update(self.modules[name], t)
                bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
                if bad:
                    raise FloatingPointError(f"{self.spec.generator}: non-finite loss at step {t}: {bad}")
                self.step = t + 1
                self.history.append({"step": float(self.step), **{k: float(v) for k, v in losses.items()}})
                bar.update(1)
                if self.step % 10 == 0 or self.step == total:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()})
                every = self.spec.checkpoint_every
                if every and self.step % every == 0 and self.step < total:
                    self.save()
                if stop_after is not None and self.step >= stop_after:
                    break
        finally:
            bar.close()
        if self.step >= total:
            self.save()
        dt = time.perf_counter() - t0
        log.info("%s: %d steps in %.1f s", self.spec.desc, len(self.history), dt)
        return self.history
