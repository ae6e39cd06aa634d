"""Data-parallel generator training under ``torchrun`` (several processes, one process group).

``torchrun --nproc_per_node K -m audit run ...`` starts K ranks. Rank 0 runs the whole
pipeline; every rank joins the ``fit`` stage (:mod:`audit.pipeline.run`), where each training step works
as follows:

* every rank draws the same global batch (the step's NumPy generator is seeded with
  ``(seed, step)`` on every rank, as in single-process training) and keeps rows
  ``rank::world`` of it;
* after the backward pass the gradients are averaged over the ranks, weighted by each rank's
  share of the rows, so the update equals the gradient of the global batch's mean loss -- the
  all-reduce of DistributedDataParallel (Li et al. 2020, "PyTorch Distributed"), done once per
  optimiser step on a flattened buffer instead of per bucket during backward. DDP's wrapper is
  not used because the families reach into their networks (GAN noise shapes, frozen
  discriminators, per-network optimisers) and because a network frozen mid-step breaks DDP's
  reducer; the arithmetic is the same, without DDP's overlap of communication and backward;
* gradient clipping (diffusion) happens after the average, on the global gradient;
* the torch seed of a step is ``step_seed + rank`` (rank 0 = the single-process seed), so the
  ranks draw independent noise for their rows; the loss trajectory therefore matches
  single-process training statistically, not bit for bit;
* the logged losses are averaged over the ranks (weighted); only rank 0 writes checkpoints,
  loss curves, caches and the run directory. All ranks keep identical weights (same
  initialisation, same averaged updates), so any rank's model is the model.

DP-SGD under ``torchrun`` is refused for now (Opacus' DistributedDPOptimizer adds the noise on
one rank; the per-subject aggregation of :mod:`generators.dp.sgd` would first have to keep each
subject's rows on one rank).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from audit.core.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    rank: int
    world: int


def current() -> Group | None:
    """The running process group when there is more than one rank, else ``None``."""

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Group(dist.get_rank(), dist.get_world_size())
    return None


def is_main() -> bool:
    """Rank 0 (or no process group): the process that writes files."""
    g = current()
    return g is None or g.rank == 0


def requested() -> bool:
    """Whether this process was started by ``torchrun`` with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Group | None:
    """Join the process group ``torchrun`` describes: gloo for CPU tensors (and object broadcasts)
    and, on a machine with GPUs, NCCL for CUDA tensors (``cpu:gloo,cuda:nccl``; rank r uses GPU
    ``LOCAL_RANK``)."""

    if not requested():
        return None
    if not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "cpu:gloo,cuda:nccl"
        # rank 0 may prepare a cohort for a long time before the others hear from it
        dist.init_process_group(backend, timeout=_dt.timedelta(hours=4))
        log.info("process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return current()


def broadcast(value: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (a no-op without a process group)."""

    if current() is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_rows(rows, group: Group | None):
    """This rank's rows of a global batch (``rows[rank::world]``) and its share of the batch."""
    if group is None:
        return rows, 1.0
    if len(rows) < group.world:
        raise UserError(f"batch of {len(rows)} rows cannot be split over {group.world} ranks: "
                        "raise train.batch_size to at least the number of processes")
    mine = rows[group.rank::group.world]
    return mine, len(mine) / len(rows)


def average_losses(losses: dict[str, float], share: float) -> dict[str, float]:
    """Losses of the global batch: the ranks' values weighted by their shares."""

    if current() is None or not losses:
        return losses
    keys = sorted(losses)
    t = torch.tensor([losses[k] * share for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def step(rows, train_on, optimizers, group: Group | None) -> dict[str, float]:
    """One non-private step: ``train_on`` this rank's rows of the global batch ``rows``, with the
    data-parallel optimisers told this rank's share; returns the rank-averaged losses."""
    mine, share = local_rows(rows, group)
    for opt in optimizers:
        if isinstance(opt, DataParallelOptimizer):
            opt.share = share
    return average_losses(train_on(mine), share)


class DataParallelOptimizer:
    """An optimiser whose gradients are averaged over the ranks (weighted by ``share``) before it
    steps; :meth:`synchronize` may be called earlier (before gradient clipping). Everything else
    (``zero_grad``, ``state_dict``, ``param_groups``) is the wrapped optimiser's."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.share = 1.0
        self._synced = False

    def synchronize(self) -> None:
        if self._synced or current() is None:
            return
        grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        for dtype_device in {(t.dtype, t.device) for t in grads}:  # one buffer per dtype/device
            part = [t for t in grads if (t.dtype, t.device) == dtype_device]
            flat = _flatten_dense_tensors(part).mul_(self.share)
            dist.all_reduce(flat)
            for t, synced in zip(part, _unflatten_dense_tensors(flat, part)):
                t.copy_(synced)
        self._synced = True

    def step(self, closure=None):
        self.synchronize()
        self._synced = False
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._synced = False
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def synchronize(optimizer: Any) -> None:
    """Average gradients now if ``optimizer`` is data-parallel (call before clipping)."""
    sync = getattr(optimizer, "synchronize", None)
    if callable(sync):
        sync()
